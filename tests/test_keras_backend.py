"""The package must run on tf_keras (Keras 2), never Keras 3."""
import os

from absl.testing import absltest

import ppcd_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)


class KerasBackendTest(absltest.TestCase):

  def test_legacy_switch_is_set(self):
    self.assertEqual(os.environ["TF_USE_LEGACY_KERAS"], "1")

  def test_tf_keras_is_keras_2(self):
    import tensorflow as tf
    import tf_keras
    self.assertTrue(tf_keras.__version__.startswith("2."), tf_keras.__version__)
    # Under the legacy switch tf.keras resolves to tf_keras, not Keras 3.
    layer = tf.keras.layers.Dense(2)
    self.assertTrue(type(layer).__module__.startswith("tf_keras"), type(layer).__module__)
    self.assertIsInstance(layer, tf_keras.layers.Layer)

  def test_library_modules_do_not_import_keras3(self):
    import glob
    root = os.path.dirname(ppcd_tf.__file__)
    for path in glob.glob(os.path.join(root, "**", "*.py"), recursive=True):
      with open(path) as f:
        text = f.read()
      for bad in ("import keras\n", "from keras import", "from keras.", "import keras."):
        self.assertNotIn(bad, text, f"{path} imports Keras 3 ({bad.strip()})")


if __name__ == "__main__":
  absltest.main()
