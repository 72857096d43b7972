"""ChannelMask: the learnable, exactly binary channel mask of a PP-Res block.

Tensors are NHWC (or [B, C]); the mask multiplies the last axis.

Each channel has a trainable `score` and a non-trainable `alive` flag. The forward
value is exactly `alive` (0 or 1), so the masked network computes *exactly* what
the slimmed network (pruned channels removed) computes; the gradient reaches the
score straight-through the sigmoid:

    s = alive * sigmoid(score)
    m = alive + (s - stop_gradient(s))      # value: alive; d m / d score = alive * sigmoid'

A pruned channel (`alive == 0`) receives no gradient, and pruning is permanent:
nothing but `prune` / `set_alive` ever writes `alive` (METHOD.md "PP-Res block").
The pruning controller ranks live channels by score (normalised by cost, see
`ppcd_tf.flops.mask_channel_costs`) and calls `prune`; it stops optimising scores
after the schedule's end step, so no `frozen` flag is needed here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf
import tf_keras

__all__ = ["ChannelMask"]


class ChannelMask(tf_keras.layers.Layer):
  """Per-channel binary mask with a straight-through sigmoid gradient.

  Args:
    num_channels: size of the channel axis it masks.
    initial_score: initial `score` (3.0: sigmoid = 0.95, so the sigmoid slope,
      i.e. the straight-through gradient, is small but not vanishing).
  """

  def __init__(self, num_channels: int, initial_score: float = 3.0, **kwargs):
    # Scores and the straight-through sigmoid stay float32 under a mixed policy;
    # only the product with the activations runs in their dtype.
    kwargs.setdefault("autocast", False)
    super().__init__(**kwargs)
    if num_channels < 1:
      raise ValueError(f"num_channels={num_channels} must be >= 1.")
    self.num_channels = int(num_channels)
    self.initial_score = float(initial_score)

  def build(self, input_shape=None):
    if input_shape is not None and input_shape[-1] is not None:
      if int(input_shape[-1]) != self.num_channels:
        raise ValueError(f"{self.name}: input has {input_shape[-1]} channels, the mask "
                         f"{self.num_channels}.")
    self.score = self.add_weight(
        "score", shape=[self.num_channels], trainable=True,
        initializer=tf_keras.initializers.Constant(self.initial_score))
    # Written only outside replica context (by the pruning controller); the first
    # replica's value wins if anything ever assigns it inside strategy.run.
    self.alive = self.add_weight(
        "alive", shape=[self.num_channels], trainable=False, initializer="ones",
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    super().build(input_shape)

  def mask_values(self) -> tf.Tensor:
    """The [C] mask: value exactly `alive`, gradient `alive * sigmoid'(score)`."""
    alive = tf.convert_to_tensor(self.alive)
    soft = alive * tf.sigmoid(self.score)
    return alive + (soft - tf.stop_gradient(soft))

  def call(self, inputs):
    return inputs * tf.cast(self.mask_values(), inputs.dtype)

  # ---- pruning state (eager) ----
  def _check_built(self):
    if not self.built:
      raise RuntimeError(f"{self.name} is not built yet; call the model once first.")

  def num_alive(self) -> int:
    """Number of live channels."""
    self._check_built()
    return int(np.sum(self.alive.numpy() > 0.5))

  def live_indices(self) -> np.ndarray:
    """Sorted int64 indices of the live channels."""
    self._check_built()
    return np.flatnonzero(self.alive.numpy() > 0.5)

  def prune(self, indices: Sequence[int]) -> None:
    """Permanently prunes `indices` (already-pruned ones are ignored).

    Raises:
      ValueError: an index is out of range, or pruning would leave no live channel
        (a zero-width layer cannot be slimmed; stop one channel earlier).
    """
    self._check_built()
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= self.num_channels):
      raise ValueError(f"{self.name}: indices {idx.tolist()} out of range "
                       f"[0, {self.num_channels}).")
    alive = self.alive.numpy().copy()
    alive[idx] = 0.0
    if not alive.any():
      raise ValueError(f"{self.name}: pruning {idx.tolist()} would remove every "
                       "channel; keep at least one.")
    self.alive.assign(alive)

  def set_alive(self, alive) -> None:
    """Overwrites the whole 0/1 state (e.g. to copy it between generators)."""
    self._check_built()
    alive = (np.asarray(alive, np.float32).reshape(-1) > 0.5).astype(np.float32)
    if alive.shape != (self.num_channels,) or not alive.any():
      raise ValueError(f"{self.name}: alive must be {self.num_channels} flags with at "
                       "least one 1.")
    self.alive.assign(alive)

  def get_config(self):
    config = super().get_config()
    config.update(num_channels=self.num_channels, initial_score=self.initial_score)
    return config
