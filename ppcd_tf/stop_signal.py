"""A clean stop on SIGTERM: training finishes its step, saves a checkpoint and returns.

Schedulers and `kill` send SIGTERM before they SIGKILL. Python's default is to die
at once, losing everything since the last periodic checkpoint. While training,
`StopRequest` replaces that with a flag that `Trainer.fit` reads after every step:
it then checks the losses and saves that step (no samples or evaluation), writes
the training summary with `stopped_by_signal`, and raises `Stopped`, so no caller
(the demo, the experiment, tuning) goes on to slim or evaluate an unfinished run.
Every entry point's `cli_errors.friendly_errors` turns it into one line and exit
status 128 + the signal number (143 for SIGTERM), so a chained command does not
mistake the stop for the end of training. Rerunning the same command resumes.

Only the main thread can install signal handlers; elsewhere (a training run
inside a worker thread) `StopRequest` does nothing and the default applies.
"""

from __future__ import annotations

import signal
import threading
from typing import Optional

__all__ = ["StopRequest", "Stopped", "exit_code"]


class Stopped(Exception):
  """Training stopped on a signal after saving a checkpoint of `step`."""

  def __init__(self, signal_name: str, step: int, workdir: str):
    super().__init__(f"{signal_name} at step {step}: stopped after saving its checkpoint "
                     f"in {workdir}; rerun the same command to resume.")
    self.signal_name, self.step, self.workdir = signal_name, step, workdir


class StopRequest:
  """Context manager: while inside, SIGTERM sets `signal_name` instead of killing."""

  def __init__(self, signals=(signal.SIGTERM,)):
    self.signals = tuple(signals)
    self.signal_name: Optional[str] = None
    self._previous = {}

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    self.signal_name = signal.Signals(signum).name

  def __enter__(self) -> "StopRequest":
    if threading.current_thread() is threading.main_thread():
      for s in self.signals:
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for s, previous in self._previous.items():
      signal.signal(s, previous)
    self._previous.clear()


def exit_code(signal_name: str) -> int:
  """The shell's exit status of a process stopped by `signal_name`: 128 + its number."""
  return 128 + int(signal.Signals[signal_name])
