"""Building a `Trainer`: the checks against the workdir and the teacher, the networks,
optimisers, data stream and checkpoint, and the restore or first initialisation
(the student from the teacher's weights and optimizer state).

A mixin of `ppcd_tf.train_lib.Trainer`: it reads and sets the Trainer's attributes
(see `Trainer.__init__`).
"""

from __future__ import annotations

import contextlib
import os
from typing import List, Optional

import tensorflow as tf
import tf_keras
from absl import logging

from ppcd_tf import checkpoints
from ppcd_tf import config as config_lib
from ppcd_tf import data as data_lib
from ppcd_tf import flops
from ppcd_tf import precision as precision_lib
from ppcd_tf.discriminator import build_discriminator
from ppcd_tf.generator import build_generator
from ppcd_tf.layers.conditional_batchnorm import cross_replica_batch_norm


class BuildingMixin:
  """Checks, networks, optimisers, data, checkpoint, restore (mixin of `Trainer`)."""

  def _check_workdir(self) -> None:
    """Checks a rerun against the workdir's config.json; writes nothing."""
    if os.path.exists(self.workdir) and not os.path.isdir(self.workdir):
      raise config_lib.ConfigError(
          f"--workdir={self.workdir} is a file, not a directory; pass a new or "
          "existing run directory.")
    existing = os.path.abspath(self.workdir)
    while not os.path.exists(existing):
      existing = os.path.dirname(existing)
    if self.is_chief and not (os.path.isdir(existing) and os.access(existing, os.W_OK)):
      raise config_lib.ConfigError(
          f"--workdir={self.workdir} cannot be written ({existing} is not a writable "
          "directory); pass a directory you can write to.")
    path = checkpoints.config_path(self.workdir)
    if os.path.exists(path):
      previous = checkpoints.read_config(self.workdir)
      checkpoints.check_same_architecture(self.cfg.model, previous.model,
                                          f"workdir {self.workdir}")
      if previous.run.mode != self.cfg.run.mode:
        raise config_lib.ConfigError(
            f"workdir {self.workdir} holds a --mode={previous.run.mode} run; this is "
            f"--mode={self.cfg.run.mode}. Use another --workdir.")

  def _check_teacher(self) -> None:
    """Checks --teacher_dir (exists, is a teacher, same architecture, has a checkpoint)."""
    tdir = self.cfg.distill.teacher_dir
    if not os.path.isdir(tdir):
      raise config_lib.ConfigError(
          f"--teacher_dir={tdir} does not exist or is not a directory; pass the workdir "
          "of a --mode=teacher run (or of tools/import_biggan).")
    tcfg = checkpoints.read_config(tdir)
    if tcfg.run.mode == "ppcd" and tcfg.distill.use_masks:
      raise config_lib.ConfigError(
          f"--teacher_dir={tdir} is a --mode=ppcd run (a pruned student), not a "
          "teacher; pass the --mode=teacher workdir it was distilled from.")
    # A student that does not start from the teacher may be narrower (distillation
    # without pruning: --nouse_masks --noinit_from_teacher --g_channels=...
    # [--g_attention_widths=...]).
    narrower_ok = not self.cfg.distill.init_from_teacher and not self.masked
    # A teacher with statistics per truncation (--bn_stats) is distilled at this run's
    # --latent_truncation, whatever truncation it was imported with.
    tables = ("latent_truncation",) if tcfg.model.bn_stats else ()
    model_flags = os.path.join(tdir, "model.cfg")  # written by tools/import_biggan
    hint = (f" (its model flags: --flagfile={model_flags})"
            if os.path.isfile(model_flags) else "")
    checkpoints.check_same_architecture(
        self.cfg.model, tcfg.model, f"teacher {tdir}{hint}",
        ignore=(checkpoints.GENERATOR_WIDTH_FIELDS if narrower_ok else ()) + tables)
    self.teacher_model_cfg = tcfg.model.resolved()
    newest = checkpoints.newest_readable(checkpoints.checkpoint_dir(tdir))
    if not newest:
      raise checkpoints.CheckpointError(
          f"teacher {tdir} holds no checkpoint in {checkpoints.checkpoint_dir(tdir)}; "
          "train it first (python -m ppcd_tf.train --mode=teacher "
          f"--workdir={tdir}).")
    self._check_teacher_discriminator(newest)

  def _check_teacher_discriminator(self, teacher_prefix: str) -> None:
    """A generator-only teacher needs --d_warmup_steps (a D trained here first)."""
    d = self.cfg.distill
    self.teacher_has_d = checkpoints.holds_object(teacher_prefix, "discriminator")
    self.d_warmup = 0 if self.teacher_has_d else d.d_warmup_steps
    needs_d = d.init_from_teacher or d.lambda_cam > 0
    if not self.teacher_has_d and needs_d and not d.d_warmup_steps:
      raise config_lib.ConfigError(
          f"teacher {d.teacher_dir} has no discriminator ({teacher_prefix} holds only "
          "generators); pass --d_warmup_steps=N to train a fresh one against real data "
          "and the teacher's samples first (with --prune_begin_step >= N), e.g. 10% of "
          "--num_steps.")
    if self.teacher_has_d and d.d_warmup_steps:
      raise config_lib.ConfigError(
          f"--d_warmup_steps={d.d_warmup_steps} is for a teacher without a "
          f"discriminator; teacher {d.teacher_dir} has one (the student starts from it). "
          "Pass --d_warmup_steps=0.")

  def _write_config_once(self) -> None:
    """Writes config.json (chief only), once per Trainer."""
    if self.is_chief and not self._config_written:
      checkpoints.write_config(self.workdir, self.cfg)
    self._config_written = True

  def build_scope(self):
    """Where the networks and optimizers are built: the strategy, the precision
    policy, and BatchNorm's cross-replica setting."""
    cfg = self.cfg
    stack = contextlib.ExitStack()
    stack.enter_context(self.strategy.scope())
    stack.enter_context(precision_lib.policy_scope(cfg.run.precision))
    stack.enter_context(cross_replica_batch_norm(not cfg.run.jit_compile))
    return stack

  def make_adam(self, lr: float):
    """An Adam optimizer with this run's betas (loss-scaled under float16)."""
    o = self.cfg.optim
    return precision_lib.wrap_optimizer(tf_keras.optimizers.Adam(
        learning_rate=lr, beta_1=o.beta1, beta_2=o.beta2, epsilon=1e-6),
        self.cfg.run.precision)

  def _dummy_inputs(self, batch: int = 2):
    m = self.model_cfg
    z = tf.zeros([batch, m.z_dim])
    y = tf.zeros([batch], tf.int32)
    x = tf.zeros([batch, m.resolution, m.resolution, m.image_channels])
    return z, y, x

  def _build(self) -> None:
    cfg, m = self.cfg, self.model_cfg
    z, y, x = self._dummy_inputs()
    init = self.weight_init
    self.G = build_generator(m, masked=self.masked, name="generator", init=init)
    self.G_ema = build_generator(m, masked=self.masked, name="ema_generator", init=init)
    self.D = build_discriminator(m, init=init)
    for net in (self.G, self.G_ema):
      net((z, y), training=False)
    self.D((x, y), training=False)
    if self.needs_teacher:
      self._load_teacher()
    self.g_opt = self.make_adam(cfg.optim.g_lr)
    self.d_opt = self.make_adam(cfg.optim.d_lr)
    self.mask_opt = self.make_adam(cfg.optim.g_lr * cfg.pruning.mask_lr_scale)
    mask_scores = [mk.score for _, mk in self.G.masks]
    score_refs = {v.ref() for v in mask_scores}
    self.g_vars = [v for v in self.G.trainable_variables if v.ref() not in score_refs]
    self.mask_scores = mask_scores
    self.g_opt.build(self.g_vars)
    self.d_opt.build(self.D.trainable_variables)
    if mask_scores:
      self.mask_opt.build(mask_scores)
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    # Step of the last EMA restart (0, or the last pruning event that removed channels).
    self.ema_restart_step = tf.Variable(
        0, dtype=tf.int64, trainable=False, name="ema_restart_step",
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    # 1.0 while mask scores train, 0.0 once the masks are frozen (after end_step).
    # A variable, not a Python flag, so freezing does not retrace the step.
    self.masks_trainable = tf.Variable(1.0, trainable=False, name="masks_trainable",
                                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    # First step whose losses were not finite (-1: none); read with the logs.
    self.first_nonfinite_step = tf.Variable(
        -1, dtype=tf.int64, trainable=False, name="first_nonfinite_step",
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.mask_costs = tf.Variable(tf.zeros([max(1, len(mask_scores))]), trainable=False,
                                  name="mask_costs",
                                  aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    # What ranks channels (ppcd_tf.importance). 'learned' trains the scores; 'taylor'
    # keeps them fixed and accumulates the squared gradient of G's loss with respect
    # to each mask gate since the last pruning event.
    self.importance = cfg.pruning.importance if self.masked else None
    self.train_scores = self.importance == "learned"
    self.score_grads = self.importance in ("learned", "taylor")
    once = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.taylor_sums = [tf.Variable(tf.zeros([mk.num_channels]), name=f"taylor_{i}", **once)
                        for i, (_, mk) in enumerate(self.G.masks)]
    self.taylor_count = tf.Variable(0.0, name="taylor_count", **once)
    self._pair_ema_variables()
    # Full (unpruned) cost, the reference for the pruning budget.
    self.cost_metric = "macs" if cfg.pruning.budget_macs else "params"
    if self.masked:
      reference = self.teacher_G if self.needs_teacher else build_generator(m, masked=False)
      if not self.needs_teacher:
        reference((z, y), training=False)
      self.full_cost = (flops.live_params(reference) if self.cost_metric == "params"
                        else flops.live_macs(reference))
      if not self.needs_teacher:
        del reference

  def _is_copied_state(self, variable) -> bool:
    """True for generator variables the EMA copies instead of averaging: mask
    state (binary) and anything not floating point."""
    if not variable.dtype.is_floating:
      return True
    return any(variable is mk.score or variable is mk.alive for _, mk in self.G.masks)

  def _pair_ema_variables(self) -> None:
    """(G variable, EMA variable) pairs: `_ema_pairs` averaged, `_copy_pairs` copied."""
    if len(self.G.variables) != len(self.G_ema.variables):
      raise RuntimeError("generator and EMA generator have different variable lists")
    self._ema_pairs, self._copy_pairs = [], []
    for src, dst in zip(self.G.variables, self.G_ema.variables):
      if src.shape != dst.shape:
        raise RuntimeError(f"EMA variable {dst.name} {dst.shape} != {src.name} {src.shape}")
      (self._copy_pairs if self._is_copied_state(src) else self._ema_pairs).append((src, dst))

  def _load_teacher(self) -> None:
    tdir = self.cfg.distill.teacher_dir  # checked by _check_teacher
    z, y, x = self._dummy_inputs()
    tables = self.teacher_model_cfg.bn_stats > 0
    self.teacher_G = build_generator(self.teacher_model_cfg, masked=False,
                                     name="teacher_generator", init=self.weight_init,
                                     truncation_tables=tables)
    self.teacher_D = build_discriminator(self.teacher_model_cfg, init=self.weight_init)
    self.teacher_G((z, y), training=False)
    self.teacher_D((x, y), training=False)
    # A generator-only teacher's D is this run's warmed-up D (`Trainer.fit`).
    nets = dict(ema_generator=self.teacher_G)
    if self.teacher_has_d:
      nets["discriminator"] = self.teacher_D
    self.teacher_prefix, self.teacher_step = checkpoints.restore_objects_from_workdir(
        tdir, **nets)
    if tables:  # pytorch-pretrained-BigGAN: the statistics of the run's truncation
      self.teacher_G.select_truncation(self.model_cfg.latent_truncation)
    logging.info("Teacher: %s (step %d)", self.teacher_prefix, self.teacher_step)

  def _make_dataset(self, consumed_batches: int):
    """Distributed training data, positioned after `consumed_batches` batches.

    Distributed iterators cannot be checkpointed, so a resumed run rebuilds the
    stream: with an in-memory cache (`--cache`, the default for small data) it
    replays the same seeded stream and skips what was consumed, so the resumed run
    sees exactly the batches an uninterrupted run would; without a cache, skipping
    would re-decode everything seen so far, so the shuffle is reseeded with the
    step instead (a different, still deterministic order).
    """
    cfg = self.cfg
    seed, skip = cfg.run.seed, 0
    if consumed_batches:
      if cfg.data.cache:
        skip = consumed_batches
      else:
        seed = (cfg.run.seed * 1_000_003 + consumed_batches) % (2 ** 31)

    def dataset_fn(ctx):
      per_replica = ctx.get_per_replica_batch_size(cfg.optim.batch_size)
      ds = data_lib.build_dataset(cfg.data, cfg.model, per_replica, seed=seed,
                                  input_context=ctx)
      return ds.skip(skip) if skip else ds

    return self.strategy.distribute_datasets_from_function(dataset_fn)

  def _build_checkpoint(self) -> None:
    objects = dict(step=self.step, generator=self.G, ema_generator=self.G_ema,
                   discriminator=self.D, g_optimizer=self.g_opt, d_optimizer=self.d_opt,
                   ema_restart_step=self.ema_restart_step)
    if self.needs_teacher and not self.teacher_has_d:  # the warmed-up D of the CAM term
      objects["teacher_discriminator"] = self.teacher_D
    if self.mask_scores:  # (none after the switch to the slim generator)
      objects["mask_optimizer"] = self.mask_opt
      objects["taylor_sums"] = self.taylor_sums
      objects["taylor_count"] = self.taylor_count
    self.checkpoint = tf.train.Checkpoint(**objects)

  def _make_manager(self) -> None:
    # After the restore: the manager reads the state file that restoring repaired.
    directory = checkpoints.checkpoint_dir(self.workdir)
    if not self.is_chief:  # workers write to a throwaway directory
      directory = os.path.join(directory, f"worker_tmp_{os.getpid()}")
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, directory, max_to_keep=self.cfg.run.keep_checkpoints,
        step_counter=self.step)

  def _restore_or_initialise(self) -> None:
    if self._restore_latest() is not None:
      return
    self._initialise()

  def _restore_latest(self) -> Optional[str]:
    """Restores the latest readable checkpoint (if any) and positions the data
    stream after the batches it consumed. Returns the prefix or None."""
    directory = checkpoints.checkpoint_dir(self.workdir)
    if self.is_chief:  # leftovers of a save that was killed
      checkpoints.remove_stale_temp_files(directory)
    skipped: List[str] = []
    prefix = checkpoints.restore_latest(self.checkpoint, directory, skipped=skipped)
    if prefix and self.is_chief:
      checkpoints.forget_unreadable(directory, skipped)
    self.dataset = self._make_dataset(int(self.step.numpy()) * self.cfg.optim.d_steps)
    self.iterator = iter(self.dataset)
    if prefix:
      logging.info("Resumed from %s at step %d", prefix, int(self.step.numpy()))
      self.resumed_from = prefix
      # Optimisers checkpoint their learning rates; this run's flags win (a frozen
      # mask optimiser is set to 0 again by `fit`).
      self.g_opt.learning_rate = self.cfg.optim.g_lr
      self.d_opt.learning_rate = self.cfg.optim.d_lr
      self.set_masks_trainable(True)
      return prefix
    self.resumed_from = None
    return None

  def _initialise(self) -> None:
    """A fresh run's starting weights (the teacher's for a PPCD student)."""
    if self.ppcd and self.cfg.distill.init_from_teacher:
      # The student starts as the teacher's EMA generator with all masks open, D as
      # the teacher's D (a generator-only teacher's: fresh, warmed up by `fit`).
      # Checkpoint paths of masked and unmasked generators match.
      pairs = [("ema_generator", self.G), ("ema_generator", self.G_ema)]
      if self.teacher_has_d:
        pairs.append(("discriminator", self.D))
      for name, target in pairs:
        tf.train.Checkpoint(**{name: target}).read(self.teacher_prefix).expect_partial()
      if self.teacher_G.truncation_tables:  # the statistics the teacher selected
        for net in (self.G, self.G_ema):
          for src, dst in zip(self.teacher_G.batch_norms(), net.batch_norms()):
            dst.moving_mean.assign(src.moving_mean)
            dst.moving_variance.assign(src.moving_variance)
      z = tf.random.stateless_normal([2, self.model_cfg.z_dim], seed=[1, 2])
      y = tf.constant([0, self.model_cfg.num_classes - 1], tf.int32)
      diff = float(tf.reduce_max(tf.abs(self.G((z, y), training=False)
                                        - self.teacher_G((z, y), training=False))))
      if diff > 1e-5:
        raise checkpoints.CheckpointError(
            f"student initialised from teacher {self.teacher_prefix} differs from it by "
            f"{diff:g}; the teacher checkpoint does not match this architecture.")
      self._init_optimizers_from_teacher()
    else:
      for src, dst in self._ema_pairs + self._copy_pairs:
        dst.assign(src)

  def _init_optimizers_from_teacher(self) -> None:
    """G's and D's Adam states (moments, step count) from the teacher's checkpoint
    (`--init_optimizer_from_teacher`); the learning rates stay this run's.

    Keras optimizers save their slots by position, so this relies on the student's
    G weights (mask scores excluded) being in the teacher G's order with its shapes;
    a mismatch fails the restore and is reported.
    """
    if not self.cfg.distill.init_optimizer_from_teacher:
      return
    opts = dict(g_optimizer=self.g_opt)
    if self.teacher_has_d:
      opts["d_optimizer"] = self.d_opt
    try:
      tf.train.Checkpoint(**opts).read(self.teacher_prefix).expect_partial()
    except (ValueError, tf.errors.InvalidArgumentError) as e:
      raise checkpoints.CheckpointError(
          f"the optimizer state of teacher {self.teacher_prefix} does not fit this "
          f"student ({e}); pass --noinit_optimizer_from_teacher to start it fresh.") from e
    self.g_opt.learning_rate = self.cfg.optim.g_lr
    self.d_opt.learning_rate = self.cfg.optim.d_lr
