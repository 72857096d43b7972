"""Quantisation-aware fine-tuning (QAT) of a dense generator for int8 TFLite.

Post-training int8 (`ppcd_tf.export`, `quantize="int8"`) calibrates a range for every
tensor of the graph and quantises all of them. QAT here instead puts fake-quant ops
(`tf.quantization.fake_quant_with_min_max_vars*`, a straight-through rounding to the
int8 grid) exactly where the int8 model computes in integers, and trains through them
for the last `--qat_steps` steps, so the weights learn to live on the grid:

* every spectrally normalised conv and dense layer (`SNConv2D`, `SNDense`: the stem,
  the block and shortcut convs, the attention convs, the conditional-BN gain and bias
  projections, the RGB conv) quantises its input and output per tensor (asymmetric,
  256 levels) and its normalised weight symmetrically (narrow range, +-127): per
  output channel for convs, per tensor for dense kernels (per-channel dense kernels
  make the converter fail on its transposes);
* the image is quantised after tanh on the grid of LiteRT's int8 TANH (scale 1/128,
  zero point 0: [-1, 127/128]).

Everything between them (the conditional BatchNorm arithmetic, ReLU, upsampling,
residual adds, the attention matmuls and softmax, the class embedding) stays float32.
The TFLite converter reads the fake-quant ranges instead of calibrating
(`ppcd_tf.export.export_tflite` on a quantised generator, no representative
dataset), so each conv and dense layer becomes an int8 kernel between QUANTIZE and
DEQUANTIZE ops and the rest stays float: the int8 file computes what the fake-quant
Keras model computes, up to the integer rounding inside the kernels
(tests/test_qat.py measures it).

Activation ranges are calibrated once, when the QAT phase starts, as the min/max over
`CALIBRATION_BATCHES` batches of the EMA generator (what is evaluated and exported),
and then held fixed: the weights adapt to the grid, the grid does not chase the
weights. Weight ranges follow the weights (their current max |w|). The ranges are
written to WORKDIR/qat.json with the step, so a resumed run, evaluation, slimming,
sampling and export rebuild the same fake-quant model from a checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from ppcd_tf import checkpoints
from ppcd_tf.layers.attention import SelfAttention
from ppcd_tf.layers.spectral_norm import SNConv2D, SNDense, spectral_norm_layers

__all__ = ["QAT_FILE", "CALIBRATION_BATCHES", "IMAGE_RANGE", "LayerRanges", "QuantRanges",
           "quantizable_layers", "calibrate", "enable", "disable", "is_quantized",
           "ranges_of", "copy_quantization", "write_record", "read_record",
           "calibration_batches"]

QAT_FILE = "qat.json"
CALIBRATION_BATCHES = 8
CALIBRATION_BATCH = 32
IMAGE_RANGE = (-1.0, 127.0 / 128.0)   # LiteRT's int8 TANH output: scale 1/128, zp 0
ATTENTION_RANGE = (0.0, 1.0)          # softmax weights
_NUM_BITS = 8


def _fake_quant(x: tf.Tensor, lo: float, hi: float) -> tf.Tensor:
  return tf.quantization.fake_quant_with_min_max_vars(
      x, tf.constant(lo, tf.float32), tf.constant(hi, tf.float32), num_bits=_NUM_BITS,
      narrow_range=False)


def _fake_quant_weight(w: tf.Tensor, per_channel: bool) -> "tuple[tf.Tensor, tf.Tensor]":
  """(fake-quant weight, its scale: per output channel or a scalar)."""
  if per_channel:
    m = tf.stop_gradient(tf.reduce_max(tf.abs(w), axis=list(range(w.shape.rank - 1))))
    m = tf.maximum(m, 1e-8)
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(
        w, -m, m, num_bits=_NUM_BITS, narrow_range=True), m / 127.0
  m = tf.maximum(tf.stop_gradient(tf.reduce_max(tf.abs(w))), 1e-8)
  return tf.quantization.fake_quant_with_min_max_vars(
      w, -m, m, num_bits=_NUM_BITS, narrow_range=True), m / 127.0


def _scale(lo: float, hi: float) -> float:
  return (hi - lo) / (2 ** _NUM_BITS - 1)


def _fake_quant_bias(b: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
  """The bias on LiteRT's int32 grid (input scale x weight scale), straight through."""
  q = tf.round(b / scale) * scale
  return b + tf.stop_gradient(q - b)


