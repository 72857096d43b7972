"""Wall-time log: one entry per fit call, kept (up to its last heartbeat) when killed."""

import os
import tempfile
import time

from absl.testing import absltest

from ppcd_tf import wall_log


class _Step:
  def __init__(self):
    self.value = 0

  def numpy(self):
    return self.value


class _FakeTrainer:
  """Counts steps; `fit` waits until the heartbeat has logged `until` steps (or raises)."""

  def __init__(self, path, steps, fail=False):
    self.step, self.path, self.steps, self.fail = _Step(), path, steps, fail

  def fit(self):
    self.step.value += self.steps
    deadline = time.time() + 30
    while wall_log.read(self.path)[-1]["to_step"] != self.step.value:
      if time.time() > deadline:
        raise AssertionError("the heartbeat never logged the step")
      time.sleep(0.01)
    time.sleep(0.2)  # at least 0.1 s of wall time, the log's resolution
    if self.fail:
      raise KeyboardInterrupt  # stands in for a kill: fit never returns
    return dict(step=self.step.value)


class WallLogTest(absltest.TestCase):

  def test_every_call_logged_and_summed(self):
    path = os.path.join(tempfile.mkdtemp(), "wall_log.json")
    trainer = _FakeTrainer(path, 3)
    self.assertEqual(wall_log.timed_fit(trainer, path, heartbeat_s=0.01), dict(step=3))
    trainer.steps = 4
    wall_log.timed_fit(trainer, path, heartbeat_s=0.01)
    log = wall_log.read(path)
    self.assertEqual([(e["from_step"], e["to_step"], e["finished"]) for e in log],
                     [(0, 3, True), (3, 7, True)])
    for e in log:
      self.assertGreater(e["wall_seconds"], 0)
      self.assertEqual(len(e["load_average_after"]), 3)
    total = wall_log.totals(log)
    self.assertAlmostEqual(total["wall_seconds"],
                           round(sum(e["wall_seconds"] for e in log), 1))
    self.assertEqual((total["invocations"], total["interrupted"]), (2, 0))

  def test_a_call_that_never_returns_keeps_its_heartbeat(self):
    path = os.path.join(tempfile.mkdtemp(), "wall_log.json")
    with self.assertRaises(KeyboardInterrupt):
      wall_log.timed_fit(_FakeTrainer(path, 5, fail=True), path, heartbeat_s=0.01)
    (entry,) = wall_log.read(path)
    self.assertEqual((entry["from_step"], entry["to_step"], entry["finished"]), (0, 5, False))
    self.assertGreater(entry["wall_seconds"], 0)
    self.assertEqual(wall_log.totals([entry])["interrupted"], 1)

  def test_a_killed_process_leaves_its_last_heartbeat(self):
    # SIGKILL runs no `finally`: what is on disk is the entry as the heartbeat left it.
    path = os.path.join(tempfile.mkdtemp(), "wall_log.json")
    wall_log.append(path, dict(started="t", wall_seconds=120.0, from_step=0, to_step=40,
                               load_average_before=[1.0, 1.0, 1.0], cpus=2,
                               finished=False))
    wall_log.append(path, dict(started="t", wall_seconds=30.0, from_step=40, to_step=50,
                               load_average_before=[3.5, 1.0, 1.0],
                               load_average_after=[1.0, 1.0, 1.0], cpus=2))  # older entry
    total = wall_log.totals(wall_log.read(path))
    self.assertEqual(total["wall_seconds"], 150.0)
    self.assertEqual((total["invocations"], total["interrupted"]), (2, 1))
    self.assertEqual((total["peak_load"], total["shared"]), (3.5, True))


if __name__ == "__main__":
  absltest.main()
