r"""Exports a trained generator as a SavedModel or a TFLite file.

  python -m tools.export --model=runs/demo/ppcd --format=tflite --quantize=int8 \
      --out=exports/g_int8.tflite
  python -m tools.export --model=runs/demo/ppcd --format=saved_model --out=exports/g_sm

The model is a slim model dir, a training workdir (its EMA generator; a masked
PP-Res generator is slimmed first, so masks never reach the file) or a SavedModel
dir. Every export is checked against the Keras model on a fixed batch and
described in a JSON beside it (`<out>.json` for .tflite, `<out>/export.json` for
a SavedModel). Library: `ppcd_tf.export`.

The output is written under a temporary name and renamed into place only after it
has been checked, so an interrupted or failed export leaves an earlier one at
--out intact. Errors a user can fix (bad flags, a missing, truncated or corrupt
model) print one `error:` line naming the path and exit with status 2.
"""

import os

from absl import app
from absl import flags

import ppcd_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf
from ppcd_tf import export as export_lib
from ppcd_tf.cli_errors import friendly_errors

_MODEL = flags.DEFINE_string(
    "model", None,
    "What to export: a slim model dir (ppcd_tf.slim.save_slim_generator), a training "
    "workdir (config.json + checkpoints/; its EMA generator is exported, slimmed if "
    "it is a masked PP-Res generator) or a SavedModel dir from an earlier export.")
_FORMAT = flags.DEFINE_enum(
    "format", "tflite", list(export_lib.FORMATS),
    "'saved_model': a SavedModel dir with signature serving_default(z float32[B, "
    "z_dim], class_id int32[B]) -> {image: float32[B, R, R, C] in [-1, 1]}, dynamic "
    "batch. 'tflite': one .tflite file with the same signature for the LiteRT "
    "interpreter.")
_QUANTIZE = flags.DEFINE_enum(
    "quantize", "none", list(export_lib.QUANTIZATIONS),
    "TFLite only. 'none': float32. 'float16': float16 weights, float32 compute. "
    "'dynamic': int8 weights (dynamic-range), float32 activations. 'int8': full-integer "
    "post-training quantisation calibrated on --representative_batches (z, class) "
    "batches; z in and image out stay float32, class_id stays int32.")
_FIXED_BATCH = flags.DEFINE_integer(
    "fixed_batch", None,
    "TFLite only: bake this batch size into the model (for runtimes that need static "
    "shapes). Default: dynamic batch, resized by the caller.")
_REPRESENTATIVE_BATCHES = flags.DEFINE_integer(
    "representative_batches", 16,
    "--quantize=int8 only: calibration batches of N(0,1) z with class ids cycling "
    "through all classes (batch = --fixed_batch or 8).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the verification batch and calibration z.")
_OUT = flags.DEFINE_string(
    "out", None,
    "Output path: a .tflite file for --format=tflite, a directory for "
    "--format=saved_model (an earlier export at that path is replaced).")


def _validate() -> None:
  if not _MODEL.value:
    raise export_lib.ExportError("--model is required: a slim model dir, a training "
                                 "workdir or a SavedModel dir.")
  if not _OUT.value:
    raise export_lib.ExportError(
        "--out is required: e.g. --out=exports/g.tflite (tflite) or --out=exports/g_sm "
        "(saved_model).")
  if _FORMAT.value == "saved_model":
    if _QUANTIZE.value != "none":
      raise export_lib.ExportError(
          f"--quantize={_QUANTIZE.value} applies to --format=tflite only; a SavedModel "
          "is float32. Drop --quantize or use --format=tflite.")
    if _FIXED_BATCH.value is not None:
      raise export_lib.ExportError("--fixed_batch applies to --format=tflite only; the "
                                   "SavedModel signature has a dynamic batch.")
  elif not _OUT.value.endswith(".tflite"):
    raise export_lib.ExportError(f"--out={_OUT.value} should end in .tflite for "
                                 "--format=tflite.")
  if _FIXED_BATCH.value is not None and _FIXED_BATCH.value < 1:
    raise export_lib.ExportError(f"--fixed_batch={_FIXED_BATCH.value} must be >= 1.")
  if _QUANTIZE.value == "int8" and _REPRESENTATIVE_BATCHES.value < 1:
    raise export_lib.ExportError(
        f"--representative_batches={_REPRESENTATIVE_BATCHES.value} must be >= 1: int8 "
        "quantisation is calibrated on them.")
  if _SEED.value < 0:
    raise export_lib.ExportError(f"--seed={_SEED.value} must be >= 0.")
  out = _OUT.value
  if _FORMAT.value == "tflite" and os.path.isdir(out):
    raise export_lib.ExportError(f"--out={out} is a directory; give a file path like "
                                 f"{os.path.join(out, 'generator.tflite')}.")
  if _FORMAT.value == "saved_model" and os.path.isfile(out):
    raise export_lib.ExportError(f"--out={out} is a file; --format=saved_model writes a "
                                 "directory.")
  if os.path.realpath(out) == os.path.realpath(_MODEL.value):
    raise export_lib.ExportError(f"--out={out} is the --model being exported; pick "
                                 "another output path.")


def _load(path: str):
  """`export_lib.load_generator`, with damaged files reported as ExportError."""
  try:
    return export_lib.load_generator(path)
  except (IndexError, tf.errors.OpError) as e:
    # Damaged files that ppcd_tf.export does not catch (yet): TensorFlow reports a
    # truncated variables/weights data file as IndexError("Read less bytes than
    # requested") and a missing one of a slim dir as NotFoundError.
    text = str(e).strip()
    raise export_lib.ExportError(
        f"{path} cannot be loaded: a file in it is missing, truncated or corrupt "
        f"({text.splitlines()[0][:200] if text else type(e).__name__}); re-export it "
        "or restore it from a backup.") from e


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  with friendly_errors():
    _validate()
    loaded = _load(_MODEL.value)
    if _FORMAT.value == "saved_model":
      report = export_lib.export_saved_model(loaded.generator, _OUT.value, seed=_SEED.value)
    else:
      report = export_lib.export_tflite(
          loaded.generator, _OUT.value, quantize=_QUANTIZE.value,
          fixed_batch=_FIXED_BATCH.value,
          representative_batches=_REPRESENTATIVE_BATCHES.value, seed=_SEED.value)
    print(f"exported {loaded.describe()} -> {report['path']} ({report['format']}, "
          f"{report['quantization']}, {report['file_size_bytes']:,} bytes, "
          f"{report['params']:,} params); max |diff| to Keras "
          f"{report['max_abs_diff']:.3g}, mean {report['mean_abs_diff']:.3g}; "
          f"details in {export_lib.export_json_path(_OUT.value)}")


if __name__ == "__main__":
  from ppcd_tf import cli_errors
  cli_errors.run(main)
