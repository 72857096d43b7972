"""tools/experiment.py: every run's config at equal budgets, seeds, one tiny run end to end."""
import json
import os
import shutil
import tempfile

import numpy as np
import pytest
from absl.testing import absltest

from ppcd_tf import flops
from ppcd_tf.config import ConfigError
from ppcd_tf.generator import generator_layout
from tests import tiny_runs
from tools import experiment

_SLIM = {"stem": 5, "mid": [7, 6, 5], "out": [5, 4, 16]}
_TEACHER_STEP = 100


def _experiment(root, results=None, student_steps=10, teacher_dir="", seeds=(1, 2, 3),
                **kw):
  exp = experiment.Experiment(root, "configs/tiny_test.cfg",
                              results or os.path.join(root, "results"), num_samples=20,
                              latency_repeats=3, classifier_epochs=1,
                              student_steps=student_steps, teacher_dir=teacher_dir,
                              seeds=seeds, **kw)
  return exp


def _fake_slim_report(root, seed):
  path = os.path.join(root, f"seed{seed}", "ppcd_t81", "slim", "slim_report.json")
  os.makedirs(os.path.dirname(path))
  with open(path, "w") as f:
    json.dump({"slim_channels": _SLIM}, f)


class ConfigTest(absltest.TestCase):

  def test_every_run_config(self):
    root = tempfile.mkdtemp()
    exp = _experiment(root, curve_evals=5)
    exp.teacher_step = lambda: _TEACHER_STEP
    _fake_slim_report(root, 2)
    slim_channels = (5, 7, 6, 5, 5, 4, 16)
    end = exp.schedule()["end_step"]
    self.assertEqual(end, 6)
    teacher_dir = os.path.join(root, "teacher")
    for name, run in experiment.RUNS.items():
      if name == "teacher":
        self.assertEqual(exp.config_for(run).run.workdir, teacher_dir)
        continue
      cfg = exp.config_for(run, seed=2)
      if run.kind == "qat":
        # PPCD's run at the same seed, continued: its last twelfth of steps more
        # (at least 1), all of them through fake quant, no curve.
        main = exp.config_for(experiment.RUNS["ppcd_t81"], seed=2)
        self.assertEqual(exp.qat_steps, 1)
        self.assertEqual((cfg.optim.num_steps, cfg.pruning.qat_steps), (11, 1))
        self.assertEqual((cfg.run.eval_every, cfg.run.precision), (0, "float32"))
        self.assertEqual(cfg.replace(run=dict(workdir=main.run.workdir, eval_every=2,
                                              precision=main.run.precision),
                                     optim=dict(num_steps=10), pruning=dict(qat_steps=0)),
                         main)
        continue
      r, d, p = cfg.run, cfg.distill, cfg.pruning
      self.assertEqual((r.workdir, r.seed), (os.path.join(root, "seed2", name), 2), name)
      # Curves: 5 evaluations over the student steps, classifier features, no stopping.
      self.assertEqual((r.eval_every, r.eval_num_samples, r.early_stop_evals), (2, 2000, 0))
      self.assertEqual(r.eval_extractor, "classifier:" + os.path.join(root, "classifier"))
      # Equal EMA horizon: every run's EMA covers its last (student_steps - end) steps.
      self.assertEqual(cfg.optim.num_steps - cfg.optim.ema_start, 10 - end, name)
      if run.kind == "teacher_more":
        self.assertEqual(r.mode, "teacher")
        self.assertEqual(cfg.optim.num_steps, _TEACHER_STEP + 10)
        self.assertEqual(cfg.model.g_channels, ())
      elif run.kind in ("scratch", "distill_slim"):
        self.assertEqual(cfg.model.g_channels, slim_channels)
        # Attention at the teacher's widths, as the slimmed generator has them.
        att = [a for a in generator_layout(exp.base.model).attention if a]
        self.assertEqual(cfg.model.g_attention_widths, att[0])
        steps = _TEACHER_STEP + 10 if run.total_steps else 10
        self.assertEqual(cfg.optim.num_steps, steps, name)
        if run.kind == "scratch":
          self.assertEqual(r.mode, "teacher")  # no teacher involved
        else:
          self.assertEqual(r.mode, "ppcd")
          self.assertFalse(d.use_masks or d.init_from_teacher)
          self.assertEqual(d.teacher_dir, teacher_dir)
          self.assertTrue(d.lambda_att > 0 and d.lambda_cam > 0 and d.lambda_pix > 0)
      else:  # pruned students of the teacher
        self.assertEqual((r.mode, cfg.optim.num_steps, d.teacher_dir),
                         ("ppcd", 10, teacher_dir), name)
        self.assertTrue(d.init_from_teacher)
        self.assertEqual(p.target_fraction, run.target)
        if run.kind == "magnitude":
          self.assertFalse(d.use_masks)
          self.assertEqual((d.lambda_att, d.lambda_cam, d.lambda_pix), (0, 0, 0))
          self.assertEqual(p.end_step, end)
          continue
        self.assertTrue(d.use_masks)
        self.assertEqual(p.importance, run.importance)
        # The one-shot L1 baseline ranks by its normalised norms alone (one global
        # threshold); every other global ranking per unit of cost.
        self.assertEqual(p.cost_exponent, 0.0 if name.startswith("oneshot_l1") and
                         name != "oneshot_l1_cost" else 1.0, name)
        if run.one_shot:
          self.assertEqual((p.schedule, p.begin_step, p.end_step), ("constant", 0, 1))
        else:
          self.assertEqual((p.schedule, p.end_step), ("polynomial", end))
        self.assertAlmostEqual(p.min_channel_fraction, experiment.SAFETY_FLOOR)
        off = {"no_att": ("lambda_att",), "no_cam": ("lambda_cam",),
               "no_pix": ("lambda_pix",)}.get(name, ())
        if name in ("no_distill", "uniform_l1"):
          off = ("lambda_att", "lambda_cam", "lambda_pix")
        for field in ("lambda_att", "lambda_cam", "lambda_pix"):
          self.assertEqual(getattr(d, field) == 0, field in off, f"{name} {field}")

  def test_scratch_has_exactly_the_slim_parameter_count(self):
    # The from-scratch architecture costs what the slim generator of those widths costs.
    root = tempfile.mkdtemp()
    exp = _experiment(root)
    exp.teacher_step = lambda: _TEACHER_STEP
    _fake_slim_report(root, 1)
    from ppcd_tf.generator import GeneratorChannels
    slim_cost = flops.generator_cost(exp.base.model, GeneratorChannels(
        stem=_SLIM["stem"], mid=tuple(_SLIM["mid"]), out=tuple(_SLIM["out"])))
    cfg = exp.config_for(experiment.RUNS["scratch_student"], seed=1)
    self.assertEqual(flops.generator_cost(cfg.model).total_params, slim_cost.total_params)

  def test_seeds_are_the_reserved_report_seeds(self):
    root = tempfile.mkdtemp()
    for bad in ((0,), (1, 100), ()):
      with self.assertRaisesRegex(ConfigError, "report seeds must be from"):
        _experiment(root, seeds=bad)
    exp = _experiment(root, seeds=(4,))
    self.assertEqual(exp.result_path("teacher"), os.path.join(root, "results", "teacher.json"))
    self.assertEqual(exp.result_path("oneshot_l1", 4),
                     os.path.join(root, "results", "seed4", "oneshot_l1.json"))

  def test_budget_families(self):
    self.assertEqual(experiment.budget_family("ppcd_t"),
                     ["ppcd_t81", "ppcd_t50", "ppcd_t70", "ppcd_t90"])
    # The cost-weighted one-shot variant is a different method, not a budget.
    self.assertEqual(experiment.budget_family("oneshot_l1"),
                     ["oneshot_l1", "oneshot_l1_t50", "oneshot_l1_t70", "oneshot_l1_t90"])
    self.assertEqual(experiment.budget_family("uniform_l1"), ["uniform_l1"])

  def test_registry_order_and_dependencies(self):
    names = list(experiment.RUNS)
    self.assertEqual(names[:3], ["teacher", "ppcd_t81", "oneshot_l1"])
    for name, run in experiment.RUNS.items():
      for need in run.needs:
        self.assertLess(names.index(need), names.index(name), name)
    for b in experiment.STRUCTURED:
      self.assertEqual(experiment.RUNS[b].target, experiment.MAIN_TARGET)
    with self.assertRaisesRegex(Exception, "not a run"):
      _experiment(tempfile.mkdtemp())._closure(["nope"])
    self.assertEqual(_experiment(tempfile.mkdtemp())._closure(["scratch"]),
                     {"teacher", "ppcd_t81", "scratch"})


