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


class ExportedTest(absltest.TestCase):
  """evaluate_exported: what ships (TFLite fp32 / int8 through LiteRT) gets the metrics."""

  @classmethod
  def setUpClass(cls):
    import tempfile
    from ppcd_tf import export
    cls.wd = tiny_runs.student()
    cls.extractor = "classifier:" + tiny_runs.classifier()
    cls.stats = os.path.join(tiny_runs.root(), "stats")
    cls.tmp = tempfile.mkdtemp()
    g = evaluate.load_for_eval(cls.wd, "ema")[0]
    cls.files = {q: os.path.join(cls.tmp, f"g_{q}.tflite") for q in ("none", "int8")}
    cls.exports = {q: export.export_tflite(g, path, quantize=q)
                   for q, path in cls.files.items()}
    cls.keras = evaluate.evaluate_workdir(cls.wd, "ema", cls.extractor, num_samples=40,
                                          seed=3, stats_dir=cls.stats,
                                          out_dir=os.path.join(cls.tmp, "keras"))

  def test_tflite_fp32_scores_as_the_keras_model(self):
    r = evaluate.evaluate_exported(self.files["none"], self.wd, self.extractor,
                                   num_samples=40, seed=3, stats_dir=self.stats)
    # Same latents and features; LiteRT fp32 matches Keras within float round-off.
    self.assertAlmostEqual(r["fid"], self.keras["fid"], delta=1e-3 * self.keras["fid"])
    self.assertEqual(r["class_accuracy"], self.keras["class_accuracy"])
    self.assertEqual((r["model"], r["format"], r["quantization"]),
                     ("tflite_fp32", "tflite", "none"))
    self.assertEqual(r["params"], self.keras["params"])
    self.assertEqual(r["macs"], self.keras["macs"])
    saved = json.load(open(os.path.join(self.wd, "eval", "tflite_fp32", "metrics.json")))
    self.assertEqual(saved["fid"], r["fid"])
    self.assertEqual(saved["generator"], os.path.abspath(self.files["none"]))

  def test_tflite_int8_is_scored_on_its_own_outputs(self):
    r = evaluate.evaluate_exported(self.files["int8"], self.wd, self.extractor,
                                   num_samples=40, seed=3, stats_dir=self.stats,
                                   out_dir=os.path.join(self.tmp, "int8"))
    self.assertEqual(r["model"], "tflite_int8")
    self.assertEqual(r["file_size_bytes"], self.exports["int8"]["file_size_bytes"])
    self.assertLess(r["file_size_bytes"], self.exports["none"]["file_size_bytes"])
    self.assertGreater(r["fid"], 0)
    self.assertNotEqual(r["fid"], self.keras["fid"])  # quantised outputs differ
    self.assertTrue(os.path.exists(os.path.join(self.tmp, "int8", "classes.png")))

  def test_tags(self):
    self.assertEqual(evaluate.exported_tag(self.files["int8"]), "tflite_int8")
    self.assertEqual(evaluate.exported_tag(self.files["none"]), "tflite_fp32")

  def test_a_model_of_another_run_is_refused(self):
    from unittest import mock
    from ppcd_tf import checkpoints
    from ppcd_tf.config import ConfigError
    cfg = checkpoints.read_config(self.wd)
    other = cfg.replace(model=dict(num_classes=5))
    with mock.patch.object(checkpoints, "read_config", return_value=other), \
         self.assertRaisesRegex(ConfigError, r"\(classes, z_dim, resolution\) = "
                                r"\(10, 32, 32\), but .* trains \(5, 32, 32\); pass the "
                                r"--workdir the model was exported from"):
      evaluate.evaluate_exported(self.files["none"], self.wd, self.extractor, 40,
                                 stats_dir=self.stats)


if __name__ == "__main__":
  absltest.main()
