"""Seeded fuzzing of the input-facing entry points (hypothesis is not installed).

Every generated input must either work or raise the error type the entry point
documents, which `friendly_errors` turns into one `error:` line:

  data sources (`data.dataset_info` / `build_dataset` / iteration under
  `reraise_as_data_error`)            -> DataError (or ConfigError from DataConfig)
  tools.sample argument checks        -> ExportError
  flags -> `config_from_flags`        -> absl's flags.Error while parsing (printed by
                                         absl as "FATAL Flags parsing error"), then
                                         ConfigError
  ppcd_tf.evaluate argument checks    -> ConfigError

Case counts are fixed and the seeds are constant, so the test is reproducible
and takes a few seconds on 2 cores; a failure message includes the input.
"""
import io
import math
import os
import random
import shutil
import tempfile
import time

import numpy as np
from absl import flags
from absl.testing import absltest
from PIL import Image

from ppcd_tf import config as config_lib
from ppcd_tf import data
from ppcd_tf import evaluate
from ppcd_tf import export
from ppcd_tf import flags as ppcd_flags
from tools import sample

_ALPHABET = "abcXYZ019_-./: \\é数\t"  # no NUL: see DatasetSpecFuzzTest


def _random_text(rng, max_len=24):
  return "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(max_len + 1)))


class FuzzCase(absltest.TestCase):

  def check(self, fn, allowed, what):
    """fn() must return or raise one of `allowed`; returns the result or None."""
    try:
      return fn()
    except allowed:
      return None
    except Exception as e:  # noqa: BLE001
      self.fail(f"{what}: {type(e).__module__}.{type(e).__name__}: {e}")


class DatasetSpecFuzzTest(FuzzCase):

  def test_random_dataset_strings(self):
    rng = random.Random(1)
    tmp = tempfile.mkdtemp(prefix="ppcd_fuzz_spec_")
    open(os.path.join(tmp, "a_file.png"), "wb").close()
    os.makedirs(os.path.join(tmp, "empty_dir"))
    model = config_lib.tiny_config().model
    # tfds community namespaces ("huggingface:...") need optional packages; they are
    # not generated here (see the report on ppcd_tf.data.TfdsSource).
    prefixes = ["", "mnist5k", "MNIST5K", "folder", "tfds", "nope", "folder:" + tmp,
                "folder:" + os.path.join(tmp, "a_file.png"),
                "folder:" + os.path.join(tmp, "empty_dir"), "folder:~/nonexistent_ppcd"]
    specs = ["mnist5k", "mnist5k:", " mnist5k ", ":", "::", "folder:", "tfds:", "tfds: ",
             "tfds:not_a_dataset_ppcd", "tfds:cifar10/nope", "tfds:../../etc"]
    # No NUL bytes: a command line cannot carry them, and tf.io.gfile reads
    # "folder:\x00" as the current directory (see the report on ppcd_tf.data).
    for _ in range(80):
      prefix = rng.choice(prefixes)
      sep = rng.choice(["", ":", ":/", "://"])
      specs.append(prefix + sep + _random_text(rng))
    for spec in specs:
      data_cfg = config_lib.DataConfig(dataset=spec, data_dir=os.path.join(tmp, "tfds"))
      split = rng.choice(["train", "test", "", "validation", "train[:10%]"])

      def run():
        data_cfg.validate()
        info = data.dataset_info(data_cfg, model, split=split)
        data.check_compatible(info, model)
        return info
      self.check(run, (data.DataError, config_lib.ConfigError), f"dataset={spec!r}")
    shutil.rmtree(tmp, ignore_errors=True)


def _png_bytes(rng, mode):
  size = (rng.randint(1, 40), rng.randint(1, 40))
  channels = {"L": 1, "RGB": 3, "RGBA": 4}.get(mode, 1)
  arr = np.random.default_rng(rng.randrange(2**31)).integers(
      0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
  image = Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)
  if mode == "P":
    image = image.convert("P")
  buf = io.BytesIO()
  image.save(buf, format="PNG")
  return buf.getvalue()


def _jpeg_bytes(rng):
  arr = np.random.default_rng(rng.randrange(2**31)).integers(
      0, 256, size=(rng.randint(1, 30), rng.randint(1, 30), 3), dtype=np.uint8)
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, format="JPEG")
  return buf.getvalue()


def _random_file(rng, bad_share=0.3):
  """(file name, bytes): good images and everything that merely looks like one."""
  if rng.random() >= bad_share:
    kind = rng.choice(["png", "png", "jpeg", "rgba", "palette", "upper", "jpeg_as_png"])
  else:
    kind = rng.choice(["empty", "garbage", "truncated", "text"])
  stem = _random_text(rng, 8).replace("/", "_").replace("\\", "_").strip() or "x"
  if kind == "png":
    return f"{stem}.png", _png_bytes(rng, rng.choice(["L", "RGB"]))
  if kind == "rgba":
    return f"{stem}.png", _png_bytes(rng, "RGBA")
  if kind == "palette":
    return f"{stem}.png", _png_bytes(rng, "P")
  if kind == "jpeg":
    return f"{stem}.jpg", _jpeg_bytes(rng)
  if kind == "jpeg_as_png":
    return f"{stem}.png", _jpeg_bytes(rng)
  if kind == "upper":
    return f"{stem}.PNG", _png_bytes(rng, "RGB")
  if kind == "empty":
    return f"{stem}.png", b""
  if kind == "garbage":
    return f"{stem}.{rng.choice(['png', 'jpg', 'jpeg'])}", os.urandom(rng.randint(1, 300))
  if kind == "truncated":
    good = _png_bytes(rng, "RGB")
    return f"{stem}.png", good[:rng.randint(1, len(good) - 1)]
  return f"{stem}.txt", b"not an image"


