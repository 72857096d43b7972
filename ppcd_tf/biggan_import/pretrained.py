"""Import a pytorch-pretrained-BigGAN release (BigGAN-deep, generator only) as a teacher.

`import_pretrained_teacher` reads a directory holding the release's `config.json` and
`pytorch_model.bin` (or `pytorch_model.npz` with the same keys; the format is in
`pretrained_format`), builds the ppcd_tf BigGAN-deep config it describes, maps every
tensor strictly and writes a generator-only teacher workdir (`writer`), plus
`model.cfg`: the model flags a PPCD run of that teacher passes.

Key mapping (K = `generator.layers` index of our block i, shifted by one after the
SelfAttn; j = 0..3):

  embeddings.weight [z, classes]         shared/embeddings            transposed
  generator.gen_z.*                      stem/*                       W^T; no permutation:
      the release views gen_z's output as [4, 4, 16ch] (TF's NHWC) like ppcd_tf
  generator.layers.K.bn_j.scale.*        block{i}/bn{j}/gain/*        W^T
  generator.layers.K.bn_j.offset.*       block{i}/bn{j}/bias/*        W^T
  generator.layers.K.bn_j.running_means  block{i}/bn{j}/bn/truncation_means (all rows)
                                         and .../moving_mean (the truncation's pick)
  generator.layers.K.bn_j.running_vars   .../truncation_vars, .../moving_variance
  generator.layers.K.conv_j.*            block{i}/conv{j}/*           OIHW -> HWIO
  generator.layers.P.snconv1x1_{theta,phi,g,o_conv}.*  block{P-1}/attention/{theta,phi,g,o}
  generator.layers.P.gamma [1]           block{P-1}/attention/gamma   []
  generator.bn.{weight,bias}             final_bn/{gamma,beta}
  generator.bn.running_{means,vars}      final_bn/truncation_* and moving_*
  generator.conv_to_rgb.*                final_conv/*  the first 3 output channels

Spectral norm: torch's `spectral_norm` in eval mode divides `weight_orig` by
sigma = u^T W v (W = weight_orig viewed [out, in*kh*kw], u = weight_u, v = weight_v),
with no power iteration. No power-iteration step of ours reproduces that number, so
the config has `g_sn_mode="frozen"` and `sn_sigma` is sigma, computed here in float64
(for conv_to_rgb from all ch outputs, though 3 are kept); `sn_u` gets weight_u (its
first 3 entries for final_conv), unused in frozen mode. In train mode (a module not put
in `.eval()`, as the release's README example leaves it) torch runs one more power
iteration per call, and its outputs differ slightly from the eval-mode function
reproduced here.

Truncation: the release samples z = t * truncnorm(-2, 2), 0 < t <= 1, and every
BatchNorm normalises with the statistics its rule picks for t
(`ppcd_tf.layers.truncation_batchnorm.release_statistics`). The teacher holds all
n_stats rows (`truncation_tables`); the config has latent="scaled_truncnorm",
latent_truncation=t, bn_stats=n_stats, so a PPCD run samples its z that way and its
teacher uses t's statistics (a run may pass another --latent_truncation).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ppcd_tf.biggan_import.common import BigGANImportError, StateDict, _listing
from ppcd_tf.biggan_import.pretrained_format import (RGB, ReleaseConfig, read_release_config,
                                                     release_files, release_shapes)
from ppcd_tf.biggan_import.reading import _read_source, _to_numpy
from ppcd_tf.biggan_import.writer import (MODEL_FLAGFILE, _check_out_dir,
                                          write_teacher_workdir)

__all__ = ["read_release", "check_release_state", "release_model_config", "release_sigma",
           "load_release_into", "model_flags", "import_pretrained_teacher"]

DEFAULT_TRUNCATION = 1.0
_MODEL_FLAGS = ("arch", "resolution", "num_classes", "image_channels", "z_dim",
                "shared_dim", "g_ch", "d_ch", "g_channel_mults", "d_channel_mults",
                "d_downsample", "g_attention_res", "d_attention_res", "hierarchical_z",
                "g_channels", "g_attention_widths", "bn_eps", "sn_eps", "g_sn_mode",
                "bn_stats", "latent", "latent_truncation")


def read_release(g_dir: str) -> Tuple[ReleaseConfig, StateDict, Dict[str, str]]:
  """(config, state dict as NumPy arrays, {"config": path, "weights": path})."""
  config_path, weights_path = release_files(g_dir)
  rc = read_release_config(config_path)
  raw = _read_source(weights_path)
  state = {str(k): _to_numpy(v, str(k), weights_path) for k, v in raw.items()}
  return rc, state, {"config": os.path.abspath(config_path),
                     "weights": os.path.abspath(weights_path)}


def check_release_state(rc: ReleaseConfig, state: StateDict, what: str) -> None:
  """Raises BigGANImportError naming every missing, unexpected and misshapen tensor."""
  expected = release_shapes(rc)
  missing = sorted(k for k in expected if k not in state)
  extra = sorted(k for k in state if k not in expected)
  wrong = [f"{k} {tuple(state[k].shape)} (expected {expected[k]})" for k in sorted(expected)
           if k in state and tuple(state[k].shape) != expected[k]]
  bad = sorted(k for k in expected if k in state and tuple(state[k].shape) == expected[k]
               and not np.all(np.isfinite(state[k])))
  problems = [_listing(label, items) for label, items in (
      ("missing tensor(s)", missing), ("unexpected tensor(s)", extra),
      ("tensor(s) of the wrong shape", wrong), ("tensor(s) with NaN or inf", bad)) if items]
  if problems:
    raise BigGANImportError(f"{what} does not fit its config.json: " + "; ".join(problems)
                            + ". Pass the config.json released with these weights.")


def release_model_config(rc: ReleaseConfig, base, truncation: float):
  """The ppcd_tf ModelConfig of the release's generator.

  G fields come from config.json; D fields (a fresh D is warmed up for a G-only
  teacher) from `base` (a ModelConfig): d_ch, d_channel_mults, d_downsample,
  d_attention_res. sn_eps = bn_eps = the release's eps (D's sn_eps too).
  """
  return dataclasses.replace(
      base, arch="biggan_deep", hierarchical_z=False, resolution=rc.output_dim,
      num_classes=rc.num_classes, image_channels=RGB, z_dim=rc.z_dim, shared_dim=rc.z_dim,
      g_ch=rc.channel_width, g_channel_mults=rc.g_channel_mults,
      g_attention_res=rc.attention_res, g_channels=(), g_attention_widths=(),
      bn_eps=float(rc.eps), sn_eps=float(rc.eps), g_sn_mode="frozen", bn_stats=rc.n_stats,
      latent="scaled_truncnorm", latent_truncation=float(truncation))


def release_sigma(weight: np.ndarray, u: np.ndarray, v: np.ndarray) -> float:
  """torch spectral_norm's eval-mode sigma u^T W v, W = weight viewed [out, -1]."""
  w = np.asarray(weight, np.float64).reshape(weight.shape[0], -1)
  return float(np.asarray(u, np.float64) @ w @ np.asarray(v, np.float64))


