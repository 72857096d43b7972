"""ppcd_tf.evaluation: sampling, truncation, reference cache, dummy-generator metrics."""
import json
import os
import tempfile

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from PIL import Image

from ppcd_tf import classifier, config, data, evaluation, features, images


class _Counting(features.FeatureExtractor):
  """Wraps an extractor and counts the images it featurises."""

  def __init__(self, inner):
    super().__init__()
    self.inner, self.seen = inner, 0
    self.name, self.fingerprint = inner.name, inner.fingerprint
    self.label_aligned = inner.label_aligned

  def __call__(self, images, batch_size=None):
    self.seen += len(images)
    return self.inner(images, batch_size)


def _cfg():
  return config.tiny_config()


class SamplingTest(absltest.TestCase):

  def test_sample_z_truncation_and_determinism(self):
    z = evaluation.sample_z(500, 8, seed=3, truncation=0.5)
    self.assertEqual((z.shape, z.dtype), ((500, 8), np.float32))
    self.assertLessEqual(np.abs(z).max(), 0.5)
    np.testing.assert_array_equal(z, evaluation.sample_z(500, 8, seed=3, truncation=0.5))
    free = evaluation.sample_z(500, 8, seed=3, truncation=None)
    self.assertGreater(np.abs(free).max(), 2.0)
    np.testing.assert_array_equal(free, evaluation.sample_z(500, 8, seed=3, truncation=0))
    self.assertFalse(np.array_equal(free, evaluation.sample_z(500, 8, seed=4)))

  def test_sample_generator_balanced_and_batch_independent(self):
    calls = []

    def gen(z, y):
      calls.append(int(z.shape[0]))
      self.assertEqual((z.dtype, y.dtype), (tf.float32, tf.int32))
      return tf.ones([z.shape[0], 4, 4, 1]) * tf.cast(y, tf.float32)[:, None, None, None] \
          + 0.0 * z[:, :1, None, None]

    x, y = evaluation.sample_generator(gen, 25, 5, z_dim=3, seed=1, batch_size=10)
    self.assertEqual(calls, [10, 10, 5])
    self.assertEqual(x.shape, (25, 4, 4, 1))
    np.testing.assert_array_equal(np.bincount(y), [5] * 5)
    np.testing.assert_array_equal(y[:5], np.arange(5))
    np.testing.assert_array_equal(x[:, 0, 0, 0], y.astype(np.float32))
    x2, _ = evaluation.sample_generator(gen, 25, 5, z_dim=3, seed=1, batch_size=7)
    np.testing.assert_array_equal(x, x2)
    with self.assertRaisesRegex(ValueError, "expected"):
      evaluation.sample_generator(lambda z, y: tf.zeros([3, 4]), 3, 1, 2)

  def test_class_grid_rows_are_classes_columns_share_z(self):
    path = os.path.join(tempfile.mkdtemp(), "sub", "grid.png")

    def gen(z, y):  # left half: gray level of the class; right half: z[0] / 10
      level = tf.cast(y, tf.float32)[:, None, None, None] / 5.0 - 1.0
      left = tf.ones([z.shape[0], 8, 4, 3]) * level
      right = tf.ones([z.shape[0], 8, 4, 3]) * z[:, :1, None, None] / 10.0
      return tf.concat([left, right], axis=2)

    rows, per_class, pad = [2, 7, 0], 4, 2
    out = evaluation.class_grid(gen, 10, per_class, 6, 0, 1.5, path, classes=rows)
    self.assertEqual(out, path)
    grid = np.asarray(Image.open(path))
    self.assertEqual(grid.shape, (3 * (8 + pad) + pad, per_class * (8 + pad) + pad, 3))
    cell = lambda r, c, x: int(grid[pad + r * 10 + 1, pad + c * 10 + x, 0])  # noqa: E731
    want = images.to_uint8(np.array([c / 5.0 - 1.0 for c in rows]).reshape(3, 1, 1, 1))
    self.assertEqual([cell(r, 0, 1) for r in range(3)], list(want[:, 0, 0, 0]))
    for c in range(per_class):  # one latent per column, shared by all rows
      self.assertLen({cell(r, c, 6) for r in range(3)}, 1)
    self.assertGreater(len({cell(0, c, 6) for c in range(per_class)}), 1)
    with self.assertRaises(ValueError):
      evaluation.class_grid(gen, 10, 4, 6, 0, None, path, classes=[10])


