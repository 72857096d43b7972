"""The SavedModel writer (`export_saved_model`), verified against the Keras model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Dict

import numpy as np
import tensorflow as tf

from ppcd_tf import checkpoints
from ppcd_tf.export.common import (
    EXPORT_JSON, ExportError, IMAGE_NAME, LABEL_NAME, SIGNATURE_KEY, Z_NAME,
    _DEFAULT_CHECK_BATCH, _check_batch, _check_float_match, _check_no_training_state,
    _describe_source, _diff, _now, _signature_json, _versions)
from ppcd_tf.export.loading import SavedModelGenerator, _is_saved_model
from ppcd_tf.export.serving import _macs_per_image, _param_count, _serving_module


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