def _sn_values(layer, state: StateDict, prefix: str,
               keep: Optional[int] = None) -> List[Tuple[Any, np.ndarray, str]]:
  w = state[f"{prefix}.weight_orig"]
  kernel = w.T if w.ndim == 2 else w.transpose(2, 3, 1, 0)
  out = [(layer.kernel, kernel[..., :keep], f"{prefix}.weight_orig"),
         (layer.sn_u, state[f"{prefix}.weight_u"][:keep], f"{prefix}.weight_u"),
         (layer.sn_sigma, np.float32(release_sigma(w, state[f"{prefix}.weight_u"],
                                                   state[f"{prefix}.weight_v"])),
          f"{prefix}.weight_v")]
  if layer.bias is not None:
    out.append((layer.bias, state[f"{prefix}.bias"][:keep], f"{prefix}.bias"))
  return out


def _bn_values(bn, state: StateDict, prefix: str, truncation: float):
  from ppcd_tf.layers.truncation_batchnorm import release_statistics
  means, variances = state[f"{prefix}.running_means"], state[f"{prefix}.running_vars"]
  mean, var = release_statistics(means, variances, truncation)
  return [(bn.truncation_means, means, f"{prefix}.running_means"),
          (bn.truncation_vars, variances, f"{prefix}.running_vars"),
          (bn.moving_mean, mean, f"{prefix}.running_means"),
          (bn.moving_variance, var, f"{prefix}.running_vars")]


def _values(g, rc: ReleaseConfig, state: StateDict, truncation: float):
  """(variable, value, source key) for every variable of the teacher generator `g`."""
  out = [(g.shared.embeddings, state["embeddings.weight"].T, "embeddings.weight")]
  out += _sn_values(g.stem, state, "generator.gen_z")
  for i, block in enumerate(g.blocks):
    p = f"generator.layers.{rc.module_index(i)}"
    for j in range(4):
      cbn = getattr(block, f"bn{j}")
      out += _sn_values(cbn.gain_linear, state, f"{p}.bn_{j}.scale")
      out += _sn_values(cbn.bias_linear, state, f"{p}.bn_{j}.offset")
      out += _bn_values(cbn.bn, state, f"{p}.bn_{j}", truncation)
      out += _sn_values(getattr(block, f"conv{j}"), state, f"{p}.conv_{j}")
    if block.attention is not None:
      a = f"generator.layers.{rc.attention_layer_position}"
      for ours, theirs in (("theta", "theta"), ("phi", "phi"), ("g", "g"), ("o", "o_conv")):
        out += _sn_values(getattr(block.attention, ours), state, f"{a}.snconv1x1_{theirs}")
      out.append((block.attention.gamma, state[f"{a}.gamma"].reshape(()), f"{a}.gamma"))
  out += [(g.final_bn.gamma, state["generator.bn.weight"], "generator.bn.weight"),
          (g.final_bn.beta, state["generator.bn.bias"], "generator.bn.bias")]
  out += _bn_values(g.final_bn, state, "generator.bn", truncation)
  out += _sn_values(g.final_conv, state, "generator.conv_to_rgb", keep=RGB)
  return out


