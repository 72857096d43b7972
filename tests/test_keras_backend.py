"""The package must run on tf_keras (Keras 2), never Keras 3."""
import os
import subprocess
import sys

from absl.testing import absltest

import ppcd_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str, **env) -> subprocess.CompletedProcess:
  """Runs `code` in a fresh interpreter whose environment lacks the legacy switch
  (tests/conftest.py sets it for this process), plus `env`."""
  clean = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  clean["PYTHONPATH"] = os.pathsep.join(
      p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
  return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


class KerasBackendTest(absltest.TestCase):

  def test_importing_the_package_sets_the_legacy_switch(self):
    # Without the switch in the environment, importing ppcd_tf first sets it, so a
    # TensorFlow imported afterwards resolves tf.keras to tf_keras.
    proc = _python("import os, ppcd_tf; print(os.environ['TF_USE_LEGACY_KERAS']); "
                   "import tensorflow as tf; print(type(tf.keras.layers.Dense(2)).__module__)")
    self.assertEqual(proc.returncode, 0, proc.stderr)
    switch, module = proc.stdout.split()
    self.assertEqual(switch, "1")
    self.assertTrue(module.startswith("tf_keras."), module)

  def test_importing_the_package_refuses_keras_3(self):
    proc = _python("import ppcd_tf", TF_USE_LEGACY_KERAS="0")
    self.assertNotEqual(proc.returncode, 0)
    self.assertIn("RuntimeError: ppcd_tf needs tf_keras (Keras 2): TF_USE_LEGACY_KERAS is "
                  "set to '0'; unset it or set it to 1.", proc.stderr)

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
