"""ppcd_tf.features: registry, local-file loading, batching, resizing, clear errors."""
import os
import tempfile

import numpy as np
import tensorflow as tf
import tf_keras
from absl.testing import absltest

from ppcd_tf import classifier, features


def _images(n, size=32, channels=3, seed=0):
  rng = np.random.default_rng(seed)
  return rng.uniform(-1, 1, size=(n, size, size, channels)).astype(np.float32)


class _TinyHubModule(tf.Module):
  """Stands in for the TF-GAN Inception module: dict with pool_3 and logits."""

  def __init__(self, keys=("pool_3", "logits")):
    super().__init__()
    self.keys = keys
    self.w = tf.Variable(tf.random.stateless_normal([3, 8], seed=[1, 2]))

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  def __call__(self, images):
    pooled = tf.reduce_mean(images, axis=[1, 2]) @ self.w  # [N, 8]
    return {self.keys[0]: tf.reshape(pooled, [-1, 1, 1, 8]),
            self.keys[1]: tf.concat([pooled, -pooled], axis=1)}


class RegistryTest(absltest.TestCase):

  def test_malformed_and_unknown_names(self):
    for name in ("", "classifier", "classifier:", "nope:/x"):
      with self.assertRaises(features.FeatureExtractorError):
        features.get_extractor(name)
    self.assertTrue(issubclass(features.FeatureExtractorError, ValueError))
    self.assertEqual(features.available_extractors()[:2], ["classifier", "inception"])

  def test_missing_inception_file_says_what_to_download(self):
    path = os.path.join(tempfile.mkdtemp(), "nowhere.h5")
    with self.assertRaises(features.FeatureExtractorError) as ctx:
      features.get_extractor(f"inception:{path}")
    message = str(ctx.exception)
    self.assertIn(path, message)
    self.assertIn(features.KERAS_INCEPTION_WEIGHTS_FILE, message)
    self.assertIn(features.KERAS_INCEPTION_WEIGHTS_URL, message)
    self.assertIn(features.TFGAN_INCEPTION_URL, message)

  def test_missing_classifier_dir_says_how_to_train(self):
    with self.assertRaisesRegex(features.FeatureExtractorError, "train_classifier"):
      features.get_extractor(f"classifier:{tempfile.mkdtemp()}")

  def test_register_custom_kind(self):
    class Constant(features.FeatureExtractor):
      resolution, channels, feature_dim, num_classes = 8, 1, 2, 2

      def __init__(self, arg):
        super().__init__(batch_size=2)
        self.scale = float(arg)

      def _forward(self, x):
        m = tf.reduce_mean(x, axis=[1, 2, 3])[:, None] * self.scale
        return tf.concat([m, -m], 1), tf.concat([-m, m], 1)

    features.register_extractor("test_constant", Constant)
    ext = features.get_extractor("test_constant:2")
    self.assertEqual(ext.name, "test_constant:2")
    f, l = ext(_images(5, size=16))  # resized 16 -> 8, RGB -> gray, batches of 2
    self.assertEqual((f.shape, l.shape, f.dtype), ((5, 2), (5, 2), np.float64))
    with self.assertRaises(features.FeatureExtractorError):
      features.register_extractor("test_constant", Constant)


class ClassifierExtractorTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dir = tempfile.mkdtemp()
    cls.cfg = classifier.ClassifierConfig(width=4, feature_dim=12)
    tf_keras.utils.set_random_seed(0)
    cls.model = classifier.build_classifier(cls.cfg)
    classifier.save_classifier(cls.model, cls.cfg, cls.dir, dataset="mnist5k")

  def test_features_logits_match_model_and_batching(self):
    ext = features.get_extractor(f"classifier:{self.dir}")
    self.assertEqual((ext.resolution, ext.channels, ext.feature_dim, ext.num_classes),
                     (32, 3, 12, 10))
    self.assertTrue(ext.label_aligned)
    x = _images(7)
    f, l = ext(x)
    self.assertEqual((f.shape, l.shape, f.dtype, l.dtype),
                     ((7, 12), (7, 10), np.float64, np.float64))
    want_f, want_l = self.model(x, training=False)
    np.testing.assert_allclose(f, want_f.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(l, want_l.numpy(), rtol=1e-5, atol=1e-6)
    f3, l3 = ext(x, batch_size=3)
    np.testing.assert_allclose(f3, f, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(l3, l, rtol=1e-5, atol=1e-6)

  def test_resizes_and_converts_channels(self):
    ext = features.get_extractor(f"classifier:{self.dir}")
    gray = _images(4, size=16, channels=1)
    f, l = ext(gray)
    self.assertEqual((f.shape, l.shape), ((4, 12), (4, 10)))
    rgb32 = tf.image.resize(np.repeat(gray, 3, axis=-1), [32, 32]).numpy()
    f_ref, _ = ext(rgb32)
    np.testing.assert_allclose(f, f_ref, rtol=1e-5, atol=1e-6)
    with self.assertRaises(features.FeatureExtractorError):
      ext(np.zeros((2, 32, 32, 2), np.float32))

  def test_fingerprint_changes_with_weights(self):
    d = tempfile.mkdtemp()
    classifier.save_classifier(self.model, self.cfg, d)
    before = features.get_extractor(f"classifier:{d}").fingerprint
    os.utime(os.path.join(d, classifier.WEIGHTS_FILE), ns=(1, 1))
    self.assertNotEqual(before, features.get_extractor(f"classifier:{d}").fingerprint)


class InceptionExtractorTest(absltest.TestCase):

  def test_keras_weights_file(self):
    # The real file is ImageNet weights; here the same architecture with random
    # weights (InceptionV3(weights=None), ~24M params, builds in ~3 s) is saved and
    # loaded back through the extractor's path.
    path = os.path.join(tempfile.mkdtemp(), features.KERAS_INCEPTION_WEIGHTS_FILE)
    tf_keras.utils.set_random_seed(0)
    base = tf_keras.applications.InceptionV3(weights=None, classifier_activation=None)
    base.save_weights(path)
    ext = features.get_extractor(f"inception:{path}")
    self.assertEqual((ext.resolution, ext.feature_dim, ext.num_classes), (299, 2048, 1000))
    x = _images(3, size=32, channels=1)
    f, l = ext(x)
    self.assertEqual((f.shape, l.shape, f.dtype), ((3, 2048), (3, 1000), np.float64))
    self.assertTrue(np.all(f >= 0))  # pool3 of ReLU maps
    resized = tf.image.resize(np.repeat(x, 3, axis=-1), [299, 299]).numpy()
    np.testing.assert_allclose(l, base(resized, training=False).numpy(),
                               rtol=1e-4, atol=1e-4)

  def test_not_keras_weights_is_clear_error(self):
    path = os.path.join(tempfile.mkdtemp(), "garbage.h5")
    with open(path, "w") as fh:
      fh.write("not hdf5")
    with self.assertRaisesRegex(features.FeatureExtractorError, "_notop"):
      features.get_extractor(f"inception:{path}")

  def test_hub_module_directory(self):
    d = tempfile.mkdtemp()
    tf.saved_model.save(_TinyHubModule(), d)
    ext = features.get_extractor(f"inception:{d}")
    self.assertEqual((ext.feature_dim, ext.num_classes, ext.label_aligned), (8, 16, False))
    f, l = ext(_images(5))
    self.assertEqual((f.shape, l.shape), ((5, 8), (5, 16)))
    np.testing.assert_allclose(l[:, :8], f, rtol=1e-6)

  def test_hub_module_with_wrong_outputs(self):
    d = tempfile.mkdtemp()
    tf.saved_model.save(_TinyHubModule(keys=("pool", "probs")), d)
    with self.assertRaisesRegex(features.FeatureExtractorError, "pool_3"):
      features.get_extractor(f"inception:{d}")
    with self.assertRaisesRegex(features.FeatureExtractorError, "SavedModel"):
      features.get_extractor(f"inception:{tempfile.mkdtemp()}")


if __name__ == "__main__":
  absltest.main()
