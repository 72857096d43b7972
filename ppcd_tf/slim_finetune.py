"""Fine-tuning at the slim width: after the last pruning event, train the dense slim G.

After `--prune_end_step` the masks are frozen, so the masked full-width generator
computes exactly what its slim copy (`ppcd_tf.slim.slim_generator`) computes, at
several times the cost (81% of the parameters removed leaves about a sixth of the
MACs). `Trainer` therefore switches, at the first step after the last event, to
dense slim copies of G and of its EMA, with spectral norm still in power-iteration
mode, and carries everything over, so the fine-tuning is the same training:

* weights, BatchNorm statistics and spectral-norm vectors are sliced to the live
  channels (`slim_generator`); the dead weights are zero since their event
  (`ppcd_tf.dead_weights`), so sigma of each sliced kernel is the masked layer's;
* G's Adam moments are sliced the same way (`slice_optimizer_state`) and keep the
  step count, so the next update is the one the masked run would make;
* the class-aware attention term weights the slim student's channels with the
  teacher's class weights of those channels (`live_out_indices`), as it did when
  the pruned channels were masked to zero.

D, its optimizer and the teacher are untouched.

On disk, the switch is recorded in WORKDIR/slim_switch.json (the step and the live
channel indices). Checkpoints numbered above that step hold the slim generators
(`is_slim_checkpoint`); the ones at or below it the masked ones, and a run resumed
from one of those switches again at the same step. Everything that restores a
workdir's generator (`ppcd_tf.slim.restore_trained_generator`: evaluation, slimming,
export, sampling) reads the marker and builds the architecture the checkpoint holds.
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from ppcd_tf import checkpoints
from ppcd_tf import dead_weights
from ppcd_tf import flops
from ppcd_tf import slim as slim_lib
from ppcd_tf.generator import Generator, GeneratorChannels, build_generator

__all__ = ["SWITCH_FILE", "read_switch", "switch_record", "write_switch",
           "checkpoint_step",
           "is_slim_checkpoint", "build_slim_generator", "slim_copy",
           "variable_slices", "slice_optimizer_state", "live_out_indices",
           "enter_slim_phase", "switch_to_slim"]

SWITCH_FILE = "slim_switch.json"
_STEP = re.compile(r"-(\d+)$")


def _path(workdir: str) -> str:
  return os.path.join(workdir, SWITCH_FILE)


def read_switch(workdir: str) -> Optional[Dict]:
  """The workdir's switch record ({"step", "channels", "live"}), or None.

  Raises:
    checkpoints.CheckpointError: the file exists but cannot be read.
  """
  def convert(record):
    record["channels"] = GeneratorChannels.from_dict(record["channels"])
    record["live"] = {k: np.asarray(v, np.int64) for k, v in record["live"].items()}
    record["step"] = int(record["step"])
    return record
  return checkpoints.read_record(
      _path(workdir), convert,
      "it records at which step the run switched to the slim generator. Restore it "
      "from a copy, or delete the checkpoints numbered above that step with it.")


def switch_record(step: int, masked_generator: Generator) -> Dict:
  """The switch record at `step` of `masked_generator`'s live channels (as `read_switch`
  returns it)."""
  return {"step": int(step), "channels": masked_generator.live_channels(),
          "live": slim_lib.live_index_sets(masked_generator)}


def write_switch(workdir: str, record: Dict) -> None:
  """Writes `record` (`switch_record`) to WORKDIR/slim_switch.json."""
  checkpoints.write_json_atomic(_path(workdir), {
      "step": record["step"], "channels": record["channels"].to_dict(),
      "live": {k: [int(i) for i in v] for k, v in record["live"].items()}})


def checkpoint_step(prefix: str) -> int:
  """N of a checkpoint prefix ".../ckpt-N"."""
  match = _STEP.search(prefix)
  if not match:
    raise checkpoints.CheckpointError(f"{prefix} is not a checkpoint prefix (…/ckpt-N).")
  return int(match.group(1))


def is_slim_checkpoint(switch: Optional[Dict], prefix: Optional[str]) -> bool:
  """True when checkpoint `prefix` was written after the switch (holds slim generators)."""
  return bool(switch and prefix) and checkpoint_step(prefix) > switch["step"]


def build_slim_generator(model_cfg, channels: GeneratorChannels, name: str) -> Generator:
  """An empty trainable slim generator (to restore a post-switch checkpoint into)."""
  return build_generator(model_cfg, masked=False, channels=channels, name=name,
                         init="N02")


def slim_copy(masked_generator: Generator, name: str) -> Generator:
  """The trainable dense copy of `masked_generator`'s live channels (power iteration)."""
  return slim_lib.slim_generator(masked_generator, name=name, sn_mode="power_iteration")


