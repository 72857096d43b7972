"""Progressive channel pruning of a masked generator (METHOD.md "Progressive pruning").

Two pieces:
  * `ProgressivePruningSchedule`: when to prune and how far. It wraps tfmot's
    `PolynomialDecay` / `ConstantSparsity` (the fraction of the *cost* removed at a
    step) and is a small serialisable object (`get_config` / `from_config`).
  * `PruningController`: at each pruning event, removes channels globally, lowest
    `importance / relative cost` first, until the live generator fits the
    scheduled budget. Removal is permanent (the mask's `alive` entry goes to 0).
    The importance is learned (trained scores, or the Taylor importance of the mask
    gates), or cost alone, or for the baselines an L1 filter norm, globally or at
    uniform widths (`ppcd_tf.importance`).

Cost is live generator parameters by default, or MACs (`metric="macs"`). The
per-channel costs come from `ppcd_tf.flops.mask_channel_costs`, which knows what
one more channel of each mask costs given the current live widths. Because the
costs of neighbouring masks interact (a conv's weight count is in x out), the
controller prunes in rounds, recomputing costs, until the exact live cost is
within budget: it never stops above budget, and overshoots by at most a few
channels' worth.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule

from ppcd_tf import config as config_lib

__all__ = ["ProgressivePruningSchedule", "PruningController", "PruningEvent"]


class ProgressivePruningSchedule:
  """Fraction of the generator's cost to remove at each step, and when to prune.

  Args:
    target_fraction: final fraction of the cost removed, in (0, 1).
    begin_step: first pruning event.
    end_step: last pruning event; the target is reached here and masks freeze after.
    frequency: steps between events.
    schedule: 'polynomial' (tfmot PolynomialDecay from 0 to the target) or
      'constant' (tfmot ConstantSparsity: the whole target at begin_step).
    power: exponent of the polynomial schedule (3 = prune fast first, slowly later,
      as in Zhu & Gupta 2017, "To prune, or not to prune").
  """

  def __init__(self, target_fraction: float = 0.81, begin_step: int = 0,
               end_step: int = 1000, frequency: int = 50, schedule: str = "polynomial",
               power: float = 3.0):
    config_lib.PruningConfig(target_fraction=target_fraction, begin_step=begin_step,
                             end_step=end_step, frequency=frequency, schedule=schedule,
                             power=power).validate()
    self.target_fraction = float(target_fraction)
    self.begin_step = int(begin_step)
    self.end_step = int(end_step)
    self.frequency = int(frequency)
    self.schedule = schedule
    self.power = float(power)
    if schedule == "polynomial":
      self._tfmot = pruning_schedule.PolynomialDecay(
          initial_sparsity=0.0, final_sparsity=self.target_fraction,
          begin_step=self.begin_step, end_step=self.end_step, power=self.power,
          frequency=self.frequency)
    else:
      self._tfmot = pruning_schedule.ConstantSparsity(
          target_sparsity=self.target_fraction, begin_step=self.begin_step,
          end_step=self.end_step, frequency=self.frequency)

  @classmethod
  def from_pruning_config(cls, cfg: config_lib.PruningConfig) -> "ProgressivePruningSchedule":
    return cls(cfg.target_fraction, cfg.begin_step, cfg.end_step, cfg.frequency,
               cfg.schedule, cfg.power)

  def fraction(self, step: int) -> float:
    """Fraction of the cost that should be gone by `step` (0 before begin_step)."""
    if step < self.begin_step:
      return 0.0
    if step >= self.end_step:
      return self.target_fraction
    _, sparsity = self._tfmot(tf.constant(step, tf.int64))
    return float(sparsity)

  def should_prune(self, step: int) -> bool:
    """Pruning events: every `frequency` steps in [begin, end], and always at end_step."""
    if step < self.begin_step or step > self.end_step:
      return False
    return (step - self.begin_step) % self.frequency == 0 or step == self.end_step

  def is_frozen(self, step: int) -> bool:
    """After end_step the masks are fixed and only the surviving weights train."""
    return step > self.end_step

  def get_config(self) -> Dict[str, Any]:
    return dict(target_fraction=self.target_fraction, begin_step=self.begin_step,
                end_step=self.end_step, frequency=self.frequency, schedule=self.schedule,
                power=self.power)

  @classmethod
  def from_config(cls, config: Dict[str, Any]) -> "ProgressivePruningSchedule":
    return cls(**config)

  def __eq__(self, other: object) -> bool:
    return isinstance(other, ProgressivePruningSchedule) and (
        self.get_config() == other.get_config())

  def __repr__(self) -> str:
    return f"ProgressivePruningSchedule({self.get_config()})"


@dataclasses.dataclass
class PruningEvent:
  """What one pruning event did (logged to TensorBoard and the console)."""
  step: int
  budget: float
  cost_before: int
  cost_after: int
  channels_pruned: int
  rounds: int
  # The floors (min_channels, min_channel_fraction) left nothing more to prune
  # while the cost was still above the budget.
  blocked: bool = False


class PruningController:
  """Prunes a masked generator's channels to a scheduled cost budget.

  Args:
    generator: a generator built with `masked=True` (has `.masks`).
    schedule: a `ProgressivePruningSchedule`.
    full_cost: the unpruned cost (the teacher's parameters or MACs).
    metric: 'params' or 'macs'.
    final_budget: absolute final budget; 0 means `(1 - target) * full_cost`.
    min_channels: channels every mask keeps, so no block is cut off entirely.
    min_channel_fraction: share of each mask's full width it always keeps.
    cost_exponent: the ranking key is `importance / (cost / mean cost) ** e`;
      1 ranks by importance per unit of cost (METHOD.md), 0 by importance alone.
    importance: 'learned' (sigmoid of the mask scores), 'taylor' (from
      `importance_source`), 'cost' (all equal), 'l1' (normalised L1 filter norms) or 'uniform_l1' (every mask at the same fraction of its width, by L1
      within the mask; no global ranking, the floors other than `min_channels` do
      not apply); see `ppcd_tf.importance`.
  """

  def __init__(self, generator, schedule: ProgressivePruningSchedule, full_cost: int,
               metric: str = "params", final_budget: int = 0, min_channels: int = 1,
               min_channel_fraction: float = 0.0, cost_exponent: float = 1.0,
               importance: str = "learned"):
    if metric not in ("params", "macs"):
      raise ValueError(f"metric={metric!r} must be 'params' or 'macs'")
    if importance not in config_lib.IMPORTANCES:
      raise ValueError(f"importance={importance!r} must be one of "
                       f"{config_lib.IMPORTANCES}")
    if full_cost <= 0:
      raise ValueError(f"full_cost={full_cost} must be > 0")
    if final_budget < 0 or final_budget >= full_cost:
      raise ValueError(f"final_budget={final_budget} must be in [0, full_cost={full_cost})")
    if min_channels < 1:
      raise ValueError(f"min_channels={min_channels} must be >= 1")
    if not generator.masks:
      raise ValueError("PruningController needs a generator built with masked=True")
    self.generator = generator
    self.schedule = schedule
    self.full_cost = int(full_cost)
    self.metric = metric
    self.final_budget = int(final_budget) or int(
        np.floor((1.0 - schedule.target_fraction) * full_cost))
    self.min_channels = int(min_channels)
    self.min_channel_fraction = float(min_channel_fraction)
    self.cost_exponent = float(cost_exponent)
    self.importance = importance
    # 'taylor': a callable returning {mask name: [C] importance}, set by the trainer
    # that accumulates it (Trainer.taylor_importance).
    self.importance_source = None

  @classmethod
  def from_config(cls, generator, cfg: config_lib.PruningConfig, full_cost: int
                  ) -> "PruningController":
    """Controller for `generator` from a `PruningConfig`."""
    return cls(generator, ProgressivePruningSchedule.from_pruning_config(cfg), full_cost,
               metric="macs" if cfg.budget_macs else "params",
               final_budget=cfg.budget_params or cfg.budget_macs,
               min_channel_fraction=cfg.min_channel_fraction,
               cost_exponent=cfg.cost_exponent, importance=cfg.importance)

  def _keep_at_least(self, mask) -> int:
    return max(self.min_channels,
               int(np.ceil(self.min_channel_fraction * mask.num_channels)))

  def live_cost(self) -> int:
    from ppcd_tf import flops
    if self.metric == "params":
      return int(flops.live_params(self.generator))
    return int(flops.live_macs(self.generator))

  def budget(self, step: int) -> float:
    """Scheduled budget: moves from full_cost to final_budget as the schedule goes 0->target."""
    progress = self.schedule.fraction(step) / self.schedule.target_fraction
    return self.full_cost - progress * (self.full_cost - self.final_budget)

  def maybe_prune(self, step: int) -> Optional[PruningEvent]:
    """Runs a pruning event if `step` is one. Returns what it did, or None."""
    if not self.schedule.should_prune(step):
      return None
    return self.prune_to(self.budget(step), step)

  def _importance(self) -> Dict[str, np.ndarray]:
    """{mask name: [C] importance of every channel} for the global ranking."""
    if self.importance == "l1":
      from ppcd_tf import importance
      return importance.normalised(importance.l1_filter_norms(self.generator))
    if self.importance == "taylor":
      if self.importance_source is None:
        raise RuntimeError("importance='taylor' needs importance_source (the trainer's "
                           "accumulated gate gradients)")
      return self.importance_source()
    if self.importance == "cost":
      return {name: np.ones(mask.num_channels) for name, mask in self.generator.masks}
    return {name: tf.sigmoid(tf.convert_to_tensor(mask.score)).numpy()
            for name, mask in self.generator.masks}

  def _candidates(self, costs, scores: Dict[str, np.ndarray]) -> List[tuple]:
    cands = []
    cost_index = 0 if self.metric == "params" else 1
    all_costs = [costs[name][cost_index] for name, _ in self.generator.masks]
    mean_cost = float(np.mean([c for c in all_costs if c > 0]) or 1.0)
    for name, mask in self.generator.masks:
      live = mask.live_indices()
      keep = self._keep_at_least(mask)
      if len(live) <= keep:
        continue
      cost = float(costs[name][cost_index])
      if cost <= 0:
        continue
      keys = scores[name][live] / (cost / mean_cost) ** self.cost_exponent
      order = np.argsort(-keys, kind="stable")  # the best `keep` are never candidates
      for j in order[keep:]:
        cands.append((float(keys[j]), name, int(live[j]), cost))
    cands.sort(key=lambda c: (c[0], c[1], c[2]))
    return cands

  def prune_to(self, budget: float, step: int = -1) -> PruningEvent:
    """Prunes until the live cost is <= budget (or nothing more can be pruned)."""
    from ppcd_tf import flops
    masks = dict(self.generator.masks)
    before = self.live_cost()
    if self.importance == "uniform_l1":
      return self._prune_uniform(budget, step, before)
    scores = self._importance()  # the weights do not change during an event
    cost, pruned, rounds = before, 0, 0
    while cost > budget and rounds < 1000:
      rounds += 1
      cands = self._candidates(flops.mask_channel_costs(self.generator), scores)
      if not cands:
        break
      excess, taken = cost - budget, {}
      for _, name, idx, c in cands:
        taken.setdefault(name, []).append(idx)
        excess -= c
        if excess <= 0:
          break
      for name, idx in taken.items():
        masks[name].prune(np.asarray(idx, np.int64))
        pruned += len(idx)
      cost = self.live_cost()
    blocked = cost > budget
    if blocked:
      logging.warning(
          "Pruning at step %d stopped at %s %s, above the budget %s: every mask is at "
          "its floor (min_channels=%d, min_channel_fraction=%g). To reach the budget, "
          "lower --prune_min_channel_fraction or raise the budget.",
          step, f"{cost:,}", self.metric, f"{budget:,.0f}", self.min_channels,
          self.min_channel_fraction)
    return PruningEvent(step=step, budget=float(budget), cost_before=before,
                        cost_after=cost, channels_pruned=pruned, rounds=rounds,
                        blocked=blocked)

  def _prune_uniform(self, budget: float, step: int, before: int) -> PruningEvent:
    from ppcd_tf import importance
    pruned = 0
    if before > budget:
      keep = importance.uniform_keep(self.generator, budget, self.metric, self.min_channels)
      for name, mask in self.generator.masks:
        drop = np.setdiff1d(mask.live_indices(), keep[name])
        if drop.size:
          mask.prune(drop)
          pruned += int(drop.size)
    return PruningEvent(step=step, budget=float(budget), cost_before=before,
                        cost_after=self.live_cost(), channels_pruned=pruned,
                        rounds=int(before > budget))

  def channels_kept(self) -> Dict[str, int]:
    return {name: int(mask.num_alive()) for name, mask in self.generator.masks}
