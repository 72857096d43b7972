r"""Samples a class-conditional grid from an exported (or Keras) generator.

  python -m tools.sample --model=exports/g_int8.tflite --classes=3,7 --n=8 \
      --seed=0 --truncation=0 --out=grid.png

One row per class, --n columns; column j uses the same z in every row. A .tflite
file runs through the LiteRT interpreter (`ai_edge_litert`; fixed-batch models in
chunks, dynamic-batch models resized), a SavedModel dir through its
serving_default signature, a slim model dir or training workdir through Keras.
z is N(0, 1) with every entry |z| > --truncation resampled (a truncated normal).
Errors a user can fix (unknown path, class id out of range, bad seed) print one
line and exit with status 2. Library: `ppcd_tf.export.sample_class_grid`.
"""

from absl import app
from absl import flags

import ppcd_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from ppcd_tf import export as export_lib
from ppcd_tf import images
from ppcd_tf.cli_errors import friendly_errors

_MODEL = flags.DEFINE_string(
    "model", None,
    "Generator to sample: a .tflite file (from tools/export.py), a SavedModel dir, a "
    "slim model dir or a training workdir.")
_CLASSES = flags.DEFINE_list(
    "classes", ["0"],
    "Comma-separated class ids, one grid row each, in [0, num_classes); num_classes "
    "comes from the model's export JSON / config (or its embedding size).")
_N = flags.DEFINE_integer("n", 8, "Samples (columns) per class, >= 1.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of z, >= 0; the same seed gives the same grid.")
_TRUNCATION = flags.DEFINE_float(
    "truncation", 0.0,
    "Truncation trick: z ~ N(0, 1) with every entry |z| > truncation resampled "
    "(a truncated normal). 0 = no truncation (the default); smaller t = less varied, "
    "more typical images.")
_OUT = flags.DEFINE_string("out", "grid.png", "Output PNG path.")
_NUM_THREADS = flags.DEFINE_integer(
    "num_threads", None, "LiteRT interpreter threads for .tflite models (default: LiteRT's).")


def _class_ids(values) -> list:
  ids = []
  for v in values:
    try:
      ids.append(int(str(v).strip()))
    except ValueError:
      raise export_lib.ExportError(
          f"--classes={','.join(values)}: {v!r} is not an integer class id; pass e.g. "
          "--classes=3,7.") from None
  return ids


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  with friendly_errors():
    if not _MODEL.value:
      raise export_lib.ExportError("--model is required: a .tflite file, a SavedModel "
                                   "dir, a slim model dir or a training workdir.")
    # Check the cheap arguments before loading the model.
    export_lib.check_sampling_args(_N.value, _SEED.value, _TRUNCATION.value)
    classes = _class_ids(_CLASSES.value)
    runner = export_lib.open_generator(_MODEL.value, num_threads=_NUM_THREADS.value)
    grid = export_lib.sample_class_grid(runner, classes, _N.value, seed=_SEED.value,
                                        truncation=_TRUNCATION.value)
    images.save_grid(grid, _OUT.value, rows=len(classes))
    print(f"wrote {_OUT.value}: {len(classes)} classes x {_N.value} samples from "
          f"{runner.kind} model {_MODEL.value}")


if __name__ == "__main__":
  app.run(main)
