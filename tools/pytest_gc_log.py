"""pytest plugin: logs every full (generation-2) garbage collection with the test it ran in.

Diagnoses wall time the test suite loses inside the garbage collector (BUILD.md "Tests":
gen-2 passes that wait on tf.data threads while destroying an earlier test's iterator).

    make test PYTEST="-m pytest -q -p no:unraisableexception -p tools.pytest_gc_log"

Environment:
  GC_LOG_DIR        where `gc_<pid>.jsonl` goes, one line per pass: test (node id, with
                    `:setup` / `:teardown`), pass number, wall seconds, objects collected
                    (default /tmp/gc_log).
  GC_LOG_DUMP_CMD   optional command run GC_LOG_DUMP_AFTER seconds (default 2.5) into a
                    pass that is still running, with `{pid}` and `{out}` filled in, e.g.
                    `gdb -p {pid} -batch -ex "thread apply all bt 30" > {out} 2>&1` for the
                    native stacks of every thread (py-spy shows only Python threads). It is
                    started as a shell that sleeps first, because no Python thread can run
                    while the collector holds the interpreter lock.
"""
import gc
import json
import os
import subprocess
import time
from typing import Any, Dict, Optional


class GcLog:
  """Records gen-2 passes to `directory`/gc_<pid>.jsonl; `test` names the current test."""

  def __init__(self, directory: str, dump_cmd: Optional[str] = None,
               dump_after: float = 2.5):
    self.directory = directory
    self.dump_cmd = dump_cmd
    self.dump_after = float(dump_after)
    self.test: Optional[str] = None
    self.passes = 0
    self._start = 0.0
    self._dumper: Optional[subprocess.Popen] = None
    os.makedirs(directory, exist_ok=True)
    self.path = os.path.join(directory, f"gc_{os.getpid()}.jsonl")

  def __call__(self, phase: str, info: Dict[str, Any]) -> None:
    if info["generation"] != 2:
      return
    if phase == "start":
      self.passes += 1
      self._start = time.perf_counter()
      if self.dump_cmd:
        out = os.path.join(self.directory, f"stacks_{os.getpid()}_{self.passes}.txt")
        cmd = self.dump_cmd.format(pid=os.getpid(), out=out)
        self._dumper = subprocess.Popen(["sh", "-c", f"sleep {self.dump_after}; {cmd}"])
      return
    seconds = time.perf_counter() - self._start
    if self._dumper is not None:
      if self._dumper.poll() is None and seconds < self.dump_after:
        self._dumper.kill()  # the pass ended before the dump was due
      self._dumper = None
    with open(self.path, "a") as f:
      f.write(json.dumps(dict(test=self.test, n=self.passes, seconds=round(seconds, 4),
                              collected=info["collected"])) + "\n")


_LOG: Optional[GcLog] = None


def pytest_configure(config):  # pylint: disable=unused-argument
  global _LOG
  _LOG = GcLog(os.environ.get("GC_LOG_DIR", "/tmp/gc_log"),
               os.environ.get("GC_LOG_DUMP_CMD") or None,
               float(os.environ.get("GC_LOG_DUMP_AFTER", "2.5")))
  gc.callbacks.append(_LOG)


def pytest_unconfigure(config):  # pylint: disable=unused-argument
  if _LOG in gc.callbacks:
    gc.callbacks.remove(_LOG)


def pytest_runtest_setup(item):
  _LOG.test = item.nodeid + ":setup"


def pytest_runtest_call(item):
  _LOG.test = item.nodeid


def pytest_runtest_teardown(item):
  _LOG.test = item.nodeid + ":teardown"
