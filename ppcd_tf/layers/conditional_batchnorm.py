"""Class-conditional BatchNorm of the BigGAN generator (BigGAN-PyTorch `ccbn`).

Input x is NHWC, the conditioning vector is [B, cond_dim] (hierarchical z chunk
and shared class embedding). The output is

    BN(x) * (1 + W_gain c) + W_bias c

with `W_gain`, `W_bias` spectrally normalised linear maps without bias. BN has no
affine parameters of its own; its moving statistics behave like Keras BatchNorm
(batch statistics and updates with `training=True`, moving statistics otherwise).
Momentum 0.9 in Keras' convention is PyTorch's 0.1, BigGAN-PyTorch's value.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager, Iterator

import tensorflow as tf
import tf_keras

from ppcd_tf.layers.spectral_norm import SNDense
from ppcd_tf.layers.truncation_batchnorm import TruncationBatchNorm

__all__ = ["ConditionalBatchNorm", "BN_MOMENTUM", "batch_norm", "cross_replica_batch_norm",
           "truncation_statistics"]

BN_MOMENTUM = 0.9
_SYNC = [True]  # what `batch_norm` builds; set by `cross_replica_batch_norm`
_TABLES = [0]   # rows of truncation statistics `batch_norm` adds; `truncation_statistics`


def cross_replica_batch_norm(enabled: bool) -> ContextManager[None]:
  """BatchNorm layers built inside the block synchronise statistics across replicas
  (`enabled`, the default outside any block) or keep them per replica.

  Per-replica statistics are what XLA needs (`--jit_compile`): the cross-replica
  all-reduce is a `merge_call`, which cannot run inside the compiled per-replica
  gradient function. With one replica both compute the same statistics;
  BigGAN-PyTorch itself defaults to per-device BN (its `--cross_replica` is off).
  """
  return _setting(_SYNC, bool(enabled))


def truncation_statistics(num_stats: int) -> ContextManager[None]:
  """BatchNorm layers built inside the block hold `num_stats` statistics per truncation
  (`TruncationBatchNorm`; 0 = plain Keras BatchNorm, the default outside any block)."""
  return _setting(_TABLES, int(num_stats))


@contextlib.contextmanager
def _setting(cell: list, value) -> Iterator[None]:
  """`cell[0] = value` inside the block, restored after it."""
  previous = cell[0]
  cell[0] = value
  try:
    yield
  finally:
    cell[0] = previous


def batch_norm(epsilon: float, affine: bool, name: str,
               momentum: float = BN_MOMENTUM) -> tf_keras.layers.BatchNormalization:
  """Keras BatchNorm over the channel axis with BigGAN's momentum.

  `synchronized=True` (unless built inside `cross_replica_batch_norm(False)`):
  under a multi-replica `tf.distribute` strategy the batch statistics are
  all-reduced over the *global* batch (BigGAN's cross-replica BatchNorm), so
  training on N replicas computes what one device computes on the same global
  batch. With one replica it is ordinary BatchNorm. Inside `truncation_statistics(n)`
  it is a `TruncationBatchNorm` holding n statistics per truncation.
  """
  args = dict(axis=-1, momentum=momentum, epsilon=epsilon, center=affine, scale=affine,
              synchronized=_SYNC[0], name=name)
  if _TABLES[0]:
    return TruncationBatchNorm(_TABLES[0], **args)
  return tf_keras.layers.BatchNormalization(**args)


class ConditionalBatchNorm(tf_keras.layers.Layer):
  """BatchNorm whose per-sample gain and bias are linear in a conditioning vector.

  Args:
    num_channels: channels of x (the width of the gain/bias projections).
    bn_eps: BatchNorm epsilon.
    sn_eps, sn_mode: spectral norm settings of the two projections.
    momentum: moving-statistics momentum (Keras convention).
    kernel_initializer: initializer of the projection kernels (BigGAN: orthogonal).
  """

  def __init__(self, num_channels: int, bn_eps: float = 1e-5, sn_eps: float = 1e-6,
               sn_mode: str = "power_iteration", momentum: float = BN_MOMENTUM,
               kernel_initializer="orthogonal", **kwargs):
    super().__init__(**kwargs)
    self.num_channels = int(num_channels)
    self.bn_eps = float(bn_eps)
    self.sn_eps = float(sn_eps)
    self.sn_mode = sn_mode
    self.momentum = float(momentum)
    self.bn = batch_norm(bn_eps, affine=False, name="bn", momentum=momentum)
    sn = dict(use_bias=False, sn_eps=sn_eps, sn_mode=sn_mode,
              kernel_initializer=kernel_initializer)
    self.gain_linear = SNDense(self.num_channels, name="gain", **sn)
    self.bias_linear = SNDense(self.num_channels, name="bias", **sn)

  def channel_gain(self, cond: tf.Tensor, training=False) -> tf.Tensor:
    """[B, C] multiplicative gain `1 + W_gain c` applied after normalisation."""
    return 1.0 + self.gain_linear(cond, training=training)

  def call(self, inputs, cond, training=None):
    normed = self.bn(inputs, training=training)
    gain = self.channel_gain(cond, training=training)
    bias = self.bias_linear(cond, training=training)
    return normed * gain[:, None, None, :] + bias[:, None, None, :]

  def get_config(self):
    config = super().get_config()
    config.update(num_channels=self.num_channels, bn_eps=self.bn_eps,
                  sn_eps=self.sn_eps, sn_mode=self.sn_mode, momentum=self.momentum)
    return config
