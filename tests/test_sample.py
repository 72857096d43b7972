"""tools/sample.py and `ppcd_tf.export` sampling: grids, truncation, user errors (exit 2)."""

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from absl.testing import absltest
from PIL import Image

from ppcd_tf import config as config_lib
from ppcd_tf import export
from ppcd_tf import images
from ppcd_tf import slim
from ppcd_tf.cli_errors import friendly_errors
from ppcd_tf.generator import build_generator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAD = 2  # ppcd_tf.images.make_grid default


def tool_env():
  return dict(os.environ, PYTHONPATH=REPO, TF_USE_LEGACY_KERAS="1",
              TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")


class SampleTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp(prefix="test_sample_")
    cls.G = build_generator(config_lib.tiny_config().model, name="generator")
    cls.G.blocks[1].attention.gamma.assign(0.5)
    cls.tflite = os.path.join(cls.tmp, "g.tflite")
    export.export_tflite(cls.G, cls.tflite)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)
    super().tearDownClass()

  def run_tool(self, *args):
    return subprocess.Popen([sys.executable, "-m", "tools.sample", *args], cwd=REPO,
                            env=tool_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

  def test_tool_writes_grid_and_reports_user_errors_with_exit_2(self):
    png = os.path.join(self.tmp, "grid.png")
    # Three processes at once: each spends most of its time importing TensorFlow.
    procs = {
        "ok": self.run_tool(f"--model={self.tflite}", "--classes=3,7", "--n=4",
                            "--seed=0", "--truncation=1.0", f"--out={png}"),
        "bad_class": self.run_tool(f"--model={self.tflite}", "--classes=3,12", "--n=2",
                                   f"--out={self.tmp}/bad.png"),
        "missing": self.run_tool(f"--model={self.tmp}/nope.tflite", "--classes=1",
                                 f"--out={self.tmp}/missing.png"),
    }
    results = {k: (p.wait(timeout=300), p.stdout.read(), p.stderr.read())
               for k, p in procs.items()}
    code, _, err = results["ok"]
    self.assertEqual(code, 0, err[-2000:])
    grid = np.asarray(Image.open(png))
    self.assertEqual(grid.shape, (2 * (32 + PAD) + PAD, 4 * (32 + PAD) + PAD, 3))
    # Same pixels as the library path with the same seed and truncation.
    want = export.sample_class_grid(export.open_generator(self.tflite), [3, 7], 4,
                                    seed=0, truncation=1.0)
    np.testing.assert_array_equal(grid, images.make_grid(want, rows=2))

    code, _, err = results["bad_class"]
    self.assertEqual(code, 2, err[-2000:])
    self.assertIn("class id 12 is outside the valid range [0, 10)", err)
    self.assertNotIn("Traceback", err)
    code, _, err = results["missing"]
    self.assertEqual(code, 2, err[-2000:])
    self.assertIn("nope.tflite' does not exist", err)

  def test_bad_seed_truncation_n_exit_2(self):
    for kwargs, message in ((dict(n=2, seed=-1, truncation=1.0), "seed=-1 must be >= 0"),
                            (dict(n=2, seed=0, truncation=-0.5), "truncation=-0.5 must be"),
                            (dict(n=0, seed=0, truncation=1.0), "n=0 must be >= 1")):
      err = io.StringIO()
      with self.assertRaises(SystemExit) as cm, contextlib.redirect_stderr(err):
        with friendly_errors():
          export.check_sampling_args(**kwargs)
      self.assertEqual(cm.exception.code, 2)
      self.assertIn(message, err.getvalue())

  def test_grid_layout_and_determinism(self):
    runner = export.open_generator(self.tflite)
    self.assertEqual(runner.spec.num_classes, 10)
    a = export.sample_class_grid(runner, [0, 5, 9], 3, seed=4, truncation=0.7)
    self.assertEqual(a.shape, (9, 32, 32, 3))
    np.testing.assert_array_equal(
        a, export.sample_class_grid(runner, [0, 5, 9], 3, seed=4, truncation=0.7))
    b = export.sample_class_grid(runner, [0, 5, 9], 3, seed=5, truncation=0.7)
    self.assertGreater(np.abs(a - b).max(), 1e-3)
    # Row r, column j is class r with z_j: a one-row grid of class 5 is row 1.
    np.testing.assert_allclose(
        export.sample_class_grid(runner, [5], 3, seed=4, truncation=0.7), a[3:6],
        atol=1e-6)
    with self.assertRaisesRegex(export.ExportError, r"class id -1 .*\[0, 10\)"):
      export.sample_class_grid(runner, [-1], 3)

  def test_same_samples_from_tflite_saved_model_and_slim_dir(self):
    sm = os.path.join(self.tmp, "sm")
    export.export_saved_model(self.G, sm)
    slim_dir = os.path.join(self.tmp, "slim")
    slim.save_slim_generator(slim.slim_generator(self.G), slim_dir)
    grids = {}
    for path in (self.tflite, sm, slim_dir):
      runner = export.open_generator(path)
      grids[runner.kind] = export.sample_class_grid(runner, [1, 2], 2, seed=0)
    self.assertEqual(sorted(grids), ["keras", "saved_model", "tflite"])
    for kind in ("saved_model", "tflite"):
      self.assertLessEqual(np.abs(grids[kind] - grids["keras"]).max(), 1e-4, kind)

  def test_truncated_normal(self):
    rng = np.random.default_rng(0)
    for t in (0.01, 0.5, 2.0):
      z = export.truncated_normal((2000, 8), t, rng)
      self.assertEqual(z.dtype, np.float32)
      self.assertLessEqual(np.abs(z).max(), t)
    wide = export.truncated_normal((20000,), 8.0, rng)
    self.assertAlmostEqual(float(wide.mean()), 0.0, delta=0.03)
    self.assertAlmostEqual(float(wide.std()), 1.0, delta=0.03)
    # N(0,1) conditioned on |z| <= 1 has std sqrt(1 - 2 phi(1) / (2 Phi(1) - 1)) = 0.5399.
    one = export.truncated_normal((20000,), 1.0, rng)
    self.assertAlmostEqual(float(one.std()), 0.5399, delta=0.01)


if __name__ == "__main__":
  absltest.main()
