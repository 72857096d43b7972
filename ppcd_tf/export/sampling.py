"""Latent sampling with truncation, and class grids from any runner.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ppcd_tf.export.common import ExportError
from ppcd_tf.export.runners import GeneratorRunner


def _check_truncation(truncation: float) -> None:
  if not (truncation >= 0 and math.isfinite(truncation)):
    raise ExportError(f"truncation={truncation} must be a finite number >= 0 (0 = none; "
                      "z entries with |z| > truncation are resampled; 0.5 is strong).")


def check_sampling_args(n: int, seed: int, truncation: float) -> None:
  """Raises ExportError naming the first of n (>= 1), seed (>= 0), truncation (> 0) out of range."""
  if int(n) < 1:
    raise ExportError(f"n={n} must be >= 1 (samples per class).")
  if int(seed) < 0:
    raise ExportError(f"seed={seed} must be >= 0.")
  _check_truncation(truncation)


def truncated_normal(shape: Sequence[int], truncation: float,
                     rng: np.random.Generator) -> np.ndarray:
  """`evaluation.truncated_normal` after checking `truncation` (>= 0, finite;
  0 = none; values >= ~6 are indistinguishable from no truncation)."""
  from ppcd_tf import evaluation
  _check_truncation(truncation)
  return evaluation.truncated_normal(shape, truncation, rng)


def sample_class_grid(runner: GeneratorRunner, class_ids: Sequence[int], n: int,
                      seed: int = 0, truncation: float = 0.0,
                      batch_size: int = 64) -> np.ndarray:
  """Images for a grid with one row per class and `n` columns.

  Column j uses the same z in every row, so a row shows a class and a column a
  latent. z is `truncated_normal` with a `np.random.default_rng(seed)` stream.

  Args:
    runner: from `open_generator`.
    class_ids: ids in [0, runner.spec.num_classes).
    n: samples per class (>= 1).
    seed: >= 0.
    truncation: > 0 (see `truncated_normal`).
    batch_size: images per generator call.

  Returns:
    float32 [len(class_ids) * n, R, R, C] in [-1, 1], row-major (class, column).

  Raises:
    ExportError: an argument is out of range (the message names it).
  """
  class_ids = [int(c) for c in class_ids]
  if not class_ids:
    raise ExportError("no class ids given; pass e.g. --classes=0,1,2.")
  check_sampling_args(n, seed, truncation)
  runner.spec.check_class_ids(class_ids, f"model {runner.path or runner.kind}")
  rng = np.random.default_rng(int(seed))
  z_cols = truncated_normal((int(n), runner.spec.z_dim), truncation, rng)
  z = np.tile(z_cols, (len(class_ids), 1))
  y = np.repeat(np.asarray(class_ids, np.int32), int(n))
  outs = [runner(z[i:i + batch_size], y[i:i + batch_size])
          for i in range(0, z.shape[0], batch_size)]
  return np.concatenate(outs, axis=0)
