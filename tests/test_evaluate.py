"""python -m ppcd_tf.evaluate on tiny trained workdirs."""
import json
import os
import subprocess
import sys

from absl.testing import absltest
from PIL import Image

from ppcd_tf import evaluate
from tests import tiny_runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class EvaluateTest(absltest.TestCase):

  def test_evaluate_student_and_teacher(self):
    wd = tiny_runs.student()
    extractor = "classifier:" + tiny_runs.classifier()
    stats = os.path.join(tiny_runs.root(), "stats")
    for model in ("ema", "teacher"):
      r = evaluate.evaluate_workdir(wd, model, extractor, num_samples=40, seed=3,
                                    stats_dir=stats)
      path = os.path.join(wd, "eval", model, "metrics.json")
      saved = json.load(open(path))
      for k in ("fid", "is_mean", "kid_mean", "intra_fid", "class_accuracy", "params",
                "macs", "num_samples", "seed", "truncation", "extractor"):
        self.assertIn(k, saved)
      self.assertEqual(saved["num_samples"], 40)
      self.assertEqual(saved["seed"], 3)
      self.assertIsNone(saved["truncation"])
      self.assertGreater(saved["fid"], 0)
      self.assertAlmostEqual(saved["fid"], r["fid"])
      grid = Image.open(os.path.join(wd, "eval", model, "classes.png"))
      self.assertEqual(grid.size, (8 * 34 + 2, 10 * 34 + 2))  # 8 per row, 10 class rows
    student = json.load(open(os.path.join(wd, "eval", "ema", "metrics.json")))
    teacher = json.load(open(os.path.join(wd, "eval", "teacher", "metrics.json")))
    self.assertLess(student["params"], 0.19 * teacher["params"] + 1)
    self.assertNotEmpty(os.listdir(stats))  # reference statistics cached

  def test_xla_sampling_gives_the_same_metrics(self):
    wd = tiny_runs.student()
    extractor = "classifier:" + tiny_runs.classifier()
    stats = os.path.join(tiny_runs.root(), "stats")
    runs = [evaluate.evaluate_workdir(wd, "ema", extractor, num_samples=40, seed=3,
                                      stats_dir=stats, jit_compile=jit,
                                      out_dir=os.path.join(tiny_runs.root(), f"xla{jit}"))
            for jit in (False, True)]
    # Same latents, same weights; XLA only reorders float32 arithmetic.
    self.assertAlmostEqual(runs[0]["fid"], runs[1]["fid"], delta=1e-3 * runs[0]["fid"])
    self.assertEqual(runs[0]["class_accuracy"], runs[1]["class_accuracy"])

  def test_cli_missing_slim_is_clear_error(self):
    wd = tiny_runs.teacher()
    proc = subprocess.run(
        [sys.executable, "-m", "ppcd_tf.evaluate", f"--workdir={wd}", "--model=slim",
         "--extractor=classifier:/nonexistent"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_USE_LEGACY_KERAS="1", PYTHONPATH=ROOT))
    self.assertEqual(proc.returncode, 2, proc.stderr[-2000:])
    self.assertIn("tools.slim --workdir=", proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)

  def test_raw_generator_is_the_checkpoint_generator_not_the_ema(self):
    import numpy as np
    import tensorflow as tf
    from ppcd_tf import slim
    wd = tiny_runs.student()
    raw, _, what = evaluate.load_for_eval(wd, "generator")
    ema, _, _ = evaluate.load_for_eval(wd, "ema")
    self.assertStartsWith(what, "raw generator")
    self.assertEqual(raw.masks, [])  # slimmed like the EMA generator
    masked, _ = slim.restore_trained_generator(workdir=wd, key="generator")
    z = tf.random.stateless_normal([3, raw.model_cfg.z_dim], seed=[3, 4])
    y = tf.constant([0, 5, 9], tf.int32)
    got = raw((z, y), training=False).numpy()
    np.testing.assert_allclose(got, masked((z, y), training=False).numpy(), atol=1e-5)
    self.assertGreater(np.abs(got - ema((z, y), training=False).numpy()).max(), 1e-4)

  def test_teacher_of_teacher_is_clear_error(self):
    from ppcd_tf import config as config_lib
    with self.assertRaisesRegex(config_lib.ConfigError, "has no teacher"):
      evaluate.load_for_eval(tiny_runs.teacher(), "teacher")


if __name__ == "__main__":
  absltest.main()
