"""Early stopping on a FID plateau: the rule, the history files, and the Trainer."""
import json
import os
import tempfile
import unittest

import numpy as np

from ppcd_tf import config as config_lib, early_stop
from tests import tiny_runs


class PlateauRuleTest(unittest.TestCase):

  def test_hand_cases(self):
    # The best before the window is 90; the last three reach 88.5, a 1.7% gain,
    # under the 2% threshold: plateaued. One evaluation earlier the window
    # (90, 89.5, 89.0) is compared with 100: a 10% gain.
    fids = [100.0, 90.0, 89.5, 89.0, 88.5]
    self.assertTrue(early_stop.plateaued(fids, 3, 0.02))
    self.assertFalse(early_stop.plateaued(fids[:4], 3, 0.02))
    self.assertFalse(early_stop.plateaued(fids[:4] + [88.1], 3, 0.02))  # 2.1% gain

  def test_exact_rule(self):
    self.assertFalse(early_stop.plateaued([10.0, 9.0], 3, 0.02))        # too few
    self.assertTrue(early_stop.plateaued([10.0, 9.9, 9.9, 9.85], 3, 0.02))
    self.assertFalse(early_stop.plateaued([10.0, 9.9, 9.9, 9.7], 3, 0.02))  # 3% gain
    self.assertTrue(early_stop.plateaued([10.0, 12.0, 11.0, 10.5], 3, 0.0))  # worse
    self.assertFalse(early_stop.plateaued([10.0, 12.0, 11.0, 9.99], 3, 0.0))
    self.assertTrue(early_stop.plateaued([5.0, 5.0], 1, 0.0))  # equal is no gain

  def test_best_is_among_the_last_patience_plus_one(self):
    # Walk random FID curves evaluation by evaluation; where the rule first fires,
    # the lowest FID so far is one of the last patience + 1 (the module docstring).
    rng = np.random.default_rng(0)
    fired = 0
    for _ in range(300):
      patience = int(rng.integers(1, 5))
      curve = list(np.maximum(1.0, 50 * np.exp(-rng.uniform(0, 0.5, 30).cumsum())
                              + rng.normal(0, 1.0, 30)))
      for k in range(1, len(curve) + 1):
        if early_stop.plateaued(curve[:k], patience, 0.02):
          best = int(np.argmin(curve[:k]))
          self.assertGreaterEqual(best, k - patience - 1, (curve[:k], patience))
          fired += 1
          break
    self.assertGreater(fired, 100)

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "patience=0"):
      early_stop.plateaued([1.0, 2.0], 0, 0.02)
    with self.assertRaisesRegex(ValueError, "min_delta=1.5"):
      early_stop.plateaued([1.0, 2.0], 1, 1.5)
    with self.assertRaisesRegex(ValueError, "non-finite"):
      early_stop.plateaued([1.0, float("nan")], 1, 0.02)

  def test_history_files(self):
    wd = tempfile.mkdtemp()
    os.makedirs(early_stop.eval_dir(wd))
    for step, fid in ((200, 5.0), (100, 7.0), (300, 6.0)):
      with open(os.path.join(early_stop.eval_dir(wd), f"step_{step:06d}.json"), "w") as f:
        json.dump({"fid": fid}, f)
    history = early_stop.read_eval_history(wd)
    self.assertEqual([h["step"] for h in history], [100, 200, 300])
    self.assertEqual(early_stop.best_evaluation(history), (200, 5.0))
    self.assertEqual([h["step"] for h in early_stop.read_eval_history(wd, 250)], [100, 200])
    self.assertEqual(early_stop.best_evaluation([]), (None, None))


class ConfigTest(unittest.TestCase):

  def test_needs_eval_every(self):
    with self.assertRaisesRegex(ValueError, "early_stop_evals=3 needs --eval_every"):
      config_lib.tiny_config(run=dict(early_stop_evals=3)).validate()
    with self.assertRaisesRegex(ValueError, "early_stop_min_delta=1.0"):
      config_lib.tiny_config(run=dict(eval_every=5, eval_extractor="classifier:x",
                                      early_stop_min_delta=1.0)).validate()


class TrainerEarlyStopTest(unittest.TestCase):
  """The Trainer's side; stopping at a plateau, WORKDIR/best and a rerun that trains
  nothing more are tested through tools/train_teacher (tests/test_teacher_asset.py)."""

  def _cfg(self, wd, **run):
    cfg = tiny_runs.teacher_cfg(wd, num_steps=8)
    return cfg.replace(run=dict(
        eval_every=1, eval_extractor="classifier:" + tiny_runs.classifier(),
        eval_num_samples=20, stats_dir=os.path.join(tiny_runs.root(), "stats"),
        save_every=100, sample_every=100, **run)).validate()

  def test_time_limited_chunk_then_resume_to_the_end(self):
    # fit(time_limit_s=0) stops at the first checkpoint (step 2, after its
    # evaluation); the rerun reads the two evaluations back and trains to the end.
    from ppcd_tf import train_lib
    wd = os.path.join(tempfile.mkdtemp(), "t")
    cfg = self._cfg(wd, early_stop_evals=20).replace(
        optim=dict(num_steps=3), run=dict(save_every=2))
    first = train_lib.Trainer(cfg).fit(progress=False, time_limit_s=0.0)
    self.assertEqual((first["step"], first["evaluations"]), (2, 2))
    self.assertFalse(first["stopped_early"])
    summary = train_lib.Trainer(cfg).fit(progress=False)
    self.assertFalse(summary["stopped_early"])
    self.assertEqual(summary["step"], 3)
    self.assertEqual(summary["evaluations"], 3)


if __name__ == "__main__":
  unittest.main()
