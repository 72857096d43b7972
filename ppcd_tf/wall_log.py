"""Training wall time that covers every invocation, with the machine load it ran under.

A run that is stopped and resumed (`--max_minutes`, a session ending, a crash) has
several `Trainer.fit` calls; its training summary only knows the last. `timed_fit`
appends one entry per call to a JSON list in the workdir (started, wall seconds,
steps, load average before and after, CPU count), and `totals` sums it, so a
report can state the whole time and whether the machine was shared (a load
average above the CPU count, or another process recorded by hand in an entry's
`paused_seconds` / `note`).

An invocation that is killed (SIGKILL, a session ending) never returns from `fit`, so
its entry is written when it starts and rewritten every `heartbeat_s` seconds with
the wall time and step so far; `finished` turns true only when `fit` returns. A killed
invocation keeps its time up to the last heartbeat, and `totals` counts it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Dict, List

__all__ = ["timed_fit", "append", "read", "totals", "load_average"]


def load_average() -> List[float]:
  """The 1, 5 and 15 minute load averages, rounded."""
  return [round(x, 2) for x in os.getloadavg()]


def read(path: str) -> List[Dict]:
  """The log at `path` ([] when there is none)."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return json.load(f)


def append(path: str, entry: Dict) -> List[Dict]:
  """Appends `entry` to the log at `path` (atomically); returns the whole log."""
  from ppcd_tf import files
  log = read(path) + [entry]
  files.write_json_atomic(path, log)
  return log


def _rewrite(path: str, index: int, **fields) -> None:
  from ppcd_tf import files
  log = read(path)
  log[index].update(fields)
  files.write_json_atomic(path, log)


def timed_fit(trainer, path: str, heartbeat_s: float = 60.0, **fit_kwargs) -> Dict:
  """`trainer.fit(**fit_kwargs)`, logged to `path` (module doc); returns the fit summary."""
  step0 = int(trainer.step.numpy())
  start = time.time()
  index = len(read(path))
  append(path, dict(started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
                    wall_seconds=0.0, from_step=step0, to_step=step0,
                    load_average_before=load_average(), cpus=os.cpu_count(),
                    finished=False))

  def progress() -> Dict:
    return dict(wall_seconds=round(time.time() - start, 1),
                to_step=int(trainer.step.numpy()))

  stop = threading.Event()

  def beat():
    while not stop.wait(heartbeat_s):
      _rewrite(path, index, **progress())

  thread = threading.Thread(target=beat, name="wall_log heartbeat", daemon=True)
  thread.start()
  finished = False
  try:
    summary = trainer.fit(**fit_kwargs)
    finished = True
  finally:
    stop.set()
    thread.join()
    _rewrite(path, index, **progress(), load_average_after=load_average(),
             finished=finished)
  return summary


def totals(log: List[Dict]) -> Dict:
  """Summed wall and paused seconds, the invocations (and how many of them were
  killed before `fit` returned), the highest load seen and whether the machine looks
  shared (a 1-minute load above the CPU count)."""
  loads = [x for e in log for x in (e.get("load_average_before", [0])[0],
                                    e.get("load_average_after", [0])[0])]
  cpus = max([e.get("cpus") or 1 for e in log] or [1])
  peak = max(loads) if loads else None
  return dict(wall_seconds=round(sum(e["wall_seconds"] for e in log), 1),
              paused_seconds=round(sum(e.get("paused_seconds", 0) for e in log), 1),
              invocations=len(log),
              interrupted=sum(1 for e in log if not e.get("finished", True)),
              peak_load=peak, cpus=cpus,
              shared=bool(peak is not None and peak > cpus + 0.5)
              or any(e.get("note") for e in log))
