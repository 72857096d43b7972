"""An independent NumPy BigGAN (BigGAN-PyTorch semantics) for the importer tests.

Written from the published BigGAN-PyTorch code (ajbrock/BigGAN-PyTorch, `BigGAN.py`
and `layers.py`), not from ppcd_tf: it builds state dicts with BigGAN-PyTorch's key
names and tensor layouts (NCHW activations, OIHW conv weights, [out, in] linear
weights, `u0` [1, out], `sv0` [1], `stored_mean` / `stored_var`) and runs the eval-mode
forward passes directly on those arrays in float64:

* spectral norm (`layers.SN.W_` with `self.training == False`): W viewed as
  [out, -1]; one power-iteration step from the stored u0 (v = normalize(u W),
  u' = normalize(v W^T), sv = v W^T u'^T), u0 *not* updated, weight / sv. `sv0` is
  never used for the forward pass.
* BatchNorm in eval mode: (x - stored_mean) / sqrt(stored_var + eps).
* G (`G_shared`, optional `hier`): linear(z_0).view(B, C, 4, 4); GBlock = relu(ccbn1)
  -> upsample -> conv1 -> relu(ccbn2) -> conv2, plus conv_sc(upsample(x)); ccbn gain
  = 1 + SN-linear(y), bias = SN-linear(y), y = cat[shared(class), z_chunk];
  attention; output bn (gain/bias) -> relu -> conv -> tanh.
* D (`D_wide`): DBlock with preactivation except block 0, avg-pool, shortcut order
  as in `layers.DBlock.shortcut`; attention; sum-pool of relu; linear + projection.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

Shapes = Dict[str, Tuple[int, ...]]
BUFFER_SUFFIXES = (".u0", ".sv0", ".stored_mean", ".stored_var")


# ---------------------------------------------------------------- state dict layout
def _sn(shapes: Shapes, prefix: str, weight: Tuple[int, ...], bias: bool = True) -> None:
  shapes[f"{prefix}.weight"] = weight
  if bias:
    shapes[f"{prefix}.bias"] = (weight[0],)
  shapes[f"{prefix}.u0"] = (1, weight[0])
  shapes[f"{prefix}.sv0"] = (1,)


def _attention(shapes: Shapes, prefix: str, ch: int) -> None:
  _sn(shapes, f"{prefix}.theta", (ch // 8, ch, 1, 1), bias=False)
  _sn(shapes, f"{prefix}.phi", (ch // 8, ch, 1, 1), bias=False)
  _sn(shapes, f"{prefix}.g", (ch // 2, ch, 1, 1), bias=False)
  _sn(shapes, f"{prefix}.o", (ch, ch // 2, 1, 1), bias=False)
  shapes[f"{prefix}.gamma"] = ()


def generator_shapes(in_channels: Sequence[int], out_channels: Sequence[int],
                     attention_blocks: Sequence[int], n_classes: int, dim_z: int,
                     shared_dim: int, hier: bool = True, image_channels: int = 3
                     ) -> Shapes:
  """Key -> shape of a BigGAN-PyTorch `Generator` state dict (G_arch lists given)."""
  n = len(out_channels)
  chunk = dim_z // (n + 1) if hier else 0
  stem_in = chunk if hier else dim_z
  cond = shared_dim + chunk
  s: Shapes = {"shared.weight": (n_classes, shared_dim)}
  _sn(s, "linear", (in_channels[0] * 16, stem_in))
  for i, (cin, cout) in enumerate(zip(in_channels, out_channels)):
    p = f"blocks.{i}.0"
    _sn(s, f"{p}.conv1", (cout, cin, 3, 3))
    _sn(s, f"{p}.conv2", (cout, cout, 3, 3))
    _sn(s, f"{p}.conv_sc", (cout, cin, 1, 1))
    for bn, ch in (("bn1", cin), ("bn2", cout)):
      _sn(s, f"{p}.{bn}.gain", (ch, cond), bias=False)
      _sn(s, f"{p}.{bn}.bias", (ch, cond), bias=False)
      s[f"{p}.{bn}.stored_mean"] = (ch,)
      s[f"{p}.{bn}.stored_var"] = (ch,)
    if i in attention_blocks:
      _attention(s, f"blocks.{i}.1", cout)
  c = out_channels[-1]
  for name in ("gain", "bias", "stored_mean", "stored_var"):
    s[f"output_layer.0.{name}"] = (c,)
  _sn(s, "output_layer.2", (image_channels, c, 3, 3))
  return s


def discriminator_shapes(in_channels: Sequence[int], out_channels: Sequence[int],
                         downsample: Sequence[bool], attention_blocks: Sequence[int],
                         n_classes: int) -> Shapes:
  """Key -> shape of a BigGAN-PyTorch `Discriminator` state dict (D_arch lists)."""
  s: Shapes = {}
  for i, (cin, cout) in enumerate(zip(in_channels, out_channels)):
    p = f"blocks.{i}.0"
    _sn(s, f"{p}.conv1", (cout, cin, 3, 3))
    _sn(s, f"{p}.conv2", (cout, cout, 3, 3))
    if cin != cout or downsample[i]:
      _sn(s, f"{p}.conv_sc", (cout, cin, 1, 1))
    if i in attention_blocks:
      _attention(s, f"blocks.{i}.1", cout)
  _sn(s, "linear", (1, out_channels[-1]))
  _sn(s, "embed", (n_classes, out_channels[-1]), bias=False)
  return s


def parameter_count(shapes: Shapes) -> int:
  """Parameters as BigGAN-PyTorch counts them (buffers u0/sv0/stored_* excluded)."""
  return sum(int(np.prod(shape)) for key, shape in shapes.items()
             if not key.endswith(BUFFER_SUFFIXES))


def random_state(shapes: Shapes, seed: int) -> Dict[str, np.ndarray]:
  """Seeded float32 values with realistic ranges for every key.

  Weights ~ N(0, 1) / sqrt(fan_in); u0 ~ N(0, 1) (BigGAN-PyTorch's init, so the one
  power-iteration step matters); sv0 is a deliberately *wrong* value in [2, 3] (a
  forward pass that divided by it would not match); BN statistics, gains, biases
  and attention gammas are non-trivial.
  """
  rng = np.random.default_rng(seed)
  out = {}
  for key, shape in sorted(shapes.items()):
    if key.endswith(".weight"):
      fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
      v = rng.normal(size=shape) / np.sqrt(fan_in)
      if key == "shared.weight" or key == "embed.weight":
        v = rng.normal(size=shape)
    elif key.endswith(".u0"):
      v = rng.normal(size=shape)
    elif key.endswith(".sv0"):
      v = rng.uniform(2.0, 3.0, size=shape)
    elif key.endswith(".stored_mean"):
      v = 0.3 * rng.normal(size=shape)
    elif key.endswith(".stored_var"):
      v = rng.uniform(0.5, 2.0, size=shape)
    elif key.endswith(".gamma"):
      v = np.asarray(rng.uniform(0.5, 1.0))
    elif key == "output_layer.0.gain":
      v = rng.uniform(0.5, 1.5, size=shape)
    else:  # biases
      v = 0.1 * rng.normal(size=shape)
    out[key] = np.asarray(v, dtype=np.float32).reshape(shape)
  return out


# ------------------------------------------------------------------------- forward ops
def _normalize(x: np.ndarray, eps: float) -> np.ndarray:
  """torch.nn.functional.normalize(x, dim=1, eps)."""
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def sn_weight(state, prefix: str, eps: float) -> np.ndarray:
  """layers.SN.W_() in eval mode: one power-iteration step, u0 not updated."""
  w = state[f"{prefix}.weight"].astype(np.float64)
  w_mat = w.reshape(w.shape[0], -1)
  u = state[f"{prefix}.u0"].astype(np.float64)
  v = _normalize(u @ w_mat, eps)
  u = _normalize(v @ w_mat.T, eps)
  sv = float(np.squeeze(v @ w_mat.T @ u.T))
  return w / sv


def _bias(state, prefix):
  key = f"{prefix}.bias"
  return state[key].astype(np.float64) if key in state else None


def conv2d(x: np.ndarray, w: np.ndarray, b=None) -> np.ndarray:
  """F.conv2d, stride 1, padding k // 2 (NCHW, OIHW)."""
  k = w.shape[2]
  pad = k // 2
  xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  h, wd = x.shape[2], x.shape[3]
  out = np.zeros((x.shape[0], w.shape[0], h, wd))
  for i in range(k):
    for j in range(k):
      out += np.einsum("bchw,oc->bohw", xp[:, :, i:i + h, j:j + wd], w[:, :, i, j])
  if b is not None:
    out += b[None, :, None, None]
  return out


