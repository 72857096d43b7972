"""Baselines at the same parameter budget as PPCD (issue: the main job, baselines).

`MagnitudePruningTrainer`: tfmot `prune_low_magnitude` on the teacher's generator.
Every spectrally normalised conv / dense kernel of G (not the class embedding) is
wrapped by tfmot's `PruneLowMagnitude` with a `PolynomialDecay` schedule whose final
sparsity leaves the same number of non-zero generator parameters as PPCD's budget
(`(1 - target_fraction)` of the teacher's). G starts from the teacher's EMA weights
and D from the teacher's D, and both fine-tune with the hinge GAN loss only (no
distillation, no channel masks). `strip_magnitude_pruning` then removes the wrappers,
leaving a plain generator whose pruned weights are exactly zero.

The sparsity is unstructured: the parameter count drops, MACs and latency of dense
kernels do not (reported honestly by the experiment).

Conventions of the tfmot wrapper in our custom loop: each training-mode call of a
wrapped layer advances its `pruning_step` by one, and G runs in training mode
`d_steps + 1` times per training step, so the schedule's steps are scaled by that
factor. `pruning_step` starts at 1 (what tfmot's `UpdatePruningStep` callback does).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from ppcd_tf import config as config_lib
from ppcd_tf import flops
from ppcd_tf.layers.spectral_norm import SNConv2D, SNDense
from ppcd_tf.train_lib import Trainer

__all__ = ["wrap_for_magnitude_pruning", "strip_magnitude_pruning", "nonzero_params",
           "magnitude_sparsity_for_budget", "MagnitudePruningTrainer", "magnitude_config"]

from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude as _Wrapper  # noqa: E402


def _parents_of_prunable(generator) -> List[Tuple[object, str, object]]:
  """(parent layer, attribute, SN conv/dense layer) for every prunable kernel of G."""
  found = []
  for parent in generator._flatten_layers(include_self=True, recursive=True):  # pylint: disable=protected-access
    for attr, value in list(vars(parent).items()):
      if isinstance(value, (SNConv2D, SNDense)) and not attr.startswith("_"):
        found.append((parent, attr, value))
  return found


def wrap_for_magnitude_pruning(generator, schedule) -> List[_Wrapper]:
  """Replaces each SN conv/dense layer of `generator` by a tfmot pruning wrapper."""
  wrappers = []
  for parent, attr, layer in _parents_of_prunable(generator):
    # The wrapper itself computes in float32 whatever the policy: its mask update
    # (`weight * mask`, assigned back to the float32 kernel) runs in the wrapper's
    # autocast scope, so under mixed_bfloat16 it would read the kernel as bfloat16 and
    # fail to assign. The wrapped layer keeps its own mixed policy for the conv.
    wrapper = _Wrapper(layer, pruning_schedule=schedule, dtype="float32")
    setattr(parent, attr, wrapper)
    wrappers.append(wrapper)
  if not wrappers:
    raise ValueError("the generator has no spectrally normalised conv/dense layer to prune")
  return wrappers


def strip_magnitude_pruning(generator) -> int:
  """Applies the final masks and puts the bare layers back. Returns layers stripped."""
  n = 0
  for parent in generator._flatten_layers(include_self=True, recursive=True):  # pylint: disable=protected-access
    for attr, value in list(vars(parent).items()):
      if isinstance(value, _Wrapper) and not attr.startswith("_"):
        for weight, mask, _ in value.pruning_vars:
          weight.assign(weight * mask)
        setattr(parent, attr, value.layer)
        n += 1
  return n


def nonzero_params(generator) -> int:
  """Non-zero trainable parameters (the parameter count of a sparse model).

  For a wrapped generator the pruned kernel entries are those whose mask is 0 (the
  optimiser may have moved them since the last mask multiply; stripping zeroes them).
  """
  total = int(sum(np.count_nonzero(v.numpy()) for v in generator.trainable_variables))
  for parent in generator._flatten_layers(include_self=True, recursive=True):  # pylint: disable=protected-access
    for attr, value in list(vars(parent).items()):
      if isinstance(value, _Wrapper) and not attr.startswith("_"):
        for weight, mask, _ in value.pruning_vars:
          w, m = weight.numpy(), mask.numpy()
          total -= int(np.count_nonzero(w)) - int(np.count_nonzero(w * m))
  return total


def magnitude_sparsity_for_budget(generator, budget: int) -> float:
  """Sparsity of the prunable kernels that leaves `budget` non-zero G parameters."""
  layers = _parents_of_prunable(generator)
  prunable = sum(int(np.prod(layer.get_prunable_weights()[0].shape))
                 for _, _, layer in layers)
  total = flops.live_params(generator)
  fixed = total - prunable
  if budget <= fixed:
    raise config_lib.ConfigError(
        f"a budget of {budget} parameters is below the {fixed} that magnitude pruning "
        "cannot remove (embeddings, biases, BN); lower --target_fraction.")
  # tfmot rounds the number of weights it keeps per layer: leave one weight per
  # layer of margin so the total never ends above the budget.
  return min(1.0, 1.0 - (budget - fixed - len(layers)) / prunable)


def magnitude_config(cfg: config_lib.Config, teacher_dir: str) -> config_lib.Config:
  """The run config of the baseline: student = teacher copy, GAN loss only, no masks."""
  return cfg.replace(run=dict(mode="ppcd"),
                     distill=dict(teacher_dir=teacher_dir, init_from_teacher=True,
                                  lambda_att=0.0, lambda_cam=0.0, lambda_pix=0.0,
                                  use_masks=False)).validate()


class MagnitudePruningTrainer(Trainer):
  """Trainer whose generator is pruned by tfmot magnitude pruning (see module docstring)."""

  def _build(self) -> None:
    super()._build()
    cfg = self.cfg
    teacher_params = flops.live_params(self.teacher_G)
    budget = int(np.floor((1 - cfg.pruning.target_fraction) * teacher_params))
    sparsity = magnitude_sparsity_for_budget(self.G, budget)
    calls = cfg.optim.d_steps + 1
    self.magnitude_budget, self.magnitude_sparsity = budget, sparsity
    self.magnitude_schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity,
        begin_step=cfg.pruning.begin_step * calls + 1,
        end_step=cfg.pruning.end_step * calls + 1,
        frequency=max(1, cfg.pruning.frequency * calls), power=cfg.pruning.power)
    self._pre_wrap_variables = {
        "G": list(self.G.variables), "G_ema": list(self.G_ema.variables)}
    with self.strategy.scope():
      self.wrappers = wrap_for_magnitude_pruning(self.G, self.magnitude_schedule)
      self.ema_wrappers = wrap_for_magnitude_pruning(self.G_ema, self.magnitude_schedule)
      z, y, _ = self._dummy_inputs()
      self.G((z, y), training=False)
      self.G_ema((z, y), training=False)
    for w in self.wrappers + self.ema_wrappers:
      w.pruning_step.assign(1)
    if cfg.run.jit_compile:
      # tfmot's mask update is a `merge_call`, which cannot run inside the
      # XLA-compiled per-replica gradient function: there it is a no-op, and
      # `_prune_before_step` runs the real one eagerly before the step instead.
      for wrapper in self.wrappers:
        obj = wrapper.pruning_obj
        obj.eager_mask_update = obj.conditional_mask_update
        obj.conditional_mask_update = tf.no_op
    # The wrapped generators list extra (mask, threshold, step) variables: pair them
    # again; masks and steps are copied to the EMA generator, kernels averaged.
    self._pair_ema_variables()

  def _prune_before_step(self, step: int, events) -> None:
    """tfmot updates the masks inside training step `s` when `s` is one of the
    schedule's pruning steps; the EMA restarts right after, as for PPCD's events.

    With --jit_compile the update runs eagerly just before step `s`, evaluated at
    the `pruning_step` the in-graph update of step `s` sees (the one step `s`
    ends on, after its d_steps + 1 training calls), so the turns are the same.
    """
    del events
    if self.cfg.run.jit_compile:
      calls = self.cfg.optim.d_steps + 1
      with self.strategy.scope():
        for wrapper in self.wrappers:
          start = wrapper.pruning_step.read_value()
          wrapper.pruning_step.assign(start + calls)
          wrapper.pruning_obj.eager_mask_update()
          wrapper.pruning_step.assign(start)
    p = self.cfg.pruning
    prev = step - 1
    if p.begin_step <= prev <= p.end_step and (prev - p.begin_step) % p.frequency == 0:
      self.restart_ema()  # the step-units image of self.magnitude_schedule's turns

  def _is_copied_state(self, variable) -> bool:
    return super()._is_copied_state(variable) or any(
        k in variable.name for k in ("mask", "threshold", "pruning_step"))

  def _initialise(self) -> None:
    # Fresh run: G and G_ema from the teacher's EMA generator, D from the teacher's D.
    # The wrapped generators' inner variables are the pre-wrap ones, in build order.
    for name in ("G", "G_ema"):
      for dst, src in zip(self._pre_wrap_variables[name], self.teacher_G.variables):
        dst.assign(src)
    for dst, src in zip(self.D.variables, self.teacher_D.variables):
      dst.assign(src)
    self._init_optimizers_from_teacher()

  # tfmot's mask op is a `merge_call`, which an XLA-compiled function cannot hold.
  _ema_call_jit = False

  def _ema_call(self, z, y):
    """As `Trainer._ema_call`, but calls the wrapped EMA generator in replica context:
    the wrappers' mask op (`weight * mask`, assigned back on every call) uses
    `merge_call` and `strategy.extended.update`, which fail on a distributed
    variable from a cross-replica call ("tuple indices must be integers or slices,
    not MirroredVariable": the experiment's in-training FID of the bf16 baseline)."""
    if getattr(self, "_ema_replica_fn", None) is None:
      @tf.function
      def generate(z, y):
        out = self.strategy.run(lambda a, b: self.G_ema((a, b), training=False),
                                args=(z, y))
        return self.strategy.experimental_local_results(out)[0]
      self._ema_replica_fn = generate
    return self._ema_replica_fn(z, y)

  def _final_summary(self, step: int, logs: Dict[str, float], wall: float) -> Dict:
    out = super()._final_summary(step, logs, wall)
    out.update(baseline="tfmot_magnitude", nonzero_params=nonzero_params(self.G),
               magnitude_budget=self.magnitude_budget,
               magnitude_sparsity=self.magnitude_sparsity,
               teacher_params=flops.live_params(self.teacher_G))
    return out
