"""Crash safety: a PPCD run stopped four times (three SIGKILLs, one SIGTERM) resumes to the
state of an uninterrupted run: the fault-injection soak of tools/soak.py with a fixed plan.

Real `python -m ppcd_tf.train` processes on the tiny config (8 steps, a checkpoint
every step, pruning events at steps 0-3, the switch to the slim generator at step 4,
keep 3 checkpoints, one evaluation at the end). The crashed line is

  1. killed inside the save of ckpt-2, after its files are written and verified,
     before it is published;
  2. killed inside the pruning event of step 2 (masks cut, dead weights zeroed,
     the EMA not yet restarted);
  3. sent SIGTERM after it published its next checkpoint: it saves the step it is in,
     says `stopped:` and exits 143;
  4. killed inside the save of the final ckpt-8 (it resumes from ckpt-7, a slim
     checkpoint: after the switch);
  5. its newest checkpoint truncated (disk trouble) and a killed save's leftovers
     planted; the rerun must skip the damaged checkpoint, resume from the one before
     and finish.

The final checkpoints of both lines must hold exactly the same values (step,
weights, masks, EMA weights, optimiser slots) and the final evaluation JSON the
same metrics. The latents are stateless in (seed, step) and the data stream is
replayed, so nothing else is needed for that. Longer soaks: `python -m tools.soak`.
"""
import json
import os
import shutil
import signal
import tempfile

import pytest
from absl.testing import absltest

from tests import tiny_runs
from tools import soak

# No random kill: each kill costs a process (~35 CPU-s), and the planned ones reach
# every path a random one did (a slim checkpoint resume: write:8). `python -m
# tools.soak` runs long random plans (tests/test_crash_resume.py::PlanTest).
PLAN = ("write:2", "prune:2", "term", "write:8")


@pytest.mark.slow
class CrashResumeTest(absltest.TestCase):

  def test_killed_runs_resume_to_the_uninterrupted_state(self):
    root = tempfile.mkdtemp(prefix="ppcd_crash_")
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    report = soak.run_soak(root, tiny_runs.teacher(), tiny_runs.classifier(), PLAN,
                           num_steps=8, seed=0, log=lambda m: None)
    kills = report["kills"]
    self.assertEqual([k["kind"] for k in kills], list(PLAN))
    self.assertEqual([k["exit"] for k in kills],
                     [-signal.SIGKILL] * 2 + [143] + [-signal.SIGKILL])
    self.assertEqual(kills[0]["latest_after"], 1)        # ckpt-2 never published
    self.assertEqual(kills[1]["latest_after"], 2)        # killed in the event after ckpt-2
    self.assertGreater(kills[2]["latest_after"], 2)      # each stop after progress
    self.assertEqual(kills[3]["latest_after"], 7)        # ckpt-8 never published
    self.assertEqual(report["damaged_checkpoint"], "ckpt-7")
    self.assertTrue(report["passed"])
    self.assertEqual(report["variables_that_differ"], [])
    self.assertTrue(report["metrics_equal"])
    self.assertIn("fid", report["metrics"])
    # The final checkpoint holds the slim G (the run switched after its last pruning
    # event, step 3), its EMA and optimiser state: no masks left.
    want = soak.checkpoint_values(os.path.join(root, "reference", "checkpoints", "ckpt-8"))
    names = " ".join(want)
    for part in ("step", "ema_generator", "g_optimizer", "d_optimizer"):
      self.assertIn(part, names)
    self.assertNotIn("alive", names)
    self.assertEqual(int(want["step/.ATTRIBUTES/VARIABLE_VALUE"]), 8)
    switch = [open(os.path.join(root, d, "slim_switch.json")).read()
              for d in ("reference", "crashed")]
    self.assertEqual(switch[0], switch[1])
    self.assertEqual(json.loads(switch[0])["step"], 4)
    with open(os.path.join(root, "soak_report.json")) as f:
      self.assertEqual(json.load(f)["plan"], list(PLAN))


class PlanTest(absltest.TestCase):

  def test_random_plans_start_with_the_planned_kills_and_are_seeded(self):
    plan = soak.random_plan(12, seed=3, num_steps=16, prune_end_step=3)
    self.assertLen(plan, 12)
    self.assertEqual(plan[:2], ["write:2", "prune:2"])
    self.assertContainsSubset(set(plan[2:]), {"random", "term"})
    self.assertEqual(plan, soak.random_plan(12, seed=3, num_steps=16, prune_end_step=3))
    self.assertNotEqual(plan, soak.random_plan(12, seed=4, num_steps=16, prune_end_step=3))


if __name__ == "__main__":
  absltest.main()