def _with_zero(lo: float, hi: float) -> "tuple[float, float]":
  """A range that holds 0 (as the int8 grid must) and is not empty."""
  lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
  if hi - lo < 1e-6:
    hi = lo + 1e-6
  return lo, hi


@dataclasses.dataclass(frozen=True)
class LayerRanges:
  """The fixed activation ranges of one conv/dense layer: input and output (lo, hi)."""
  name: str
  inputs: "tuple[float, float]"
  outputs: "tuple[float, float]"

  def to_dict(self) -> Dict:
    return {"name": self.name, "inputs": list(self.inputs), "outputs": list(self.outputs)}

  @classmethod
  def from_dict(cls, d: Dict) -> "LayerRanges":
    return cls(str(d["name"]), tuple(map(float, d["inputs"])),
               tuple(map(float, d["outputs"])))


@dataclasses.dataclass(frozen=True)
class QuantRanges:
  """Every fixed range of a QAT generator: z, the class embedding, each layer."""
  latent: "tuple[float, float]"
  shared: "tuple[float, float]"
  layers: "tuple[LayerRanges, ...]"

  def to_dict(self) -> Dict:
    return {"latent": list(self.latent), "shared": list(self.shared),
            "image": list(IMAGE_RANGE), "layers": [r.to_dict() for r in self.layers]}

  @classmethod
  def from_dict(cls, d: Dict) -> "QuantRanges":
    return cls(tuple(map(float, d["latent"])), tuple(map(float, d["shared"])),
               tuple(LayerRanges.from_dict(r) for r in d["layers"]))


class _LayerQuant:
  """A layer's hook (`layer.quant`): fake quant of its input, weight and output."""

  def __init__(self, ranges: LayerRanges, per_channel: bool):
    self.ranges = ranges
    self.per_channel = per_channel

  def inputs(self, x, w, b=None):
    """Input, weight and bias (None: no bias) as the int8 kernel sees them."""
    wq, w_scale = _fake_quant_weight(w, self.per_channel)
    if b is not None:
      b = _fake_quant_bias(b, _scale(*self.ranges.inputs) * w_scale)
    return _fake_quant(x, *self.ranges.inputs), wq, b

  def output(self, y):
    return _fake_quant(y, *self.ranges.outputs)


class _GeneratorQuant:
  """The generator's hook (`generator.quant`): z, class embedding and images.

  z and the embedding are quantised where the int8 model quantises them (z once at
  the input, before the split into the stem's and the blocks' chunks; the embedding
  table), so the conditioning concatenations requantise the same int8 values.
  """

  def __init__(self, ranges: QuantRanges):
    self.ranges = ranges

  def latent(self, z):
    return _fake_quant(z, *self.ranges.latent)

  def shared(self, e):
    return _fake_quant(e, *self.ranges.shared)

  def images(self, x):
    return _fake_quant(x, *IMAGE_RANGE)


def _attention_map_quant(beta):
  return _fake_quant(beta, *ATTENTION_RANGE)


class _Recorder:
  """Calibration hook for layers and the generator: records the min/max seen (eager)."""

  def __init__(self):
    self.lo: Dict[str, float] = {}
    self.hi: Dict[str, float] = {}

  def _see(self, key, t):
    a = np.asarray(t)
    self.lo[key] = min(self.lo.get(key, np.inf), float(a.min()))
    self.hi[key] = max(self.hi.get(key, -np.inf), float(a.max()))
    return t

  def range(self, key) -> "tuple[float, float]":
    return _with_zero(self.lo[key], self.hi[key])

  def inputs(self, x, w, b=None):
    return self._see("in", x), w, b

  def output(self, y):
    return self._see("out", y)

  def latent(self, z):
    return self._see("latent", z)

  def shared(self, e):
    return self._see("shared", e)

  def images(self, x):
    return x


def quantizable_layers(generator) -> List:
  """The generator's SNConv2D and SNDense layers, in a fixed (depth-first) order."""
  return [l for l in spectral_norm_layers(generator) if isinstance(l, (SNConv2D, SNDense))]


def _attention_layers(generator) -> List[SelfAttention]:
  # pylint: disable-next=protected-access
  return [l for l in generator._flatten_layers(include_self=False, recursive=True)
          if isinstance(l, SelfAttention)]


