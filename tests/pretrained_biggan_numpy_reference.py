"""A NumPy reference of pytorch-pretrained-BigGAN's forward pass (BigGAN-deep G, eval mode).

Written from a reading of huggingface/pytorch-pretrained-BigGAN
`pytorch_pretrained_biggan/model.py` (`BigGAN`, `Generator`, `GenBlock`, `SelfAttn`,
`BigGANBatchNorm`) and torch.nn.utils.spectral_norm's eval mode, independently of
ppcd_tf: NCHW float64 arrays, the state dict's own key names, and `random_release`
builds a state dict of the release's structure (module by module, as `Generator.__init__`
creates them) from a config dict. Nothing here imports ppcd_tf.
"""
import math

import numpy as np

from tests.biggan_numpy_reference import conv2d  # F.conv2d (NumPy, no ppcd_tf)

CONFIG_KEYS = ("output_dim", "z_dim", "class_embed_dim", "channel_width", "num_classes",
               "layers", "attention_layer_position", "eps", "n_stats")


def tiny_config():
  """64 px, ch 4, z 8, 10 classes, attention at 16 px (after GenBlock 3), 51 stats."""
  return {"output_dim": 64, "z_dim": 8, "class_embed_dim": 8, "channel_width": 4,
          "num_classes": 10,
          "layers": [[False, 16, 16], [True, 16, 8], [False, 8, 8], [True, 8, 4],
                     [False, 4, 4], [True, 4, 2], [False, 2, 2], [True, 2, 1]],
          "attention_layer_position": 4, "eps": 1e-4, "n_stats": 51}


