"""`make demo`'s pipeline end to end on the tiny config (the real preset is minutes)."""
import json
import os
import shutil
import tempfile

import pytest
from absl.testing import absltest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
class DemoTest(absltest.TestCase):

  def test_demo_pipeline_on_tiny_config(self):
    # As `make demo` does: compress a packaged (shipped) teacher, here a tiny one.
    from ppcd_tf import teacher_asset
    from tests import tiny_runs
    from tools import demo
    _, teacher_dir, _ = tiny_runs.packaged_teacher()
    workdir = tempfile.mkdtemp(prefix="ppcd_demo_")
    # The process's tiny metrics classifier, as the experiment test does: the demo
    # reuses a classifier already in WORKDIR/classifier (training one is tested in
    # test_classifier).
    shutil.copytree(tiny_runs.classifier(), os.path.join(workdir, "classifier"))
    result = demo.run_demo(workdir, os.path.join(ROOT, "configs", "tiny_test.cfg"),
                           num_samples=40, latency_repeats=3, classifier_epochs=1,
                           teacher_dir=teacher_dir)
    report = json.load(open(os.path.join(workdir, "demo_report.json")))
    self.assertEqual(report["table"], result["table"])
    info = teacher_asset.verify_teacher_asset(teacher_dir)  # the demo wrote nothing there
    self.assertEqual(report["teacher_package"]["best_step"], info["best_step"])
    self.assertFalse(os.path.exists(os.path.join(workdir, "teacher")))  # nothing trained
    self.assertEqual(report["teacher"]["params"], report["slim_report"]["params_before"])
    self.assertLessEqual(report["slim_report"]["params_after"],
                         0.19 * report["slim_report"]["params_before"] + 1)
    self.assertLessEqual(report["slim_report"]["max_abs_diff"], 1e-5)
    exports = [name for name, _, _ in demo.EXPORTS]
    self.assertEqual(exports, ["teacher_fp32", "slim_fp32", "slim_fp16", "slim_dynamic",
                               "slim_int8"])
    for name in exports:
      self.assertTrue(os.path.exists(os.path.join(workdir, "export", f"{name}.tflite")))
      self.assertGreater(report["tflite_latency_ms_batch1"][name], 0)
    for name in ("teacher_fp32", "slim_fp32", "slim_int8"):
      grid = Image.open(report["grids"][name])
      self.assertEqual(grid.size, (8 * 34 + 2, 10 * 34 + 2))
    # Every row has its own metrics: Keras and each TFLite file through LiteRT, on the
    # same latents (so fp32 TFLite scores as its Keras model within round-off).
    evals = report["evaluations"]
    self.assertEqual(set(evals), {"teacher", "slim", *exports})
    for keras, tflite in (("teacher", "teacher_fp32"), ("slim", "slim_fp32")):
      self.assertAlmostEqual(evals[tflite]["fid"], evals[keras]["fid"],
                             delta=1e-3 * evals[keras]["fid"])
    for name in exports:
      self.assertEqual(evals[name]["generator"],
                       os.path.join(workdir, "export", f"{name}.tflite"))
      self.assertGreater(evals[name]["fid"], 0)
    self.assertEqual(evals["slim_int8"]["quantization"], "int8")
    rows = report["table"].splitlines()[2:]
    self.assertLen(rows, len(demo.REPORT_ROWS))
    self.assertIn(f"| PPCD slim | TFLite int8 | {report['slim_report']['params_after']:,} |",
                  report["table"])
    self.assertIn(f"{evals['slim_int8']['fid']:.2f} |", rows[-1])
    self.assertNotIn("same weights", report["table"])
    side = Image.open(report["grids"]["side_by_side"])
    self.assertGreater(side.size[0], 2 * side.size[1])  # the three grids in a row
    for who in ("teacher", "student_slim"):
      self.assertGreater(report[who]["fid"], 0)
    # A second run reuses every finished stage: no retraining (same checkpoints), no
    # re-export (the TFLite files are not rewritten), the same latencies and metrics.
    before = sorted(os.listdir(os.path.join(workdir, "ppcd", "checkpoints")))
    exported = {n: os.stat(os.path.join(workdir, "export", f"{n}.tflite")).st_mtime_ns
                for n in exports}
    again = demo.run_demo(workdir, os.path.join(ROOT, "configs", "tiny_test.cfg"),
                          num_samples=40, latency_repeats=3, classifier_epochs=1,
                          teacher_dir=teacher_dir)
    self.assertEqual(sorted(os.listdir(os.path.join(workdir, "ppcd", "checkpoints"))),
                     before)
    self.assertEqual({n: os.stat(os.path.join(workdir, "export", f"{n}.tflite")).st_mtime_ns
                      for n in exported}, exported)
    self.assertEqual(again["table"], result["table"])


class StageReuseTest(absltest.TestCase):

  def test_reused_only_for_the_same_key_with_its_files(self):
    import numpy as np
    from tools import demo
    wd, calls = tempfile.mkdtemp(), []

    def compute(v):
      def f():
        calls.append(v)
        return {"fid": np.float32(v)}
      return f

    key = dict(student="ckpt-6", num_samples=40)
    self.assertEqual(demo._reused(wd, "evaluate", key, compute(1.5)), {"fid": 1.5})
    self.assertEqual(demo._reused(wd, "evaluate", dict(key), compute(2.5)), {"fid": 1.5})
    self.assertEqual(calls, [1.5])  # reused: same key
    self.assertEqual(demo._reused(wd, "evaluate", dict(key, student="ckpt-8"),
                                  compute(3.5)), {"fid": 3.5})  # a newer checkpoint
    self.assertEqual(demo._reused(wd, "evaluate", dict(key, student="ckpt-8"),
                                  compute(4.5), still_there=False), {"fid": 4.5})
    self.assertEqual(demo._reused(wd, "export", key, compute(5.5)), {"fid": 5.5})
    self.assertEqual(calls, [1.5, 3.5, 4.5, 5.5])
    self.assertIsInstance(demo._reused(wd, "export", key, compute(6.5))["fid"], float)


if __name__ == "__main__":
  absltest.main()
