"""BatchNorm with statistics per truncation (pytorch-pretrained-BigGAN's `BigGANBatchNorm`).

The BigGAN-deep generators of huggingface's pytorch-pretrained-BigGAN (converted from
DeepMind's TF-Hub modules) carry, for every BatchNorm, `n` precomputed means and
variances ([n, C] each), one per truncation 0, 1/(n-1), ..., 1, and normalise with the
ones picked by the sampling truncation t (`release_statistics`). `TruncationBatchNorm`
holds those tables as non-trainable `truncation_means` / `truncation_vars` and copies
the pick into Keras' `moving_mean` / `moving_variance` (`select_truncation`), so its
forward pass is the ordinary Keras BatchNorm, unchanged.

Only teacher generators hold tables (`Generator(truncation_tables=True)`); students,
EMA copies and slimmed generators have plain BatchNorms whose moving statistics start
as the teacher's selection (checkpoint paths of the moving statistics are the same).
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np
import tensorflow as tf
import tf_keras

__all__ = ["TruncationBatchNorm", "release_statistics"]


def release_statistics(means: np.ndarray, variances: np.ndarray,
                       truncation: float) -> Tuple[np.ndarray, np.ndarray]:
  """The (mean, variance) pytorch-pretrained-BigGAN normalises with at `truncation`.

  Its rule, reproduced as it is: with `step = 1 / (n - 1)` and
  `coef, k = math.modf(truncation / step)`, the statistics are row k when coef == 0,
  else `row_k * coef + row_{k+1} * (1 - coef)`. The weights are the reverse of a linear
  interpolation (t just above k * step gives nearly row k+1, so the choice jumps at
  every grid point); the grid points themselves (0.02, 0.04, ..., 1.0 for n = 51:
  t / step is then an exact integer in float64) give their own row. Python float64
  arithmetic as in the release; the result is cast to the tables' float32.

  Args:
    means, variances: [n, C] tables.
    truncation: t in (0, 1].

  Returns:
    ([C], [C]) float32.
  Raises:
    ValueError: t outside (0, 1], or the rule would read past the last row.
  """
  n = int(means.shape[0])
  if not 0 < truncation <= 1:
    raise ValueError(f"truncation={truncation} must be in (0, 1] (pytorch-pretrained-"
                     "BigGAN asserts 0 < truncation <= 1).")
  coef, start = math.modf(float(truncation) / (1.0 / (n - 1)))
  k = int(start)
  if k > n - 1 or (coef != 0.0 and k + 1 > n - 1):
    raise ValueError(f"truncation={truncation} selects statistics row {k + 1} of {n}.")
  m = np.asarray(means, np.float64)
  v = np.asarray(variances, np.float64)
  if coef == 0.0:
    mean, var = m[k], v[k]
  else:
    mean = m[k] * coef + m[k + 1] * (1 - coef)
    var = v[k] * coef + v[k + 1] * (1 - coef)
  return mean.astype(np.float32), var.astype(np.float32)


class TruncationBatchNorm(tf_keras.layers.BatchNormalization):
  """Keras BatchNorm (channels last) that also holds statistics per truncation.

  Args:
    num_stats: rows of the tables (pytorch-pretrained-BigGAN's n_stats).
    **kwargs: `tf_keras.layers.BatchNormalization` arguments.
  """

  def __init__(self, num_stats: int, **kwargs):
    super().__init__(**kwargs)
    if int(num_stats) < 2:
      raise ValueError(f"num_stats={num_stats} must be >= 2.")
    self.num_stats = int(num_stats)

  def build(self, input_shape):
    super().build(input_shape)
    c = int(input_shape[-1])
    sync = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.MEAN)
    self.truncation_means = self.add_weight(
        "truncation_means", shape=[self.num_stats, c], initializer="zeros", **sync)
    self.truncation_vars = self.add_weight(
        "truncation_vars", shape=[self.num_stats, c], initializer="ones", **sync)

  def select_truncation(self, truncation: float) -> None:
    """Sets the moving statistics to those of `truncation` (`release_statistics`)."""
    mean, var = release_statistics(self.truncation_means.numpy(),
                                   self.truncation_vars.numpy(), truncation)
    self.moving_mean.assign(mean)
    self.moving_variance.assign(var)

  def get_config(self):
    config = super().get_config()
    config.update(num_stats=self.num_stats)
    return config
