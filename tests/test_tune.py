"""tools/tune.py: a keras-tuner search whose trials are tiny PPCD runs."""
import glob
import json
import os

import pytest
from absl.testing import absltest

from ppcd_tf import flags as ppcd_flags
from tests import tiny_runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TuningSeedTest(absltest.TestCase):

  def test_report_seeds_are_refused(self):
    from ppcd_tf.config import ConfigError
    from tools import experiment, tune
    for seed in experiment.REPORT_SEEDS:
      with self.assertRaisesRegex(ConfigError, f"--seed={seed} is one of .*--seed=100"):
        tune.check_tuning_seed(seed)
    for seed in (0, 100):
      tune.check_tuning_seed(seed)  # no error


@pytest.mark.slow
class TuneTest(absltest.TestCase):

  def test_two_trials_write_best_flagfile(self):
    from tools import tune
    workdir = os.path.join(tiny_runs.root(), "tune")
    base = tiny_runs.ppcd_cfg(workdir, tiny_runs.teacher())
    best = tune.run_search(base, "classifier:" + tiny_runs.classifier(), workdir,
                           max_trials=2, num_samples=40)
    records = json.load(open(os.path.join(workdir, "trials.json")))
    self.assertLen(records, 2)
    self.assertEqual(best, records[0])
    # keras-tuner's own record of each trial (the objective it was handed and the
    # values it chose) agrees with ours, and the best record is its lowest FID.
    oracle = {}
    for path in glob.glob(os.path.join(workdir, "keras_tuner", "trial_*", "trial.json")):
      state = json.load(open(path))
      oracle[state["trial_id"]] = state
    self.assertCountEqual(oracle, [r["trial_id"] for r in records])
    for r in records:
      state = oracle[r["trial_id"]]
      self.assertAlmostEqual(r["fid"], state["score"], places=4)
      self.assertEqual(r["values"], {k: state["hyperparameters"]["values"][k]
                                     for k in tune.SEARCH_SPACE})
    lowest = min(oracle.values(), key=lambda state: state["score"])
    self.assertEqual(best["trial_id"], lowest["trial_id"])
    self.assertNotEqual(records[0]["values"], records[1]["values"])
    for r in records:  # every trial reached the budget
      self.assertLessEqual(r["live_fraction"], 0.19)
      _, lo, hi = tune.SEARCH_SPACE["lambda_att"]
      self.assertBetween(r["values"]["lambda_att"], lo, hi)
      self.assertIn(r["values"]["min_channel_share"], tune.SEARCH_SPACE["min_channel_share"][1])
    # best.cfg is a flagfile that composes with the base config and validates.
    cfg = ppcd_flags.parse_flagfile(
        os.path.join(ROOT, "configs", "tiny_test.cfg"),
        [f"--flagfile={os.path.join(workdir, 'best.cfg')}"])
    self.assertAlmostEqual(cfg.distill.lambda_att, best["values"]["lambda_att"], places=4)
    self.assertAlmostEqual(cfg.pruning.min_channel_fraction,
                           best["values"]["min_channel_share"] * (1 - 0.81), places=4)
    self.assertEqual(cfg.pruning.cost_exponent, best["values"]["prune_cost_exponent"])
    # A rerun resumes: the oracle is reloaded and no new trial runs.
    tune.run_search(base, "classifier:" + tiny_runs.classifier(), workdir,
                    max_trials=2, num_samples=40)
    self.assertLen(os.listdir(os.path.join(workdir, "trials")), 2)


if __name__ == "__main__":
  absltest.main()
