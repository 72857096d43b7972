r"""Samples a class-conditional grid from an exported (or Keras) generator.

  python -m tools.sample --model=exports/g_int8.tflite --classes=3,7 --n=8 \
      --seed=0 --truncation=0 --out=grid.png

One row per class, --n columns; column j uses the same z in every row. A .tflite
file runs through the LiteRT interpreter (`ai_edge_litert`; fixed-batch models in
chunks, dynamic-batch models resized), a SavedModel dir through its
serving_default signature, a slim model dir or training workdir through Keras.
z is N(0, 1) with every entry |z| > --truncation resampled (a truncated normal).

Errors a user can fix (unknown or corrupt model path, class id out of range, bad
seed, n or truncation, an output path that is a directory) print one `error:`
line and exit with status 2; the cheap arguments are checked before the model is
loaded (`check_request`). Library: `ppcd_tf.export.sample_class_grid`.

The flags are defined only when this file runs as a program, so tests can import
`check_request` / `parse_class_ids` without touching absl's global flags.
"""

import os
from typing import List, Sequence, Union

from absl import app
from absl import flags

import ppcd_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf
from ppcd_tf import export as export_lib
from ppcd_tf import images
from ppcd_tf.cli_errors import friendly_errors

__all__ = ["parse_class_ids", "check_request", "open_model", "MAX_GRID_IMAGES"]

# A larger grid is a typo (e.g. --n=10000), not a request: 4,096 images of 128 px
# are already a 200 MB PNG.
MAX_GRID_IMAGES = 4096

if __name__ == "__main__":
  flags.DEFINE_string(
      "model", None,
      "Generator to sample: a .tflite file (from tools/export.py), a SavedModel dir, a "
      "slim model dir or a training workdir.")
  flags.DEFINE_list(
      "classes", ["0"],
      "Comma-separated class ids, one grid row each, in [0, num_classes); num_classes "
      "comes from the model's export JSON / config (or its embedding size).")
  flags.DEFINE_integer("n", 8, "Samples (columns) per class, >= 1.")
  flags.DEFINE_integer("seed", 0, "Seed of z, >= 0; the same seed gives the same grid.")
  flags.DEFINE_float(
      "truncation", 0.0,
      "Truncation trick: z ~ N(0, 1) with every entry |z| > truncation resampled "
      "(a truncated normal). 0 = no truncation (the default); smaller t = less varied, "
      "more typical images.")
  flags.DEFINE_string("out", "grid.png", "Output PNG path.")
  flags.DEFINE_integer(
      "num_threads", None,
      "LiteRT interpreter threads for .tflite models (default: LiteRT's).")


def parse_class_ids(values: Union[str, Sequence[str]]) -> List[int]:
  """'3,7' or ['3', '7'] -> [3, 7]; blank entries are ignored.

  Raises:
    ExportError: an entry is not an integer, is negative, or no id is given.
  """
  if isinstance(values, str):
    values = values.split(",")
  shown = ",".join(str(v) for v in values)
  ids = []
  for v in values:
    text = str(v).strip()
    if not text:
      continue
    try:
      ids.append(int(text))
    except ValueError:
      raise export_lib.ExportError(
          f"--classes={shown}: {text!r} is not an integer class id; pass e.g. "
          "--classes=3,7.") from None
    if ids[-1] < 0:
      raise export_lib.ExportError(
          f"--classes={shown}: class id {ids[-1]} is negative; ids start at 0.")
  if not ids:
    raise export_lib.ExportError("no class ids given; pass e.g. --classes=0,1,2.")
  return ids


def check_request(classes: Union[str, Sequence[str]], n: int, seed: int,
                  truncation: float, out: str) -> List[int]:
  """Checks everything that does not need the model; returns the class ids.

  Raises:
    ExportError: naming the first bad argument (class ids, n, seed, truncation,
      the grid size or the output path).
  """
  ids = parse_class_ids(classes)
  export_lib.check_sampling_args(n, seed, truncation)
  if len(ids) * int(n) > MAX_GRID_IMAGES:
    raise export_lib.ExportError(
        f"{len(ids)} classes x --n={n} = {len(ids) * int(n)} images is more than one "
        f"grid holds ({MAX_GRID_IMAGES}); pass fewer classes or a smaller --n.")
  if not out:
    raise export_lib.ExportError("--out is empty; pass a PNG path, e.g. --out=grid.png.")
  if os.path.isdir(out):
    raise export_lib.ExportError(f"--out={out} is a directory; pass a file path such "
                                 f"as {os.path.join(out, 'grid.png')}.")
  parent = os.path.dirname(os.path.abspath(out))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise export_lib.ExportError(f"--out={out}: {parent} is a file, not a directory.")
  return ids


def open_model(path: str, num_threads=None) -> export_lib.GeneratorRunner:
  """`export_lib.open_generator`, with damaged files reported as ExportError."""
  if not path:
    raise export_lib.ExportError("--model is required: a .tflite file, a SavedModel "
                                 "dir, a slim model dir or a training workdir.")
  try:
    return export_lib.open_generator(path, num_threads=num_threads)
  except (IndexError, tf.errors.OpError) as e:
    # Damaged files that ppcd_tf.export does not catch (yet): TensorFlow reports a
    # truncated variables/weights data file as IndexError("Read less bytes than
    # requested") and a missing one of a slim dir as NotFoundError.
    raise export_lib.ExportError(
        f"{path} cannot be loaded: a file in it is missing, truncated or corrupt "
        f"({_first_line(e)}); re-export it (tools/export.py) or restore it from a "
        "backup.") from e


def _first_line(e: BaseException) -> str:
  text = str(e).strip()
  return text.splitlines()[0][:200] if text else type(e).__name__


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  with friendly_errors():
    # Check the cheap arguments before loading the model.
    classes = check_request(f.classes, f.n, f.seed, f.truncation, f.out)
    runner = open_model(f.model, num_threads=f.num_threads)
    grid = export_lib.sample_class_grid(runner, classes, f.n, seed=f.seed,
                                        truncation=f.truncation)
    try:
      images.save_grid(grid, f.out, rows=len(classes))
    except OSError as e:
      raise export_lib.ExportError(f"cannot write {f.out}: {e.strerror or e}.") from e
    print(f"wrote {f.out}: {len(classes)} classes x {f.n} samples from "
          f"{runner.kind} model {f.model}")


if __name__ == "__main__":
  from ppcd_tf import cli_errors
  cli_errors.run(main)
