"""Export of a (slimmed) generator for serving and edge sampling.

Conventions: z is float32 [B, z_dim], class ids are int32 [B] in
[0, num_classes), images are float32 NHWC [B, R, R, C] in [-1, 1] (tanh).

Export is its own step (STYLE.md 8, METHOD.md "After training"): only what
inference reads reaches an exported file.

* `inference_generator(G)` makes the copy that is exported, with
  `ppcd_tf.slim.slim_generator`: a masked PP-Res generator loses its pruned
  channels and mask layers (the slim model computes exactly the masked function),
  and every spectral-norm layer is *frozen*: at inference a power-iteration layer
  computes sigma from its weights and the stored `sn_u` (one step, nothing
  stored), so the copy stores exactly that sigma in `sn_sigma` and runs with
  `sn_mode="frozen"`; `sn_u` is no longer read. The copy is named "generator"
  whatever the source was called (e.g. "ema_generator").
* The exported objects track only the variables the traced inference function
  captures: kernels, biases, the class embedding, the frozen sigmas, BatchNorm
  moving statistics and gains, attention gammas. Mask scores and `alive` flags,
  `sn_u`, EMA shadows and optimiser slots are never captured, hence never
  written. `training_state_names` re-checks the written names as a safety net.

Formats:
* SavedModel (`export_saved_model`): signature `serving_default(z float32[None,
  z_dim], class_id int32[None]) -> {"image": float32[None, R, R, C]}` with a
  dynamic batch, plus a `model_info()` function returning the spec constants.
  `out_dir/export.json` describes it.
* TFLite (`export_tflite`), converted with `tf.lite.TFLiteConverter` from the
  same concrete function (dynamic batch, or `fixed_batch=N`), run with the LiteRT
  interpreter (`ai_edge_litert`). `<out>.json` (e.g. `g.tflite.json`) describes it.
  Quantisation (`quantize=`):
  - "none": float32 throughout.
  - "float16": `optimizations=[DEFAULT]`, `supported_types=[tf.float16]`: weights
    stored as float16 and dequantised to float32 at load; compute is float32.
  - "dynamic": `optimizations=[DEFAULT]` without data (dynamic-range): weight
    tensors with >= 1024 values stored int8 (per output channel for conv/dense);
    activations stay float32 and are quantised on the fly inside the hybrid
    kernels. Small weights stay float32.
  - "int8": `optimizations=[DEFAULT]` plus a representative dataset of (z,
    class_id) batches (post-training integer quantisation): conv and dense
    weights int8 symmetric per output channel, biases int32, activations int8
    asymmetric per tensor, calibrated on the representative batches; the class
    embedding table int8 per tensor (GATHER keeps its scale). The interface stays
    float: z enters as float32 and is quantised by a QUANTIZE op, class_id stays
    int32 (indices are never quantised, so the label/embedding path needs no
    special handling), and the image leaves as float32 through DEQUANTIZE.
    The self-attention core - its two BATCH_MATMULs (theta phi^T and beta g,
    both operands activations) and the SOFTMAX between them - stays float32 by
    default (`keep_float_ops=INT8_FLOAT_OPS`): LiteRT's XNNPACK delegate has no
    int8 kernel for a batch matmul of two activations, so in int8 these ops fall
    back to TFLite's builtin kernels, which made the whole int8 generator slower
    than fp32 at the demo scale and 2.5x slower than with a float attention core
    at 128 px (docs/bench/bench_infer_scale.md, tflite_int8 vs tflite_int8_full);
    in float32 XNNPACK runs them (DEQUANTIZE before, QUANTIZE after, delegated).
    `keep_float_ops=()` gives a fully integer model (integer-only accelerators).
    `supported_ops` stays TFLITE_BUILTINS, so an op without an int8 kernel falls
    back to float instead of failing the conversion; the export then *checks* the
    converted model: every CONV_2D and FULLY_CONNECTED, and every BATCH_MATMUL
    not kept in float, must compute in int8 (else `ExportError`), and the JSON
    lists which ops run in which dtype.

Every export is verified before it is written: the exported artifact is run on a
fixed (z, class_id) batch and compared with the Keras model it came from (the
masked model, for a masked source), and the maximum and mean absolute
differences are recorded.

Sampling (`open_generator`, `sample_class_grid`) runs a .tflite file through
`ai_edge_litert.interpreter.Interpreter` (fixed-batch models in chunks,
dynamic-batch models through `resize_tensor_input`), a SavedModel through its
signature, or a slim dir / workdir through Keras.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import re
import shutil
import tempfile
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
import tf_keras
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from ppcd_tf import checkpoints
from ppcd_tf import flops
from ppcd_tf import slim
from ppcd_tf.generator import Generator, build_generator
from ppcd_tf.layers.spectral_norm import spectral_norm_layers

__all__ = [
    "ExportError", "QUANTIZATIONS", "INT8_FLOAT_OPS", "FORMATS", "SIGNATURE_KEY",
    "FLOAT_TOLERANCE",
    "GeneratorSpec", "LoadedGenerator", "SavedModelGenerator", "load_generator",
    "inference_generator", "training_state_names", "export_saved_model",
    "export_tflite", "export_json_path", "read_export_json", "GeneratorRunner",
    "KerasRunner", "SavedModelRunner", "TFLiteRunner", "open_generator",
    "check_sampling_args", "truncated_normal", "sample_class_grid", "median_latency_ms",
]

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
# builtin kernels (module docstring).
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


# ---------------------------------------------------------------------------
# Spec and training-state names
# ---------------------------------------------------------------------------
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
# The copy that gets exported
# ---------------------------------------------------------------------------
def inference_generator(generator):
  """Returns the dense, frozen-spectral-norm copy of `generator` that gets exported.

  `ppcd_tf.slim.slim_generator` does the work for masked and unmasked generators
  alike: masks and pruned channels go (the slim model computes exactly the masked
  function), every spectral-norm layer runs in `sn_mode="frozen"` with `sn_sigma`
  set to the sigma the source uses at inference, so `sn_u` is no longer read. The
  copy is named "generator".

  Objects that are not ppcd_tf Generators (e.g. `SavedModelGenerator`) are
  returned unchanged: they are already inference-only.

  Raises:
    ExportError: the result still has masks or live power iteration.
  """
  if not isinstance(generator, Generator):
    if getattr(generator, "masks", None):
      raise ExportError(f"{type(generator).__name__} has mask layers; slim it first "
                        "(ppcd_tf.slim.slim_generator).")
    return generator
  copy = slim.slim_generator(generator, name="generator")
  live_power_iteration = [layer.name for layer in spectral_norm_layers(copy)
                          if layer.sn_mode != "frozen"]
  if copy.masks or live_power_iteration:
    raise ExportError("slim_generator returned a model with masks or power-iteration "
                      f"spectral norm ({live_power_iteration[:3]}); cannot export it.")
  return copy


def _param_count(generator, variables: Sequence[tf.Variable]) -> int:
  """Trainable parameters (ppcd_tf.flops convention: no BN statistics or sigmas)."""
  if isinstance(generator, tf_keras.Model):
    return int(sum(np.prod(v.shape) for v in generator.trainable_variables))
  skip = ("moving_mean", "moving_variance", "sn_sigma")
  return int(sum(np.prod(v.shape) for v in variables if not any(s in v.name for s in skip)))


def _macs_per_image(generator) -> Optional[int]:
  if not isinstance(generator, Generator):
    return None
  return int(flops.count_generator(generator).total_macs)


class _ServingModule(tf.__internal__.tracking.AutoTrackable):
  """What gets saved: the serving function and exactly the variables it reads.

  An AutoTrackable (not the Keras model) is the root, so nothing but the
  `variables` list and the functions is tracked. It is not a `tf.Module`, whose
  read-only `variables` property would force another attribute name: this way
  the loaded object has `.variables` like a loaded Keras model.
  """


def _serving_module(generator, batch: Optional[int] = None):
  """Builds (module, concrete_function, inference_copy, spec) for one batch size."""
  spec = _spec_of(generator)
  gen = inference_generator(generator)

  @tf.function(input_signature=[
      tf.TensorSpec([batch, spec.z_dim], tf.float32, name=Z_NAME),
      tf.TensorSpec([batch], tf.int32, name=LABEL_NAME)])
  def serve(z, class_id):
    return {IMAGE_NAME: tf.cast(gen((z, class_id), training=False), tf.float32)}

  concrete = serve.get_concrete_function()
  info = {k: tf.constant(v, tf.int32) for k, v in spec.to_dict().items()}
  module = _ServingModule()
  module.variables = sorted(concrete.variables, key=lambda v: v.name)
  module.serve = serve
  module.model_info = tf.function(lambda: dict(info), input_signature=[])
  return module, concrete, gen, spec


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------
class SavedModelGenerator(tf.Module):
  """A SavedModel with a (z, class) -> image signature, callable like a Keras generator.

  `G((z, y), training=False) -> images`; it can be re-exported (e.g. a
  SavedModel converted to TFLite) because its variables are tracked. Accepts our
  signature (z, class_id) -> {"image"} and the one `ppcd_tf.slim` writes under
  `<slim dir>/saved_model` ((z, y) -> {"images"}).
  """

  def __init__(self, path: str):
    super().__init__(name="saved_model_generator")
    try:
      self._loaded = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as e:
      raise ExportError(f"{path} is not a readable SavedModel ({str(e)[:200]}); "
                        "re-export it with tools/export.py --format=saved_model.") from e
    if SIGNATURE_KEY not in self._loaded.signatures:
      raise ExportError(f"SavedModel {path} has no '{SIGNATURE_KEY}' signature "
                        f"(found {list(self._loaded.signatures)}); export it with "
                        "tools/export.py --format=saved_model.")
    self._fn = self._loaded.signatures[SIGNATURE_KEY]
    inputs = set(self._fn.structured_input_signature[1])
    outputs = set(self._fn.structured_outputs)
    labels = [n for n in (LABEL_NAME, "y") if n in inputs]
    images = [n for n in (IMAGE_NAME, "images") if n in outputs]
    if Z_NAME not in inputs or len(inputs) != 2 or not labels or len(outputs) != 1 \
        or not images:
      raise ExportError(f"SavedModel {path}: signature '{SIGNATURE_KEY}' maps "
                        f"{sorted(inputs)} -> {sorted(outputs)}; expected "
                        f"['{LABEL_NAME}', '{Z_NAME}'] -> ['{IMAGE_NAME}'].")
    self._label_name, self._image_name = labels[0], images[0]
    self.path = path
    self.spec = _saved_model_spec(path, self._loaded, self._fn, self._image_name)

  @property
  def variables(self):
    """The variables the signature reads (the loaded object's own tracking aside)."""
    return tuple(self._fn.variables)

  def __call__(self, inputs, training=False):
    del training
    z, y = inputs
    y = tf.cast(tf.reshape(y, [-1]), tf.int32)
    out = self._fn(**{Z_NAME: tf.convert_to_tensor(z, tf.float32), self._label_name: y})
    return out[self._image_name]


@dataclasses.dataclass
class LoadedGenerator:
  """A generator loaded by `load_generator`.

  Attributes:
    generator: callable `generator((z, y), training=False) -> images`; a dense
      ppcd_tf Generator (slim dir, workdir) or a `SavedModelGenerator`.
    spec: z_dim, num_classes, resolution, image_channels.
    kind: "slim", "workdir" or "saved_model".
    path: where it came from.
    step: training step of the restored checkpoint (workdirs), else None.
    slimmed_from_masked: a masked PP-Res generator was slimmed on load.
  """
  generator: Any
  spec: GeneratorSpec
  kind: str
  path: str
  step: Optional[int] = None
  slimmed_from_masked: bool = False

  def describe(self) -> str:
    extra = f", step {self.step}" if self.step is not None else ""
    extra += ", slimmed from the masked generator" if self.slimmed_from_masked else ""
    return f"{self.kind} {self.path}{extra}"


def _is_saved_model(path: str) -> bool:
  return os.path.isfile(os.path.join(path, "saved_model.pb"))


def _is_workdir(path: str) -> bool:
  return os.path.isfile(checkpoints.config_path(path))


def _is_slim_dir(path: str) -> bool:
  """A `ppcd_tf.slim.save_slim_generator` dir: config.json {"generator": ...} + weights/.

  A training workdir also has a config.json, but with the `Config` sections.
  """
  config = os.path.join(path, "config.json")
  if not (os.path.isfile(config) and os.path.isdir(os.path.join(path, "weights"))):
    return False
  try:
    with open(config) as f:
      return "generator" in json.load(f)
  except (OSError, ValueError):
    return False


_WHAT_TO_PASS = ("a slim model dir (ppcd_tf.slim.save_slim_generator), a training "
                 "workdir (config.json + checkpoints/) or a SavedModel dir "
                 "(tools/export.py --format=saved_model)")


def load_generator(path: str) -> LoadedGenerator:
  """Loads a generator for export or sampling; masks never survive loading.

  Args:
    path: a slim model dir (from `ppcd_tf.slim.save_slim_generator`), a training
      workdir (the EMA generator of its latest checkpoint is restored; a masked
      PP-Res generator is slimmed with `ppcd_tf.slim.slim_generator`), or a
      SavedModel dir with our serving signature.

  Returns:
    A `LoadedGenerator`.

  Raises:
    ExportError: the path is missing or is none of the above.
    ppcd_tf.checkpoints.CheckpointError: the workdir has no restorable checkpoint.
  """
  if not path or not os.path.exists(path):
    raise ExportError(f"model path {path!r} does not exist; pass {_WHAT_TO_PASS}.")
  if os.path.isfile(path):
    if path.endswith(".tflite"):
      raise ExportError(f"{path} is a TFLite file: it can be sampled (tools/sample.py) "
                        "but not re-exported; pass the slim dir, workdir or SavedModel "
                        "it was exported from.")
    raise ExportError(f"{path} is a file; pass {_WHAT_TO_PASS}.")
  if _is_slim_dir(path):
    g = slim.load_slim_generator(path)
    return LoadedGenerator(g, _spec_of(g), "slim", path)
  if _is_saved_model(path):
    g = SavedModelGenerator(path)
    return LoadedGenerator(g, g.spec, "saved_model", path)
  if _is_workdir(path):
    return _load_workdir(path)
  raise ExportError(f"{path} is not a model directory (no saved_model.pb, no "
                    f"config.json); pass {_WHAT_TO_PASS}.")


def _load_workdir(path: str) -> LoadedGenerator:
  cfg = checkpoints.read_config(path)
  masked = cfg.run.mode == "ppcd" and cfg.distill.use_masks
  g = build_generator(cfg.model, masked=masked, name="generator")
  prefix, step = checkpoints.restore_objects_from_workdir(path, ema_generator=g)
  checkpoints.require_finite(g, prefix, "ema_generator")
  if masked:
    g = slim.slim_generator(g, name="generator")
  return LoadedGenerator(g, _spec_of(g), "workdir", path, step=step,
                         slimmed_from_masked=masked)


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


# ---------------------------------------------------------------------------
# SavedModel
# ---------------------------------------------------------------------------
def export_saved_model(generator, out_dir: str, check_batch: int = _DEFAULT_CHECK_BATCH,
                       seed: int = 0) -> Dict[str, Any]:
  """Writes a SavedModel with the dynamic-batch serving signature, verified.

  The directory is written under a temporary name beside `out_dir`, reloaded
  with `tf.saved_model.load` and compared with `generator` on a fixed batch,
  and only then moved into place (an earlier export there is replaced).

  Args:
    generator: a ppcd_tf Generator (masked ones are slimmed) or a
      `SavedModelGenerator`.
    out_dir: target directory; must not exist, or hold an earlier SavedModel.
    check_batch: size of the fixed verification batch.
    seed: seed of the verification z.

  Returns:
    The dict written to `out_dir/export.json`.

  Raises:
    ExportError: out_dir holds something else, or the export has training-only
      state or does not reproduce the generator.
  """
  if os.path.isfile(out_dir) or (os.path.isdir(out_dir) and os.listdir(out_dir)
                                 and not _is_saved_model(out_dir)):
    raise ExportError(f"{out_dir} exists and is not a SavedModel directory; pick a "
                      "new output path (an earlier SavedModel export is replaced).")
  module, concrete, gen, spec = _serving_module(generator)
  var_names = [v.name for v in module.variables]
  check_ema = not isinstance(generator, SavedModelGenerator)
  _check_no_training_state(var_names, f"SavedModel {out_dir}", check_ema)
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=os.path.basename(os.path.abspath(out_dir)) + ".tmp-",
                         dir=parent)
  os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only
  try:
    tf.saved_model.save(module, tmp, signatures={SIGNATURE_KEY: concrete})
    loaded = tf.saved_model.load(tmp)
    loaded_names = [v.name for v in loaded.variables]
    _check_no_training_state(loaded_names, f"SavedModel {out_dir}", check_ema)
    z, y = _check_batch(spec, check_batch, seed)
    reference = np.asarray(generator((z, y), training=False))
    got = loaded.signatures[SIGNATURE_KEY](
        **{Z_NAME: tf.constant(z), LABEL_NAME: tf.constant(y)})[IMAGE_NAME].numpy()
    check = _diff(reference, got, f"SavedModel {out_dir}")
    _check_float_match(check, f"SavedModel {out_dir}")
    size = sum(os.path.getsize(os.path.join(d, f))
               for d, _, files in os.walk(tmp) for f in files)
    report = {
        "format": "saved_model", "quantization": "none", "path": os.path.abspath(out_dir),
        "file_size_bytes": int(size), "params": _param_count(gen, module.variables),
        "stored_values": int(sum(np.prod(v.shape) for v in module.variables)),
        "num_variables": len(module.variables), "spec": spec.to_dict(),
        "signature": _signature_json(spec, None),
        "max_abs_diff": check["max_abs_diff"], "mean_abs_diff": check["mean_abs_diff"],
        "check": dict(check, batch=int(check_batch), seed=int(seed),
                      reference="the Keras generator passed to export (before slimming)"),
        "source": _describe_source(generator), "versions": _versions(),
        "created": _now(),
    }
    macs = _macs_per_image(gen)
    if macs is not None:
      report["macs_per_image"] = macs
    checkpoints.write_json_atomic(os.path.join(tmp, EXPORT_JSON), report)
    checkpoints.replace_dir(tmp, out_dir)
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
  return report


