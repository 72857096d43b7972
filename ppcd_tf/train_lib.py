"""Teacher and PPCD training loops (METHOD.md "Objective", "Progressive pruning").

`train(cfg)` runs one job in `cfg.run.workdir`, resuming from its latest checkpoint:

* `mode=teacher`: BigGAN training with the hinge loss and an EMA generator.
* `mode=ppcd`: the student (a masked PP-Res generator, started from the teacher's
  EMA generator, D started from the teacher's D) trains with the hinge loss plus
  the class-aware distillation terms (`ppcd_tf.distill`) and the mask sparsity
  term, while `PruningController` removes channels at scheduled events until the
  live generator fits the budget. After `prune_end_step` the masks are frozen and
  the survivors are fine-tuned.

Randomness: z and the fake class labels come from stateless RNGs keyed by
(seed, step), so the step counter *is* the RNG state: a resumed run draws exactly
the latents an uninterrupted run would. Weight initialisation is seeded with
`--seed` (`tf_keras.utils.set_random_seed`), and the data stream is replayed from
its seed on resume (`Trainer._make_dataset`), so the same seed and config give
bit-identical runs on one device, interrupted or not.

Reliability (BUILD.md "Reliability"): everything a run is given is validated
before anything is written to the workdir, so a bad rerun leaves config.json and
the checkpoints as they were; a rerun replaces config.json only when it writes its
first checkpoint. Checkpoints are written, read back, then published
(`checkpoints.save_checkpoint`); on resume, unreadable checkpoints are skipped,
moved to `checkpoints/unreadable/` and the previous good one is used. A NaN/Inf
loss stops the run before it saves (`TrainingDivergedError`); an unreadable image
in the data stops it with a `DataError` naming the file.

Early stopping (`--early_stop_evals`, `ppcd_tf.early_stop`): with `--eval_every`
the run stops once the best FID has not improved by more than
`--early_stop_min_delta` over that many evaluations; the best evaluation's
checkpoint is kept in WORKDIR/best/ (a complete workdir, usable as --teacher_dir).

Test hooks: with the environment variable `PPCD_TF_TEST_PUBLISH_DELAY=S` (or
`STEP:S`) every checkpoint save (or only the one at STEP) sleeps S seconds after
the checkpoint is written and verified, before it becomes the latest; with
`PPCD_TF_TEST_PRUNE_DELAY` every pruning event (or the one at STEP) sleeps after
it has pruned the masks and zeroed the dead weights, before the EMA restarts. A
test can then SIGKILL the process inside the write or the event
(tests/test_crash_resume.py). Never set them in real runs.

Distribution: losses are per-replica means divided by the replica count, so the
summed gradients equal the global-batch mean (mirrored == one device). Every
replica draws the *global* batch of latents and takes its own slice.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import time
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from ppcd_tf import checkpoints
from ppcd_tf import dead_weights
from ppcd_tf import config as config_lib
from ppcd_tf import data as data_lib
from ppcd_tf import distill
from ppcd_tf import distribute
from ppcd_tf import early_stop
from ppcd_tf import evaluation
from ppcd_tf import flops
from ppcd_tf import images as images_lib
from ppcd_tf import losses
from ppcd_tf import precision as precision_lib
from ppcd_tf import pruning
from ppcd_tf import slim_finetune
from ppcd_tf import stop_signal
from ppcd_tf.discriminator import build_discriminator
from ppcd_tf.generator import build_generator
from ppcd_tf.layers.conditional_batchnorm import cross_replica_batch_norm

__all__ = ["Trainer", "train", "TrainingDivergedError", "SAMPLE_SEED",
           "TEST_PUBLISH_DELAY_ENV", "TEST_PRUNE_DELAY_ENV"]

SAMPLE_SEED = 1234
_Z_SALT, _Y_SALT = 0x5EED, 0xC1A55
# Latent stream of the gradient-norm diagnostics, apart from every training step's.
_GRAD_NORM_SALT = 1 << 40
TEST_PUBLISH_DELAY_ENV = "PPCD_TF_TEST_PUBLISH_DELAY"
TEST_PRUNE_DELAY_ENV = "PPCD_TF_TEST_PRUNE_DELAY"


class TrainingDivergedError(RuntimeError):
  """A loss became NaN or Inf; the message names the term, the step and the checkpoint."""


def _test_delay_hook(env: str, step: int):
  """A crash-test hook (module docstring): `pause(what)` sleeps when `env` is set for
  `step` (or for every step); None when it is not."""
  value = os.environ.get(env, "").strip()
  if not value:
    return None
  at, _, seconds = value.rpartition(":")
  if at and int(at) != step:
    return None
  delay = float(seconds)

  def pause(what: str) -> None:
    logging.warning("%s: %s; sleeping %.1fs.", env, what, delay)
    time.sleep(delay)
  return pause


def _publish_delay_hook(step: int):
  """The hook `checkpoints.save_checkpoint` calls before publishing, or None."""
  pause = _test_delay_hook(TEST_PUBLISH_DELAY_ENV, step)
  return pause and (lambda prefix: pause(f"{prefix} written and verified, not published"))


def _sample_rows(num_classes: int, max_rows: int = 10) -> np.ndarray:
  if num_classes <= max_rows:
    return np.arange(num_classes, dtype=np.int32)
  return np.linspace(0, num_classes - 1, max_rows).round().astype(np.int32)


class Trainer:
  """Builds models, optimisers, data and checkpoints for one workdir, then trains.

  Construction validates everything first (config, replicas, data, the workdir's
  earlier config, the teacher) and writes nothing until then; it seeds the global
  RNGs with `cfg.run.seed` before building the networks.

  Args:
    cfg: a validated `Config`.
    strategy: optional strategy (tests pass one); default from `cfg.run.strategy`.
    weight_init: initialisation of the networks before any restore ("ortho",
      BigGAN's; "N02" skips ~25 s of QR decompositions at 128 px, for benchmarks
      whose weights do not matter).

  Raises:
    ConfigError, DataError, CheckpointError: with a message naming the problem.
  """

  def __init__(self, cfg: config_lib.Config,
               strategy: Optional[tf.distribute.Strategy] = None,
               weight_init: str = "ortho"):
    self.cfg = cfg.validate()
    self.weight_init = weight_init
    self.workdir = cfg.run.workdir
    try:
      self.strategy = strategy or distribute.make_strategy(cfg.run.strategy)
    except ValueError as e:  # e.g. --strategy=multi_worker without TF_CONFIG
      raise config_lib.ConfigError(str(e)) from e
    self.num_replicas = self.strategy.num_replicas_in_sync
    if cfg.optim.batch_size % self.num_replicas:
      raise config_lib.ConfigError(
          f"batch_size={cfg.optim.batch_size} is not divisible by the "
          f"{self.num_replicas} replicas of --strategy={cfg.run.strategy}; use a multiple "
          f"of {self.num_replicas}.")
    self.per_replica_batch = cfg.optim.batch_size // self.num_replicas
    self.is_chief = distribute.is_chief(self.strategy)
    self.ppcd = cfg.run.mode == "ppcd"
    self.masked = self.ppcd and cfg.distill.use_masks
    self.terms = distill.active_terms(cfg.distill) if self.ppcd else {}
    self.needs_teacher = self.ppcd and (bool(self.terms) or cfg.distill.init_from_teacher)
    self.model_cfg = cfg.model.resolved()

    info = data_lib.dataset_info(cfg.data, cfg.model)
    data_lib.check_compatible(info, cfg.model)
    self.data_info = info

    # Validate everything against what is on disk before writing anything.
    self._check_workdir()
    if self.needs_teacher:
      self._check_teacher()
    tf_keras.utils.set_random_seed(cfg.run.seed)  # deterministic initial weights
    self._jit_fns: Dict = {}
    # Layers keep the policy they are built under (`ppcd_tf.precision`). XLA
    # compiles per-replica gradient functions, where BatchNorm cannot all-reduce.
    if cfg.run.jit_compile and self.num_replicas > 1:
      logging.warning("--jit_compile with %d replicas: BatchNorm statistics are per "
                      "replica (BigGAN-PyTorch's default), not cross-replica.",
                      self.num_replicas)
    with self.build_scope():
      self._build()
    if self.masked:
      self.controller = pruning.PruningController.from_config(
          self.G, cfg.pruning, full_cost=self.full_cost)
      self.controller.importance_source = self.taylor_importance
    # Fine-tuning at the slim width (ppcd_tf.slim_finetune): a workdir whose latest
    # checkpoint was written after the switch resumes with the slim generators.
    self.slim_switch = slim_finetune.read_switch(self.workdir) if self.masked else None
    self.slim_phase = False
    if self.slim_switch is not None and slim_finetune.is_slim_checkpoint(
        self.slim_switch,
        checkpoints.newest_readable(checkpoints.checkpoint_dir(self.workdir))):
      slim_finetune.enter_slim_phase(self, copy=False)
    self._build_checkpoint()
    self._restore_or_initialise()
    self._make_manager()
    # A new workdir gets its config.json now; a rerun's replaces the previous one
    # only when the rerun writes its first checkpoint (so a rerun that diverges
    # before saving leaves it as it was).
    self._config_written = False
    if not os.path.exists(checkpoints.config_path(self.workdir)):
      self._write_config_once()
    if self.masked and not self.slim_phase:
      self._update_mask_costs()
    self._writer = (tf.summary.create_file_writer(os.path.join(self.workdir, "train"))
                    if self.is_chief else tf.summary.create_noop_writer())
    self._train_step_fn = None
    self._eval = None
    self._best_manager = None

  # ------------------------------------------------------------------ set-up
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
    checkpoints.check_same_architecture(
        self.cfg.model, tcfg.model, f"teacher {tdir}",
        ignore=checkpoints.GENERATOR_WIDTH_FIELDS if narrower_ok else ())
    self.teacher_model_cfg = tcfg.model.resolved()
    if not checkpoints.all_checkpoints(checkpoints.checkpoint_dir(tdir)):
      raise checkpoints.CheckpointError(
          f"teacher {tdir} holds no checkpoint in {checkpoints.checkpoint_dir(tdir)}; "
          "train it first (python -m ppcd_tf.train --mode=teacher "
          f"--workdir={tdir}).")

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
    self.teacher_G = build_generator(self.teacher_model_cfg, masked=False,
                                     name="teacher_generator", init=self.weight_init)
    self.teacher_D = build_discriminator(self.teacher_model_cfg, init=self.weight_init)
    self.teacher_G((z, y), training=False)
    self.teacher_D((x, y), training=False)
    self.teacher_prefix, self.teacher_step = checkpoints.restore_objects_from_workdir(
        tdir, ema_generator=self.teacher_G, discriminator=self.teacher_D)
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
      # the teacher's D. Checkpoint paths of masked and unmasked generators match.
      for name, target in (("ema_generator", self.G), ("ema_generator", self.G_ema),
                           ("discriminator", self.D)):
        tf.train.Checkpoint(**{name: target}).read(self.teacher_prefix).expect_partial()
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
    try:
      tf.train.Checkpoint(g_optimizer=self.g_opt, d_optimizer=self.d_opt).read(
          self.teacher_prefix).expect_partial()
    except (ValueError, tf.errors.InvalidArgumentError) as e:
      raise checkpoints.CheckpointError(
          f"the optimizer state of teacher {self.teacher_prefix} does not fit this "
          f"student ({e}); pass --noinit_optimizer_from_teacher to start it fresh.") from e
    self.g_opt.learning_rate = self.cfg.optim.g_lr
    self.d_opt.learning_rate = self.cfg.optim.d_lr

  # ------------------------------------------------------------------ the step
  def _latents(self, step, salt, replica_id):
    m, b = self.model_cfg, self.per_replica_batch
    gb = self.cfg.optim.batch_size
    seed = tf.stack([tf.cast(self.cfg.run.seed, tf.int64),
                     step * (self.cfg.optim.d_steps + 1) + salt])
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
    fake = self.G((z, y), training=True)
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

  def _d_replica_step(self, images, labels, step, k):
    rid = tf.distribute.get_replica_context().replica_id_in_sync_group
    # Latents are drawn outside XLA: its stateless normal sampler gives other
    # numbers than the CPU/GPU kernels, and z must not depend on --jit_compile.
    z, y = self._latents(step, k, rid)
    grads, logs = self._compiled("d", k)(images, labels, z, y)
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
    fn = self._d_grads if which == "d" else self._g_grads
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

  def _make_train_step(self):
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
        out = strategy.run(self._d_replica_step, args=(images, labels, step, k))
      logs.update(out)
      out = dict(strategy.run(self._g_replica_step, args=(step,)))
      score_grads = out.pop("_score_grads", None)
      if score_grads is not None:
        # Each replica's gradient is of its share of the mean loss: their sum is the
        # global batch's gradient.
        self._accumulate_taylor([strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None)
                                 for g in score_grads])
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

  def run_step(self) -> Dict[str, tf.Tensor]:
    """One D (x d_steps) + G update. Returns the losses as tensors, without
    reading them on the host (no device sync: `fit` reads every --log_every steps)."""
    if self._train_step_fn is None:
      self._train_step_fn = self._make_train_step()
    with data_lib.reraise_as_data_error():  # an unreadable image file -> DataError
      return self._train_step_fn(self.iterator)

  def train_step(self) -> Dict[str, float]:
    """One D (x d_steps) + G update. Returns the losses as floats (a host sync)."""
    return read_logs(self.run_step())

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

  # ------------------------------------------------------------------ pruning
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

  # ------------------------------------------------------------------ outputs
  def sample_grid(self, per_class: int = 8) -> np.ndarray:
    rows = _sample_rows(self.model_cfg.num_classes)
    y = np.repeat(rows, per_class).astype(np.int32)
    z = evaluation.sample_z(len(y), self.model_cfg.z_dim, SAMPLE_SEED,
                            self.cfg.run.truncation or None)
    imgs = self.G_ema((tf.constant(z, tf.float32), tf.constant(y)), training=False)
    return images_lib.make_grid(imgs.numpy(), rows=len(rows))

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
      gen = tf.function(lambda z, y: self.G_ema((z, y), training=False),
                        jit_compile=r.jit_compile)
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

  # ------------------------------------------------------------------ the loop
  def fit(self, progress: bool = True, until_step: Optional[int] = None,
          time_limit_s: Optional[float] = None) -> Dict:
    """Trains to `num_steps` (or stops early at `until_step`, saving a checkpoint).

    With `time_limit_s`, training also stops at the first checkpoint (and its
    evaluation, if any) written after that many seconds, so a long run can be
    trained in chunks that lose nothing. SIGTERM saves the current step and raises
    `stop_signal.Stopped` (ppcd_tf.stop_signal).

    The losses stay on the device between reads: they are read on the host (one
    sync) every `--log_every` steps and at every step that samples, saves or
    evaluates, and only then do the progress bar, TensorBoard and the divergence
    check see them. A non-finite loss between two reads is still caught before
    anything is saved (`first_nonfinite_step`).
    """
    cfg = self.cfg
    r = cfg.run
    total = cfg.optim.num_steps
    stop = total if until_step is None else min(int(until_step), total)
    step = int(self.step.numpy())
    self.first_nonfinite_step.assign(-1)
    # Losses show their running mean over reads; live_params is a state, shown as it is.
    bar = progress_bar(total, stateful_metrics=["live_params"], unit_name="step"
                       ) if progress and self.is_chief else None
    if bar is not None and step:
      bar.update(step)
    self._masks_frozen = False
    start, t_last, s_last = time.time(), time.time(), step
    logs: Dict[str, float] = {}
    events = []
    history = self._eval_history(step)
    stopped_early = self._plateaued(history)
    signalled = False
    with stop_signal.StopRequest() as stop_request:
      while step < stop and not stopped_early:
        self._prune_before_step(step, events)
        if (self.masked and not self.slim_phase and self.cfg.pruning.slim_finetune
            and self.controller.schedule.is_frozen(step)):
          slim_finetune.switch_to_slim(self, step)
        if self.masked and not self.slim_phase:
          frozen = self.controller.schedule.is_frozen(step)
          if frozen != self._masks_frozen:
            self.set_masks_trainable(not frozen)
            self._masks_frozen = frozen
        device_logs = self.run_step()
        step += 1
        # SIGTERM (ppcd_tf.stop_signal): check the losses and save this step, then stop
        # (no samples or evaluation: a scheduler's grace period is short).
        signalled = stop_request.signal_name is not None
        last = step == stop
        log_now = step % r.log_every == 0 or last or signalled
        sample_now = step % r.sample_every == 0 or last
        save_now = step % r.save_every == 0 or last or signalled
        eval_now = bool(r.eval_every) and (step % r.eval_every == 0 or last)
        norms_now = bool(self.terms and r.grad_norm_every) and step % r.grad_norm_every == 0
        if norms_now:
          self._write_gradient_norms(step)
        if not (log_now or sample_now or save_now or eval_now):
          continue
        logs = read_logs(device_logs)
        self._check_finite(logs, step)
        if bar is not None:
          shown = [(k, v) for k, v in logs.items() if k in ("d_loss", "g_adv", "g_total")]
          if self.masked:
            shown.append(("live_params", float(flops.live_params(self.G))))
          bar.update(step, values=shown)
        if log_now:
          now = time.time()
          sps = (step - s_last) / max(now - t_last, 1e-9)
          t_last, s_last = now, step
          self._write_summaries(step, logs, sps)
        if sample_now:
          self._write_samples(step)
        if save_now:
          self.save(step)
        if eval_now:
          result = self.evaluate(step)
          logging.info("step %d: FID %.3f, class accuracy %s", step, result["fid"],
                       result.get("class_accuracy"))
          history.append(dict(result, step=step))
          if early_stop.best_evaluation(history)[0] == step:
            self._save_best(step)
          stopped_early = self._plateaued(history)
          if stopped_early:
            if not save_now:
              self.save(step)
            logging.info("step %d: FID has not improved by more than %.1f%% over %d "
                         "evaluations; stopping (best: %s)", step,
                         100 * r.early_stop_min_delta, r.early_stop_evals,
                         early_stop.best_evaluation(history))
        if time_limit_s is not None and save_now and time.time() - start > time_limit_s:
          break  # after this step's checkpoint and evaluation: a rerun resumes here
        if signalled:
          break
    if bar is not None and stopped_early:
      bar.update(step, finalize=True)
    self._writer.flush()
    wall = time.time() - start
    summary = self._final_summary(step, logs, wall)
    if signalled:
      summary["stopped_by_signal"] = stop_request.signal_name
    if r.eval_every:
      best_step, best_fid = early_stop.best_evaluation(history)
      summary.update(stopped_early=stopped_early, best_eval_step=best_step,
                     best_fid=best_fid, evaluations=len(history))
    if self.is_chief:
      checkpoints.write_json_atomic(os.path.join(self.workdir, "train_summary.json"), summary)
    if signalled:
      raise stop_signal.Stopped(stop_request.signal_name, step, self.workdir)
    return summary

  def _eval_history(self, step: int) -> List[Dict]:
    """This run's evaluations up to `step` (read back from WORKDIR/eval/ on resume)."""
    if not self.cfg.run.eval_every:
      return []
    return early_stop.read_eval_history(self.workdir, up_to_step=step)

  def _plateaued(self, history: List[Dict]) -> bool:
    r = self.cfg.run
    return bool(r.early_stop_evals) and early_stop.plateaued(
        [h["fid"] for h in history], r.early_stop_evals, r.early_stop_min_delta)

  def best_dir(self) -> str:
    """WORKDIR/best: a complete workdir (config.json + the best evaluation's checkpoint)."""
    return os.path.join(self.workdir, "best")

  def _save_best(self, step: int) -> None:
    """Keeps the checkpoint of the lowest-FID evaluation so far in `best_dir()`."""
    if not self.is_chief:
      return
    if self._best_manager is None:
      self._best_manager = tf.train.CheckpointManager(
          self.checkpoint, checkpoints.checkpoint_dir(self.best_dir()), max_to_keep=1,
          step_counter=self.step)
    checkpoints.write_config(self.best_dir(), self.cfg)
    if self.slim_phase:  # the best checkpoint holds the slim generators
      shutil.copyfile(os.path.join(self.workdir, slim_finetune.SWITCH_FILE),
                      os.path.join(self.best_dir(), slim_finetune.SWITCH_FILE))
    checkpoints.save_checkpoint(self._best_manager, step)

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

  def save(self, step: int) -> str:
    """Writes, verifies and publishes checkpoint `step` (config.json first, once)."""
    self._write_config_once()
    return checkpoints.save_checkpoint(self.manager, step,
                                       before_publish=_publish_delay_hook(step))

  def _final_summary(self, step: int, logs: Dict[str, float], wall: float) -> Dict:
    cost = self.live_cost()
    out = dict(mode=self.cfg.run.mode, step=step, workdir=self.workdir,
               losses=logs, wall_seconds=round(wall, 2),
               num_replicas=self.num_replicas, resumed_from=self.resumed_from, **cost)
    if self.masked:
      out.update(full_cost=self.full_cost, cost_metric=self.cost_metric,
                 final_budget=self.controller.final_budget,
                 live_fraction=(cost["live_params"] if self.cost_metric == "params"
                                else cost["live_macs"]) / self.full_cost,
                 channels_kept=self.channels_kept(),
                 slim_finetune_from_step=(self.slim_switch["step"] if self.slim_phase
                                          else None),
                 masks_binary=all(set(np.unique(mk.alive.numpy())) <= {0.0, 1.0}
                                  for _, mk in self.G.masks))
    return out


def read_logs(logs: Dict[str, tf.Tensor]) -> Dict[str, float]:
  """Reads a step's losses on the host (one device sync)."""
  return {k: float(v) for k, v in logs.items()}


def progress_bar(total: int, **kwargs) -> tf_keras.utils.Progbar:
  """A Keras progress bar that redraws in place on a terminal and, in a log file
  (nohup, CI), writes one line every 30 s instead of carriage-return redraws.

  tf_keras decides "terminal" by `'posix' in sys.modules`, true on every Linux
  machine, so a log file otherwise gets one endless line.
  """
  tty = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
  bar = tf_keras.utils.Progbar(total, interval=2.0 if tty else 30.0, **kwargs)
  bar._dynamic_display = tty  # pylint: disable=protected-access
  return bar


def train(cfg: config_lib.Config, progress: bool = True,
          strategy: Optional[tf.distribute.Strategy] = None) -> Dict:
  """Trains (or resumes) the run described by `cfg`. Returns the final summary."""
  return Trainer(cfg, strategy=strategy).fit(progress=progress)