class MetricsCheckTest(absltest.TestCase):
  """A retrained metrics classifier must reproduce the committed teacher FID."""

  def _run_check(self, fid_here):
    from unittest import mock
    from ppcd_tf import evaluate
    root = tempfile.mkdtemp()
    exp = _experiment(root)
    os.makedirs(os.path.join(root, "classifier"))
    with open(exp.result_path("teacher"), "w") as f:
      json.dump(dict(fid=2.0, num_samples=20, eval_seed=0), f)
    with mock.patch.object(evaluate, "evaluate_workdir",
                           return_value=dict(fid=fid_here)) as ev:
      try:
        exp.check_metrics()
      finally:
        calls = ev.call_count
      exp.check_metrics()  # recorded: not evaluated again
    self.assertEqual((calls, ev.call_count), (1, 1))
    self.assertEqual(ev.call_args.args[:4], (exp.workdir("teacher"), "ema", exp.extractor, 20))
    self.assertEqual(ev.call_args.kwargs["seed"], 0)
    with open(os.path.join(root, "classifier", experiment.METRICS_CHECK_FILE)) as f:
      return json.load(f)

  def test_the_same_fid_passes_once_and_is_recorded(self):
    record = self._run_check(2.0 * (1 + 5e-4))
    self.assertEqual((record["teacher_fid_committed"], record["teacher_fid_here"]),
                     (2.0, 2.001))

  def test_another_classifier_is_refused_with_both_fids(self):
    with self.assertRaisesRegex(ConfigError, r"teacher FID 2\.1, but .*teacher\.json says "
                                r"2 \(5\.00% apart, allowed 0\.1%\).*--results"):
      self._run_check(2.1)


