"""The QAT phase of a run (`--qat_steps=N`, ppcd_tf.qat): the last N steps train G
through int8 fake quant.

At the first QAT step the EMA generator (what is evaluated and exported) is
calibrated on fixed latents, the ranges go to WORKDIR/qat.json with the step, and
G and its EMA both get the fake quant; every traced function is dropped so the
next step traces the quantised networks. No variable is added, so checkpoints keep
their layout: a run resumed from a checkpoint at or after the recorded step enters
the phase with the recorded ranges (`resume`), one resumed from before it reaches
the step again and recalibrates, deterministically, to the same ranges.
"""

from __future__ import annotations

from absl import logging

from ppcd_tf import checkpoints
from ppcd_tf import qat
from ppcd_tf import slim_finetune

__all__ = ["qat_start_step", "enter", "switch", "resume"]


def qat_start_step(cfg) -> int:
  """The step before which QAT starts (num_steps - qat_steps); 0 steps: never."""
  q = cfg.pruning.qat_steps
  return cfg.optim.num_steps - q if q else -1


def enter(trainer, ranges: qat.QuantRanges) -> None:
  t = trainer
  qat.enable(t.G, ranges)
  qat.enable(t.G_ema, ranges)
  t.qat_phase = True
  t.drop_traced()


def switch(trainer, step: int) -> None:
  """Calibrates the EMA generator, records the ranges, enters the phase."""
  t = trainer
  mc = t.model_cfg
  ranges = qat.calibrate(t.G_ema, qat.calibration_batches(mc.z_dim, mc.num_classes))
  if t.is_chief:
    qat.write_record(t.workdir, step, ranges)
  enter(t, ranges)
  logging.info("step %d: quantisation-aware fine-tuning for the last %d steps "
               "(int8 fake quant at %d conv/dense layers, ranges in %s)", step,
               t.cfg.pruning.qat_steps, len(ranges.layers), qat.QAT_FILE)


def resume(trainer) -> None:
  """Enters the phase when the checkpoint being resumed is at or after its start."""
  t = trainer
  t.qat_phase = False
  if not t.cfg.pruning.qat_steps:
    return
  record = qat.read_record(t.workdir)
  newest = checkpoints.newest_readable(checkpoints.checkpoint_dir(t.workdir))
  if record is not None and newest and (
      slim_finetune.checkpoint_step(newest) >= record["step"]):
    enter(t, record["ranges"])