# ---------------------------------------------------------------------------
# TFLite
# ---------------------------------------------------------------------------
def _representative_dataset(spec: GeneratorSpec, batches, batch_size: int,
                            seed: int) -> Callable[[], Iterable[Dict[str, np.ndarray]]]:
  """Calibration data: N(0, 1) z, class ids cycling through every class."""
  if isinstance(batches, int):
    if batches < 1:
      raise ExportError(f"representative_batches={batches} must be >= 1.")

    def gen():
      rng = np.random.default_rng(seed + 1)
      for i in range(batches):
        z = rng.standard_normal((batch_size, spec.z_dim)).astype(np.float32)
        y = ((np.arange(batch_size) + i * batch_size) % spec.num_classes).astype(np.int32)
        yield {Z_NAME: z, LABEL_NAME: y}
    return gen

  pairs = list(batches)
  if not pairs:
    raise ExportError("representative_batches is empty; give (z, y) batches or a count.")

  def gen_pairs():
    for z, y in pairs:
      z = np.asarray(z, np.float32)
      y = np.asarray(y, np.int32).reshape(-1)
      if z.shape != (batch_size, spec.z_dim) or y.shape != (batch_size,):
        raise ExportError(f"representative batch shapes {z.shape}, {y.shape} do not "
                          f"match batch {batch_size}, z_dim {spec.z_dim}.")
      spec.check_class_ids(y, "the representative dataset")
      yield {Z_NAME: z, LABEL_NAME: y}
  return gen_pairs


