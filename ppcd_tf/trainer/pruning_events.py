"""Pruning events of a PPCD run: the controller's event before a step (dead weights and
their Adam slots zeroed, the EMA restarted, the mask costs refreshed) and the
switch to the slim generator after the last one (`ppcd_tf.slim_finetune`).

A mixin of `ppcd_tf.train_lib.Trainer`: it reads and sets the Trainer's attributes
(see `Trainer.__init__`).
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
from absl import logging

from ppcd_tf import dead_weights
from ppcd_tf import flops
from ppcd_tf.trainer.common import TEST_PRUNE_DELAY_ENV, _test_delay_hook


class PruningEventsMixin:
  """Pruning events and the masks' state (mixin of `Trainer`)."""

  def set_masks_trainable(self, trainable: bool) -> None:
    """Freezes (or unfreezes) the mask scores without retracing the step.

    Frozen: the mask optimiser's learning rate and the sparsity weight are 0, so
    scores do not move; `alive` never changes outside pruning events anyway.
    """
    if not self.mask_scores:
      return
    self.masks_trainable.assign(1.0 if trainable else 0.0)
    self.mask_opt.learning_rate = (self.cfg.optim.g_lr * self.cfg.pruning.mask_lr_scale
                                   if trainable else 0.0)

  def restart_ema(self) -> None:
    """Copies G into the EMA generator and restarts the EMA warm-up.

    Called after every pruning event that removed channels: an average over weights
    trained under different channel structures is not a model of either (the
    experiment's first PPCD run sampled black images that way). The EMA therefore
    averages within one architecture only. The warm-up (`_ema_update`) matters as
    much: with a plain decay of 0.999, 600 steps after the last event 55% of the
    EMA would still be the weights just after that event, before the survivors
    recovered (docs/results/HISTORY.md: FID 41 for that EMA vs 17 for G at 81%
    removed).
    """
    for src, dst in self._ema_pairs + self._copy_pairs:
      dst.assign(src)
    self.ema_restart_step.assign(self.step)

  def _update_mask_costs(self) -> None:
    costs = flops.mask_channel_costs(self.G)
    idx = 0 if self.cost_metric == "params" else 1
    values = [float(costs[name][idx]) for name, _ in self.G.masks]
    self.mask_costs.assign(np.asarray(values, np.float32))

  def channels_kept(self) -> Dict[str, int]:
    """{mask name: live channels} (from the switch record after the switch)."""
    if self.slim_phase:
      return {name: int(len(idx)) for name, idx in self.slim_switch["live"].items()}
    return self.controller.channels_kept()

  def live_cost(self) -> Dict[str, int]:
    return {"live_params": int(flops.live_params(self.G)),
            "live_macs": int(flops.live_macs(self.G))}

  def _prune_before_step(self, step: int, events: List) -> None:
    """Runs the pruning event of `step`, if any, before its training step; an event
    that removed channels restarts the EMA (`restart_ema`)."""
    if not self.masked or self.slim_phase:
      return
    event = self.controller.maybe_prune(step)
    if event is None:
      return
    self._update_mask_costs()
    events.append(event)
    if event.channels_pruned:
      # Dead weights and their Adam slots to 0 (spectral norm then sees the live
      # sub-kernel only, and dead weights stay 0), then the EMA restarts from G.
      dead_weights.zero_dead_weights(self.G, [self.g_opt])
      pause = _test_delay_hook(TEST_PRUNE_DELAY_ENV, step)
      if pause:
        pause(f"pruning event of step {step} applied, EMA not restarted")
      self.restart_ema()
      self._reset_taylor()
    logging.info("step %d: pruned %d channels, live cost %d -> %d (budget %.0f)",
                 step, event.channels_pruned, event.cost_before, event.cost_after,
                 event.budget)