def _modules(cfg):
  """[(prefix, kind, args)] of every parametrised module, as Generator builds them."""
  ch, cond, n = cfg["channel_width"], 2 * cfg["z_dim"], cfg["n_stats"]
  mods = [("embeddings", "linear_plain", (cfg["z_dim"], cfg["num_classes"])),
          ("generator.gen_z", "snlinear", (4 * 4 * 16 * ch, cond, True))]
  index = 0
  for i, (_, a, b) in enumerate(cfg["layers"]):
    if i == cfg["attention_layer_position"]:
      c = ch * a
      p = f"generator.layers.{index}"
      mods += [(f"{p}.snconv1x1_theta", "snconv", (c // 8, c, 1, False)),
               (f"{p}.snconv1x1_phi", "snconv", (c // 8, c, 1, False)),
               (f"{p}.snconv1x1_g", "snconv", (c // 2, c, 1, False)),
               (f"{p}.snconv1x1_o_conv", "snconv", (c, c // 2, 1, False)),
               (f"{p}.gamma", "scalar", ())]
      index += 1
    p = f"generator.layers.{index}"
    cin, cout = ch * a, ch * b
    mid = cin // 4
    for j, c in enumerate((cin, mid, mid, mid)):
      mods += [(f"{p}.bn_{j}", "stats", (n, c)),
               (f"{p}.bn_{j}.scale", "snlinear", (c, cond, False)),
               (f"{p}.bn_{j}.offset", "snlinear", (c, cond, False))]
    for j, (o, k_in, k) in enumerate(((mid, cin, 1), (mid, mid, 3), (mid, mid, 3),
                                      (cout, mid, 1))):
      mods.append((f"{p}.conv_{j}", "snconv", (o, k_in, k, True)))
    index += 1
  mods += [("generator.bn", "stats", (n, ch)), ("generator.bn", "affine", (ch,)),
           ("generator.conv_to_rgb", "snconv", (ch, ch, 3, True))]
  return mods


def _unit(rng, n):
  x = rng.normal(size=n)
  return x / np.linalg.norm(x)


def random_release(cfg, seed=0):
  """A random state dict {key: float32 array} of the release for config dict `cfg`.

  Weights are scaled so that activations stay O(1); statistics vary with the
  truncation row (so the selection rule matters). u, v are what the release's
  converter stores: from a random u0, v = normalize(W^T u0), u = normalize(W v), so
  sigma = u^T W v = |W v| is one power-iteration step from u0, not W's norm (and not
  what a power-iteration step from the stored u gives).
  """
  rng = np.random.default_rng(seed)
  out = {}

  def sn(prefix, w, bias):
    mat = w.reshape(w.shape[0], -1)
    v = mat.T @ _unit(rng, w.shape[0])
    v /= np.linalg.norm(v)
    u = mat @ v
    out[f"{prefix}.weight_orig"] = w
    out[f"{prefix}.weight_u"] = u / np.linalg.norm(u)
    out[f"{prefix}.weight_v"] = v
    if bias:
      out[f"{prefix}.bias"] = rng.normal(scale=0.1, size=w.shape[0])

  for prefix, kind, args in _modules(cfg):
    if kind == "linear_plain":
      out[f"{prefix}.weight"] = rng.normal(size=args)
    elif kind == "snlinear":
      o, i, bias = args
      sn(prefix, rng.normal(scale=0.3, size=(o, i)), bias)
    elif kind == "snconv":
      o, i, k, bias = args
      sn(prefix, rng.normal(scale=0.3, size=(o, i, k, k)), bias)
    elif kind == "scalar":
      out[prefix] = np.array([0.7])
    elif kind == "stats":
      n, c = args
      rows = np.linspace(0, 1, n)[:, None]
      out[f"{prefix}.running_means"] = (rng.normal(scale=0.2, size=(1, c))
                                        + rows * rng.normal(size=(1, c)))
      out[f"{prefix}.running_vars"] = (rng.uniform(0.3, 1.0, size=(1, c))
                                       + rows * rng.uniform(0.5, 2.0, size=(1, c)))
    elif kind == "affine":
      out[f"{prefix}.weight"] = rng.uniform(0.5, 1.5, size=args)
      out[f"{prefix}.bias"] = rng.normal(scale=0.1, size=args)
  return {k: np.asarray(v, np.float32) for k, v in out.items()}


# ---- the forward pass (NCHW, float64) ----

def _sn_weight(s, prefix):
  """torch spectral_norm, eval mode: weight_orig / (u . (W v)), no power iteration."""
  w = s[f"{prefix}.weight_orig"].astype(np.float64)
  u = s[f"{prefix}.weight_u"].astype(np.float64)
  v = s[f"{prefix}.weight_v"].astype(np.float64)
  sigma = u @ (w.reshape(w.shape[0], -1) @ v)
  return w / sigma


def _conv(s, prefix, x, bias=True):
  return conv2d(x, _sn_weight(s, prefix), s[f"{prefix}.bias"] if bias else None)


def _linear(s, prefix, x, bias=True):
  out = x @ _sn_weight(s, prefix).T
  return out + s[f"{prefix}.bias"] if bias else out


def _stats(s, prefix, truncation, n_stats):
  """BigGANBatchNorm's choice: coef, start = modf(t / step); row start*coef +
  row start+1 * (1 - coef) unless coef == 0."""
  step = 1.0 / (n_stats - 1)
  coef, start = math.modf(truncation / step)
  start = int(start)
  means = s[f"{prefix}.running_means"].astype(np.float64)
  variances = s[f"{prefix}.running_vars"].astype(np.float64)
  if coef != 0.0:
    return (means[start] * coef + means[start + 1] * (1 - coef),
            variances[start] * coef + variances[start + 1] * (1 - coef))
  return means[start], variances[start]


def _cbn(s, prefix, x, cond, truncation, cfg):
  mean, var = _stats(s, prefix, truncation, cfg["n_stats"])
  weight = 1 + _linear(s, f"{prefix}.scale", cond, bias=False)
  bias = _linear(s, f"{prefix}.offset", cond, bias=False)
  normed = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + cfg["eps"])
  return normed * weight[:, :, None, None] + bias[:, :, None, None]


def _up(x):
  return x.repeat(2, axis=2).repeat(2, axis=3)


def _relu(x):
  return np.maximum(x, 0)


def _gen_block(s, p, x, cond, truncation, cfg, up):
  x0 = x
  h = _conv(s, f"{p}.conv_0", _relu(_cbn(s, f"{p}.bn_0", x, cond, truncation, cfg)))
  h = _relu(_cbn(s, f"{p}.bn_1", h, cond, truncation, cfg))
  h = _conv(s, f"{p}.conv_1", _up(h) if up else h)
  h = _conv(s, f"{p}.conv_2", _relu(_cbn(s, f"{p}.bn_2", h, cond, truncation, cfg)))
  h = _conv(s, f"{p}.conv_3", _relu(_cbn(s, f"{p}.bn_3", h, cond, truncation, cfg)))
  if x0.shape[1] != h.shape[1]:  # drop_channels: keep the first half
    x0 = x0[:, :x0.shape[1] // 2]
  return h + (_up(x0) if up else x0)


def _maxpool(x):
  n, c, h, w = x.shape
  return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def _self_attn(s, p, x):
  n, c, h, w = x.shape
  theta = _conv(s, f"{p}.snconv1x1_theta", x, bias=False).reshape(n, c // 8, h * w)
  phi = _maxpool(_conv(s, f"{p}.snconv1x1_phi", x, bias=False)).reshape(n, c // 8, -1)
  logits = np.einsum("nkq,nkp->nqp", theta, phi)
  logits -= logits.max(axis=-1, keepdims=True)
  attn = np.exp(logits)
  attn /= attn.sum(axis=-1, keepdims=True)
  g = _maxpool(_conv(s, f"{p}.snconv1x1_g", x, bias=False)).reshape(n, c // 2, -1)
  attn_g = np.einsum("nvp,nqp->nvq", g, attn).reshape(n, c // 2, h, w)
  return x + s[f"{p}.gamma"][0] * _conv(s, f"{p}.snconv1x1_o_conv", attn_g, bias=False)


def forward(state, cfg, z, class_vector, truncation):
  """BigGAN(z, class_vector, truncation) in eval mode.

  Args:
    state: the state dict (key -> array).
    cfg: the config dict.
    z: [N, z_dim]; class_vector: [N, num_classes] (one-hot); truncation in (0, 1].

  Returns:
    [N, 3, R, R] images (NCHW, float64).
  """
  assert 0 < truncation <= 1
  s = state
  embed = np.asarray(class_vector, np.float64) @ s["embeddings.weight"].astype(np.float64).T
  cond = np.concatenate([np.asarray(z, np.float64), embed], axis=1)
  ch = cfg["channel_width"]
  x = _linear(s, "generator.gen_z", cond)
  x = x.reshape(-1, 4, 4, 16 * ch).transpose(0, 3, 1, 2)  # TF's NHWC view, then NCHW
  index = 0
  for i, (up, _, _) in enumerate(cfg["layers"]):
    if i == cfg["attention_layer_position"]:
      x = _self_attn(s, f"generator.layers.{index}", x)
      index += 1
    x = _gen_block(s, f"generator.layers.{index}", x, cond, truncation, cfg, up)
    index += 1
  mean, var = _stats(s, "generator.bn", truncation, cfg["n_stats"])
  x = ((x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + cfg["eps"])
       * s["generator.bn.weight"][None, :, None, None]
       + s["generator.bn.bias"][None, :, None, None])
  x = _conv(s, "generator.conv_to_rgb", _relu(x))
  return np.tanh(x[:, :3])
