"""Quantisation-aware fine-tuning (ppcd_tf.qat): the fake-quant Keras model is what
the int8 TFLite file computes, the ranges are calibrated and recorded, and the QAT
phase of a run trains, resumes exactly and is read back by the workdir tools."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import tf_keras
from absl.testing import absltest

from ppcd_tf import checkpoints, config as config_lib, qat, slim as slim_lib, train_lib
from ppcd_tf.export import export_tflite
from ppcd_tf.export.runners import TFLiteRunner
from ppcd_tf.generator import build_generator
from ppcd_tf import tiny
from tests import tiny_runs

_STEP = 1.0 / 128  # the image grid of LiteRT's int8 TANH (qat.IMAGE_RANGE)


def _latents(n=16, seed=5, z_dim=32, classes=10):
  rng = np.random.default_rng(seed)
  return (rng.standard_normal((n, z_dim)).astype(np.float32),
          (np.arange(n) % classes).astype(np.int32))


def _tiny_generator():
  tf_keras.utils.set_random_seed(3)
  model_cfg = config_lib.tiny_config().model
  return build_generator(model_cfg), model_cfg


class FakeQuantTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.G, cls.model_cfg = _tiny_generator()
    cls.z, cls.y = _latents()
    cls.float_images = cls.G((cls.z, cls.y), training=False).numpy()
    cls.ranges = qat.calibrate(cls.G, qat.calibration_batches(
        cls.model_cfg.z_dim, cls.model_cfg.num_classes, batches=2, batch=8))

  def tearDown(self):
    qat.disable(self.G)
    super().tearDown()

  def test_calibration_leaves_the_generator_float(self):
    self.assertFalse(qat.is_quantized(self.G))
    np.testing.assert_array_equal(self.G((self.z, self.y), training=False).numpy(),
                                  self.float_images)

  def test_ranges_cover_zero_and_the_condition_grid_is_shared(self):
    names = [l.name for l in qat.quantizable_layers(self.G)]
    self.assertEqual([r.name for r in self.ranges.layers], names)
    self.assertIn("stem", names)
    self.assertIn("final_conv", names)
    for r in self.ranges.layers:
      for lo, hi in (r.inputs, r.outputs):
        self.assertLessEqual(lo, 0.0)
        self.assertGreaterEqual(hi, 0.0)
        self.assertLess(lo, hi)
    # z and the embedding share one grid with every dense input (the stem, the
    # CBN projections), so the int8 concatenations are copies, not requantisations.
    self.assertEqual(self.ranges.latent, self.ranges.shared)
    dense = [r for r, l in zip(self.ranges.layers, qat.quantizable_layers(self.G))
             if type(l).__name__ == "SNDense"]
    self.assertGreater(len(dense), 4)
    self.assertTrue(all(r.inputs == self.ranges.latent for r in dense))
    # z ~ N(0, 1): the calibrated grid spans a few standard deviations.
    self.assertGreater(self.ranges.latent[1], 1.5)

  def test_quantised_images_lie_on_the_int8_tanh_grid(self):
    qat.enable(self.G, self.ranges)
    images = self.G((self.z, self.y), training=False).numpy()
    self.assertTrue(qat.is_quantized(self.G))
    np.testing.assert_allclose(images * 128, np.round(images * 128), atol=1e-3)
    self.assertLessEqual(images.max(), 127 / 128 + 1e-6)
    # Quantisation changes the images, but not beyond recognition.
    diff = np.abs(images - self.float_images)
    self.assertGreater(diff.max(), 0.0)
    self.assertLess(diff.mean(), 0.1)

  def test_ranges_of_another_architecture_are_refused(self):
    other = build_generator(config_lib.tiny_config(model=dict(g_attention_res=())).model)
    with self.assertRaisesRegex(ValueError, "QAT ranges are for layers"):
      qat.enable(other, self.ranges)

  def test_record_round_trip_and_corrupt_record(self):
    d = tempfile.mkdtemp()
    self.assertIsNone(qat.read_record(d))
    qat.write_record(d, 7, self.ranges)
    record = qat.read_record(d)
    self.assertEqual(record["step"], 7)
    self.assertEqual(record["ranges"], self.ranges)
    with open(os.path.join(d, qat.QAT_FILE), "w") as f:
      f.write("{not json")
    with self.assertRaisesRegex(checkpoints.CheckpointError, "qat.json is unreadable"):
      qat.read_record(d)

  def test_int8_tflite_computes_the_fake_quant_model(self):
    # Post-training int8 of the float G for contrast: it quantises every tensor.
    d = tempfile.mkdtemp()
    export_tflite(self.G, os.path.join(d, "ptq.tflite"), quantize="int8",
                  representative_batches=4)
    ptq = TFLiteRunner(os.path.join(d, "ptq.tflite"))(self.z, self.y)
    qat.enable(self.G, self.ranges)
    report = export_tflite(self.G, os.path.join(d, "qat.tflite"), quantize="int8")
    ops = report["quantization_details"]["ops"]
    # Conv and dense layers run int8; the conditional BatchNorm arithmetic stays float.
    self.assertEqual(set(ops["CONV_2D"]), {"int8"})
    self.assertEqual(set(ops["FULLY_CONNECTED"]), {"int8"})
    self.assertIn("float32", ops["MUL"])
    keras = self.G((self.z, self.y), training=False).numpy()
    got = TFLiteRunner(os.path.join(d, "qat.tflite"))(self.z, self.y)
    diff = np.abs(got - keras)
    # Integer rounding inside the kernels (requantisation by fixed-point multipliers)
    # moves a value by one step now and then, and a moved CBN gain moves what
    # follows. Measured here: mean 0.008 steps, 0.24% of the pixels more than one
    # step away, at most 11 steps.
    self.assertLess(float(diff.mean()), 0.05 * _STEP)
    self.assertLessEqual(float(np.mean(diff > _STEP + 1e-6)), 1e-2)
    # Post-training int8 is 2.9 steps from its own Keras model on average (measured).
    self.assertGreater(float(np.abs(ptq - self.float_images).mean()), 50 * diff.mean())

  def test_qat_generator_refuses_float16_export(self):
    qat.enable(self.G, self.ranges)
    from ppcd_tf.export import ExportError
    with self.assertRaisesRegex(ExportError, "quantisation-aware"):
      export_tflite(self.G, os.path.join(tempfile.mkdtemp(), "g.tflite"),
                    quantize="float16")


def _qat_cfg(name):
  # A tiny teacher run (a dense G, as after PPCD's switch to the slim width) with QAT
  # from step 5 to 8. PPCD + slim switch + QAT: tests/test_experiment.py's end-to-end
  # run of ppcd_t81_qat.
  wd = os.path.join(tiny_runs.root(), "qat", name)
  return tiny.teacher_config(wd, num_steps=8).replace(pruning=dict(qat_steps=3))


class QatPhaseTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # Stopped inside the QAT phase (at step 6), then resumed to the end (step 8).
    cls.cfg = _qat_cfg("full")
    first = train_lib.Trainer(cls.cfg)
    first.fit(progress=False, until_step=6)
    cls.first_ranges = qat.ranges_of(first.G_ema)
    cls.trainer = train_lib.Trainer(cls.cfg)
    cls.resumed_in_phase = cls.trainer.qat_phase
    cls.summary = cls.trainer.fit(progress=False)

  def test_the_last_steps_train_quantised_and_record_the_ranges(self):
    self.assertTrue(self.trainer.qat_phase)
    self.assertTrue(qat.is_quantized(self.trainer.G))
    self.assertTrue(qat.is_quantized(self.trainer.G_ema))
    record = qat.read_record(self.cfg.run.workdir)
    self.assertEqual(record["step"], 5)
    self.assertEqual(qat.ranges_of(self.trainer.G_ema), record["ranges"])
    self.assertEqual(self.summary["step"], 8)

  def test_workdir_tools_read_back_the_quantised_generator(self):
    g, prefix = slim_lib.restore_trained_generator(self.cfg.run.workdir)
    self.assertTrue(prefix.endswith("ckpt-8"))
    self.assertTrue(qat.is_quantized(g))
    z, y = _latents()
    np.testing.assert_array_equal(g((z, y), training=False).numpy(),
                                  self.trainer.G_ema((z, y), training=False).numpy())
    # A checkpoint from before QAT reads back as the float generator.
    ckpt4 = os.path.join(self.cfg.run.workdir, "checkpoints", "ckpt-4")
    self.assertTrue(os.path.exists(ckpt4 + ".index"))
    g4, _ = slim_lib.restore_trained_generator(checkpoint=ckpt4)
    self.assertFalse(qat.is_quantized(g4))

  def test_match_tool_measures_the_trained_run(self):
    out = os.path.join(tempfile.mkdtemp(), "match.json")
    subprocess.run([sys.executable, "-m", "tools.qat_match",
                    f"--workdir={self.cfg.run.workdir}", "--num_images=8", f"--out={out}"],
                   check=True, capture_output=True, timeout=600)
    with open(out) as f:
      report = json.load(f)
    self.assertTrue(report["source"]["qat_phase"])
    self.assertEqual(set(report["cases"]), {"post_training_int8", "qat"})
    qat_case, ptq = report["cases"]["qat"], report["cases"]["post_training_int8"]
    self.assertLess(qat_case["mean_steps"], ptq["mean_steps"])
    self.assertLess(qat_case["mean_steps"], 0.05)

  def test_a_run_resumed_inside_the_phase_continues_it_with_the_same_ranges(self):
    # (Resume exactness in general: tests/test_crash_resume.py.)
    self.assertTrue(self.resumed_in_phase)  # from the checkpoint at step 6 and qat.json
    self.assertIsNotNone(self.first_ranges)
    self.assertEqual(qat.ranges_of(self.trainer.G), self.first_ranges)
    # Training went on through the fake quant: the weights moved after the resume.
    ckpt6 = os.path.join(self.cfg.run.workdir, "checkpoints", "ckpt-6")
    g6, _ = slim_lib.restore_trained_generator(checkpoint=ckpt6)
    self.assertTrue(qat.is_quantized(g6))
    moved = [not np.array_equal(a.numpy(), b.numpy())
             for a, b in zip(g6.trainable_weights, self.trainer.G_ema.trainable_weights)]
    self.assertTrue(any(moved))


class QatConfigTest(absltest.TestCase):

  def test_bad_qat_settings_name_the_fix(self):
    base = dict(optim=dict(num_steps=8), run=dict(mode="ppcd"),
                distill=dict(teacher_dir="t"))
    for pruning, run, pattern in (
        (dict(qat_steps=8), {}, "qat_steps=8 must be < num_steps=8"),
        (dict(qat_steps=-1), {}, "qat_steps=-1 must be >= 0"),
        (dict(qat_steps=6, end_step=2), {}, "at or before prune_end_step=2"),
        (dict(qat_steps=2, end_step=2, slim_finetune=False), {}, "--prune_slim_finetune"),
        (dict(qat_steps=2, end_step=2), dict(precision="mixed_bfloat16"),
         "needs --precision=float32")):
      with self.subTest(pattern):
        cfg = config_lib.tiny_config(**dict(
            base, pruning=pruning, run=dict(base["run"], **run)))
        with self.assertRaisesRegex(config_lib.ConfigError, pattern):
          cfg.validate()


if __name__ == "__main__":
  absltest.main()