def calibration_batches(z_dim: int, num_classes: int, seed: int = 0,
                        batches: int = CALIBRATION_BATCHES,
                        batch: int = CALIBRATION_BATCH):
  """Fixed calibration latents: N(0, 1) z, class ids cycling through every class."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(batches):
    z = rng.standard_normal((batch, z_dim)).astype(np.float32)
    y = ((np.arange(batch) + i * batch) % num_classes).astype(np.int32)
    out.append((z, y))
  return out


def calibrate(generator, batches: Sequence, tie_condition: bool = True) -> QuantRanges:
  """The min/max of z, of the class embedding and of every conv/dense layer's input
  and output over `batches` of (z, y), the generator in inference mode (eager; the
  generator is left as it was).

  `tie_condition=False` gives z, the embedding and each dense input a grid of its
  own (only to measure what the shared grid buys, `tools/qat_match.py`)."""
  if is_quantized(generator):
    raise ValueError("calibrate() needs a float generator; this one is quantised.")
  layers = quantizable_layers(generator)
  recorders = [_Recorder() for _ in layers]
  top = _Recorder()
  for layer, rec in zip(layers, recorders):
    layer.quant = rec
  generator.quant = top
  try:
    for z, y in batches:
      generator((tf.constant(z), tf.constant(y)), training=False)
  finally:
    disable(generator)
  # One grid for z, the embedding and every dense input (the stem and the CBN gain
  # and bias projections read z chunks and [embedding, z chunk] concatenations):
  # z is quantised once at the input and the embedding table once, so the int8
  # concatenations are plain copies. With a grid each, LiteRT requantises the
  # chunks, which rounds differently from a fake quant of the float concatenation
  # and shifts the CBN gains by a step now and then.
  if not tie_condition:
    return QuantRanges(top.range("latent"), top.range("shared"), tuple(
        LayerRanges(l.name, r.range("in"), r.range("out"))
        for l, r in zip(layers, recorders)))
  cond = _with_zero(min(top.lo["latent"], top.lo["shared"]),
                    max(top.hi["latent"], top.hi["shared"]))
  return QuantRanges(cond, cond, tuple(
      LayerRanges(l.name, cond if isinstance(l, SNDense) else r.range("in"), r.range("out"))
      for l, r in zip(layers, recorders)))


def enable(generator, ranges: QuantRanges) -> None:
  """Puts fake quant into `generator` (in place) with the given activation ranges.

  Raises:
    ValueError: the ranges are for another architecture (layer names differ).
  """
  layers = quantizable_layers(generator)
  names = [l.name for l in layers]
  if names != [r.name for r in ranges.layers]:
    raise ValueError(
        f"QAT ranges are for layers {[r.name for r in ranges.layers][:4]}... "
        f"({len(ranges.layers)}), the generator has {names[:4]}... ({len(names)}).")
  for layer, r in zip(layers, ranges.layers):
    layer.quant = _LayerQuant(r, per_channel=isinstance(layer, SNConv2D))
  for layer in _attention_layers(generator):
    layer.quant = _attention_map_quant
  generator.quant = _GeneratorQuant(ranges)


def disable(generator) -> None:
  for layer in quantizable_layers(generator) + _attention_layers(generator):
    layer.quant = None
  generator.quant = None


def is_quantized(generator) -> bool:
  return isinstance(getattr(generator, "quant", None), _GeneratorQuant)


def ranges_of(generator) -> Optional[QuantRanges]:
  """The ranges a quantised generator uses (None for a float one)."""
  return generator.quant.ranges if is_quantized(generator) else None


def copy_quantization(src, dst) -> None:
  """Gives `dst` (a copy of `src`'s architecture, e.g. its slim or inference copy)
  `src`'s fake quant, if it has any."""
  ranges = ranges_of(src)
  if ranges is not None:
    enable(dst, ranges)


def write_record(workdir: str, step: int, ranges: QuantRanges) -> None:
  checkpoints.write_json_atomic(
      os.path.join(workdir, QAT_FILE),
      dict(step=int(step), calibration_batches=CALIBRATION_BATCHES,
           calibration_batch=CALIBRATION_BATCH, ranges=ranges.to_dict()))


def read_record(workdir: str) -> Optional[Dict]:
  """The workdir's QAT record ({"step", "ranges": QuantRanges}), or None.

  Raises:
    checkpoints.CheckpointError: the file exists but cannot be read.
  """
  def convert(record):
    record["step"] = int(record["step"])
    record["ranges"] = QuantRanges.from_dict(record["ranges"])
    return record
  return checkpoints.read_record(
      os.path.join(workdir, QAT_FILE), convert,
      "it holds the fake-quant ranges of the run's QAT phase. Restore it from a copy, "
      "or delete it with the checkpoints numbered above its step.")