class FolderFuzzTest(FuzzCase):

  def test_random_folders(self):
    rng = random.Random(2)
    root = tempfile.mkdtemp(prefix="ppcd_fuzz_folder_")
    start = time.time()
    outcomes = {"ok": 0, "error": 0}
    for case in range(24):
      folder = os.path.join(root, f"case{case}")
      os.makedirs(folder)
      num_classes = rng.choice([0, 1, 2, 2, 3, 3])
      # Half the folders hold only decodable images (they must load), half also
      # hold files that only look like images (they must fail naming the file).
      bad_share = rng.choice([0.0, 0.1])
      for c in range(num_classes):
        class_dir = os.path.join(folder, f"class_{c}")
        if rng.random() < 0.05:  # a class folder that is really a file
          open(class_dir, "wb").close()
          continue
        os.makedirs(class_dir)
        for _ in range(rng.randint(0, 5)):
          sub = class_dir
          if rng.random() < 0.2:  # nested, possibly hidden, sub-folders
            sub = os.path.join(class_dir, rng.choice(["nested", ".hidden", "a/b"]))
            os.makedirs(sub, exist_ok=True)
          name, payload = _random_file(rng, bad_share)
          with open(os.path.join(sub, name), "wb") as f:
            f.write(payload)
        if rng.random() < 0.1:
          os.makedirs(os.path.join(class_dir, "dir_named.png"))
      if rng.random() < 0.2:
        name, payload = _random_file(rng)  # loose file at the top level
        with open(os.path.join(folder, name), "wb") as f:
          f.write(payload)
      model = config_lib.tiny_config(model=dict(
          num_classes=max(1, num_classes) if rng.random() < 0.9 else 10,
          image_channels=rng.choice([1, 3]))).model
      data_cfg = config_lib.DataConfig(dataset="folder:" + folder, cache=rng.random() < 0.5,
                                       eval_fraction=rng.choice([0.0, 0.1, 0.5]))

      def run():
        info = data.dataset_info(data_cfg, model)
        data.check_compatible(info, model)
        ds = data.build_dataset(data_cfg, model, 2, shuffle=rng.random() < 0.5,
                                repeat=False, drop_remainder=False, seed=case)
        n = 0
        with data.reraise_as_data_error():
          for images, labels in ds:
            assert images.shape[1:] == (32, 32, model.image_channels), images.shape
            assert float(np.max(np.abs(images.numpy()))) <= 1.0
            assert int(np.max(labels.numpy())) < model.num_classes
            n += int(images.shape[0])
        assert n == info.num_examples, (n, info.num_examples)
        return n
      result = self.check(run, (data.DataError,), f"folder case {case}: "
                          f"{sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)}")
      outcomes["ok" if result is not None else "error"] += 1
    shutil.rmtree(root, ignore_errors=True)
    # Both outcomes are exercised, within the time budget.
    self.assertGreaterEqual(outcomes["ok"], 5, outcomes)
    self.assertGreaterEqual(outcomes["error"], 5, outcomes)
    self.assertLess(time.time() - start, 60)


