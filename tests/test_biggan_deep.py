"""BigGAN-deep through the whole PPCD pipeline: masks, exact slimming, costs, training,
export (ppcd_tf.generator / discriminator with --arch=biggan_deep)."""
import os
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import absltest

from ppcd_tf import config as config_lib
from ppcd_tf import flags as ppcd_flags
from ppcd_tf import flops
from ppcd_tf import slim as slim_lib
from tests import imagenet_step
from ppcd_tf.discriminator import build_discriminator
from ppcd_tf.generator import build_generator
from tools import inspect_model

DEEP = dict(arch="biggan_deep", hierarchical_z=False)


def deep_cfg(**overrides):
  parts = {"model": DEEP}
  for k, v in overrides.items():
    parts[k] = {**parts.get(k, {}), **v}
  return config_lib.tiny_config(**parts)


def latents(m, n=4, seed=0):
  rng = np.random.RandomState(seed)
  return (rng.standard_normal((n, m.z_dim)).astype(np.float32),
          rng.randint(0, m.num_classes, n).astype(np.int32))


def trainable_count(net):
  return int(sum(np.prod(v.shape) for v in net.trainable_variables))


class DeepModelTest(absltest.TestCase):

  def test_teacher_checkpoint_restores_into_the_masked_student(self):
    m = deep_cfg().model
    teacher = build_generator(m, init="N02")
    student = build_generator(m, masked=True, init="N02")
    path = tf.train.Checkpoint(generator=teacher).write(
        os.path.join(tempfile.mkdtemp(), "ckpt"))
    # The student's extra variables are its masks; every teacher weight lands (equal out).
    tf.train.Checkpoint(generator=student).read(path).expect_partial()
    z, y = latents(m)
    np.testing.assert_array_equal(teacher((z, y)).numpy(), student((z, y)).numpy())
    self.assertLen(student.masks, 1 + 6 * 4)  # stem + (3 mids + out) per block

  def test_pruned_masks_slim_exactly_and_the_costs_count_the_slim_variables(self):
    m = deep_cfg().model
    g = build_generator(m, masked=True, init="N02")
    z, y = latents(m, 8)
    for _ in range(2):  # BN statistics and SN vectors that are not their initial values
      g((z, y), training=True)
    rng = np.random.RandomState(3)
    for name, mask in g.masks:
      n = mask.num_channels
      mask.prune(rng.choice(n, rng.randint(1, n), replace=False))
    live = g.live_channels()
    # Pruned inputs under live outputs: the slim skip reads a zero there.
    self.assertTrue(any(len(live.inputs) in s or live.inputs[i] in s
                        for i, s in enumerate(live.skip)))
    slim = slim_lib.slim_generator(g)
    self.assertLess(slim_lib.verify_slim(g, slim), 1e-5)
    self.assertEqual(trainable_count(slim), flops.count_generator(g).total_params)
    self.assertEqual(slim.channels, live)
    out = os.path.join(tempfile.mkdtemp(), "slim")
    report = slim_lib.slim_and_report(g, out)
    self.assertLess(report["max_abs_diff"], 1e-5)
    self.assertIn("block3/mid1", report["channels"])
    loaded = slim_lib.load_slim_generator(out)
    np.testing.assert_allclose(loaded((z, y)).numpy(), slim((z, y)).numpy(), atol=1e-6)
    # One channel less of a mask saves what the analytic count says it does.
    costs = flops.mask_channel_costs(g)
    name = "block1/mid1"
    fewer = live.with_widths({name: live.widths()[name] - 1})
    self.assertEqual(costs[name][0], flops.generator_cost(m, live).total_params
                     - flops.generator_cost(m, fewer).total_params)

  def test_discriminator_counts_and_cam(self):
    m = deep_cfg().model
    d = build_discriminator(m, init="N02")
    self.assertEqual(trainable_count(d), flops.count_discriminator(d).total_params)
    self.assertEqual(trainable_count(build_generator(m, init="N02")),
                     flops.generator_cost(m).total_params)
    x = tf.random.normal([2, 32, 32, 3], seed=4)
    y = tf.constant([1, 7])
    cam = d.class_activation_map((x, y)).numpy()
    self.assertEqual(cam.shape, (2, 8, 8))  # 32 -> 16 -> 8 (the third pair keeps 8)

  def test_imagenet128_deep_has_the_published_generator_size(self):
    m = ppcd_flags.parse_flagfile("configs/imagenet128_deep.cfg").model
    count = flops.generator_cost(m).total_params
    value, extra, _ = inspect_model.published(m)["generator"]
    # pytorch-pretrained-BigGAN README: biggan-deep-128 is "a 50.4M parameters model".
    self.assertEqual(round((count + extra) / 1e5) * 1e5, value)
    self.assertEqual(len(flops.generator_cost(m).by_block()), 2 + 10 + 1)


@pytest.mark.slow
class DeepTrainingTest(absltest.TestCase):

  def test_teacher_then_ppcd_prunes_distils_slims_and_exports(self):
    from ppcd_tf import train_lib
    from ppcd_tf.export import tflite
    root = tempfile.mkdtemp(prefix="ppcd_deep_")
    tdir = os.path.join(root, "teacher")  # a teacher checkpoint at step 0 (its init)
    train_lib.Trainer(deep_cfg(run=dict(workdir=tdir, mode="teacher", strategy="one_device")),
                      weight_init="N02").manager.save(checkpoint_number=0)
    sdir = os.path.join(root, "ppcd")
    summary = train_lib.train(deep_cfg(
        run=dict(workdir=sdir, mode="ppcd", strategy="one_device"),
        distill=dict(teacher_dir=tdir), optim=dict(num_steps=4),
        pruning=dict(begin_step=0, end_step=2, frequency=1, target_fraction=0.5,
                     slim_finetune=False)), progress=False)
    self.assertEqual(summary["step"], 4)
    self.assertTrue(np.isfinite(summary["losses"]["g_adv"]))
    g, _ = slim_lib.restore_trained_generator(sdir)
    full = flops.generator_cost(g.model_cfg).total_params
    self.assertLess(flops.count_generator(g).total_params, 0.6 * full)
    report = slim_lib.slim_and_report(g, os.path.join(root, "slim"))
    self.assertLess(report["max_abs_diff"], 1e-5)
    slim = slim_lib.load_slim_generator(os.path.join(root, "slim"))
    exported = tflite.export_tflite(slim, os.path.join(root, "g.tflite"))
    self.assertLess(exported["max_abs_diff"], 1e-4)


@pytest.mark.slow
class Imagenet128DeepStepTest(absltest.TestCase):

  def test_imagenet128_deep_teacher_step_at_batch_1(self):
    # The full BigGAN-deep 128x128 networks build, trace and take a training step on
    # CPU at batch 1 (tests/imagenet_step.py). The PPCD step on BigGAN-deep is
    # DeepTrainingTest's, at tiny width.
    base, result = imagenet_step.teacher_step("imagenet128_deep.cfg")
    # The 128-wide to-RGB conv of the release is ours at 3 outputs (BUILD.md).
    self.assertEqual(result["config"]["g_params"], flops.generator_cost(base.model).total_params)
    self.assertEqual(result["config"]["g_params"], 50_244_484)
    rate = result["steps_per_second"][imagenet_step.CASE]
    self.assertLen(rate["all"], 1)
    self.assertGreater(rate["median"], 0)


if __name__ == "__main__":
  absltest.main()
