"""What a run shows while it trains: sample grids, TensorBoard summaries, gradient
shares, in-training evaluation, and the NaN/Inf check of the logged losses.

A mixin of `ppcd_tf.train_lib.Trainer`: it reads and sets the Trainer's attributes
(see `Trainer.__init__`).
"""

from __future__ import annotations

import math
import os
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from ppcd_tf import checkpoints
from ppcd_tf import evaluation
from ppcd_tf import images as images_lib
from ppcd_tf.trainer.common import (
    SAMPLE_SEED, TrainingDivergedError, _GRAD_NORM_SALT, _sample_rows)


class ReportingMixin:
  """Samples, summaries, evaluation and the NaN check (mixin of `Trainer`)."""

  def sample_grid(self, per_class: int = 8) -> np.ndarray:
    rows = _sample_rows(self.model_cfg.num_classes)
    y = np.repeat(rows, per_class).astype(np.int32)
    z = evaluation.sample_z(len(y), self.model_cfg.z_dim, SAMPLE_SEED,
                            self.cfg.run.truncation or None)
    imgs = self._ema_call(tf.constant(z, tf.float32), tf.constant(y))
    return images_lib.make_grid(imgs.numpy(), rows=len(rows))

  # Whether `_ema_call` may run XLA-compiled (evaluation with --jit_compile).
  _ema_call_jit = True

  def _ema_call(self, z, y):
    """Images of the EMA generator at inference, for sample grids and evaluation
    (a trainer whose G needs replica context overrides it)."""
    return self.G_ema((z, y), training=False)

  def _write_samples(self, step: int) -> Optional[str]:
    # Every worker computes the grid: reading sync-on-read BN statistics is a
    # collective under MultiWorkerMirroredStrategy; only the chief writes it.
    grid = self.sample_grid()
    if not self.is_chief:
      return None
    path = os.path.join(self.workdir, "samples", f"step_{step:06d}.png")
    images_lib.save_png(grid, path)
    with self._writer.as_default(step=step):
      tf.summary.image("samples/ema", grid[None], max_outputs=1)
    return path

  def _write_summaries(self, step: int, logs: Dict[str, float], steps_per_s: float) -> None:
    with self._writer.as_default(step=step):
      for k, v in logs.items():
        tf.summary.scalar(f"loss/{k}", v)
      tf.summary.scalar("perf/steps_per_second", steps_per_s)
      tf.summary.scalar("lr/g", self.cfg.optim.g_lr)
      tf.summary.scalar("lr/d", self.cfg.optim.d_lr)
      cost = self.live_cost()
      tf.summary.scalar("cost/live_g_params", cost["live_params"])
      tf.summary.scalar("cost/live_g_macs", cost["live_macs"])
      if self.masked:
        tf.summary.scalar("lr/mask", self.cfg.optim.g_lr * self.cfg.pruning.mask_lr_scale)
        tf.summary.scalar("cost/live_fraction", cost["live_params"] / self.full_cost
                          if self.cost_metric == "params" else
                          cost["live_macs"] / self.full_cost)
        tf.summary.scalar("pruning/scheduled_budget", self.controller.budget(step))
        for name, kept in self.channels_kept().items():
          tf.summary.scalar(f"channels_kept/{name}", kept)
        for name, mk in self.G.masks:  # (none after the switch to the slim width)
          tf.summary.histogram(f"mask_scores/{name}", mk.score)
        if self.importance == "taylor" and float(self.taylor_count.numpy()) > 0:
          # What ranks the channels at the next event (live channels only).
          for (name, mk), value in zip(self.G.masks, self.taylor_importance().values()):
            tf.summary.histogram(f"taylor_importance/{name}",
                                 value[mk.alive.numpy() > 0.5])

  def _write_gradient_norms(self, step: int) -> None:
    """grad_norm/<term> and grad_share/<term> (over the adversarial term) of one batch
    (`ppcd_tf.grad_shares`); single-replica runs only."""
    from ppcd_tf import grad_shares
    if self.num_replicas > 1:
      return
    z, y = self._latents(tf.constant(step, tf.int64), _GRAD_NORM_SALT, 0)
    norms = grad_shares.term_gradient_norms(self, z, y)
    with self._writer.as_default(step=step):
      for name, value in norms.items():
        tf.summary.scalar(f"grad_norm/{name}", value)
      for name, value in grad_shares.shares(norms).items():
        if name != "adv":
          tf.summary.scalar(f"grad_share/{name}", value)

  def evaluate(self, step: int) -> Dict:
    """FID & co. of the EMA generator (`--eval_every`), logged under eval/ema/*."""
    from ppcd_tf import features
    r = self.cfg.run
    if self._eval is None:
      extractor = features.get_extractor(r.eval_extractor)
      ref = evaluation.reference_stats(extractor, self.cfg.data, self.cfg.model,
                                       cache_dir=r.stats_dir)
      gen = tf.function(self._ema_call, jit_compile=r.jit_compile and self._ema_call_jit)
      self._eval = (extractor, ref, gen)
    extractor, ref, gen = self._eval
    result = evaluation.evaluate_generator(
        lambda z, y: gen(tf.constant(z, tf.float32), tf.constant(y, tf.int32)),
        extractor, ref, r.eval_num_samples, self.model_cfg.num_classes,
        self.model_cfg.z_dim, seed=0, truncation=r.truncation or None,
        compute_intra_fid=True)
    with self._writer.as_default(step=step):
      for k in ("fid", "is_mean", "kid_mean", "intra_fid", "class_accuracy"):
        if isinstance(result.get(k), (int, float)):
          tf.summary.scalar(f"eval/ema/{k}", result[k])
    if self.is_chief:
      checkpoints.write_json_atomic(
          os.path.join(self.workdir, "eval", f"step_{step:06d}.json"), result)
    return result

  def _check_finite(self, logs: Dict[str, float], step: int) -> None:
    """Raises TrainingDivergedError when a loss was not finite at or before `step`."""
    first = int(self.first_nonfinite_step.numpy())
    bad = [k for k, v in logs.items() if not math.isfinite(v)]
    if first < 0 and not bad:
      return
    first = first if first >= 0 else step
    latest = self.manager.latest_checkpoint
    where = (f"the last good checkpoint is {latest}; rerun to resume from it"
             if latest else "no checkpoint was written yet")
    seen = ", ".join(f"{k}={logs[k]}" for k in bad) or "a loss was not finite"
    found = f" (read at step {step})" if first != step else ""
    raise TrainingDivergedError(
        f"loss {seen} at step {first}{found}: training diverged and was stopped "
        f"without saving ({where}). Lower --g_lr/--d_lr or check the data.")
