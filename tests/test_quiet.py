"""A CPU user sees no alarming start-up lines, and can get them back (issue 17)."""
import os
import subprocess
import sys
from unittest import mock

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from ppcd_tf import discriminator as discriminator_lib
from ppcd_tf import quiet_start
from ppcd_tf.layers import blocks
from tests.test_models import tiny_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALARMING = ("E0000", "W0000", "cuInit", "remapper failed", "is deprecated")


def _run(args, **env) -> str:
  """Runs python `args` in a clean environment (PYTHONPATH only, plus `env`); returns
  stdout and stderr together."""
  clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": ROOT, **env}
  proc = subprocess.run([sys.executable, *args], env=clean, cwd=ROOT, timeout=300,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  return proc.stdout


class QuietStartTest(absltest.TestCase):

  def test_cli_start_prints_no_notices(self):
    out = _run(["-m", "tools.sample", "--help"])
    self.assertIn("--model", out)  # the help itself still comes through
    for word in ALARMING + ("oneDNN custom operations", "Could not find cuda drivers"):
      self.assertNotIn(word, out)

  def test_notices_come_back_when_asked(self):
    # So the test above can fail: the same command with --verbosity=1, or with the
    # user's own TF_CPP_MIN_LOG_LEVEL, prints TensorFlow's start-up notices.
    self.assertIn("oneDNN custom operations are on",
                  _run(["-m", "tools.sample", "--help", "--verbosity=1"]))
    self.assertIn("oneDNN custom operations are on",
                  _run(["-m", "tools.sample", "--help"], TF_CPP_MIN_LOG_LEVEL="0"))

  def test_kid_logs_no_tfgan_deprecation(self):
    code = ("import numpy as np, ppcd_tf; from ppcd_tf import metrics; "
            "r = np.random.default_rng(1); "
            "print(metrics.kid(r.normal(size=(6, 4)), r.normal(size=(6, 4)), "
            "subset_size=4, num_subsets=2))")
    out = _run(["-c", code])
    self.assertIn("(", out)  # the KID tuple was printed
    self.assertNotIn("is deprecated", out)
    self.assertNotIn("back_prop", out)

  def test_wants_startup_notices(self):
    quiet = ["prog", "--workdir=/tmp/x"]
    self.assertFalse(quiet_start.wants_startup_notices(quiet, {}))
    self.assertFalse(quiet_start.wants_startup_notices(quiet + ["--verbosity=0"], {}))
    self.assertFalse(quiet_start.wants_startup_notices(quiet + ["-v", "-1"], {}))
    for argv in (["--verbosity=1"], ["--verbosity", "2"], ["-v", "1"], ["-v=1"],
                 ["--v=1"]):
      self.assertTrue(quiet_start.wants_startup_notices(quiet + argv, {}), argv)
    self.assertTrue(quiet_start.wants_startup_notices(
        quiet, {"TF_CPP_MIN_LOG_LEVEL": "2"}))


class MakefileTest(absltest.TestCase):

  def test_make_demo_leaves_the_log_level_to_ppcd_tf(self):
    # A TF_CPP_MIN_LOG_LEVEL in the environment means "show the notices" (above), so a
    # Makefile that exports one makes `make demo` print cuInit errors. PY is swapped for
    # a script that prints the environment the demo command would get.
    import tempfile
    fake = os.path.join(tempfile.mkdtemp(), "python")
    with open(fake, "w") as f:
      f.write("#!/bin/sh\necho \"args: $*\"\nenv\n")
    os.chmod(fake, 0o755)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(["make", "-s", "--no-print-directory", "demo", f"PY={fake}",
                           "WORKDIR=/tmp/unused"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    self.assertIn("args: -m tools.demo --workdir=/tmp/unused", proc.stdout)
    self.assertIn("TF_USE_LEGACY_KERAS=1", proc.stdout)
    self.assertNotIn("TF_CPP_MIN_LOG_LEVEL", proc.stdout)


class RemapperWorkaroundTest(absltest.TestCase):

  def test_discriminator_same_as_with_tf_nn_relu(self):
    # relu_of_block_output (where(x > 0, x, 0)) replaces tf.nn.relu on block outputs so
    # grappler's remapper has nothing to mis-fuse; logits, CAMs and gradients must be
    # bit-identical to the tf.nn.relu version for the same weights.
    cfg = tiny_model()
    d = discriminator_lib.build_discriminator(cfg)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(-1, 1, (4, cfg.resolution, cfg.resolution, 3)), tf.float32)
    y = tf.constant(rng.integers(0, cfg.num_classes, 4), tf.int32)

    def outputs():
      @tf.function
      def run(x, y):
        with tf.GradientTape() as tape:
          tape.watch(x)
          logits = d((x, y), training=False)
          total = tf.reduce_sum(logits)
        grads = tape.gradient(total, [x] + d.trainable_variables)
        return [logits, d.class_activation_map((x, y))] + grads
      return [t.numpy() for t in run(x, y)]

    ours = outputs()
    with mock.patch.object(blocks, "relu_of_block_output", tf.nn.relu), \
         mock.patch.object(discriminator_lib, "relu_of_block_output", tf.nn.relu):
      reference = outputs()
    self.assertLen(ours, len(reference))
    for a, b in zip(ours, reference):
      np.testing.assert_array_equal(a, b)


if __name__ == "__main__":
  absltest.main()
