"""tools/experiment_report.py: RESULTS.md from result files, verdicts by Welch's test."""
import json
import os
import tempfile

from absl.testing import absltest

from tools import experiment, experiment_report


def _result(name, fid, seed, params=1000, curve=((5, 50.0), (10, 40.0))):
  """A result file as Experiment.finish writes it (the fields the report reads)."""
  run = experiment.RUNS[name]
  return dict(name=name, label=run.label, kind=run.kind, view=run.view, target=run.target,
              params=params, macs=10 * params, fid=fid, kid_mean=0.001, kid_std=0.0001,
              intra_fid=fid + 1, is_mean=5.0, class_accuracy=0.9, num_samples=20,
              train_seed=seed, tflite_latency_ms=0.2, train_steps=10, student_steps=10,
              curve=[list(c) for c in curve],
              wall=dict(wall_seconds=12.0, paused_seconds=0, invocations=1,
                        peak_load=1.5, cpus=2, shared=False))


class ReportTest(absltest.TestCase):

  def _write(self, fids, teacher_fid=20.0, params=None, variants=None):
    """fids: {run: [FID at seed 1, 2, ...]}, params: {run: [params at seed 1, ...]} where
    they differ from the defaults; returns RESULTS.md's text and the folder."""
    root = tempfile.mkdtemp()
    res = os.path.join(root, "results")
    exp = experiment.Experiment(root, "configs/tiny_test.cfg", res, num_samples=20,
                                latency_repeats=3, student_steps=10)
    os.makedirs(res, exist_ok=True)
    teacher = _result("teacher", teacher_fid, None, params=10000)
    with open(os.path.join(res, "teacher.json"), "w") as f:
      json.dump(teacher, f)
    for name, values in fids.items():
      for seed, fid in enumerate(values, start=1):
        folder = os.path.join(res, f"seed{seed}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{name}.json"), "w") as f:
          p = (params or {}).get(name, [1900 if name == "ppcd_t81" else 1000] * len(values))
          r = _result(name, fid, seed, params=p[seed - 1])
          if name in (variants or {}):
            r["variants"] = variants[name][seed - 1]
          json.dump(r, f)
    md = experiment_report.Report(exp).write(os.path.join(root, "RESULTS.md"), "the-cmd")
    with open(md) as f:
      return f.read(), res

  def test_met_only_within_10_percent_and_significantly_better_than_each(self):
    ppcd = [21.0, 21.5, 20.5]   # mean 21.0: +5% over the teacher's 20
    far = {n: [30.0, 31.0, 29.0] for n in experiment.STRUCTURED}
    text, res = self._write(dict(ppcd_t81=ppcd, **far))
    self.assertIn("**Goal** (mean FID within 10% of the teacher and significantly better "
                  "than every structured baseline): **met**.", text)
    self.assertIn("over 3 seeds is 21.00 against the teacher's 20.00: +5.0% (within 10%)",
                  text)
    # The table: n seeds, mean ± sd (ddof=1) and PPCD's verdict with the Welch p.
    self.assertIn("| PPCD (81% removed) | 3 | 1,900 | 19,000 | 21.00 ± 0.50 |", text)
    self.assertRegex(text, r"\| One-shot L1 pruning \+ distillation \| 3 \| .* \| "
                           r"30\.00 ± 1\.00 \|.*\*\*better\*\* \(-9\.00, p = ")
    self.assertIn("the-cmd", text)
    self.assertIn("Training seeds reported here: 1, 2, 3", text)
    for png in ("fid_vs_steps.png", "fid_vs_params.png", "fid_vs_macs.png"):
      self.assertTrue(os.path.exists(os.path.join(res, png)), png)
    with open(os.path.join(res, "results.json")) as f:
      self.assertEqual(len(json.load(f)), 1 + 3 * 4)

  def test_counts_that_differ_by_seed_show_mean_and_range(self):
    text, _ = self._write(dict(ppcd_t81=[21.0, 21.5, 20.5]),
                          params=dict(ppcd_t81=[1900, 1874, 1960]))
    # mean 1,911.33 -> 1,911; MACs are 10x params in these files.
    self.assertIn("| PPCD (81% removed) | 3 | 1,911 (1,874..1,960) | 19,113 (18,740..19,600) "
                  "| 21.00 ± 0.50 |", text)

  def test_exported_variants_table(self):
    def variant(fid, ms, kib):
      return dict(fid=fid, kid_mean=0.002, intra_fid=fid + 1, class_accuracy=0.95,
                  latency_ms=ms, kib=kib, max_abs_diff=0.01)
    per_seed = [dict(fp32=variant(21.0, 0.2, 100.0), int8=variant(23.0, 0.4, 30.0)),
                dict(fp32=variant(21.5, 0.2, 100.0), int8=variant(24.5, 0.6, 30.0))]
    text, _ = self._write(dict(ppcd_t81=[21.0, 21.5]), variants=dict(ppcd_t81=per_seed))
    self.assertIn("## Exported variants (81% removed)", text)
    # FID change against the same seed's Keras FID: int8 +2.0 and +3.0.
    self.assertIn("| PPCD (81% removed) | fp32 | 2 | 21.25 ± 0.35 | 0.00 ± 0.00 | 2.00 ± 0.00 "
                  "| 0.950 ± 0.000 | 0.20 ± 0.00 | 100 ± 0 |", text)
    self.assertIn("| PPCD (81% removed) | int8 | 2 | 23.75 ± 1.06 | 2.50 ± 0.71 |", text)
    self.assertNotIn("| fp16 |", text)  # a variant no seed has is not a row
    text, _ = self._write(dict(ppcd_t81=[21.0, 21.5]))
    self.assertNotIn("Exported variants", text)

  def test_a_tie_is_not_a_win(self):
    # PPCD's mean is lower than one baseline's, but the seeds overlap: a tie, not met.
    fids = {n: [30.0, 31.0, 29.0] for n in experiment.STRUCTURED}
    fids["uniform_l1"] = [22.5, 18.0, 24.0]  # mean 21.5 vs PPCD 21.0
    text, _ = self._write(dict(ppcd_t81=[21.0, 21.5, 20.5], **fids))
    self.assertIn("**not met**", text)
    self.assertIn("Uniform L1 slimming, GAN loss only: PPCD is **tie**", text)
    self.assertIn("PPCD does not beat Uniform L1 slimming, GAN loss only; the best of "
                  "them is Uniform L1 slimming, GAN loss only (mean FID 21.50)", text)

  def test_not_within_says_by_how_much(self):
    fids = {n: [40.0, 41.0, 39.0] for n in experiment.STRUCTURED}
    text, _ = self._write(dict(ppcd_t81=[25.0, 25.5, 24.5], **fids))
    self.assertIn("**not met**", text)
    self.assertIn("PPCD is 25.0% above the teacher (allowed: 10%)", text)

  def test_missing_or_single_seed_baselines_leave_it_undecided(self):
    text, _ = self._write(dict(ppcd_t81=[21.0, 21.5, 20.5], oneshot_l1=[30.0, 31.0],
                               uniform_l1_distill=[35.0]))
    self.assertIn("**not decided yet**", text)
    self.assertIn("Uniform L1 slimming + distillation: untested (n=3 in a and n=1 in b", text)
    self.assertIn("**Not yet run:**", text)
    self.assertIn(experiment.RUNS["magnitude"].label, text)

  def test_nothing_run_yet(self):
    text, _ = self._write({})
    self.assertIn("Pending: the teacher and PPCD at 81% are not both run.", text)


if __name__ == "__main__":
  absltest.main()