def load_release_into(g, rc: ReleaseConfig, state: StateDict, truncation: float,
                      what: str) -> Dict[str, Any]:
  """Checks `state` strictly and assigns every variable of teacher generator `g`.

  Returns:
    {"tensors": consumed, "params": trainable parameters, "mapping": [...]}.
  Raises:
    BigGANImportError: bad tensors (`check_release_state`), or a variable of `g` with
      no source, a source nothing reads, or a shape that does not fit (the generator
      does not match the config: a bug, reported as such).
  """
  check_release_state(rc, state, what)
  values = _values(g, rc, state, truncation)
  filled = {id(v) for v, _, _ in values}
  unfilled = [v.name for v in g.variables if id(v) not in filled]
  unread = sorted(set(state) - {k for _, _, k in values})
  misfit = [f"{k} -> {v.name} {tuple(v.shape)} (got {np.shape(x)})" for v, x, k in values
            if tuple(v.shape) != np.shape(x)]
  problems = [_listing(label, items) for label, items in (
      ("model variable(s) with no source", unfilled), ("tensor(s) nothing reads", unread),
      ("tensor(s) that do not fit their variable", misfit)) if items]
  if problems:
    raise BigGANImportError(f"{what} does not map onto {g.name}: " + "; ".join(problems))
  for variable, value, _ in values:
    variable.assign(np.asarray(value, np.float32))
  params = sum(int(np.prod(v.shape)) for v in g.trainable_variables)
  return {"tensors": len(state), "params": params,
          "mapping": [{"source": k, "target": v.name.split(":")[0]} for v, _, k in values]}


def model_flags(model_cfg) -> List[str]:
  """The flags (one per line of model.cfg) that give `model_cfg`."""
  m = model_cfg
  lines = []
  for name in _MODEL_FLAGS:
    value = getattr(m, name)
    if isinstance(value, bool):
      lines.append(f"--{'' if value else 'no'}{name}")
    elif isinstance(value, tuple):
      lines.append(f"--{name}=" + ",".join(str(int(x)) for x in value))
    else:
      lines.append(f"--{name}={value!r}" if isinstance(value, float) else f"--{name}={value}")
  return lines


def import_pretrained_teacher(out_dir: str, g_dir: str, cfg=None,
                              truncation: Optional[float] = None, step: int = 0,
                              overwrite: bool = False, verify: bool = True) -> Dict[str, Any]:
  """Converts a pytorch-pretrained-BigGAN release into a generator-only teacher workdir.

  Args:
    out_dir: workdir to write: config.json, checkpoints/ (generator and ema_generator,
      both the release's EMA weights, with statistics per truncation), model.cfg and
      biggan_import.json. New, empty or an earlier import.
    g_dir: directory with config.json and pytorch_model.bin (or pytorch_model.npz).
    cfg: a `Config` for everything config.json does not say (data, training, the D
      that a PPCD run warms up); default `Config()`. Its G fields are replaced.
    truncation: t in (0, 1] the teacher's statistics and z are set to (default
      cfg.model.latent_truncation, or 1.0 when that is 0).
    step, overwrite, verify: as `writer.import_teacher`.

  Returns:
    The summary (also out_dir/biggan_import.json).
  Raises:
    BigGANImportError: missing or unreadable files, an unsupported config.json, a
      missing / unexpected / misshapen tensor, or an out_dir that is not free.
  """
  from ppcd_tf import config as config_lib
  from ppcd_tf.generator import build_generator

  cfg = cfg or config_lib.Config()
  t = truncation if truncation is not None else (cfg.model.latent_truncation
                                                 or DEFAULT_TRUNCATION)
  if not 0 < t <= 1:
    raise BigGANImportError(f"truncation={t} must be in (0, 1] (the release's range).")
  rc, state, paths = read_release(g_dir)
  check_release_state(rc, state, paths["weights"])
  model_cfg = release_model_config(rc, cfg.model, t)
  try:
    cfg = cfg.replace(model=model_cfg, run=dict(mode="teacher", workdir=out_dir)).validate()
  except config_lib.ConfigError as e:
    raise BigGANImportError(f"the model of {paths['config']} with these flags: {e}") from e
  _check_out_dir(out_dir, overwrite)
  nets, report = {}, {}
  for name in ("generator", "ema_generator"):
    nets[name] = build_generator(cfg.model, name=name, init="glorot",
                                 truncation_tables=True)
    report[name] = dict(load_release_into(nets[name], rc, state, t, paths["weights"]),
                        source=paths["weights"], ignored=[])
  summary = {
      "format": "pretrained_biggan", "config_json": paths["config"],
      "release_config": {k: v for k, v in dataclasses.asdict(rc).items()},
      "truncation": t, "g_params": report["ema_generator"]["params"], "d_params": None,
      "discriminator": None, "separate_ema": False, **report}
  flags_text = "\n".join(model_flags(cfg.model)) + "\n"
  return write_teacher_workdir(out_dir, cfg, nets, step, summary, verify,
                               extra_files={MODEL_FLAGFILE: flags_text})
