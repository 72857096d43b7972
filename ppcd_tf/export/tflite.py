"""The TFLite writer (`export_tflite`): fp32, fp16, dynamic-range and int8 through
`tf.lite.TFLiteConverter`, with the int8 checks, verified through LiteRT.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from ppcd_tf import checkpoints
from ppcd_tf import qat
from ppcd_tf.export.common import (
    ExportError, GeneratorSpec, INT8_FLOAT_OPS, LABEL_NAME, QUANTIZATIONS, Z_NAME,
    _CALIBRATION_BATCH, _DATA_OPS, _DEFAULT_CHECK_BATCH, _INT8_REQUIRED_OPS,
    _check_batch, _check_float_match, _check_no_training_state, _describe_source, _diff,
    _now, _signature_json, _versions, export_json_path)
from ppcd_tf.export.loading import SavedModelGenerator
from ppcd_tf.export.runners import TFLiteRunner
from ppcd_tf.export.serving import _macs_per_image, _param_count, _serving_module


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
    quantize: "none", "float16", "dynamic" or "int8" (see the `ppcd_tf.export` package docstring).
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
  quantized = qat.is_quantized(gen)
  if quantized and quantize not in ("none", "int8"):
    raise ExportError(f"{_describe_source(generator)} is a quantisation-aware (QAT) "
                      f"generator: export it as int8 (or none), not {quantize!r}.")
  # A QAT generator carries its own ranges (ppcd_tf.qat): no calibration, and the
  # ops outside its fake quants stay float32 by construction.
  float_ops = keep_float_ops if quantize == "int8" else ()
  if quantize == "int8" and not quantized:
    converter.representative_dataset = _representative_dataset(
        spec, representative_batches, fixed_batch or _CALIBRATION_BATCH, seed)
  try:
    with warnings.catch_warnings():
      # The int8 calibrator inside TF still runs tf.lite.Interpreter; not our call.
      warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
      model = (_convert_keeping_float(converter, float_ops) if float_ops and not quantized
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
  if quantize == "int8" and quantized:
    report["quantization_details"].update(
        qat=True, description=(
            "int8 from a quantisation-aware (QAT) generator (ppcd_tf.qat): conv/dense "
            "weights int8 (per output channel for convs), their inputs and outputs "
            "int8 on the ranges the generator trained with (no calibration); the "
            "conditional-BN arithmetic, residual adds and attention core stay float32 "
            "between DEQUANTIZE and QUANTIZE."))
  elif quantize == "int8":
    report["quantization_details"]["representative_batches"] = (
        representative_batches if isinstance(representative_batches, int) else "custom")
    report["quantization_details"]["calibration_batch"] = fixed_batch or _CALIBRATION_BATCH
    report["quantization_details"]["keep_float_ops"] = list(float_ops)
  macs = _macs_per_image(gen)
  if macs is not None:
    report["macs_per_image"] = macs
  checkpoints.write_json_atomic(export_json_path(out_path), report)
  return report
