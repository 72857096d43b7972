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
from ppcd_tf import config as config_lib
from ppcd_tf import data as data_lib
from ppcd_tf import distill
from ppcd_tf import distribute
from ppcd_tf import early_stop
from ppcd_tf import flops
from ppcd_tf import pruning
from ppcd_tf import slim_finetune
from ppcd_tf import stop_signal
from ppcd_tf.trainer.building import BuildingMixin
from ppcd_tf.trainer.common import (  # noqa: F401  (re-exported)
    SAMPLE_SEED, TEST_PRUNE_DELAY_ENV, TEST_PUBLISH_DELAY_ENV, TrainingDivergedError,
    _publish_delay_hook, read_logs)
from ppcd_tf.trainer import qat_phase
from ppcd_tf.trainer.pruning_events import PruningEventsMixin
from ppcd_tf.trainer.reporting import ReportingMixin
from ppcd_tf.trainer.step import StepMixin

__all__ = ["Trainer", "train", "TrainingDivergedError", "SAMPLE_SEED",
           "TEST_PUBLISH_DELAY_ENV", "TEST_PRUNE_DELAY_ENV"]


class Trainer(BuildingMixin, StepMixin, PruningEventsMixin, ReportingMixin):
  """Builds models, optimisers, data and checkpoints for one workdir, then trains.

  Its parts live in `ppcd_tf.trainer`: building and restore (`BuildingMixin`), the
  train step (`StepMixin`), pruning events (`PruningEventsMixin`), samples, summaries
  and evaluation (`ReportingMixin`); the fit loop, checkpoint saves and the best
  checkpoint are here.

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
    self.teacher_has_d, self.d_warmup = True, 0  # (set from the teacher's checkpoint)
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
    qat_phase.resume(self)  # the last --qat_steps steps: int8 fake quant (ppcd_tf.qat)
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
    self._train_step_fn = self._d_warmup_step_fn = None
    self._eval = None
    self._best_manager = None


  def drop_traced(self) -> None:
    """Forgets every function traced on the current networks (after they change:
    the slim switch, the QAT phase, the end of the discriminator warm-up)."""
    self._train_step_fn = self._d_warmup_step_fn = None
    self._jit_fns, self._eval = {}, None

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
        if not self.qat_phase and 0 <= qat_phase.qat_start_step(cfg) <= step:
          qat_phase.switch(self, step)
        if self.masked and not self.slim_phase:
          frozen = self.controller.schedule.is_frozen(step)
          if frozen != self._masks_frozen:
            self.set_masks_trainable(not frozen)
            self._masks_frozen = frozen
        if step < self.d_warmup:
          device_logs = self.run_step(d_only=True)  # a generator-only teacher's new D
        else:
          if self.d_warmup and step == self.d_warmup:
            self._freeze_teacher_discriminator(step)
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
