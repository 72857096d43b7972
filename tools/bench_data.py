r"""Input-pipeline throughput: images/s that `ppcd_tf.data.build_dataset` delivers.

Measures the embedded mnist5k source and a synthetic image folder (PNG files written
to a temp dir) at several resolutions, with and without the in-memory cache. Each
case warms up first (by default one full epoch, so the cache is filled and tf.data
autotuning has settled), then times `--repeats` runs of `--num_batches` batches and
reports the median, min and max images/s. Only the input pipeline runs: no model.

Run from the repository root:
  .venv/bin/python -m tools.bench_data
  .venv/bin/python -m tools.bench_data --resolutions=32 --cache_modes=nocache --repeats=5

Writes JSON to --out (machine info, settings, one record per case); progress goes
to stderr. Numbers depend on other load on the machine: the JSON records the load
average before and after.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from typing import Dict, List

import ppcd_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

from absl import app
from absl import flags
import numpy as np

from ppcd_tf import files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_string("out", os.path.join("docs", "bench", "bench_data.json"),
                    "JSON result file (relative paths are under the repository root).")
flags.DEFINE_list("datasets", ["mnist5k", "folder"],
                  "Sources to measure: 'mnist5k' and/or 'folder' (the synthetic folder "
                  "written by this tool, see --folder_*).")
flags.DEFINE_list("resolutions", ["32", "128"], "Output resolutions (pixels) to measure.")
flags.DEFINE_list("cache_modes", ["cache", "nocache"],
                  "'cache': decoded uint8 images are cached in memory after the first "
                  "epoch (DataConfig.cache, the default); 'nocache': every epoch decodes "
                  "and resizes again.")
flags.DEFINE_integer("batch_size", 64, "Batch size.", lower_bound=1)
flags.DEFINE_integer("num_batches", 100, "Batches timed per repeat.", lower_bound=1)
flags.DEFINE_integer("repeats", 5, "Timed repeats per case (median/min/max over them).",
                     lower_bound=3)
flags.DEFINE_integer("warmup_batches", -1,
                     "Batches consumed before timing; -1 = one full epoch plus 5 batches, "
                     "so the cache is filled and autotuning has settled.", lower_bound=-1)
flags.DEFINE_integer("folder_images", 2000, "Images in the synthetic folder dataset.",
                     lower_bound=10)
flags.DEFINE_integer("folder_classes", 10, "Class sub-folders in the synthetic folder.",
                     lower_bound=1)
flags.DEFINE_integer("folder_image_size", 160,
                     "Width of the synthetic PNGs; height is 3/4 of it, so the pipeline "
                     "centre-crops and resizes as for real photos.", lower_bound=8)
flags.DEFINE_string("folder_dir", None,
                    "Where to write the synthetic folder (kept afterwards). Default: a "
                    "temp dir that is deleted at the end. An existing non-empty dir is "
                    "reused as is.")
flags.DEFINE_integer("seed", 0, "Seed of the pipeline shuffle and the synthetic images.")


def log(message: str) -> None:
  print(f"[bench_data {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_synthetic_folder(root: str, num_images: int, num_classes: int, width: int,
                           seed: int) -> None:
  """PNG photos-alike: smooth colour fields plus mild noise, compressing like photos."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  height = max(8, width * 3 // 4)
  for i in range(num_images):
    label = i % num_classes
    class_dir = os.path.join(root, f"class_{label:03d}")
    os.makedirs(class_dir, exist_ok=True)
    coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC),
                        np.int16)
    noisy = np.clip(smooth + rng.integers(-8, 9, size=smooth.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(os.path.join(class_dir, f"img_{i:05d}.png"))


def measure(data_cfg, model_cfg, batch_size: int, num_batches: int, repeats: int,
            warmup_batches: int, seed: int) -> Dict:
  """Times one case; returns its JSON record."""
  from ppcd_tf import data  # pylint: disable=g-import-not-at-top
  info = data.dataset_info(data_cfg, model_cfg)
  if warmup_batches < 0:
    warmup_batches = -(-info.num_examples // batch_size) + 5
  ds = data.build_dataset(data_cfg, model_cfg, batch_size, seed=seed)
  start = time.perf_counter()
  iterator = iter(ds)
  next(iterator)
  first_batch_s = time.perf_counter() - start
  for _ in range(warmup_batches - 1):
    next(iterator)
  warmup_s = time.perf_counter() - start
  rates: List[float] = []
  for r in range(repeats):
    start = time.perf_counter()
    for _ in range(num_batches):
      images, _ = next(iterator)
    seconds = time.perf_counter() - start
    assert images.shape[0] == batch_size
    rates.append(num_batches * batch_size / seconds)
    log(f"  repeat {r + 1}/{repeats}: {rates[-1]:,.0f} images/s")
  return dict(
      num_examples=info.num_examples, image_shape=list(info.image_shape),
      warmup_batches=warmup_batches, first_batch_s=round(first_batch_s, 3),
      warmup_s=round(warmup_s, 3),
      images_per_s=dict(median=round(statistics.median(rates), 1),
                        min=round(min(rates), 1), max=round(max(rates), 1)),
      repeats=[round(r, 1) for r in rates])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for name in FLAGS.datasets:
    if name not in ("mnist5k", "folder"):
      raise app.UsageError(f"--datasets: {name!r} is not one of mnist5k, folder")
  for mode in FLAGS.cache_modes:
    if mode not in ("cache", "nocache"):
      raise app.UsageError(f"--cache_modes: {mode!r} is not one of cache, nocache")
  resolutions = [int(r) for r in FLAGS.resolutions]

  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from ppcd_tf import config  # pylint: disable=g-import-not-at-top

  load_start = os.getloadavg()
  folder_root, cleanup = None, False
  if "folder" in FLAGS.datasets:
    folder_root = FLAGS.folder_dir
    if folder_root is None:
      folder_root, cleanup = tempfile.mkdtemp(prefix="bench_data_folder_"), True
    if os.path.isdir(folder_root) and os.listdir(folder_root):
      log(f"reusing image folder {folder_root}")
    else:
      log(f"writing {FLAGS.folder_images} PNGs ({FLAGS.folder_image_size}x"
          f"{FLAGS.folder_image_size * 3 // 4}) in {FLAGS.folder_classes} classes to "
          f"{folder_root}")
      t = time.perf_counter()
      write_synthetic_folder(folder_root, FLAGS.folder_images, FLAGS.folder_classes,
                             FLAGS.folder_image_size, FLAGS.seed)
      log(f"  done in {time.perf_counter() - t:.1f} s")

  cases = []
  try:
    for name in FLAGS.datasets:
      for resolution in resolutions:
        for mode in FLAGS.cache_modes:
          if name == "mnist5k":
            data_cfg = config.DataConfig(dataset="mnist5k", cache=mode == "cache")
            num_classes = 10
          else:
            data_cfg = config.DataConfig(dataset=f"folder:{folder_root}",
                                         cache=mode == "cache")
            num_classes = FLAGS.folder_classes
          model_cfg = config.ModelConfig(resolution=resolution, num_classes=num_classes,
                                         image_channels=3)
          log(f"case {name} {resolution}px {mode}, batch {FLAGS.batch_size}")
          record = measure(data_cfg, model_cfg, FLAGS.batch_size, FLAGS.num_batches,
                           FLAGS.repeats, FLAGS.warmup_batches, FLAGS.seed)
          record = dict(dataset=name, resolution=resolution, cache=mode == "cache",
                        batch_size=FLAGS.batch_size, **record)
          log(f"  median {record['images_per_s']['median']:,.0f} images/s "
              f"(min {record['images_per_s']['min']:,.0f}, "
              f"max {record['images_per_s']['max']:,.0f})")
          cases.append(record)
  finally:
    if cleanup and folder_root:
      shutil.rmtree(folder_root, ignore_errors=True)

  result = dict(
      benchmark="ppcd_tf.data input pipeline throughput (images/s delivered, no model)",
      command=" ".join([".venv/bin/python -m tools.bench_data"] + sys.argv[1:]),
      date_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      machine=dict(
          cpu_count=os.cpu_count(),
          usable_cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
          else os.cpu_count(),
          platform=platform.platform(), python=platform.python_version(),
          tensorflow=tf.__version__, numpy=np.__version__,
          gpus=len(tf.config.list_physical_devices("GPU")),
          load_average_start=[round(x, 2) for x in load_start],
          load_average_end=[round(x, 2) for x in os.getloadavg()]),
      settings=dict(batch_size=FLAGS.batch_size, num_batches=FLAGS.num_batches,
                    repeats=FLAGS.repeats, warmup_batches=FLAGS.warmup_batches,
                    folder_images=FLAGS.folder_images, folder_classes=FLAGS.folder_classes,
                    folder_image_size=[FLAGS.folder_image_size,
                                       FLAGS.folder_image_size * 3 // 4],
                    seed=FLAGS.seed),
      cases=cases)
  out = FLAGS.out if os.path.isabs(FLAGS.out) else os.path.join(REPO, FLAGS.out)
  files.write_json_atomic(out, result)
  log(f"wrote {out}")


if __name__ == "__main__":
  from ppcd_tf import cli_errors
  cli_errors.run(main)
