"""Workdir layout, config.json and checkpoint save / restore.

A workdir holds:
  config.json            the `Config` the run was started with (`Config.to_dict()`)
  checkpoints/ckpt-N.*   `tf.train.CheckpointManager` checkpoints (keep N)
  train/                 TensorBoard event files
  samples/step_N.png     sample grids of fixed (z, y) from the EMA generator
  train_summary.json     written when a run finishes

Checkpoint object names (other tools rely on them): `step`, `generator`,
`ema_generator`, `discriminator`, `g_optimizer`, `d_optimizer`, `mask_optimizer`.
The data position is the step (see `train_lib.Trainer._make_dataset`). A teacher for `--mode=ppcd` is any workdir with `ema_generator`
and `discriminator` (from `--mode=teacher` or `tools/import_biggan`).

TensorFlow writes a checkpoint's data and index under temporary names and only
then updates the `checkpoint` state file, so a crash mid-write leaves the
previous checkpoint as the latest. A truncated or corrupt checkpoint (disk
trouble, a copy cut short) is skipped with a warning and the previous good one is
used (`restore_latest`).
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

import tensorflow as tf
from absl import logging

from ppcd_tf import config as config_lib

__all__ = [
    "CheckpointError", "config_path", "checkpoint_dir", "write_json_atomic",
    "write_config", "read_config", "check_same_architecture", "all_checkpoints",
    "restore_latest", "restore_objects_from_workdir",
]


class CheckpointError(RuntimeError):
  """A checkpoint or workdir cannot be used; the message names the path and the fix."""


def config_path(workdir: str) -> str:
  return os.path.join(workdir, "config.json")


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, "checkpoints")


def write_json_atomic(path: str, obj) -> str:
  """Writes JSON to a temp file in the same directory, then renames it into place."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=str)
    f.write("\n")
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  return path


def write_config(workdir: str, cfg: config_lib.Config) -> None:
  write_json_atomic(config_path(workdir), cfg.to_dict())


def read_config(workdir: str) -> config_lib.Config:
  path = config_path(workdir)
  if not os.path.exists(path):
    raise CheckpointError(
        f"{path} does not exist: {workdir!r} is not a ppcd_tf workdir (run "
        "`python -m ppcd_tf.train --workdir=...` or tools/import_biggan first).")
  try:
    with open(path) as f:
      return config_lib.Config.from_dict(json.load(f))
  except (ValueError, TypeError) as e:
    raise CheckpointError(f"{path} is not a valid ppcd_tf config ({e}); restore it "
                          "from a backup or start a new workdir.") from e


def _architecture_fields(m: config_lib.ModelConfig) -> Dict:
  r = m.resolved()
  d = {k: v for k, v in vars(r).items()}
  return d


def check_same_architecture(expected: config_lib.ModelConfig, found: config_lib.ModelConfig,
                            what: str) -> None:
  """Raises ConfigError listing every model field that differs."""
  a, b = _architecture_fields(expected), _architecture_fields(found)
  diff = [f"{k}: {b[k]!r} in {what} vs {a[k]!r} here" for k in sorted(a) if a[k] != b.get(k)]
  if diff:
    raise config_lib.ConfigError(
        f"the model in {what} does not match this config: " + "; ".join(diff)
        + ". Use the same model flags (flagfile) as that run.")


def all_checkpoints(directory: str) -> List[str]:
  """Checkpoint prefixes listed in the directory's state file, oldest first."""
  state = tf.train.get_checkpoint_state(directory)
  if state is None:
    return []
  return list(state.all_model_checkpoint_paths)


def _check_readable(prefix: str) -> None:
  """Raises if a checkpoint's index or data shards are missing or unreadable."""
  reader = tf.train.load_checkpoint(prefix)
  shapes = reader.get_variable_to_shape_map()
  for name in shapes:
    reader.get_tensor(name)  # reads the data shard: catches truncation


def restore_latest(checkpoint: tf.train.Checkpoint, directory: str,
                   expect_partial: bool = False, require_all: bool = True) -> Optional[str]:
  """Restores the newest *readable* checkpoint in `directory`.

  Newer checkpoints that fail to read are skipped with a warning naming them.

  Args:
    checkpoint: what to restore into (objects must already be built).
    directory: a CheckpointManager directory.
    expect_partial: the checkpoint may hold values this object graph does not use.
    require_all: every variable of `checkpoint` must get a value.

  Returns:
    The restored prefix, or None if the directory holds no checkpoint.
  Raises:
    CheckpointError: checkpoints exist but none can be restored.
  """
  candidates = all_checkpoints(directory)
  if not candidates:
    return None
  errors = []
  for prefix in reversed(candidates):
    try:
      _check_readable(prefix)
      status = checkpoint.read(prefix)
      if require_all:
        status.assert_existing_objects_matched()
      if expect_partial:
        status.expect_partial()
      if errors:
        logging.warning("Restored %s after skipping unreadable checkpoint(s): %s",
                        prefix, "; ".join(errors))
      return prefix
    except (tf.errors.OpError, ValueError, AssertionError) as e:
      msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
      logging.warning("Checkpoint %s cannot be restored (%s); trying an older one.",
                      prefix, msg)
      errors.append(f"{prefix}: {msg}")
  raise CheckpointError(
      f"no checkpoint in {directory} can be restored: " + " | ".join(errors)
      + ". Delete the directory to start over, or copy a good checkpoint into it.")


def restore_objects_from_workdir(workdir: str, **objects) -> Tuple[str, int]:
  """Restores named objects (e.g. ema_generator=G, discriminator=D) from a workdir.

  Returns:
    (checkpoint prefix, step)
  """
  directory = checkpoint_dir(workdir)
  step = tf.Variable(0, dtype=tf.int64)
  ckpt = tf.train.Checkpoint(step=step, **objects)
  prefix = restore_latest(ckpt, directory, expect_partial=True)
  if prefix is None:
    raise CheckpointError(f"{directory} holds no checkpoint; train first "
                          f"(python -m ppcd_tf.train --workdir={workdir}).")
  return prefix, int(step.numpy())