class VariantBackfillTest(absltest.TestCase):

  def test_finished_results_get_variants_only_where_the_workdir_is_here(self):
    from unittest import mock
    from ppcd_tf import checkpoints
    exp = _experiment(tempfile.mkdtemp())
    run = experiment.RUNS["ppcd_t81"]
    found = {"int8": {"fid": 3.0}}
    with mock.patch.object(exp, "variants", return_value=found) as variants, \
         mock.patch.object(checkpoints, "all_checkpoints", return_value=[]):
      self.assertEqual(exp._add_variants(run, 1, {"fid": 2.0}), {"fid": 2.0})  # no workdir
    variants.assert_not_called()
    os.makedirs(os.path.dirname(exp.result_path("ppcd_t81", 1)))
    with mock.patch.object(exp, "variants", return_value=found) as variants, \
         mock.patch.object(checkpoints, "all_checkpoints", return_value=["ckpt-6"]):
      self.assertEqual(exp._add_variants(run, 1, {"fid": 2.0}),
                       {"fid": 2.0, "variants": found})
      self.assertEqual(exp._add_variants(run, 1, {"variants": {}}), {"variants": {}})
      other = exp._add_variants(experiment.RUNS["teacher_more"], 1, {"fid": 2.0})
    self.assertEqual(other, {"fid": 2.0})  # not a VARIANT_RUNS run
    variants.assert_called_once_with(run, 1)
    with open(exp.result_path("ppcd_t81", 1)) as f:
      self.assertEqual(json.load(f)["variants"], found)


class VariantChoiceTest(absltest.TestCase):

  def test_tflite_variants_are_checked_and_kept_in_order(self):
    from ppcd_tf.config import ConfigError
    root = tempfile.mkdtemp()
    exp = _experiment(root, tflite_variants=("int8", "fp32"))
    self.assertEqual(exp.tflite_variants, (("fp32", "none"), ("int8", "int8")))
    self.assertEqual(_experiment(root).tflite_variants, experiment.VARIANTS)
    for bad in (("fp32", "int4"), ("int8",), ()):
      with self.assertRaisesRegex(ConfigError, "--tflite_variants=.*choose from "
                                  "fp32,fp16,dynamic,int8, with fp32"):
        _experiment(root, tflite_variants=bad)