class SamplingFuzzTest(FuzzCase):

  def test_random_sampling_arguments(self):
    rng = random.Random(3)
    tmp = tempfile.mkdtemp(prefix="ppcd_fuzz_sample_")
    os.makedirs(os.path.join(tmp, "a_dir"))
    open(os.path.join(tmp, "a_file"), "w").close()
    outs = ["grid.png", os.path.join(tmp, "g.png"), os.path.join(tmp, "a_dir"),
            os.path.join(tmp, "a_file", "g.png"), os.path.join(tmp, "new", "deep", "g.png"),
            "", "x"]
    numbers = [0, 1, 2, 7, -1, -(2**63), 2**31, 2**64, 10**6]
    floats = [0.0, 0.5, 1e-9, 4.0, 1e308, -0.0, -1.0, math.inf, -math.inf, math.nan]
    ok = 0
    good_ids = ["0", "3", " 7 ", "+4", "٣", "999"]
    bad_ids = ["-1", "", "1e3", "0x1", "3.0", "x"]

    def pick(good, bad):  # mostly valid, so that both outcomes are common
      return rng.choice(good if rng.random() < 0.85 else bad)
    for _ in range(400):
      classes = [pick(good_ids, bad_ids + [_random_text(rng, 5)])
                 for _ in range(rng.randrange(6))]
      if rng.random() < 0.3:
        classes = ",".join(classes)
      n, seed = pick(numbers[1:4], numbers), pick(numbers[:4], numbers)
      truncation, out = pick(floats[:6], floats), pick(outs[:2] + outs[4:5], outs)
      got = self.check(lambda: sample.check_request(classes, n, seed, truncation, out),
                       (export.ExportError,),
                       f"check_request({classes!r}, {n}, {seed}, {truncation}, {out!r})")
      if got is not None:
        ok += 1
        self.assertTrue(all(isinstance(c, int) and c >= 0 for c in got), got)
        self.assertLessEqual(len(got) * n, sample.MAX_GRID_IMAGES)
        z = export.truncated_normal((min(n, 4), 3), truncation, np.random.default_rng(seed))
        self.assertTrue(np.isfinite(z).all())
        if truncation > 0:
          self.assertLessEqual(float(np.max(np.abs(z))), truncation)
    self.assertGreater(ok, 40)
    shutil.rmtree(tmp, ignore_errors=True)

  def test_class_ids_against_a_model_spec(self):
    rng = random.Random(4)
    spec = export.GeneratorSpec(z_dim=8, num_classes=10, resolution=32, image_channels=3)
    for _ in range(200):
      ids = [rng.randrange(-5, 15) for _ in range(rng.randrange(1, 4))]
      try:
        spec.check_class_ids(ids, "fuzz model")
        raised = False
      except export.ExportError as e:
        raised = True
        self.assertIn("outside the valid range [0, 10)", str(e))
      self.assertEqual(raised, not all(0 <= i < 10 for i in ids), ids)


class FlagFuzzTest(FuzzCase):

  def test_random_flag_values(self):
    rng = random.Random(5)
    ints = ["0", "1", "-1", "3", "4", "7", "16", "32", "100", "2147483648", "99999999999",
            "1.5", "x", ""]
    floats = ["0", "0.5", "1", "1.5", "-0.1", "1e-30", "1e30", "nan", "inf", "-inf", "x", ""]
    lists = ["", "4", "4,4,4,4", "1,2,3", "0,0,0,0", "4,a", "16", "1,1,1,1,1,1", " , "]
    choices = {
        "batch_size": ints, "num_steps": ints, "num_classes": ints, "resolution": ints,
        "z_dim": ints, "shared_dim": ints, "g_ch": ints, "d_ch": ints, "seed": ints,
        "save_every": ints, "keep_checkpoints": ints, "prune_begin_step": ints,
        "prune_end_step": ints, "prune_frequency": ints, "budget_params": ints,
        "eval_every": ints, "image_channels": ints, "d_steps": ints,
        "target_fraction": floats, "g_lr": floats, "d_lr": floats, "beta1": floats,
        "beta2": floats, "ema_decay": floats, "truncation": floats, "lambda_att": floats,
        "prune_power": floats, "sparsity_weight": floats, "eval_fraction": floats,
        "prune_min_channel_fraction": floats,
        "g_channel_mults": lists, "d_channel_mults": lists, "d_downsample": lists + ["1,x"],
        "g_attention_res": lists, "d_attention_res": lists,
        "mode": ["teacher", "ppcd", "x"], "strategy": ["one_device", "tpu", "y"],
        "prune_schedule": ["polynomial", "constant", "z"],
        "teacher_dir": ["", "/nonexistent"], "dataset": ["mnist5k", "", "folder:x"],
        "workdir": ["", "runs/x"], "hierarchical_z": ["true", "false"],
    }
    parsed = 0
    for _ in range(300):
      argv = ["prog"] + [f"--{name}={rng.choice(values)}" for name, values in
                         rng.sample(sorted(choices.items()), rng.randint(1, 6))]
      fv = ppcd_flags.define_flags(flags.FlagValues())
      try:
        fv(argv)
      except flags.Error:
        continue  # absl: "FATAL Flags parsing error: ..." and exit 1 in an entry point
      parsed += 1
      cfg = self.check(lambda: ppcd_flags.config_from_flags(fv), (config_lib.ConfigError,),
                       " ".join(argv[1:]))
      if cfg is not None:
        self.assertEqual(config_lib.Config.from_dict(cfg.to_dict()), cfg)
    self.assertGreater(parsed, 100)

  def test_random_evaluate_arguments(self):
    rng = random.Random(6)
    workdir = tempfile.mkdtemp(prefix="ppcd_fuzz_eval_")
    for _ in range(300):
      args = dict(workdir=rng.choice([workdir, workdir + "_missing", "", None]),
                  model=rng.choice(["ema", "slim", "teacher", "x", ""]),
                  extractor=rng.choice(["classifier:x", "inception:/x.h5", "x", "", None]),
                  num_samples=rng.choice([0, 19, 20, 5000, -1]),
                  seed=rng.choice([0, -1, 2**31, 5]),
                  truncation=rng.choice([0.0, 0.01, 0.5, 4.0, 4.1, math.nan, -1.0, math.inf]),
                  out_dir=rng.choice([None, workdir, os.path.join(workdir, "x")]))
      self.check(lambda: evaluate.check_args(**args), (config_lib.ConfigError,), str(args))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
  absltest.main()
