"""tools/experiment.py: every run's config, the goal verdict, one tiny run end to end."""
import json
import os
import shutil
import tempfile

import numpy as np
import pytest
from absl.testing import absltest

from tests import tiny_runs
from tools import experiment

_SLIM = {"stem": 5, "mid": [7, 6, 5], "out": [5, 4, 16]}


def _experiment(root, results, student_steps=10, teacher_dir=""):
  return experiment.Experiment(root, "configs/tiny_test.cfg", results, num_samples=20,
                               latency_repeats=3, classifier_epochs=1,
                               student_steps=student_steps, teacher_dir=teacher_dir)


def _fake_slim_report(root):
  path = os.path.join(root, "ppcd_t81", "slim", "slim_report.json")
  os.makedirs(os.path.dirname(path))
  with open(path, "w") as f:
    json.dump({"slim_channels": _SLIM}, f)


def _result(name, fid, params=1000, label=None):
  """A result file as Experiment.finish writes it (only the fields the report reads)."""
  return dict(name=name, label=label or name, kind=experiment.RUNS[name].kind,
              target=experiment.RUNS[name].target, params=params, macs=10 * params,
              fid=fid, kid_mean=1.0, kid_std=0.1, intra_fid=fid + 1, is_mean=5.0,
              class_accuracy=0.9, num_samples=20, seed=0, tflite_fp32_kib=4.0,
              tflite_latency_ms=0.2, train_steps=10, train_wall_seconds=1.0)


class ConfigTest(absltest.TestCase):

  def test_every_run_config(self):
    root = tempfile.mkdtemp()
    exp = _experiment(root, os.path.join(root, "results"))
    _fake_slim_report(root)
    slim_channels = (5, 7, 6, 5, 5, 4, 16)
    base_steps = exp.base.optim.num_steps
    for name, run in experiment.RUNS.items():
      cfg = exp.config_for(run)
      self.assertEqual(cfg.run.workdir, os.path.join(root, name), name)
      d = cfg.distill
      if run.kind == "teacher":
        self.assertEqual(cfg.run.mode, "teacher")
        self.assertEqual(cfg.model.g_channels, ())
      elif run.kind == "scratch":
        self.assertEqual(cfg.run.mode, "teacher")  # no teacher involved
        self.assertEqual(cfg.model.g_channels, slim_channels)
        self.assertEqual(cfg.optim.num_steps, base_steps + 10)
      elif run.kind == "distill_slim":
        self.assertEqual(cfg.run.mode, "ppcd")
        self.assertEqual(cfg.model.g_channels, slim_channels)
        self.assertEqual(cfg.optim.num_steps, base_steps + 10)
        self.assertFalse(d.use_masks)
        self.assertFalse(d.init_from_teacher)
        self.assertEqual(d.teacher_dir, os.path.join(root, "teacher"))
        self.assertTrue(d.lambda_att > 0 and d.lambda_cam > 0 and d.lambda_pix > 0)
      else:  # ppcd variants and magnitude: students of the teacher
        self.assertEqual(cfg.run.mode, "ppcd")
        self.assertEqual(cfg.optim.num_steps, 10)
        self.assertTrue(d.init_from_teacher)
        self.assertEqual(cfg.pruning.target_fraction, run.target)
        self.assertLess(cfg.pruning.end_step, 10)
        if run.kind == "magnitude":
          self.assertFalse(d.use_masks)
          self.assertEqual((d.lambda_att, d.lambda_cam, d.lambda_pix), (0, 0, 0))
          continue
        self.assertTrue(d.use_masks)
        self.assertAlmostEqual(cfg.pruning.min_channel_fraction, 1 - run.target)
        off = {"no_att": "lambda_att", "no_cam": "lambda_cam", "no_pix": "lambda_pix",
               "no_distill": ("lambda_att", "lambda_cam", "lambda_pix")}.get(name, ())
        for field in ("lambda_att", "lambda_cam", "lambda_pix"):
          self.assertEqual(getattr(d, field) == 0, field in off, f"{name} {field}")

  def test_other_seed_shares_the_teacher_and_repeats_the_students(self):
    root = tempfile.mkdtemp()
    res = os.path.join(root, "results")
    exp = experiment.Experiment(root, "configs/tiny_test.cfg", res, num_samples=20,
                                latency_repeats=3, student_steps=10, seed=3)
    main = _experiment(root, res)
    self.assertEqual(exp.results_dir, os.path.join(res, "seed3"))
    teacher = exp.config_for(experiment.RUNS["teacher"])
    self.assertEqual(teacher.run.workdir, os.path.join(root, "teacher"))
    self.assertEqual(teacher.run.seed, main.config_for(experiment.RUNS["teacher"]).run.seed)
    self.assertEqual(exp._result_path("teacher"), os.path.join(res, "teacher.json"))
    student = exp.config_for(experiment.RUNS["ppcd_t70"])
    self.assertEqual(student.run.seed, 3)
    self.assertEqual(student.run.workdir, os.path.join(root, "seed3", "ppcd_t70"))
    self.assertEqual(student.distill.teacher_dir, os.path.join(root, "teacher"))
    self.assertEqual(exp._result_path("ppcd_t70"), os.path.join(res, "seed3", "ppcd_t70.json"))
    # Apart from seed and workdir, the repeat is the main run's config.
    main_cfg = main.config_for(experiment.RUNS["ppcd_t70"])
    self.assertEqual(student.replace(run=dict(seed=main_cfg.run.seed,
                                              workdir=main_cfg.run.workdir)), main_cfg)

  def test_registry_order_and_dependencies(self):
    names = list(experiment.RUNS)
    self.assertEqual(names[:2], ["teacher", "ppcd_t81"])  # the main comparison first
    for name, run in experiment.RUNS.items():
      for need in run.needs:
        self.assertLess(names.index(need), names.index(name), name)
    for b in experiment.BASELINES:
      self.assertIn(b, experiment.RUNS)
    with self.assertRaisesRegex(Exception, "not a run"):
      _experiment(tempfile.mkdtemp(), tempfile.mkdtemp())._closure(["nope"])