def _analyze_tflite(model: bytes) -> Dict[str, Any]:
  """Per-op compute dtypes and tensor dtype counts of a converted model.

  Runs on the model as written (no delegate), so ops appear as in the file.
  """
  interp = Interpreter(
      model_content=model,
      experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
  tensors = {t["index"]: t for t in interp.get_tensor_details()}
  dtype_counts: Dict[str, int] = {}
  for t in tensors.values():
    name = np.dtype(t["dtype"]).name
    dtype_counts[name] = dtype_counts.get(name, 0) + 1
  ops: Dict[str, Dict[str, int]] = {}
  for op in interp._get_ops_details():  # pylint: disable=protected-access
    ins = [i for i in op["inputs"] if i >= 0]
    dt = np.dtype(tensors[ins[0]]["dtype"]).name if ins else "none"
    if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
      dt = f"{dt}->{np.dtype(tensors[op['outputs'][0]]['dtype']).name}"
    per = ops.setdefault(op["op_name"], {})
    per[dt] = per.get(dt, 0) + 1
  float_compute = sorted(
      name for name, per in ops.items() if name not in _DATA_OPS and
      any(k in ("float32", "float16") for k in per))
  return {"tensor_dtypes": dtype_counts, "ops": ops, "float_compute_ops": float_compute,
          "tensor_names": [t["name"] for t in tensors.values()]}


_QUANT_DOC = {
    "none": "float32 weights and activations.",
    "float16": "weights stored as float16 (dequantised to float32 at load); float32 "
               "compute.",
    "dynamic": "dynamic-range: weights with >= 1024 values int8 per output channel, "
               "activations float32 (quantised on the fly inside hybrid kernels).",
    "int8": "integer post-training quantisation: conv/dense weights int8 per "
            "output channel, biases int32, activations int8 per tensor calibrated on "
            "the representative dataset, embedding table int8; float32 z in "
            "(QUANTIZE), int32 class_id in (indices of the int8 embedding table), "
            "float32 image out (DEQUANTIZE); the ops in keep_float_ops (default the "
            "attention BATCH_MATMULs and SOFTMAX, which XNNPACK runs in float32 only) "
            "stay float32 between DEQUANTIZE and QUANTIZE; other ops without an int8 "
            "kernel may fall back to float (see float_compute_ops).",
}


def _check_quantized(quantize: str, analysis: Dict[str, Any], out_path: str,
                     keep_float_ops: Sequence[str] = ()) -> None:
  dtypes = analysis["tensor_dtypes"]
  if quantize == "float16" and not dtypes.get("float16"):
    raise ExportError(f"float16 conversion of {out_path} produced no float16 weights; "
                      "the converter ignored the request (check the TF version).")
  if quantize == "int8":
    float_heavy = [op for op in _INT8_REQUIRED_OPS if op not in keep_float_ops and
                   any(k in ("float32", "float16") for k in analysis["ops"].get(op, {}))]
    if float_heavy or not dtypes.get("int8"):
      raise ExportError(
          f"int8 conversion of {out_path} left {float_heavy or 'every op'} in float; "
          f"ops by input dtype: {analysis['ops']}. Try more --representative_batches "
          "or report the converter version.")


def _convert_keeping_float(converter, float_ops: Sequence[str]) -> bytes:
  """Integer conversion with the ops named in `float_ops` left in float32.

  `tf.lite.experimental.QuantizationDebugger` is TF's public route to a selectively
  quantised model: it calibrates with the converter's representative dataset, and
  `get_nondebug_quantized_model` quantises everything but the denylisted ops (same
  quantiser, same float interface as `converter.convert()`), inserting DEQUANTIZE /
  QUANTIZE around them. Its `debug_dataset` is only read by `run()`, never here.
  """
  dataset = converter.representative_dataset
  # The calibrate-only conversion warns that no mean/std statistics were given for
  # the inputs; only a model with quantised inputs reads them, and ours keeps a
  # float z (its QUANTIZE op uses the calibrated range). The caller's
  # warnings.catch_warnings() scopes this filter to the conversion.
  warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
  debugger = tf.lite.experimental.QuantizationDebugger(
      converter=converter,
      debug_dataset=lambda: ([d[Z_NAME], d[LABEL_NAME]] for d in dataset()),
      debug_options=tf.lite.experimental.QuantizationDebugOptions(
          denylisted_ops=list(float_ops)))
  return debugger.get_nondebug_quantized_model()


def export_tflite(generator, out_path: str, quantize: str = "none",
                  fixed_batch: Optional[int] = None,
                  representative_batches: Union[int, Iterable[Tuple[Any, Any]]] = 16,
                  check_batch: Optional[int] = None, seed: int = 0,
                  keep_float_ops: Sequence[str] = INT8_FLOAT_OPS) -> Dict[str, Any]:
  """Converts the generator to a verified .tflite file with `tf.lite.TFLiteConverter`.

  Args:
    generator: a ppcd_tf Generator (masked ones are slimmed) or a
      `SavedModelGenerator`.
    out_path: the .tflite file to write (atomically); `<out_path>.json` describes it.
    quantize: "none", "float16", "dynamic" or "int8" (see the module docstring).
    fixed_batch: None for a dynamic batch (`resize_tensor_input` before use), or
      a batch size baked into the model (some edge runtimes need static shapes).
    representative_batches: int8 only: the number of calibration batches of
      N(0, 1) z with class ids cycling through every class (batch = fixed_batch or
      8), or an iterable of (z, y) numpy batches of that batch size.
    check_batch: verification batch (default 4; must equal fixed_batch if set).
    seed: seed of the verification z and of the generated calibration data.
    keep_float_ops: int8 only: TFLite op names left in float32 (default
      `INT8_FLOAT_OPS`, the attention core, which XNNPACK runs fast only in
      float32); `()` for a fully integer model.

  Returns:
    The dict written to `<out_path>.json`.

  Raises:
    ExportError: bad arguments, training state in the model, a quantisation the
      converter did not apply, or non-finite outputs.
  """
  if quantize not in QUANTIZATIONS:
    raise ExportError(f"quantize={quantize!r} must be one of {QUANTIZATIONS}.")
  keep_float_ops = tuple(keep_float_ops)
  bad_ops = [op for op in keep_float_ops if not re.fullmatch(r"[A-Z][A-Z0-9_]*", str(op))]
  if bad_ops:
    raise ExportError(f"keep_float_ops={list(keep_float_ops)}: {bad_ops} are not TFLite "
                      "op names; use upper-case builtin names like 'BATCH_MATMUL'.")
  if fixed_batch is not None and int(fixed_batch) < 1:
    raise ExportError(f"fixed_batch={fixed_batch} must be >= 1 (or None for dynamic).")
  if os.path.isdir(out_path):
    raise ExportError(f"{out_path} is a directory; give a file path like "
                      "model.tflite.")
  batch = check_batch or (fixed_batch or _DEFAULT_CHECK_BATCH)
  if fixed_batch is not None and batch != fixed_batch:
    raise ExportError(f"check_batch={check_batch} must equal fixed_batch={fixed_batch}.")
  module, concrete, gen, spec = _serving_module(generator, batch=fixed_batch)
  check_ema = not isinstance(generator, SavedModelGenerator)
  _check_no_training_state([v.name for v in module.variables], f"TFLite {out_path}",
                           check_ema)

  converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
  if quantize != "none":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantize == "float16":
    converter.target_spec.supported_types = [tf.float16]
  float_ops = keep_float_ops if quantize == "int8" else ()
  if quantize == "int8":
    converter.representative_dataset = _representative_dataset(
        spec, representative_batches, fixed_batch or _CALIBRATION_BATCH, seed)
  try:
    with warnings.catch_warnings():
      # The int8 calibrator inside TF still runs tf.lite.Interpreter; not our call.
      warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
      model = (_convert_keeping_float(converter, float_ops) if float_ops
               else converter.convert())
  except Exception as e:  # pylint: disable=broad-except - converter raises many types
    raise ExportError(f"TFLite conversion ({quantize}) of {out_path} failed: "
                      f"{str(e).strip()[:400]}") from e

  analysis = _analyze_tflite(model)
  _check_no_training_state(analysis.pop("tensor_names"), f"TFLite {out_path}",
                           check_ema)
  _check_quantized(quantize, analysis, out_path, float_ops)
  z, y = _check_batch(spec, batch, seed)
  reference = np.asarray(generator((z, y), training=False))
  got = TFLiteRunner(model, spec=spec)(z, y)
  check = _diff(reference, got, f"TFLite {out_path}")
  if not check["finite"]:
    raise ExportError(f"TFLite ({quantize}) {out_path} produces non-finite images.")
  if quantize == "none":
    _check_float_match(check, f"TFLite {out_path}")

  def write(tmp: str) -> None:
    with open(tmp, "wb") as f:
      f.write(model)
  checkpoints.write_atomically(out_path, write)
  report = {
      "format": "tflite", "quantization": quantize,
      "quantization_details": dict(analysis, description=_QUANT_DOC[quantize]),
      "path": os.path.abspath(out_path), "file_size_bytes": len(model),
      "fixed_batch": fixed_batch, "params": _param_count(gen, module.variables),
      "spec": spec.to_dict(), "signature": _signature_json(spec, fixed_batch),
      "max_abs_diff": check["max_abs_diff"], "mean_abs_diff": check["mean_abs_diff"],
      "check": dict(check, batch=int(batch), seed=int(seed),
                    reference="the Keras generator passed to export (before slimming)"),
      "converter": {"api": "tf.lite.TFLiteConverter.from_concrete_functions",
                    "version": tf.__version__},
      "source": _describe_source(generator), "versions": _versions(), "created": _now(),
  }
  if quantize == "int8":
    report["quantization_details"]["representative_batches"] = (
        representative_batches if isinstance(representative_batches, int) else "custom")
    report["quantization_details"]["calibration_batch"] = fixed_batch or _CALIBRATION_BATCH
    report["quantization_details"]["keep_float_ops"] = list(float_ops)
  macs = _macs_per_image(gen)
  if macs is not None:
    report["macs_per_image"] = macs
  checkpoints.write_json_atomic(export_json_path(out_path), report)
  return report


# ---------------------------------------------------------------------------
# Running exported generators
# ---------------------------------------------------------------------------
class GeneratorRunner:
  """Numpy-in, numpy-out generator of any format: `runner(z, y) -> images`.

  Attributes:
    kind: "keras", "saved_model" or "tflite".
    spec: GeneratorSpec (num_classes is what class ids are checked against).
    path: the model path ("" for in-memory models).
  """
  kind = "abstract"

  def __init__(self, spec: GeneratorSpec, path: str = ""):
    self.spec = spec
    self.path = path

  def __call__(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    raise NotImplementedError


class KerasRunner(GeneratorRunner):
  """A Keras generator through one `tf.function` with a dynamic batch."""
  kind = "keras"

  def __init__(self, generator, spec: Optional[GeneratorSpec] = None, path: str = ""):
    super().__init__(spec or _spec_of(generator), path)
    self.generator = generator
    self._fn = tf.function(
        lambda z, y: generator((z, y), training=False),
        input_signature=[tf.TensorSpec([None, self.spec.z_dim], tf.float32),
                         tf.TensorSpec([None], tf.int32)])

  def __call__(self, z, y):
    return self._fn(tf.constant(z, tf.float32), tf.constant(y, tf.int32)).numpy()


def _saved_model_spec(path: str, loaded, fn, image_name: str) -> GeneratorSpec:
  """From export.json, else `model_info()`, else the signature and embedding shapes."""
  meta = read_export_json(path)
  if meta and "spec" in meta:
    return GeneratorSpec.from_dict(meta["spec"])
  if hasattr(loaded, "model_info"):
    return GeneratorSpec.from_dict({k: int(v.numpy()) for k, v in loaded.model_info().items()})
  z_spec = fn.structured_input_signature[1][Z_NAME]
  out = fn.structured_outputs[image_name]
  tables = [v for v in fn.variables if "shared/embeddings" in v.name]
  if not tables or out.shape.rank != 4:
    raise ExportError(f"SavedModel {path} has no {EXPORT_JSON}, no model_info() and no "
                      "class embedding; re-export it with tools/export.py.")
  return GeneratorSpec(int(z_spec.shape[-1]), int(tables[0].shape[0]), int(out.shape[1]),
                       int(out.shape[-1]))


class SavedModelRunner(GeneratorRunner):
  """A SavedModel dir through its `serving_default` signature."""
  kind = "saved_model"

  def __init__(self, path: str):
    self.model = SavedModelGenerator(path)
    super().__init__(self.model.spec, path)

  def __call__(self, z, y):
    return self.model((tf.constant(z, tf.float32), tf.constant(y, tf.int32))).numpy()


class TFLiteRunner(GeneratorRunner):
  """A .tflite generator through the LiteRT interpreter (`ai_edge_litert`).

  Dynamic-batch models are resized (`resize_tensor_input` + `allocate_tensors`)
  when the batch size changes; fixed-batch models run in chunks of their batch,
  the last chunk padded by repeating its first row.

  Args:
    model: a .tflite path or the model bytes.
    spec: GeneratorSpec; default from `<path>.json`, else read from the model
      (z input width, output shape, rows of the GATHERed class embedding).
    num_threads: interpreter threads (None: LiteRT's default).
  """
  kind = "tflite"

  def __init__(self, model: Union[str, bytes], spec: Optional[GeneratorSpec] = None,
               num_threads: Optional[int] = None):
    path = model if isinstance(model, str) else ""
    try:
      if path:
        self.interpreter = Interpreter(model_path=path, num_threads=num_threads)
      else:
        self.interpreter = Interpreter(model_content=model, num_threads=num_threads)
    except (ValueError, RuntimeError) as e:
      raise ExportError(f"{path or 'model bytes'} is not a valid TFLite model "
                        f"({str(e)[:200]}); re-export it with tools/export.py.") from e
    self._z, self._y, self._out = self._find_io(path)
    self.fixed_batch = (None if self._z["shape_signature"][0] == -1
                        else int(self._z["shape"][0]))
    self._allocated_batch = None
    if self.fixed_batch is not None:
      self.interpreter.allocate_tensors()
      self._allocated_batch = self.fixed_batch
    if spec is None and path:
      meta = read_export_json(path)
      spec = GeneratorSpec.from_dict(meta["spec"]) if meta and "spec" in meta else None
    super().__init__(spec or self._spec_from_model(path), path)

  def _find_io(self, path):
    interp = self.interpreter
    if SIGNATURE_KEY in interp.get_signature_list():
      runner = interp.get_signature_runner(SIGNATURE_KEY)
      ins, outs = runner.get_input_details(), runner.get_output_details()
      if Z_NAME in ins and LABEL_NAME in ins and IMAGE_NAME in outs:
        return ins[Z_NAME], ins[LABEL_NAME], outs[IMAGE_NAME]
    ins = interp.get_input_details()
    zs = [d for d in ins if len(d["shape"]) == 2 and np.dtype(d["dtype"]).kind == "f"]
    ys = [d for d in ins if len(d["shape"]) == 1 and np.dtype(d["dtype"]).kind == "i"]
    if len(ins) != 2 or len(zs) != 1 or len(ys) != 1:
      raise ExportError(f"{path or 'TFLite model'} does not take (z float32 [B, z_dim], "
                        "class_id int32 [B]); export it with tools/export.py.")
    return zs[0], ys[0], interp.get_output_details()[0]

  def _spec_from_model(self, path) -> GeneratorSpec:
    resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    probe = (Interpreter(model_path=path, experimental_op_resolver_type=resolver)
             if path else None)
    rows = None
    if probe is not None:
      tensors = {t["index"]: t for t in probe.get_tensor_details()}
      for op in probe._get_ops_details():  # pylint: disable=protected-access
        if op["op_name"] == "GATHER" and op["inputs"][0] in tensors:
          rows = int(tensors[op["inputs"][0]]["shape"][0])
          break
    if rows is None:
      raise ExportError(f"cannot tell the number of classes of {path or 'the model'}: "
                        f"its export JSON ({export_json_path(path or 'model.tflite')}) "
                        "is missing; keep the .json beside the .tflite or re-export.")
    shape = self._out["shape_signature"]
    return GeneratorSpec(int(self._z["shape_signature"][1]), rows, int(shape[1]),
                         int(shape[3]))

  def _run(self, z, y):
    n = z.shape[0]
    interp = self.interpreter
    if self._allocated_batch != n:
      interp.resize_tensor_input(self._z["index"], [n, self.spec.z_dim])
      interp.resize_tensor_input(self._y["index"], [n])
      interp.allocate_tensors()
      self._allocated_batch = n
    interp.set_tensor(self._z["index"], z)
    interp.set_tensor(self._y["index"], y)
    interp.invoke()
    return np.array(interp.get_tensor(self._out["index"]), copy=True)

  def __call__(self, z, y):
    z = np.ascontiguousarray(z, np.float32)
    y = np.ascontiguousarray(np.reshape(y, [-1]), np.int32)
    if self.fixed_batch is None:
      return self._run(z, y)
    b, outs = self.fixed_batch, []
    for start in range(0, z.shape[0], b):
      zc, yc = z[start:start + b], y[start:start + b]
      k = zc.shape[0]
      if k < b:
        zc = np.concatenate([zc, np.repeat(zc[:1], b - k, 0)])
        yc = np.concatenate([yc, np.repeat(yc[:1], b - k, 0)])
      outs.append(self._run(zc, yc)[:k])
    return np.concatenate(outs, axis=0)


def open_generator(path: str, num_threads: Optional[int] = None) -> GeneratorRunner:
  """Opens any generator format for sampling / benchmarking.

  Args:
    path: a .tflite file, a SavedModel dir, a slim model dir or a training workdir.
    num_threads: LiteRT interpreter threads (.tflite only).

  Raises:
    ExportError: the path is missing or not a generator.
  """
  if not path or not os.path.exists(path):
    raise ExportError(f"model path {path!r} does not exist; pass a .tflite file, a "
                      f"SavedModel dir, a slim model dir or a training workdir.")
  if os.path.isfile(path):
    if not path.endswith(".tflite"):
      raise ExportError(f"{path} is not a .tflite file; pass a .tflite file or a model "
                        "directory.")
    return TFLiteRunner(path, num_threads=num_threads)
  if _is_saved_model(path) and not _is_slim_dir(path):
    return SavedModelRunner(path)
  loaded = load_generator(path)
  return KerasRunner(inference_generator(loaded.generator), loaded.spec, path)


# ---------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------
def _check_truncation(truncation: float) -> None:
  if not (truncation >= 0 and math.isfinite(truncation)):
    raise ExportError(f"truncation={truncation} must be a finite number >= 0 (0 = none; "
                      "z entries with |z| > truncation are resampled; 0.5 is strong).")


def check_sampling_args(n: int, seed: int, truncation: float) -> None:
  """Raises ExportError naming the first of n (>= 1), seed (>= 0), truncation (> 0) out of range."""
  if int(n) < 1:
    raise ExportError(f"n={n} must be >= 1 (samples per class).")
  if int(seed) < 0:
    raise ExportError(f"seed={seed} must be >= 0.")
  _check_truncation(truncation)


def truncated_normal(shape: Sequence[int], truncation: float,
                     rng: np.random.Generator) -> np.ndarray:
  """`evaluation.truncated_normal` after checking `truncation` (>= 0, finite;
  0 = none; values >= ~6 are indistinguishable from no truncation)."""
  from ppcd_tf import evaluation
  _check_truncation(truncation)
  return evaluation.truncated_normal(shape, truncation, rng)


def sample_class_grid(runner: GeneratorRunner, class_ids: Sequence[int], n: int,
                      seed: int = 0, truncation: float = 0.0,
                      batch_size: int = 64) -> np.ndarray:
  """Images for a grid with one row per class and `n` columns.

  Column j uses the same z in every row, so a row shows a class and a column a
  latent. z is `truncated_normal` with a `np.random.default_rng(seed)` stream.

  Args:
    runner: from `open_generator`.
    class_ids: ids in [0, runner.spec.num_classes).
    n: samples per class (>= 1).
    seed: >= 0.
    truncation: > 0 (see `truncated_normal`).
    batch_size: images per generator call.

  Returns:
    float32 [len(class_ids) * n, R, R, C] in [-1, 1], row-major (class, column).

  Raises:
    ExportError: an argument is out of range (the message names it).
  """
  class_ids = [int(c) for c in class_ids]
  if not class_ids:
    raise ExportError("no class ids given; pass e.g. --classes=0,1,2.")
  check_sampling_args(n, seed, truncation)
  runner.spec.check_class_ids(class_ids, f"model {runner.path or runner.kind}")
  rng = np.random.default_rng(int(seed))
  z_cols = truncated_normal((int(n), runner.spec.z_dim), truncation, rng)
  z = np.tile(z_cols, (len(class_ids), 1))
  y = np.repeat(np.asarray(class_ids, np.int32), int(n))
  outs = [runner(z[i:i + batch_size], y[i:i + batch_size])
          for i in range(0, z.shape[0], batch_size)]
  return np.concatenate(outs, axis=0)


def median_latency_ms(path: str, repeats: int = 30, batch: int = 1, warmup: int = 3) -> float:
  """Median wall milliseconds of one `batch`-sized call of a model (LiteRT for .tflite).

  A quick single-model figure for reports; `tools/bench_infer.py` is the benchmark
  that compares models side by side.
  """
  import time
  runner = open_generator(path)
  rng = np.random.default_rng(0)
  z = rng.standard_normal((batch, runner.spec.z_dim)).astype(np.float32)
  y = (np.arange(batch) % runner.spec.num_classes).astype(np.int32)
  for _ in range(warmup):
    runner(z, y)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    runner(z, y)
    times.append((time.perf_counter() - start) * 1000.0)
  return float(np.median(times))
