"""Export basics: formats, quantizations, the generator spec, training-state names, the
export JSON and the checks every export runs before it is written.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras


QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
FORMATS = ("saved_model", "tflite")
SIGNATURE_KEY = "serving_default"
Z_NAME, LABEL_NAME, IMAGE_NAME = "z", "class_id", "image"
EXPORT_JSON = "export.json"
# Ops whose int8 export must compute in int8 (the MAC-heavy ones), unless kept float.
_INT8_REQUIRED_OPS = ("CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")
# Ops an int8 export keeps in float32 by default: the attention core. XNNPACK (LiteRT's
# default CPU delegate) runs them in float32 but has no int8 kernel for BATCH_MATMUL of
# two activations (nor int8 SOFTMAX), so int8 would leave them to TFLite's slower
# builtin kernels (package docstring).
INT8_FLOAT_OPS = ("BATCH_MATMUL", "SOFTMAX")
# Ops that only move or convert data: not reported as "float compute".
_DATA_OPS = ("QUANTIZE", "DEQUANTIZE", "SHAPE", "RESHAPE", "STRIDED_SLICE", "PACK",
             "GATHER", "SPLIT", "CONCATENATION")
_DEFAULT_CHECK_BATCH = 4
# Unquantised exports that differ more than this from Keras are broken, not noisy
# (float32 round-off is ~1e-6 on [-1, 1] images).
FLOAT_TOLERANCE = 1e-3
_CALIBRATION_BATCH = 8


class ExportError(ValueError):
  """A model cannot be loaded, exported or sampled; the message names the path and the fix."""


@dataclasses.dataclass(frozen=True)
class GeneratorSpec:
  """What a caller needs to feed and read a generator, independent of its format."""
  z_dim: int
  num_classes: int
  resolution: int
  image_channels: int

  @classmethod
  def from_model_config(cls, m) -> "GeneratorSpec":
    return cls(int(m.z_dim), int(m.num_classes), int(m.resolution), int(m.image_channels))

  @classmethod
  def from_dict(cls, d: Dict[str, Any]) -> "GeneratorSpec":
    return cls(**{f.name: int(d[f.name]) for f in dataclasses.fields(cls)})

  def to_dict(self) -> Dict[str, int]:
    return dataclasses.asdict(self)

  def check_class_ids(self, class_ids: Sequence[int], where: str) -> None:
    """Raises ExportError naming the first id outside [0, num_classes)."""
    for c in class_ids:
      if not 0 <= int(c) < self.num_classes:
        raise ExportError(
            f"class id {int(c)} is outside the valid range [0, {self.num_classes}) of "
            f"{where}; use ids from 0 to {self.num_classes - 1}.")


_TRAINING_SUBSTRINGS = ("mask", "score", "alive", "optimizer", "adam", "sn_u")
_EMA_TOKEN = re.compile(r"(^|[/_:.\-])ema([/_:.\-]|$)", re.IGNORECASE)


def training_state_names(names: Iterable[str]) -> List[str]:
  """The names among `names` that look like training-only state.

  Matches (case-insensitive) 'mask', 'score', 'alive', 'optimizer', 'adam',
  'sn_u' anywhere, and 'ema' as a whole name component ('ema_generator/...',
  '.../ema/...'), so 'gamma' or 'schema' do not match.
  """
  bad = []
  for name in names:
    low = str(name).lower()
    if any(s in low for s in _TRAINING_SUBSTRINGS) or _EMA_TOKEN.search(low):
      bad.append(str(name))
  return bad


def _check_no_training_state(names: Iterable[str], what: str,
                             check_ema: bool = True) -> None:
  """Raises ExportError if `names` hold training-only state.

  `check_ema=False` for re-exports of a foreign SavedModel, whose variable names
  (e.g. "ema_generator_slim/...") we did not choose; the substrings are still checked.
  """
  bad = training_state_names(names)
  if not check_ema:
    bad = [n for n in bad if any(sub in n.lower() for sub in _TRAINING_SUBSTRINGS)]
  if bad:
    raise ExportError(
        f"{what} would contain training-only state {bad[:5]}"
        f"{' ...' if len(bad) > 5 else ''}; export the slimmed inference generator "
        "(export.inference_generator) instead of the training model.")


def _spec_of(generator) -> GeneratorSpec:
  spec = getattr(generator, "spec", None)
  if isinstance(spec, GeneratorSpec):
    return spec
  model_cfg = getattr(generator, "model_cfg", None)
  if model_cfg is not None:
    return GeneratorSpec.from_model_config(model_cfg)
  raise ExportError(
      f"cannot tell z_dim / num_classes of {type(generator).__name__}: export a "
      "ppcd_tf Generator (ppcd_tf.generator.build_generator) or a model returned by "
      "export.load_generator.")


# ---------------------------------------------------------------------------
# Export JSON helpers
# ---------------------------------------------------------------------------
def export_json_path(path: str) -> str:
  """Where the description of an export lives: `DIR/export.json` or `<file>.json`."""
  if os.path.isdir(path):
    return os.path.join(path, EXPORT_JSON)
  return path + ".json"


def read_export_json(path: str) -> Optional[Dict[str, Any]]:
  """The export JSON of a SavedModel dir / .tflite file, or None if absent."""
  p = export_json_path(path)
  if not os.path.isfile(p):
    return None
  try:
    with open(p) as f:
      return json.load(f)
  except ValueError as e:
    raise ExportError(f"{p} is not valid JSON ({e}); re-export the model.") from e


def _versions() -> Dict[str, str]:
  out = {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__}
  try:
    out["ai_edge_litert"] = importlib.metadata.version("ai-edge-litert")
  except importlib.metadata.PackageNotFoundError:  # pragma: no cover
    pass
  return out


def _signature_json(spec: GeneratorSpec, batch: Optional[int]) -> Dict[str, Any]:
  b = -1 if batch is None else int(batch)
  return {
      "key": SIGNATURE_KEY,
      "inputs": [{"name": Z_NAME, "dtype": "float32", "shape": [b, spec.z_dim]},
                 {"name": LABEL_NAME, "dtype": "int32", "shape": [b],
                  "range": [0, spec.num_classes - 1]}],
      "outputs": [{"name": IMAGE_NAME, "dtype": "float32",
                   "shape": [b, spec.resolution, spec.resolution, spec.image_channels],
                   "range": [-1.0, 1.0], "layout": "NHWC"}],
  }


def _check_batch(spec: GeneratorSpec, batch: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
  """The fixed (z, y) batch every export is verified on."""
  rng = np.random.default_rng(seed)
  z = rng.standard_normal((batch, spec.z_dim)).astype(np.float32)
  y = (np.arange(batch) % spec.num_classes).astype(np.int32)
  return z, y


def _diff(reference: np.ndarray, got: np.ndarray, what: str) -> Dict[str, float]:
  if got.shape != reference.shape:
    raise ExportError(f"{what} returned shape {got.shape}, the Keras model "
                      f"{reference.shape}.")
  d = np.abs(got.astype(np.float64) - reference.astype(np.float64))
  return {"max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()),
          "finite": bool(np.isfinite(got).all()),
          "min": float(np.min(got)), "max": float(np.max(got))}


def _check_float_match(check: Dict[str, float], what: str) -> None:
  if not check["max_abs_diff"] <= FLOAT_TOLERANCE:
    raise ExportError(
        f"{what} differs from the Keras generator by {check['max_abs_diff']:.3g} "
        f"(> {FLOAT_TOLERANCE}) on the verification batch; nothing was written. This "
        "is a bug in the export path: please report it with the model config.")


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _describe_source(generator) -> str:
  masked = bool(getattr(generator, "masks", None))
  return (f"{type(generator).__name__} '{getattr(generator, 'name', '')}'"
          + (" (masked; slimmed for export)" if masked else ""))