class ReportTest(absltest.TestCase):

  def _report(self, results):
    root = tempfile.mkdtemp()
    res = os.path.join(root, "results")
    exp = _experiment(root, res)
    for r in results:
      with open(os.path.join(res, r["name"] + ".json"), "w") as f:
        json.dump(r, f)
    md = os.path.join(root, "RESULTS.md")
    exp.write_results_md(md, "python -m tools.experiment --the-command")
    with open(md) as f:
      return f.read(), res

  def test_goal_met_only_within_10_percent_and_better_than_every_baseline(self):
    teacher = _result("teacher", 20.0, params=10000)
    baselines = [_result(b, 30.0) for b in experiment.BASELINES]
    text, res = self._report([teacher, _result("ppcd_t81", 21.9, params=1900)] + baselines)
    self.assertIn("**met**", text)
    self.assertIn("81.0% fewer", text)
    self.assertIn("--the-command", text)
    self.assertTrue(os.path.exists(os.path.join(res, "fid_vs_params.png")))
    # 22.1 > 1.1 * 20: not within 10%.
    text, _ = self._report([teacher, _result("ppcd_t81", 22.1, params=1900)] + baselines)
    self.assertIn("**not met**", text)
    self.assertIn("not within", text)
    # Within 10% but one baseline is better.
    worse = [_result(b, 15.0 if b == "scratch" else 30.0) for b in experiment.BASELINES]
    text, _ = self._report([teacher, _result("ppcd_t81", 21.0, params=1900)] + worse)
    self.assertIn("**not met**", text)
    self.assertIn(f"beats {len(worse) - 1} of the {len(worse)}", text)
    self.assertIn("; loses to: scratch)", text)
    self.assertIn("| scratch | 1,000 | 15.00 | +6.00 | worse |", text)
    self.assertIn("| magnitude | 1,000 | 30.00 | -9.00 | better |", text)
    # Baselines missing: undecided, and the pending runs are listed.
    text, _ = self._report([teacher, _result("ppcd_t81", 21.0, params=1900)])
    self.assertIn("**not decided yet**", text)
    self.assertIn("Not yet run", text)
    self.assertIn(experiment.RUNS["magnitude"].label, text)
    self.assertNotIn("Training seed", text)

  def test_seed_table(self):
    root = tempfile.mkdtemp()
    res = os.path.join(root, "results")
    for seed, results in ((0, [_result("teacher", 20.0, params=10000),
                               _result("ppcd_t81", 21.0), _result("ppcd_t70", 40.0),
                               _result("magnitude", 10.0)]),
                          (1, [_result("ppcd_t70", 20.0), _result("ppcd_t81", 23.0)]),
                          (2, [_result("ppcd_t70", 30.0)])):
      folder = os.path.join(res, f"seed{seed}") if seed else res
      os.makedirs(folder, exist_ok=True)
      for r in results:
        with open(os.path.join(folder, r["name"] + ".json"), "w") as f:
          json.dump(r, f)
    md = os.path.join(root, "RESULTS.md")
    _experiment(root, res).write_results_md(md, "cmd")
    with open(md) as f:
      text = f.read()
    self.assertIn("| run | seed 0 | seed 1 | seed 2 | mean ± sd |", text)
    # sd with ddof=1: ppcd_t81 {21, 23} -> 1.41; ppcd_t70 {40, 20, 30} -> 10.00.
    self.assertIn("| ppcd_t81 | 21.00 | 23.00 |  | 22.00 ± 1.41 |", text)
    self.assertIn("| ppcd_t70 | 40.00 | 20.00 | 30.00 | 30.00 ± 10.00 |", text)
    self.assertNotIn("| magnitude | 10.00 |", text.split("## Training seed")[1])
    # The main table and goal still come from seed 0 only.
    self.assertIn("PPCD's FID is 21.00", text)


