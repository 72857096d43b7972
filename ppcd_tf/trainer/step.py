"""The training step: latents from (seed, step), the D and G gradients per replica, the
EMA update, the Taylor importance of the mask gates, and the compiled step function.

A mixin of `ppcd_tf.train_lib.Trainer`: it reads and sets the Trainer's attributes
(see `Trainer.__init__`).
"""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from ppcd_tf import data as data_lib
from ppcd_tf import distill
from ppcd_tf import losses
from ppcd_tf import precision as precision_lib
from ppcd_tf import slim_finetune
from ppcd_tf.trainer.common import _Y_SALT, _Z_SALT, read_logs


class StepMixin:
  """The D and G steps, the EMA and the Taylor importance (mixin of `Trainer`)."""

  def _latents(self, step, salt, replica_id):
    m, b = self.model_cfg, self.per_replica_batch
    gb = self.cfg.optim.batch_size
    seed = tf.stack([tf.cast(self.cfg.run.seed, tf.int64),
                     step * (self.cfg.optim.d_steps + 1) + salt])
    if m.latent == "scaled_truncnorm":  # pytorch-pretrained-BigGAN: t * truncnorm(-2, 2)
      z = m.latent_truncation * tf.random.stateless_truncated_normal(
          [gb, m.z_dim], seed=seed + [_Z_SALT, 0])
    else:
      z = tf.random.stateless_normal([gb, m.z_dim], seed=seed + [_Z_SALT, 0])
    y = tf.random.stateless_uniform([gb], seed=seed + [_Y_SALT, 0], minval=0,
                                    maxval=m.num_classes, dtype=tf.int32)
    start = replica_id * b
    return z[start:start + b], y[start:start + b]

  def _d_grads(self, images, labels, z, y):
    """D's gradients of one D step (the XLA-compiled part with --jit_compile).

    G's forward pass runs before the tape: D's loss does not differentiate
    through G, so recording it would only cost memory and tape bookkeeping.
    """
    return self._d_grads_on(images, labels, self.G((z, y), training=True), y)

  def _d_warmup_grads(self, images, labels, z, y):
    """D's gradients in the warm-up of a generator-only teacher (`--d_warmup_steps`):
    against the frozen teacher's samples (inference mode), so G stays the teacher,
    BatchNorm statistics and spectral-norm vectors included."""
    return self._d_grads_on(images, labels, self.teacher_G((z, y), training=False), y)

  def _d_grads_on(self, images, labels, fake, y):
    with tf.GradientTape() as tape:
      logits = self.D((tf.concat([images, fake], 0), tf.concat([labels, y], 0)),
                      training=True)
      real_logits, fake_logits = tf.split(logits, 2)
      d_loss = losses.hinge_discriminator_loss(real_logits, fake_logits)
      scaled = precision_lib.scale_loss(self.d_opt, d_loss / self.num_replicas)
    grads = precision_lib.unscale_gradients(
        self.d_opt, tape.gradient(scaled, self.D.trainable_variables))
    return grads, {"d_loss": d_loss, "d_real": tf.reduce_mean(real_logits),
                   "d_fake": tf.reduce_mean(fake_logits)}

  def _d_replica_step(self, images, labels, step, k, warmup=False):
    rid = tf.distribute.get_replica_context().replica_id_in_sync_group
    # Latents are drawn outside XLA: its stateless normal sampler gives other
    # numbers than the CPU/GPU kernels, and z must not depend on --jit_compile.
    z, y = self._latents(step, k, rid)
    grads, logs = self._compiled("d_warmup" if warmup else "d", k)(images, labels, z, y)
    self.d_opt.apply_gradients(zip(grads, self.D.trainable_variables))
    return logs

  def _g_grads(self, z, y):
    """G's (and the mask scores') gradients of one G step (XLA-compiled with --jit_compile).

    The teacher's passes (`DistillationContext.prepare`) run before the tape opens,
    so only the student's computation is recorded (`ppcd_tf.distill`).
    """
    train_masks = self.score_grads
    var_list = self.g_vars + (self.mask_scores if train_masks else [])
    logs = {}
    ctx = None
    if self.terms:
      ctx = distill.DistillationContext(
          self.teacher_G, self.teacher_D, z, y, student_generator=self.G,
          student_channels=self.student_channels()).prepare(self.terms)
    with tf.GradientTape() as tape:
      fake, features = self.G.forward_with_features((z, y), training=True)
      g_adv = losses.hinge_generator_loss(self.D((fake, y), training=True))
      total = g_adv
      logs["g_adv"] = g_adv
      if ctx is not None:
        ctx.set_student(fake, features)
        for name, weight in self.terms.items():
          value = distill.DISTILLATION_TERMS[name].fn(ctx)
          logs[f"distill_{name}"] = value
          total = total + weight * value
      if self.train_scores and self.cfg.pruning.sparsity_weight > 0:
        sparse = losses.mask_sparsity_loss(
            self.mask_scores, [mk.alive for _, mk in self.G.masks],
            tf.unstack(self.mask_costs[:len(self.mask_scores)]))
        logs["sparsity"] = sparse
        total = total + (self.cfg.pruning.sparsity_weight * self.masks_trainable) * sparse
      logs["g_total"] = total
      scaled = precision_lib.scale_loss(self.g_opt, total / self.num_replicas)
    grads = tape.gradient(scaled, var_list)
    n = len(self.g_vars)
    # Mask scores share G's loss (and its loss scale under float16).
    grads = precision_lib.unscale_gradients(self.g_opt, grads[:n]) + (
        precision_lib.unscale_gradients(self.g_opt, grads[n:]) if train_masks else [])
    return grads, logs

  def _g_replica_step(self, step):
    rid = tf.distribute.get_replica_context().replica_id_in_sync_group
    z, y = self._latents(step, self.cfg.optim.d_steps, rid)  # outside XLA, as for D
    grads, logs = self._compiled("g")(z, y)
    n = len(self.g_vars)
    self.g_opt.apply_gradients(zip(grads[:n], self.g_vars))
    if self.train_scores:
      self.mask_opt.apply_gradients(zip(grads[n:], self.mask_scores))
    if self.importance == "taylor":
      logs = dict(logs, _score_grads=list(grads[n:]))
    return logs

  def student_channels(self) -> Optional[List[np.ndarray]]:
    """Per block, the teacher channels the slim student's outputs are (after the
    switch to the slim width), else None."""
    if not self.slim_phase:
      return None
    return slim_finetune.live_out_indices(self.slim_switch, len(self.G.blocks))

  def _accumulate_taylor(self, score_grads) -> None:
    """Adds this step's squared gate gradients (dL/dm, from the score gradients
    through the straight-through mask) while the masks are not frozen."""
    for total, g, (_, mk) in zip(self.taylor_sums, score_grads, self.G.masks):
      p = tf.sigmoid(tf.convert_to_tensor(mk.score))
      slope = tf.convert_to_tensor(mk.alive) * p * (1.0 - p)  # dm/dscore (0 when dead)
      gate = tf.math.divide_no_nan(tf.cast(g, tf.float32), slope)
      total.assign_add(self.masks_trainable * tf.square(gate))
    self.taylor_count.assign_add(self.masks_trainable)

  def taylor_importance(self) -> Dict[str, np.ndarray]:
    """{mask name: [C] mean squared gate gradient since the last pruning event}."""
    count = float(self.taylor_count.numpy())
    if count == 0:
      logging.warning("Taylor importance has no steps to average yet (a pruning event "
                      "at step 0?); ranking by cost alone at this event.")
      return {name: np.ones(mk.num_channels) for name, mk in self.G.masks}
    return {name: v.numpy() / count for (name, _), v in zip(self.G.masks, self.taylor_sums)}

  def _reset_taylor(self) -> None:
    for v in self.taylor_sums:
      v.assign(tf.zeros_like(v))
    self.taylor_count.assign(0.0)

  def _compiled(self, which: str, k: int = 0):
    """`_d_grads` / `_g_grads`, XLA-compiled when `--jit_compile` is on.

    Only the gradient computation is compiled. Applying the gradients stays
    outside: under a tf.distribute strategy it all-reduces them (`merge_call`),
    which cannot run inside a nested compiled function.
    """
    fn = {"d": self._d_grads, "d_warmup": self._d_warmup_grads, "g": self._g_grads}[which]
    if not self.cfg.run.jit_compile:
      return fn
    key = (which, k)
    if key not in self._jit_fns:
      self._jit_fns[key] = tf.function(fn, jit_compile=True, autograph=False)
    return self._jit_fns[key]

  def _ema_update(self):
    o = self.cfg.optim
    # Warm-up after every (re)start of the EMA (tf.train.ExponentialMovingAverage's
    # num_updates rule): decay min(ema_decay, (1 + n) / (10 + n)) n steps after it.
    n = tf.cast(self.step - self.ema_restart_step, tf.float32)
    warm = tf.minimum(tf.constant(o.ema_decay, tf.float32), (1.0 + n) / (10.0 + n))
    decay = tf.where(self.step >= o.ema_start, warm, 0.0)
    for src, dst in self._ema_pairs:
      dst.assign(decay * dst + (1.0 - decay) * src)
    for src, dst in self._copy_pairs:
      dst.assign(src)

  def _make_train_step(self, d_only: bool = False):
    """The step function: d_steps D updates, then (unless `d_only`: the discriminator
    warm-up of a generator-only teacher, `--d_warmup_steps`) the G update and EMA."""
    strategy = self.strategy

    # autograph=False: the step has no tensor-dependent Python control flow (a Python
    # `if` on a tensor fails loudly at trace time), and not converting every layer's
    # code through autograph cuts a quarter of the time it takes to trace.
    @tf.function(autograph=False)
    def train_step(iterator):
      step = self.step.read_value()
      logs = {}
      for k in range(self.cfg.optim.d_steps):
        images, labels = next(iterator)  # outside any XLA cluster (IteratorGetNext)
        out = strategy.run(self._d_replica_step, args=(images, labels, step, k, d_only))
      logs.update(out)
      if not d_only:
        out = dict(strategy.run(self._g_replica_step, args=(step,)))
        score_grads = out.pop("_score_grads", None)
        if score_grads is not None:
          # Each replica's gradient is of its share of the mean loss: their sum is the
          # global batch's gradient.
          self._accumulate_taylor([strategy.reduce(tf.distribute.ReduceOp.SUM, g,
                                                   axis=None) for g in score_grads])
        logs.update(out)
        self._ema_update()
      self.step.assign_add(1)
      logs = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
              for k, v in logs.items()}
      # Remember the first step whose losses were not finite, on the device: the
      # host reads it with the logs every --log_every steps and before any save.
      bad = tf.logical_not(losses.all_finite(list(logs.values())))
      self.first_nonfinite_step.assign(tf.where(
          tf.logical_and(bad, self.first_nonfinite_step < 0),
          self.step.read_value(), self.first_nonfinite_step))
      return logs
    return train_step

  def run_step(self, d_only: bool = False) -> Dict[str, tf.Tensor]:
    """One D (x d_steps) + G update (`d_only`: D alone). Returns the losses as tensors,
    without reading them on the host (no device sync: `fit` reads every --log_every
    steps)."""
    if d_only:
      if self._d_warmup_step_fn is None:
        self._d_warmup_step_fn = self._make_train_step(d_only=True)
      fn = self._d_warmup_step_fn
    else:
      if self._train_step_fn is None:
        self._train_step_fn = self._make_train_step()
      fn = self._train_step_fn
    with data_lib.reraise_as_data_error():  # an unreadable image file -> DataError
      return fn(self.iterator)

  def _freeze_teacher_discriminator(self, step: int) -> None:
    """End of the discriminator warm-up: the CAM term's teacher D becomes a copy of
    the warmed-up D, frozen from here (checkpointed as `teacher_discriminator`)."""
    for src, dst in zip(self.D.variables, self.teacher_D.variables):
      dst.assign(src)
    self._d_warmup_step_fn = None
    logging.info("step %d: discriminator warm-up done; the CAM term's teacher D is "
                 "this D, frozen from now", step)

  def train_step(self) -> Dict[str, float]:
    """One D (x d_steps) + G update. Returns the losses as floats (a host sync)."""
    return read_logs(self.run_step())