def variable_slices(masked_generator: Generator) -> Dict:
  """{variable ref: [(axis, live indices), ...]} of every weight that a slim copy
  slices (`ppcd_tf.slim.channel_map`); weights not listed are copied whole."""
  live = slim_lib.index_sets_with_stem_units(masked_generator,
                                             slim_lib.live_index_sets(masked_generator))
  out = {}

  def sn(layer, in_idx, out_idx, in_axis, out_axis):
    kernel = layer._raw_weight()  # pylint: disable=protected-access
    out[kernel.ref()] = [(a, i) for a, i in ((in_axis, in_idx), (out_axis, out_idx))
                         if i is not None]
    if getattr(layer, "bias", None) is not None and out_idx is not None:
      out[layer.bias.ref()] = [(0, out_idx)]

  for entry in slim_lib.channel_map(masked_generator):
    layer = entry.layer(masked_generator)
    idx = live.get(entry.out_key)
    if entry.kind == "sn":
      sn(layer, live.get(entry.in_key), idx, entry.in_axis, entry.out_axis)
    elif entry.kind == "cbn":
      for lin in (layer.gain_linear, layer.bias_linear):
        sn(lin, None, idx, 0, 1)
      for v in layer.bn.weights:
        out[v.ref()] = [(0, idx)]
    else:
      for v in layer.weights:
        out[v.ref()] = [(0, idx)]
  return out


def _sliced(value: np.ndarray, slices) -> np.ndarray:
  for axis, idx in slices:
    value = np.take(value, idx, axis=axis)
  return value


def slice_optimizer_state(old_opt, old_vars: Sequence[tf.Variable], new_opt,
                          new_vars: Sequence[tf.Variable], slices: Dict) -> None:
  """Copies Adam's step count and its moments of `old_vars` (masked G) into `new_opt`'s
  slots of `new_vars` (the slim copy, same order), sliced by `slices`.

  Raises:
    ValueError: the variable lists do not correspond (count or sliced shapes).
  """
  if len(old_vars) != len(new_vars):
    raise ValueError(f"slim copy has {len(new_vars)} trainable variables, the masked "
                     f"generator {len(old_vars)} (mask scores excluded)")
  inner = lambda o: getattr(o, "inner_optimizer", o)  # noqa: E731  (LossScaleOptimizer)
  inner(new_opt).iterations.assign(inner(old_opt).iterations)
  for old, new in zip(old_vars, new_vars):
    for src, dst in zip(dead_weights.optimizer_slots(old_opt, old),
                        dead_weights.optimizer_slots(new_opt, new)):
      value = _sliced(src.numpy(), slices.get(old.ref(), ()))
      if value.shape != tuple(dst.shape):
        raise ValueError(f"optimizer slot of {old.name} sliced to {value.shape}, but "
                         f"{new.name} is {tuple(dst.shape)}")
      dst.assign(value)


def live_out_indices(switch: Dict, num_blocks: int) -> List[np.ndarray]:
  """Per G block, the live output channels (teacher indices) of the switch record."""
  return [switch["live"][f"block{i}/out"] for i in range(num_blocks)]


def enter_slim_phase(trainer, copy: bool = True) -> None:
  """Replaces `trainer`'s masked G, EMA G and G optimizer by slim ones.

  With `copy`, the slim networks are copies of the live channels of the masked ones
  and the optimizer carries their Adam state (`switch_to_slim`); without, they are
  empty networks of the recorded widths that a post-switch checkpoint is restored
  into (`Trainer.__init__`). Everything traced on the old networks is dropped.
  """
  t = trainer
  with t.build_scope():
    if copy:
      G, G_ema = slim_copy(t.G, "generator"), slim_copy(t.G_ema, "ema_generator")
    else:
      channels = t.slim_switch["channels"]
      G = build_slim_generator(t.model_cfg, channels, "generator")
      G_ema = build_slim_generator(t.model_cfg, channels, "ema_generator")
    g_opt = t.make_adam(t.cfg.optim.g_lr)
    g_opt.build(G.trainable_variables)
  if copy:
    slice_optimizer_state(t.g_opt, t.g_vars, g_opt, G.trainable_variables,
                          variable_slices(t.G))
  t.G, t.G_ema, t.g_opt = G, G_ema, g_opt
  t.g_vars = list(G.trainable_variables)
  t.mask_scores = []
  t.importance, t.train_scores, t.score_grads = None, False, False
  t.slim_phase = True
  t._pair_ema_variables()  # pylint: disable=protected-access
  t.drop_traced()


def switch_to_slim(trainer, step: int) -> None:
  """At `step` (the first after the last pruning event): records the switch in the
  workdir, then continues on slim copies (`enter_slim_phase`) with new checkpoint
  objects; checkpoints from here on hold the slim generators."""
  t = trainer
  t.slim_switch = switch_record(step, t.G)
  if t.is_chief:
    write_switch(t.workdir, t.slim_switch)
  before = int(flops.live_macs(t.G))
  enter_slim_phase(t, copy=True)
  t._build_checkpoint()  # pylint: disable=protected-access
  t._make_manager()  # pylint: disable=protected-access
  t._best_manager = None  # pylint: disable=protected-access
  logging.info("step %d: switched to the slim generator (%s), MACs per image %d -> %d",
               step, t.slim_switch["channels"], before, int(flops.live_macs(t.G)))
