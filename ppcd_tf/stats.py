"""Seed statistics for the experiment report: is method A really better than B?

Each method is trained with a few seeds; each seed gives one number (a FID, say).
This module turns those numbers into the statements the report makes:

  * `summarize(values)`: n, mean and sample standard deviation (ddof=1) of one
    method's per-seed values.
  * `welch(a, b)`: Welch's two-sided t-test of mean(a) - mean(b), which does not
    assume the two groups have the same variance (B. L. Welch, 1947, "The
    generalization of Student's problem when several different population
    variances are involved", Biometrika 34, 28-35), and the 95% confidence
    interval of the difference.
  * `compare(a, b)`: `welch` plus a verdict on a relative to b.
  * `within(value, reference, fraction)`: the goal check "FID within 10% of the
    teacher".

The verdict rule. The difference is *significant* when p < alpha (at alpha = 0.05
this is the same statement as "the 95% CI of the difference excludes 0", since
both come from one t distribution with Welch's df). A significant difference is
"better" when it goes the good way (below 0 when `lower_is_better`, as for FID)
and "worse" otherwise; anything else is a "tie". With fewer than 2 seeds in a
group there is no variance to test against: the verdict is "untested".

Conventions: values are finite floats (NaN or inf is a bad input, not a score);
all arithmetic is numpy float64; the t distribution comes from `scipy.stats.t`.
"""

from __future__ import annotations

import math
from typing import Dict, Sequence

import numpy as np
from scipy import stats as scipy_stats

__all__ = ["summarize", "welch", "compare", "within"]

def _as_values(values: Sequence[float], name: str) -> np.ndarray:
  """`values` as a 1-D float64 array of finite numbers (may be empty)."""
  arr = np.asarray(values, dtype=np.float64)
  if arr.ndim != 1:
    raise ValueError(f"{name} must be a flat list of numbers, got shape {arr.shape}.")
  bad = arr[~np.isfinite(arr)]
  if bad.size:
    raise ValueError(f"{name} holds non-finite values {bad.tolist()}.")
  return arr


def summarize(values: Sequence[float]) -> Dict:
  """n, mean and sample standard deviation of one group of per-seed values.

  Args:
    values: one number per seed.

  Returns:
    {"n": int, "mean": float, "sd": float or None (when n < 2; ddof=1),
     "values": list of float}.

  Raises:
    ValueError: `values` is empty or holds a value that is not finite.
  """
  arr = _as_values(values, "values")
  if arr.size == 0:
    raise ValueError("values is empty: there is nothing to summarize.")
  n = int(arr.size)
  return {"n": n,
          "mean": float(arr.mean()),
          "sd": float(arr.std(ddof=1)) if n >= 2 else None,
          "values": arr.tolist()}


def welch(a: Sequence[float], b: Sequence[float]) -> Dict:
  """Welch's two-sided t-test of mean(a) - mean(b), unequal variances.

  With s^2 the sample variances (ddof=1):

      se = sqrt(s_a^2 / n_a + s_b^2 / n_b),   t = (mean_a - mean_b) / se,
      df = se^4 / ((s_a^2 / n_a)^2 / (n_a - 1) + (s_b^2 / n_b)^2 / (n_b - 1))

  (Welch-Satterthwaite), p = 2 * P(T_df > |t|) and the 95% CI is
  diff ± t_{0.975, df} * se. When both variances are 0 the difference is known
  exactly: p is 0.0 if the means differ, else 1.0; the CI is (diff, diff);
  t is ±inf or 0; df is None.

  Args:
    a: per-seed values of the first group.
    b: per-seed values of the second group.

  Returns:
    {"diff": float, "t": float, "df": float or None, "p": float,
     "ci95": (low, high)}.

  Raises:
    ValueError: a group has fewer than 2 values, or a value that is not finite.
  """
  groups = {"a": _as_values(a, "a"), "b": _as_values(b, "b")}
  for name, arr in groups.items():
    if arr.size < 2:
      raise ValueError(f"group {name} has n={arr.size}; Welch's test needs a "
                       "variance in each group: run at least 2 seeds.")
  xa, xb = groups["a"], groups["b"]
  diff = float(xa.mean() - xb.mean())
  wa = xa.var(ddof=1) / xa.size  # squared standard error of each mean
  wb = xb.var(ddof=1) / xb.size
  se = float(np.sqrt(wa + wb))
  if se == 0.0:
    t = math.copysign(math.inf, diff) if diff != 0.0 else 0.0
    return {"diff": diff, "t": t, "df": None,
            "p": 0.0 if diff != 0.0 else 1.0, "ci95": (diff, diff)}
  t = diff / se
  df = float((wa + wb) ** 2 / (wa ** 2 / (xa.size - 1) + wb ** 2 / (xb.size - 1)))
  p = float(2.0 * scipy_stats.t.sf(abs(t), df))
  half = float(scipy_stats.t.ppf(0.975, df)) * se
  return {"diff": diff, "t": float(t), "df": df, "p": p,
          "ci95": (diff - half, diff + half)}


def compare(a: Sequence[float], b: Sequence[float], lower_is_better: bool = True,
            alpha: float = 0.05) -> Dict:
  """`welch(a, b)` plus a verdict on a relative to b (module docstring's rule).

  Args:
    a: per-seed values of the method being judged.
    b: per-seed values of the method it is judged against.
    lower_is_better: True for FID-like metrics, False for accuracy-like ones.
    alpha: significance level for p, in (0, 1).

  Returns:
    The keys of `welch` plus "verdict" in {"better", "worse", "tie", "untested"}.
    "untested" (a group with n < 2) comes with p, t, df and ci95 None, diff
    None if a group is empty, and a "reason".

  Raises:
    ValueError: alpha outside (0, 1), or a value that is not finite.
  """
  if not 0.0 < alpha < 1.0:
    raise ValueError(f"alpha={alpha} must be in (0, 1).")
  xa, xb = _as_values(a, "a"), _as_values(b, "b")
  if xa.size < 2 or xb.size < 2:
    diff = float(xa.mean() - xb.mean()) if xa.size and xb.size else None
    return {"diff": diff, "t": None, "df": None, "p": None, "ci95": None,
            "verdict": "untested",
            "reason": (f"n={xa.size} in a and n={xb.size} in b; a test needs at "
                       "least 2 seeds in each.")}
  result = welch(xa, xb)
  # For Welch's test, p < 0.05 and "the 95% CI of the difference excludes 0" are the
  # same statement, so p alone decides (at any alpha).
  significant = result["p"] < alpha
  good_way = result["diff"] < 0.0 if lower_is_better else result["diff"] > 0.0
  if not significant:
    verdict = "tie"
  else:
    verdict = "better" if good_way else "worse"
  return dict(result, verdict=verdict)


def within(value: float, reference: float, fraction: float) -> bool:
  """True when value <= reference * (1 + fraction): "FID within 10% of the teacher".

  Args:
    value: the metric of the compressed model (lower is better).
    reference: the metric it is held to (the teacher's).
    fraction: the slack, e.g. 0.10 for 10%; >= 0.

  Raises:
    ValueError: value is NaN, reference is not finite, or fraction is negative
      or not finite. (An infinite value, a diverged run, is simply not within.)
  """
  if math.isnan(value):
    raise ValueError("value is NaN.")
  if not math.isfinite(reference):
    raise ValueError(f"reference={reference} must be finite.")
  if not (math.isfinite(fraction) and fraction >= 0.0):
    raise ValueError(f"fraction={fraction} must be a finite number >= 0.")
  return bool(value <= reference * (1.0 + fraction))
