"""Clean state at a pruning event: pruned channels' weights and Adam slots go to zero.

A pruned channel is masked to exactly 0, so its weights no longer change what G
computes, with one exception: spectral norm divides each kernel by its largest
singular value, computed on the whole kernel, dead rows and columns included. Left
alone, a dead filter would keep its share of sigma (a knob on the live layer's
scale), and Adam's momentum from before the event would keep moving it.

`zero_dead_weights` therefore zeroes, at each event, every weight indexed by a dead
channel (`ppcd_tf.slim.channel_map`: conv/dense kernel rows and columns, biases, the
conditional BatchNorms' gain and bias projections, the final BatchNorm's affine
parameters) and the same entries of the optimizers' slots. After that:

* sigma of a masked layer is the sigma of its live sub-kernel (zero rows and columns
  do not change the singular values), i.e. what the slim generator of those
  channels would compute: training the masked G is training the slim one;
* a dead weight's gradient is exactly 0 (its input or its output is masked), so with
  zeroed slots Adam's update `m / (sqrt(v) + eps)` is 0: dead weights stay 0.

The spectral-norm vectors are then refreshed by a few power iterations, so sigma
is accurate from the first step after the event.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from ppcd_tf import slim as slim_lib

__all__ = ["dead_index_sets", "zero_dead_weights", "optimizer_slots"]

POWER_ITERATIONS = 20


def dead_index_sets(generator) -> Dict[str, np.ndarray]:
  """{mask name: pruned channel indices} plus "stem_units" (the stem's output units)."""
  dead = {name: np.flatnonzero(mask.alive.numpy() <= 0.5) for name, mask in generator.masks}
  return slim_lib.index_sets_with_stem_units(generator, dead)


def optimizer_slots(optimizer, variable) -> List[tf.Variable]:
  """The slot variables (Adam's m and v) `optimizer` keeps for `variable`."""
  opt = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
  index = opt._index_dict.get(opt._var_key(variable))  # pylint: disable=protected-access
  if index is None:
    return []
  slots = []
  for name in ("_momentums", "_velocities"):
    values = getattr(opt, name, None)
    if values:
      slots.append(values[index])
  return slots


def _keep(shape, axes_and_dead) -> np.ndarray:
  keep = np.ones(shape, np.float32)
  for axis, dead in axes_and_dead:
    if dead is not None and len(dead):
      index = [slice(None)] * len(shape)
      index[axis] = dead
      keep[tuple(index)] = 0.0
  return keep


def _zero(variable, keep: np.ndarray, optimizers: Sequence) -> int:
  """Zeroes `variable` (and its slots) where `keep` is 0; returns how many of its
  entries were not zero yet."""
  if keep.all():
    return 0
  changed = int(np.count_nonzero(variable.numpy()[keep == 0]))
  k = tf.constant(keep, variable.dtype)
  variable.assign(variable * k)
  for opt in optimizers:
    for slot in optimizer_slots(opt, variable):
      slot.assign(slot * tf.cast(k, slot.dtype))
  return changed


def _spectral_layer(layer, in_dead, out_dead, in_axis, out_axis, optimizers) -> int:
  kernel = layer._raw_weight()  # pylint: disable=protected-access
  n = _zero(kernel, _keep(kernel.shape, [(in_axis, in_dead), (out_axis, out_dead)]),
            optimizers)
  if getattr(layer, "bias", None) is not None:
    n += _zero(layer.bias, _keep(layer.bias.shape, [(0, out_dead)]), optimizers)
  return n


def zero_dead_weights(generator, optimizers: Sequence = ()) -> int:
  """Zeroes the weights (and slots in `optimizers`) of `generator`'s pruned channels.

  Returns the number of weight entries that were not zero yet (0 when nothing is
  pruned or it was done already). Refreshes the spectral-norm vectors of every layer touched.
  """
  dead = dead_index_sets(generator)
  zeroed, touched = 0, []
  for entry in slim_lib.channel_map(generator):
    layer = entry.layer(generator)
    out_dead = dead.get(entry.out_key)
    if entry.kind == "sn":
      n = _spectral_layer(layer, dead.get(entry.in_key), out_dead, entry.in_axis,
                          entry.out_axis, optimizers)
      if n:
        touched.append(layer)
      zeroed += n
    elif entry.kind == "cbn":
      for lin in (layer.gain_linear, layer.bias_linear):
        n = _spectral_layer(lin, None, out_dead, 0, 1, optimizers)
        if n:
          touched.append(lin)
        zeroed += n
    else:  # the final BatchNorm's gamma and beta
      for v in layer.trainable_weights:
        zeroed += _zero(v, _keep(v.shape, [(0, out_dead)]), optimizers)
  for layer in touched:
    for _ in range(POWER_ITERATIONS):
      layer.spectral_sigma(training=True)
  return zeroed
