"""The tensor mapping: BigGAN-PyTorch state-dict keys -> ppcd_tf model variables.

`generator_mapping` / `discriminator_mapping` list every variable with its source key
and layout change; `check_state_dict` checks a state dict against them strictly and
`load_into` assigns the variables.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ppcd_tf.biggan_import.common import _BOTTOM, BigGANImportError, StateDict, _listing
from ppcd_tf.biggan_import.reading import _is_ignored, _warn_standing_stats


@dataclasses.dataclass(frozen=True)
class TensorMapping:
  """One source tensor -> one target variable.

  layout: "copy" (same shape), "linear" ([out, in] -> [in, out]), "conv"
  ([out, in, kh, kw] -> [kh, kw, in, out]), "u" ([1, N] -> [N]), "sv" ([1] -> []).
  perm: optional index on the last axis after the layout change (the stem's
  NCHW -> NHWC output-unit order): `ours[..., j] = theirs[..., perm[j]]`.
  """
  source: str
  target: Any  # tf.Variable
  layout: str
  perm: Optional[np.ndarray] = None

  @property
  def source_shape(self) -> Tuple[int, ...]:
    t = tuple(int(d) for d in self.target.shape)
    if self.layout == "copy":
      return t
    if self.layout == "linear":
      return (t[1], t[0])
    if self.layout == "conv":
      return (t[3], t[2], t[0], t[1])
    if self.layout == "u":
      return (1, t[0])
    if self.layout == "sv":
      return (1,)
    raise ValueError(f"unknown layout {self.layout!r}")

  def convert(self, value: np.ndarray) -> np.ndarray:
    a = np.asarray(value, dtype=np.float32)
    if self.layout == "linear":
      a = a.T
    elif self.layout == "conv":
      a = a.transpose(2, 3, 1, 0)
    elif self.layout == "u":
      a = a.reshape(-1)
    elif self.layout == "sv":
      a = a.reshape(())
    if self.perm is not None:
      a = a[..., self.perm]
    return np.array(a, dtype=np.float32, order="C")  # (ascontiguousarray makes 0-d 1-d)

  @property
  def target_name(self) -> str:
    return self.target.name.split(":")[0]


def _stem_permutation(channels: int) -> np.ndarray:
  """perm[j] = PyTorch unit (c*16 + h*4 + w) of our NHWC unit j = (h*4 + w)*C + c."""
  j = np.arange(_BOTTOM * _BOTTOM * channels)
  hw, c = j // channels, j % channels
  return c * (_BOTTOM * _BOTTOM) + hw


def _sn_layer(prefix: str, layer, layout: str,
              perm: Optional[np.ndarray] = None) -> List[TensorMapping]:
  weight = getattr(layer, "kernel", None)
  if weight is None:
    weight = layer.embeddings
  out = [TensorMapping(f"{prefix}.weight", weight, layout, perm)]
  if getattr(layer, "bias", None) is not None:
    out.append(TensorMapping(f"{prefix}.bias", layer.bias, "copy", perm))
  out += [TensorMapping(f"{prefix}.u0", layer.sn_u, "u", perm),
          TensorMapping(f"{prefix}.sv0", layer.sn_sigma, "sv")]
  return out


def _attention(prefix: str, attention) -> List[TensorMapping]:
  out = [TensorMapping(f"{prefix}.gamma", attention.gamma, "copy")]
  for name in ("theta", "phi", "g", "o"):
    out += _sn_layer(f"{prefix}.{name}", getattr(attention, name), "conv")
  return out


def _bn_stats(prefix: str, bn) -> List[TensorMapping]:
  return [TensorMapping(f"{prefix}.stored_mean", bn.moving_mean, "copy"),
          TensorMapping(f"{prefix}.stored_var", bn.moving_variance, "copy")]


def generator_mapping(generator) -> List[TensorMapping]:
  """Every variable of an unmasked `Generator` with its BigGAN-PyTorch source key."""
  if generator.masked:
    raise BigGANImportError("BigGAN-PyTorch weights import into an unmasked generator "
                            "(the teacher); build it with masked=False.")
  g = generator
  out = [TensorMapping("shared.weight", g.shared.embeddings, "copy")]
  out += _sn_layer("linear", g.stem, "linear", _stem_permutation(g.channels.stem))
  for i, block in enumerate(g.blocks):
    p = f"blocks.{i}.0"
    for name in ("bn1", "bn2"):
      cbn = getattr(block, name)
      out += _sn_layer(f"{p}.{name}.gain", cbn.gain_linear, "linear")
      out += _sn_layer(f"{p}.{name}.bias", cbn.bias_linear, "linear")
      out += _bn_stats(f"{p}.{name}", cbn.bn)
    for name in ("conv1", "conv2", "conv_sc"):
      out += _sn_layer(f"{p}.{name}", getattr(block, name), "conv")
    if block.attention is not None:
      out += _attention(f"blocks.{i}.1", block.attention)
  out += [TensorMapping("output_layer.0.gain", g.final_bn.gamma, "copy"),
          TensorMapping("output_layer.0.bias", g.final_bn.beta, "copy")]
  out += _bn_stats("output_layer.0", g.final_bn)
  out += _sn_layer("output_layer.2", g.final_conv, "conv")
  return out


def discriminator_mapping(discriminator) -> List[TensorMapping]:
  """Every variable of a `Discriminator` with its BigGAN-PyTorch source key."""
  d = discriminator
  out: List[TensorMapping] = []
  for i, block in enumerate(d.blocks):
    p = f"blocks.{i}.0"
    for name in ("conv1", "conv2", "conv_sc"):
      layer = getattr(block, name)
      if layer is not None:
        out += _sn_layer(f"{p}.{name}", layer, "conv")
    if block.attention is not None:
      out += _attention(f"blocks.{i}.1", block.attention)
  out += _sn_layer("linear", d.linear, "linear")
  out += _sn_layer("embed", d.embed, "copy")
  return out


def check_state_dict(state: StateDict, mapping: Sequence[TensorMapping], model,
                     what: str) -> List[str]:
  """Checks a state dict against a mapping and the mapping against the model.

  Returns:
    The ignored bookkeeping keys found in `state`.
  Raises:
    BigGANImportError: listing every missing, unexpected and wrongly shaped source
      tensor, and every model variable the mapping does not fill.
  """
  expected = {m.source: m for m in mapping}
  ignored = sorted(k for k in state if _is_ignored(k) and k not in expected)
  missing = sorted(k for k in expected if k not in state)
  extra = sorted(k for k in state if k not in expected and not _is_ignored(k))
  wrong = [f"{k} {tuple(state[k].shape)} (expected {expected[k].source_shape})"
           for k in sorted(expected) if k in state
           and tuple(state[k].shape) != expected[k].source_shape]
  filled = [id(m.target) for m in mapping]
  unfilled = [v.name for v in model.variables if id(v) not in set(filled)]
  doubled = sorted({m.target_name for m in mapping if filled.count(id(m.target)) > 1})
  problems = []
  if missing:
    problems.append(_listing("missing tensor(s)", missing))
  if extra:
    problems.append(_listing("unexpected tensor(s)", extra))
  if wrong:
    problems.append(_listing("tensor(s) of the wrong shape", wrong))
  if unfilled:
    problems.append(_listing("model variable(s) with no source", unfilled))
  if doubled:
    problems.append(_listing("model variable(s) with several sources", doubled))
  if problems:
    raise BigGANImportError(
        f"{what} does not fit the {model.name} built from the config: "
        + "; ".join(problems) + ". Check that the flagfile describes the checkpoint's "
        "architecture (see ppcd_tf/biggan_import/ for the supported BigGAN-PyTorch "
        "settings).")
  return ignored


def load_into(model, state: StateDict, mapping: Sequence[TensorMapping],
              what: str) -> Dict[str, Any]:
  """Strictly checks `state` (see `check_state_dict`) and assigns every variable.

  Returns:
    {"tensors": consumed count, "ignored": bookkeeping keys, "params": trainable
    parameters filled}.
  """
  ignored = check_state_dict(state, mapping, model, what)
  _warn_standing_stats(state, what)
  for m in mapping:
    value = state[m.source]
    if not np.all(np.isfinite(value)):
      raise BigGANImportError(f"{what}: {m.source} holds NaN or inf values.")
    m.target.assign(m.convert(value))
  params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
  return {"tensors": len(mapping), "ignored": ignored, "params": params}
