"""The converged mnist32 teacher that ships in assets/teachers/mnist32 (tools/train_teacher)."""
import os
import unittest

import numpy as np
import tensorflow as tf

from ppcd_tf import checkpoints, flags as ppcd_flags, teacher_asset
from ppcd_tf.discriminator import build_discriminator
from ppcd_tf.generator import build_generator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSET = os.path.join(ROOT, "assets", "teachers", "mnist32")


class ShippedTeacherTest(unittest.TestCase):

  def test_files_match_their_checksums(self):
    info = teacher_asset.verify_teacher_asset(ASSET)
    self.assertEqual(info["best_fid"], min(c["fid"] for c in info["fid_curve"]))
    self.assertLessEqual(sum(os.path.getsize(os.path.join(d, f))
                             for d, _, names in os.walk(ASSET) for f in names), 3_000_000)

  def test_presets_match_its_architecture(self):
    cfg = checkpoints.read_config(ASSET)
    for preset in ("mnist32.cfg", "mnist32_quick.cfg"):
      checkpoints.check_same_architecture(
          ppcd_flags.parse_flagfile(os.path.join(ROOT, "configs", preset)).model,
          cfg.model, ASSET)

  def test_loads_and_samples_every_class(self):
    cfg = checkpoints.read_config(ASSET)
    m = cfg.model
    g = build_generator(m, masked=False)
    d = build_discriminator(m)
    z = tf.random.stateless_normal([m.num_classes, m.z_dim], seed=[0, 1])
    y = tf.range(m.num_classes)
    before = g((z, y), training=False).numpy()
    prefix, step = checkpoints.restore_objects_from_workdir(
        ASSET, ema_generator=g, discriminator=d)
    self.assertEqual(step, teacher_asset.read_teacher_info(ASSET)["best_step"])
    images = g((z, y), training=False).numpy()
    self.assertEqual(images.shape, (m.num_classes, m.resolution, m.resolution,
                                    m.image_channels))
    self.assertTrue(np.all(np.isfinite(images)))
    self.assertLessEqual(np.abs(images).max(), 1.0)
    self.assertGreater(np.abs(images - before).max(), 0.1)  # the weights were restored
    # The ten classes give ten different images.
    flat = images.reshape(m.num_classes, -1)
    dist = np.linalg.norm(flat[:, None] - flat[None], axis=-1)
    self.assertGreater(dist[np.triu_indices(m.num_classes, 1)].min(), 1.0)
    self.assertTrue(np.all(np.isfinite(d((images, y), training=False).numpy())))


if __name__ == "__main__":
  unittest.main()