def linear(x, w, b=None):
  return x @ w.T + (0.0 if b is None else b)


def relu(x):
  return np.maximum(x, 0.0)


def upsample(x):
  """F.interpolate(scale_factor=2), nearest."""
  return x.repeat(2, axis=2).repeat(2, axis=3)


def avg_pool(x):
  b, c, h, w = x.shape
  return x.reshape(b, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))


def max_pool(x):
  b, c, h, w = x.shape
  return x.reshape(b, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def batch_norm_eval(x, state, prefix, eps):
  mean = state[f"{prefix}.stored_mean"].astype(np.float64)[None, :, None, None]
  var = state[f"{prefix}.stored_var"].astype(np.float64)[None, :, None, None]
  return (x - mean) / np.sqrt(var + eps)


def sn_conv(state, prefix, x, eps):
  return conv2d(x, sn_weight(state, prefix, eps), _bias(state, prefix))


def ccbn(state, prefix, x, y, sn_eps, bn_eps):
  gain = 1.0 + linear(y, sn_weight(state, f"{prefix}.gain", sn_eps))
  bias = linear(y, sn_weight(state, f"{prefix}.bias", sn_eps))
  return (batch_norm_eval(x, state, prefix, bn_eps) * gain[:, :, None, None]
          + bias[:, :, None, None])


def attention(state, prefix, x, eps):
  """layers.Attention.forward."""
  b, ch, h, w = x.shape
  theta = sn_conv(state, f"{prefix}.theta", x, eps)
  phi = max_pool(sn_conv(state, f"{prefix}.phi", x, eps))
  g = max_pool(sn_conv(state, f"{prefix}.g", x, eps))
  theta = theta.reshape(b, ch // 8, h * w)
  phi = phi.reshape(b, ch // 8, h * w // 4)
  g = g.reshape(b, ch // 2, h * w // 4)
  logits = np.einsum("bcn,bcm->bnm", theta, phi)          # bmm(theta^T, phi)
  beta = np.exp(logits - logits.max(axis=-1, keepdims=True))
  beta /= beta.sum(axis=-1, keepdims=True)
  o = np.einsum("bcm,bnm->bcn", g, beta).reshape(b, ch // 2, h, w)  # bmm(g, beta^T)
  o = sn_conv(state, f"{prefix}.o", o, eps)
  return float(state[f"{prefix}.gamma"]) * o + x


def _num_blocks(state) -> int:
  n = 0
  while f"blocks.{n}.0.conv1.weight" in state:
    n += 1
  return n


def generator_forward(state, z: np.ndarray, y: np.ndarray, hier: bool = True,
                      sn_eps: float = 1e-6, bn_eps: float = 1e-5) -> np.ndarray:
  """BigGAN-PyTorch `Generator.forward(z, G.shared(y))` in eval mode; NCHW output."""
  z = np.asarray(z, np.float64)
  n = _num_blocks(state)
  shared = state["shared.weight"].astype(np.float64)[np.asarray(y)]
  if hier:
    chunks = np.split(z, n + 1, axis=1)
    z0, ys = chunks[0], [np.concatenate([shared, c], axis=1) for c in chunks[1:]]
  else:
    z0, ys = z, [shared] * n
  h = linear(z0, sn_weight(state, "linear", sn_eps), _bias(state, "linear"))
  h = h.reshape(h.shape[0], -1, 4, 4)
  for i in range(n):
    p = f"blocks.{i}.0"
    x = h
    h = relu(ccbn(state, f"{p}.bn1", x, ys[i], sn_eps, bn_eps))
    h, x = upsample(h), upsample(x)
    h = sn_conv(state, f"{p}.conv1", h, sn_eps)
    h = relu(ccbn(state, f"{p}.bn2", h, ys[i], sn_eps, bn_eps))
    h = sn_conv(state, f"{p}.conv2", h, sn_eps)
    h = h + sn_conv(state, f"{p}.conv_sc", x, sn_eps)
    if f"blocks.{i}.1.gamma" in state:
      h = attention(state, f"blocks.{i}.1", h, sn_eps)
  # layers.bn (eps 1e-5 by default) with gain / bias
  h = (batch_norm_eval(h, state, "output_layer.0", bn_eps)
       * state["output_layer.0.gain"].astype(np.float64)[None, :, None, None]
       + state["output_layer.0.bias"].astype(np.float64)[None, :, None, None])
  h = sn_conv(state, "output_layer.2", relu(h), sn_eps)
  return np.tanh(h)


def discriminator_forward(state, x: np.ndarray, y: np.ndarray,
                          downsample: Sequence[bool], sn_eps: float = 1e-6
                          ) -> np.ndarray:
  """BigGAN-PyTorch `Discriminator.forward(x, y)`; x NCHW; returns [B]."""
  h = np.asarray(x, np.float64)
  for i in range(_num_blocks(state)):
    p = f"blocks.{i}.0"
    inp = h
    h = relu(inp) if i > 0 else inp
    h = sn_conv(state, f"{p}.conv1", h, sn_eps)
    h = sn_conv(state, f"{p}.conv2", relu(h), sn_eps)
    if downsample[i]:
      h = avg_pool(h)
    sc = inp
    has_sc = f"{p}.conv_sc.weight" in state
    if i > 0:  # preactivation: conv, then pool
      if has_sc:
        sc = sn_conv(state, f"{p}.conv_sc", sc, sn_eps)
      if downsample[i]:
        sc = avg_pool(sc)
    else:
      if downsample[i]:
        sc = avg_pool(sc)
      if has_sc:
        sc = sn_conv(state, f"{p}.conv_sc", sc, sn_eps)
    h = h + sc
    if f"blocks.{i}.1.gamma" in state:
      h = attention(state, f"blocks.{i}.1", h, sn_eps)
  h = relu(h).sum(axis=(2, 3))
  out = linear(h, sn_weight(state, "linear", sn_eps), _bias(state, "linear"))
  embed = sn_weight(state, "embed", sn_eps)[np.asarray(y)]
  return (out + (embed * h).sum(axis=1, keepdims=True))[:, 0]


# ------------------------------------------------------- BigGAN-PyTorch arch tables
def biggan_g_arch(resolution: int, ch: int) -> Tuple[List[int], List[int]]:
  """(in_channels, out_channels) of BigGAN.G_arch for 32 / 64 / 128."""
  table = {32: ([4, 4, 4], [4, 4, 4]), 64: ([16, 16, 8, 4], [16, 8, 4, 2]),
           128: ([16, 16, 8, 4, 2], [16, 8, 4, 2, 1])}[resolution]
  return [ch * k for k in table[0]], [ch * k for k in table[1]]


def biggan_d_arch(resolution: int, ch: int, image_channels: int = 3
                  ) -> Tuple[List[int], List[int], List[bool]]:
  """(in_channels, out_channels, downsample) of BigGAN.D_arch for 32 / 64 / 128."""
  table = {32: ([4, 4, 4], [4, 4, 4, 4], [True, True, False, False]),
           64: ([1, 2, 4, 8], [1, 2, 4, 8, 16], [True] * 4 + [False]),
           128: ([1, 2, 4, 8, 16], [1, 2, 4, 8, 16, 16], [True] * 5 + [False])}
  ins, outs, down = table[resolution]
  return [image_channels] + [ch * k for k in ins], [ch * k for k in outs], down
