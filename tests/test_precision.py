"""Mixed precision: what stays float32, loss scaling, bf16 runs that train, resume and slim."""
import os
import tempfile

import numpy as np
import tensorflow as tf
import tf_keras
from absl.testing import absltest

from ppcd_tf import checkpoints
from ppcd_tf import config as config_lib
from ppcd_tf import precision
from ppcd_tf import slim as slim_lib
from ppcd_tf import train_lib
from ppcd_tf.discriminator import build_discriminator
from ppcd_tf.generator import build_generator
from ppcd_tf.layers.spectral_norm import spectral_norm_layers
from tests import tiny_runs


def _model():
  return config_lib.tiny_config().model


class PolicyTest(absltest.TestCase):

  def test_scope_sets_and_restores_the_global_policy(self):
    before = tf_keras.mixed_precision.global_policy().name
    with precision.policy_scope("mixed_bfloat16"):
      self.assertEqual(tf_keras.mixed_precision.global_policy().name, "mixed_bfloat16")
    self.assertEqual(tf_keras.mixed_precision.global_policy().name, before)
    with self.assertRaisesRegex(ValueError, "precision='fp8' must be one of"):
      with precision.policy_scope("fp8"):
        pass

  def test_bf16_networks_keep_float32_where_they_must(self):
    z = tf.random.stateless_normal([4, 32], seed=[1, 2])
    y = tf.constant([0, 3, 5, 9])
    x = tf.random.stateless_uniform([4, 32, 32, 3], seed=[3, 4], minval=-1, maxval=1)
    with precision.policy_scope("mixed_bfloat16"):
      g = build_generator(_model(), masked=True, init="N02")
      d = build_discriminator(_model(), init="N02")
    images, features = g.forward_with_features((z, y), training=True)
    self.assertEqual(images.dtype, tf.float32)           # images
    self.assertEqual(features[0].dtype, tf.bfloat16)      # bf16 compute inside
    self.assertEqual(d((x, y), training=True).dtype, tf.float32)  # logits
    self.assertEqual(d.class_activation_map((x, y)).dtype, tf.float32)
    # Variables (and so checkpoints and the EMA) are float32; spectral-norm state too.
    self.assertTrue(all(v.dtype == tf.float32 for v in g.variables + d.variables
                        if v.dtype.is_floating))
    for layer in spectral_norm_layers(g) + spectral_norm_layers(d):
      self.assertEqual(layer.spectral_sigma(training=False).dtype, tf.float32, layer.name)
    # The power iteration is float32: sigma equals a float32 network's sigma exactly.
    g32 = build_generator(_model(), masked=True, init="N02")
    for a, b in zip(g32.variables, g.variables):
      a.assign(b)
    for l32, l16 in zip(spectral_norm_layers(g32), spectral_norm_layers(g)):
      self.assertEqual(float(l32.spectral_sigma()), float(l16.spectral_sigma()))
    # ... and the bf16 network computes (roughly) what the float32 one does.
    ref = g32((z, y), training=False).numpy()
    got = g((z, y), training=False).numpy()
    self.assertLess(np.max(np.abs(got - ref)), 0.1)
    self.assertGreater(np.max(np.abs(got - ref)), 0.0)  # it really ran in bf16

  def test_float16_wraps_optimizers_and_scales_the_loss(self):
    self.assertFalse(precision.needs_loss_scaling("mixed_bfloat16"))
    self.assertTrue(precision.needs_loss_scaling("mixed_float16"))
    opt = precision.wrap_optimizer(tf_keras.optimizers.Adam(1e-3), "mixed_float16")
    self.assertIsInstance(opt, tf_keras.mixed_precision.LossScaleOptimizer)
    scale = float(opt.loss_scale)
    self.assertEqual(float(precision.scale_loss(opt, tf.constant(2.0))), 2.0 * scale)
    grads = precision.unscale_gradients(opt, [tf.constant([scale, 4 * scale])])
    np.testing.assert_allclose(grads[0].numpy(), [1.0, 4.0])
    plain = tf_keras.optimizers.Adam(1e-3)
    self.assertIs(precision.wrap_optimizer(plain, "mixed_bfloat16"), plain)
    self.assertEqual(float(precision.scale_loss(plain, tf.constant(2.0))), 2.0)

  def test_config_rejects_an_unknown_precision(self):
    with self.assertRaisesRegex(config_lib.ConfigError, "precision='half' must be one of"):
      config_lib.tiny_config(run=dict(precision="half")).validate()


def _all_finite(trainer):
  return all(np.isfinite(v.numpy()).all() for v in
             trainer.G.variables + trainer.D.variables + trainer.G_ema.variables
             if v.dtype.is_floating)


class MixedPrecisionTrainingTest(absltest.TestCase):
  """A tiny bf16 teacher and a bf16 PPCD student train on CPU, resume and slim."""

  def test_bf16_teacher_and_ppcd_train_resume_and_slim(self):
    root = tempfile.mkdtemp(prefix="ppcd_bf16_")
    bf16 = dict(precision="mixed_bfloat16")
    tcfg = tiny_runs.teacher_cfg(os.path.join(root, "teacher"), num_steps=4)
    tcfg = tcfg.replace(run={**bf16, "workdir": tcfg.run.workdir, "mode": "teacher",
                             "strategy": "one_device"})
    teacher = train_lib.Trainer(tcfg)
    first = teacher.train_step()
    self.assertTrue(all(np.isfinite(v) for v in first.values()))
    teacher.fit(progress=False, until_step=2)  # ckpt-2
    del teacher
    resumed = train_lib.Trainer(tcfg)           # resumes the bf16 checkpoint
    self.assertEqual(int(resumed.step.numpy()), 2)
    summary = resumed.fit(progress=False)
    self.assertEqual(summary["step"], 4)
    self.assertTrue(_all_finite(resumed))

    pcfg = tiny_runs.ppcd_cfg(os.path.join(root, "ppcd"), tcfg.run.workdir,
                              run=bf16, optim=dict(num_steps=6),
                              pruning=dict(slim_finetune=True))
    student = train_lib.Trainer(pcfg)
    self.assertEqual(student.G.compute_dtype, "bfloat16")
    student.fit(progress=False, until_step=4)   # pruning events at 0..3
    del student
    student = train_lib.Trainer(pcfg)
    self.assertEqual(int(student.step.numpy()), 4)
    summary = student.fit(progress=False)
    self.assertEqual(summary["step"], 6)
    self.assertTrue(summary["masks_binary"])
    self.assertLess(summary["live_fraction"], 1.0)
    self.assertTrue(all(np.isfinite(v) for v in summary["losses"].values()))
    # The checkpoint is float32: a float32 generator restores it (the slim one the run
    # switched to after its last event), and its export copy equals it (the float32
    # tolerance of slimming).
    self.assertTrue(student.slim_phase)
    trained, _ = slim_lib.restore_trained_generator(pcfg.run.workdir)
    self.assertEqual(trained.compute_dtype, "float32")
    self.assertEqual(trained.masks, [])
    slim = slim_lib.slim_generator(trained)
    self.assertLessEqual(slim_lib.verify_slim(trained, slim), 1e-5)
    self.assertLess(slim.count_params(), student.teacher_G.count_params())
    self.assertTrue(checkpoints.all_checkpoints(checkpoints.checkpoint_dir(pcfg.run.workdir)))


if __name__ == "__main__":
  absltest.main()