class EndToEndTest(absltest.TestCase):

  @pytest.mark.slow
  def test_tiny_ppcd_run_writes_its_results(self):
    root = tempfile.mkdtemp()
    res = os.path.join(root, "results")
    shutil.copytree(tiny_runs.classifier(), os.path.join(root, "classifier"))
    # With a packaged teacher, as the CLI's default: used as it is, nothing written there.
    from ppcd_tf import teacher_asset
    _, teacher_dir, _ = tiny_runs.packaged_teacher()
    exp = _experiment(root, res, student_steps=6, teacher_dir=teacher_dir)
    self.assertEqual(exp.config_for(experiment.RUNS["ppcd_t81"]).distill.teacher_dir,
                     teacher_dir)
    results = exp.run(["ppcd_t81"])
    by = {r["name"]: r for r in results}
    self.assertEqual(set(by), {"teacher", "ppcd_t81"})
    main, teacher = by["ppcd_t81"], by["teacher"]
    info = teacher_asset.verify_teacher_asset(teacher_dir)
    self.assertEqual((teacher["train_steps"], teacher["teacher_package"]),
                     (info["best_step"], teacher_dir))
    self.assertFalse(os.path.exists(os.path.join(root, "teacher")))  # nothing trained
    self.assertLessEqual(main["params"], 0.19 * teacher["params"] + 1)
    self.assertEqual(main["params"], main["slim_report"]["params_after"])
    self.assertLess(main["slim_report"]["max_abs_diff"], 1e-4)  # slim == masked
    for r in results:
      for key in ("fid", "kid_mean", "intra_fid", "class_accuracy", "tflite_latency_ms"):
        self.assertTrue(np.isfinite(r[key]), (r["name"], key))
      self.assertTrue(os.path.exists(os.path.join(res, "grids", r["name"] + ".png")))
    self.assertTrue(os.path.exists(os.path.join(res, "grids_side_by_side.png")))
    # A second call reuses the finished runs instead of training again.
    mtime = os.path.getmtime(os.path.join(res, "ppcd_t81.json"))
    exp.run(["ppcd_t81"])
    self.assertEqual(os.path.getmtime(os.path.join(res, "ppcd_t81.json")), mtime)


if __name__ == "__main__":
  absltest.main()