class EndToEndTest(absltest.TestCase):

  @pytest.mark.slow
  def test_tiny_runs_write_their_results(self):
    root = tempfile.mkdtemp()
    res = os.path.join(root, "results")
    shutil.copytree(tiny_runs.classifier(), os.path.join(root, "classifier"))
    # With a packaged teacher, as the CLI's default: used as it is, nothing written there.
    from ppcd_tf import teacher_asset
    from tools import experiment_report
    _, teacher_dir, _ = tiny_runs.packaged_teacher()
    # Two of the four TFLite variants (the fp16 and dynamic exports are
    # tests/test_export.py's); given out of order, kept in VARIANTS order.
    exp = _experiment(root, res, student_steps=6, teacher_dir=teacher_dir, seeds=(1,),
                      curve_evals=2, curve_samples=20, tflite_variants=("int8", "fp32"))
    before = teacher_asset.verify_teacher_asset(teacher_dir)
    # Two student kinds (a pruned student and the control); every run's config is
    # checked by test_every_run_config, the rankings by test_importance/test_pruning.
    results = exp.run(["ppcd_t81", "teacher_more", "ppcd_t81_qat"])
    by = {r["name"]: r for r in results}
    self.assertEqual(set(by), {"teacher", "ppcd_t81", "teacher_more", "ppcd_t81_qat"})
    # The QAT run continued PPCD's workdir for one fake-quant step and ships int8.
    q = by.pop("ppcd_t81_qat")
    results = [r for r in results if r["name"] != "ppcd_t81_qat"]
    self.assertEqual((q["train_steps"], q["qat_steps"], q["tflite_variant"]), (7, 1, "int8"))
    self.assertEqual(list(q["variants"]), ["int8"])
    self.assertEqual(q["params"], by["ppcd_t81"]["params"])
    self.assertTrue(np.isfinite(q["variants"]["int8"]["fid"]))
    self.assertEqual(json.load(open(os.path.join(exp.workdir("ppcd_t81_qat", 1), "qat.json")))[
        "step"], 6)
    teacher = by["teacher"]
    self.assertEqual(teacher_asset.verify_teacher_asset(teacher_dir), before)  # untouched
    self.assertEqual((teacher["train_steps"], teacher["teacher_package"]),
                     (before["best_step"], teacher_dir))
    self.assertFalse(os.path.exists(os.path.join(root, "teacher")))  # nothing trained
    r = by["ppcd_t81"]
    self.assertLessEqual(r["params"], 0.19 * teacher["params"] + 1)
    self.assertEqual(r["params"], r["slim_report"]["params_after"])
    self.assertEqual(r["slim_report"]["params_before"], teacher["params"])
    self.assertLess(r["slim_report"]["max_abs_diff"], 1e-4)  # slim == trained
    self.assertEqual(r["importance"], "taylor")
    # It fine-tuned at the slim width after its last pruning event.
    self.assertTrue(os.path.exists(os.path.join(exp.workdir("ppcd_t81", 1), "slim_switch.json")))
    # The control continues the teacher's own step counter for the student steps.
    more = by["teacher_more"]
    self.assertEqual((more["train_steps"], more["student_steps"]),
                     (before["best_step"] + 6, 6))
    self.assertEqual(more["params"], teacher["params"])
    # What ships: the chosen TFLite variants of the teacher and of PPCD, evaluated
    # through LiteRT on the same latents (fp32 scores as the Keras model within
    # round-off).
    for r in (teacher, by["ppcd_t81"]):
      self.assertEqual(list(r["variants"]), ["fp32", "int8"])
      self.assertAlmostEqual(r["variants"]["fp32"]["fid"], r["fid"], delta=1e-3 * r["fid"])
      self.assertLess(r["variants"]["int8"]["kib"], r["variants"]["fp32"]["kib"])
      for v in r["variants"].values():
        self.assertTrue(np.isfinite(v["fid"]) and v["latency_ms"] > 0, r["name"])
    self.assertNotIn("variants", more)  # only VARIANT_RUNS
    for r in results:
      for key in ("fid", "kid_mean", "intra_fid", "class_accuracy", "tflite_latency_ms"):
        self.assertTrue(np.isfinite(r[key]), (r["name"], key))
      if r["name"] != "teacher":
        # In student steps, up to the last; the control's evaluations fall where its
        # absolute step (the teacher's + k) is a multiple of --eval_every.
        steps = [c[0] for c in r["curve"]]
        self.assertEqual(steps[-1], 6, r["name"])
        if r["name"] != "teacher_more":
          self.assertEqual(steps, [3, 6], r["name"])
        self.assertEqual(r["wall"]["invocations"], 1)
        self.assertGreater(r["wall"]["wall_seconds"], 0)
        self.assertTrue(os.path.exists(os.path.join(res, "seed1", "grids", r["name"] + ".png")))
    # A second call reuses the finished runs instead of training again.
    path = exp.result_path("ppcd_t81", 1)
    mtime = os.path.getmtime(path)
    exp.run(["ppcd_t81"])
    self.assertEqual(os.path.getmtime(path), mtime)
    # The report reads them back: one seed, so every verdict is untested.
    md = experiment_report.Report(exp).write(os.path.join(root, "RESULTS.md"), "cmd")
    text = open(md).read()
    self.assertIn("| PPCD (81% removed) | 1 |", text)
    self.assertIn("**untested**", text)
    self.assertIn("## int8: post-training quantisation vs quantisation-aware", text)
    self.assertRegex(text, r"\*\*Goal\*\*.*: \*\*(not met|not decided yet)\*\*")
    for png in ("fid_vs_steps.png", "fid_vs_params.png", "fid_vs_macs.png"):
      self.assertTrue(os.path.exists(os.path.join(res, png)), png)


if __name__ == "__main__":
  absltest.main()
