"""The gc-pass logging plugin: one line per full collection, named by test, dumps on time."""

import gc
import json
import os
import tempfile
import time

from absl.testing import absltest

from tools import pytest_gc_log


class _Cycle:
  def __init__(self):
    self.me = self


class GcLogTest(absltest.TestCase):

  def _collect_with(self, log):
    gc.callbacks.append(log)
    try:
      gc.collect(1)  # a young pass: not logged
      for _ in range(3):
        _Cycle()
      gc.collect()
    finally:
      gc.callbacks.remove(log)
    with open(log.path) as f:
      return [json.loads(line) for line in f]

  def test_full_passes_are_logged_with_the_test_and_what_they_collected(self):
    log = pytest_gc_log.GcLog(tempfile.mkdtemp())
    log.test = "tests/x.py::T::test_y"
    rows = self._collect_with(log)
    self.assertLen(rows, 1)
    self.assertEqual(rows[0]["test"], "tests/x.py::T::test_y")
    self.assertEqual(rows[0]["n"], 1)
    self.assertGreaterEqual(rows[0]["collected"], 3)  # the three self-cycles
    self.assertGreaterEqual(rows[0]["seconds"], 0.0)

  def test_a_pass_shorter_than_the_dump_delay_dumps_nothing(self):
    d = tempfile.mkdtemp()
    log = pytest_gc_log.GcLog(d, dump_cmd="echo {pid} > {out}", dump_after=5.0)
    self._collect_with(log)
    time.sleep(0.3)
    self.assertEmpty([f for f in os.listdir(d) if f.startswith("stacks_")])

  def test_a_long_pass_runs_the_dump_command_with_pid_and_file(self):
    d = tempfile.mkdtemp()
    log = pytest_gc_log.GcLog(d, dump_cmd="echo {pid} > {out}", dump_after=0.0)
    log.test = "t"
    gc.callbacks.append(log)
    try:
      gc.collect()
    finally:
      gc.callbacks.remove(log)
    out = os.path.join(d, f"stacks_{os.getpid()}_1.txt")
    deadline = time.time() + 10
    while not (os.path.exists(out) and open(out).read().strip()):
      self.assertLess(time.time(), deadline, "the dump command never wrote its file")
      time.sleep(0.05)
    self.assertEqual(open(out).read().strip(), str(os.getpid()))


if __name__ == "__main__":
  absltest.main()