class EvaluateTest(absltest.TestCase):
  """A real-image "generator" must score far better than a noise generator."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cfg = _cfg()
    cls.data_cfg, cls.model_cfg = cfg.data, cfg.model
    train = data.load_arrays(cls.data_cfg, cls.model_cfg, split="train")
    cls.test_x, cls.test_y = data.load_arrays(cls.data_cfg, cls.model_cfg, split="test")
    # Small and quick (~90% held-out); the recipe's accuracy is test_classifier's job.
    clf_cfg = classifier.ClassifierConfig(width=8, feature_dim=64, dropout=0.0)
    model, cls.fit_results = classifier.fit_classifier(
        train, None, clf_cfg,
        classifier.ClassifierTrainConfig(epochs=2, batch_size=32, augment_shift=0,
                                         max_train_examples=2000, seed=0))
    cls.clf_dir = os.path.join(cls.tmp, "clf")
    classifier.save_classifier(model, clf_cfg, cls.clf_dir, dataset="mnist5k")
    cls.extractor = features.get_extractor(f"classifier:{cls.clf_dir}")
    cls.ref = evaluation.reference_stats(cls.extractor, cls.data_cfg, cls.model_cfg,
                                         cache_dir=os.path.join(cls.tmp, "cache"))

  def _real_generator(self, z, y):
    """Returns a held-out real image of each requested class, picked by z."""
    z, y = z.numpy(), y.numpy()
    out = []
    for zi, yi in zip(z, y):
      pool = np.flatnonzero(self.test_y == yi)
      out.append(self.test_x[pool[int(abs(zi[0]) * 1e6) % len(pool)]])
    return np.stack(out)

  @staticmethod
  def _noise_generator(z, y):
    del y
    seed = tf.cast(tf.abs(z[0, :2]) * 1e6, tf.int32)
    return tf.random.stateless_uniform([z.shape[0], 32, 32, 3], seed, -1.0, 1.0)

  def test_reference_stats_cached_and_reused(self):
    cache = os.path.join(self.tmp, "cache2")
    counting = _Counting(self.extractor)
    ref = evaluation.reference_stats(counting, self.data_cfg, self.model_cfg, cache)
    self.assertEqual(counting.seen, 4500)
    files = os.listdir(cache)
    self.assertLen(files, 1)
    self.assertIn("mnist5k", files[0])
    again = evaluation.reference_stats(counting, self.data_cfg, self.model_cfg, cache)
    self.assertEqual(counting.seen, 4500)  # served from the cache
    for a, b in zip(ref, again):
      np.testing.assert_array_equal(a, b)
    self.assertEqual((ref.mu.shape, ref.sigma.shape, ref.features.shape, ref.labels.shape),
                     ((64,), (64, 64), (4500, 64), (4500,)))
    np.testing.assert_array_equal(np.bincount(ref.labels), [450] * 10)
    # A different split is a different key.
    evaluation.reference_stats(counting, self.data_cfg, self.model_cfg, cache, split="test")
    self.assertEqual(counting.seen, 5000)
    self.assertLen(os.listdir(cache), 2)
    # A changed fingerprint (retrained weights) invalidates the entry.
    counting.fingerprint = "retrained"
    evaluation.reference_stats(counting, self.data_cfg, self.model_cfg, cache)
    self.assertEqual(counting.seen, 9500)
    # A subset is seeded and stratification-free but still covers the classes.
    sub = evaluation.reference_stats(counting, self.data_cfg, self.model_cfg, None,
                                     max_examples=300)
    self.assertLen(sub.labels, 300)
    self.assertLen(np.unique(sub.labels), 10)

  def test_real_images_beat_noise_on_every_metric(self):
    kw = dict(num_samples=200, num_classes=10, z_dim=4, seed=0, truncation=None,
              kid_subset_size=100, kid_num_subsets=10)
    real = evaluation.evaluate_generator(self._real_generator, self.extractor, self.ref,
                                         **kw)
    noise = evaluation.evaluate_generator(self._noise_generator, self.extractor,
                                          self.ref, **kw)
    for key in ("fid", "is_mean", "is_std", "kid_mean", "kid_std", "intra_fid",
                "class_accuracy", "num_samples", "seed", "truncation", "extractor"):
      self.assertIn(key, real)
    json.dumps(real)  # JSON-ready
    self.assertEqual(real["extractor"], f"classifier:{self.clf_dir}")
    self.assertEqual((real["num_samples"], real["seed"], real["truncation"]),
                     (200, 0, None))
    self.assertLen(real["intra_fid_per_class"], 10)
    self.assertLess(real["fid"] * 5, noise["fid"])
    self.assertLess(real["intra_fid"] * 3, noise["intra_fid"])
    self.assertLess(real["kid_mean"] * 5, noise["kid_mean"])
    self.assertGreater(real["is_mean"], noise["is_mean"] + 1.0)
    self.assertGreater(real["class_accuracy"], 0.8)
    self.assertLess(noise["class_accuracy"], 0.3)
    again = evaluation.evaluate_generator(self._real_generator, self.extractor, self.ref,
                                          **kw)
    for key in ("fid", "is_mean", "kid_mean", "intra_fid", "class_accuracy"):
      self.assertEqual(real[key], again[key])

  def test_truncation_is_recorded(self):
    out = evaluation.evaluate_generator(
        self._real_generator, self.extractor, self.ref, num_samples=40, num_classes=10,
        z_dim=4, seed=1, truncation=0.7, kid_subset_size=40, kid_num_subsets=2,
        is_splits=2, compute_intra_fid=False)
    self.assertEqual(out["truncation"], 0.7)
    self.assertIsNone(out["intra_fid"])


if __name__ == "__main__":
  absltest.main()
