"""Stopping a run when its FID has flattened (`--early_stop_evals`).

The rule, on the FIDs of the evaluations so far (`--eval_every`), oldest first:
the run has *plateaued* after evaluation k when none of the last `patience`
evaluations improved on the best FID before them by more than `min_delta`
(a relative improvement: 0.02 = 2%). That is,

    min(fid[k - patience + 1 .. k]) >= (1 - min_delta) * min(fid[0 .. k - patience])

With this rule the best checkpoint is always one of the last `patience + 1`
evaluations when the run stops (an older best would have stopped it earlier),
and the Trainer also keeps it apart (`best/`), so nothing depends on
`--keep_checkpoints`.

The history is read back from the evaluation files the Trainer writes
(`WORKDIR/eval/step_NNNNNN.json`), so a resumed run keeps its stopping state.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["plateaued", "read_eval_history", "best_evaluation", "eval_dir"]

_STEP_FILE = re.compile(r"step_(\d+)\.json$")


def eval_dir(workdir: str) -> str:
  return os.path.join(workdir, "eval")


def plateaued(fids: Sequence[float], patience: int, min_delta: float) -> bool:
  """True when the last `patience` FIDs did not beat the earlier best by > min_delta.

  Args:
    fids: FIDs in evaluation order (lower is better).
    patience: evaluations allowed without a real improvement (>= 1).
    min_delta: relative improvement that counts, in [0, 1).

  Raises:
    ValueError: patience < 1, min_delta outside [0, 1), or a FID that is not finite.
  """
  if patience < 1:
    raise ValueError(f"patience={patience} must be >= 1.")
  if not 0.0 <= min_delta < 1.0:
    raise ValueError(f"min_delta={min_delta} must be in [0, 1).")
  bad = [f for f in fids if not math.isfinite(f)]
  if bad:
    raise ValueError(f"FID history holds non-finite values {bad}.")
  if len(fids) <= patience:
    return False
  before = min(fids[:-patience])
  return min(fids[-patience:]) >= (1.0 - min_delta) * before


def read_eval_history(workdir: str, up_to_step: Optional[int] = None) -> List[Dict]:
  """The evaluation results in `WORKDIR/eval/`, by step (each with a 'step' key).

  Files of steps after `up_to_step` are left out: they belong to a future the
  run was rolled back from (a resume from an earlier checkpoint).
  """
  out = []
  for path in glob.glob(os.path.join(eval_dir(workdir), "step_*.json")):
    m = _STEP_FILE.search(os.path.basename(path))
    if not m:
      continue
    step = int(m.group(1))
    if up_to_step is not None and step > up_to_step:
      continue
    with open(path) as f:
      result = json.load(f)
    result["step"] = step
    out.append(result)
  return sorted(out, key=lambda r: r["step"])


def best_evaluation(history: Sequence[Dict]) -> Tuple[Optional[int], Optional[float]]:
  """(step, fid) of the lowest-FID evaluation (the earliest on ties); (None, None) if none."""
  if not history:
    return None, None
  best = min(history, key=lambda r: (r["fid"], r["step"]))
  return best["step"], best["fid"]
