"""Workdir layout, config.json and checkpoint save / restore.

A workdir holds:
  config.json            the `Config` of the run (`Config.to_dict()`): written once
                         the run's inputs are validated; a rerun replaces it only
                         when it writes its first checkpoint, so a rerun that fails
                         validation or diverges before saving leaves it untouched
  checkpoints/ckpt-N.*   `tf.train.CheckpointManager` checkpoints (keep N)
  checkpoints/unreadable/  checkpoints found unreadable on resume, moved aside
  train/                 TensorBoard event files
  samples/step_N.png     sample grids of fixed (z, y) from the EMA generator
  train_summary.json     written when a run finishes

Checkpoint object names (other tools rely on them): `step`, `generator`,
`ema_generator`, `discriminator`, `g_optimizer`, `d_optimizer`, `mask_optimizer`.
The data position is the step (see `train_lib.Trainer._make_dataset`). A teacher for `--mode=ppcd` is any workdir with `ema_generator`
and `discriminator` (from `--mode=teacher` or `tools/import_biggan`).

Crash safety. A checkpoint is written, then verified, then published:
  1. TensorFlow writes the data shards under `ckpt-N_temp/`, then renames them and
     writes `ckpt-N.index` through a temporary file and a rename;
  2. `save_checkpoint` reads every tensor of the new checkpoint back;
  3. only then does `tf.train.CheckpointManager` rewrite the `checkpoint` state
     file (atomically: temporary file, then rename) to make it the latest.
A process killed at any moment therefore leaves the previous checkpoint as the
latest, plus at most some unpublished files, which `remove_stale_temp_files`
clears on the next start. A checkpoint damaged afterwards (disk trouble, a copy
cut short: truncated data, missing or corrupt index) is skipped with a warning and
the previous good one is used (`restore_latest`); a trainer then moves the
unreadable files to `checkpoints/unreadable/` and drops them from the state file
(`forget_unreadable`). If the state file itself is missing or unparseable, the
`ckpt-N.index` files on disk are used instead (`all_checkpoints`).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
from typing import Callable, Dict, List, Optional, Tuple

import tensorflow as tf
from absl import logging

from ppcd_tf import config as config_lib
from ppcd_tf.files import write_atomically, write_json_atomic  # noqa: F401  (re-exported)

__all__ = [
    "CheckpointError", "config_path", "checkpoint_dir", "write_json_atomic", "write_atomically",
    "write_config", "read_config", "replace_dir", "read_config_file", "check_same_architecture",
    "GENERATOR_WIDTH_FIELDS",
    "all_checkpoints", "newest_readable", "restore_latest", "restore_objects_from_workdir",
    "save_checkpoint", "forget_unreadable", "remove_stale_temp_files", "UNREADABLE_DIR",
]

UNREADABLE_DIR = "unreadable"
_STATE_FILE = "checkpoint"
_CKPT_INDEX = re.compile(r"^(.*-(\d+))\.index$")
# What reading a damaged checkpoint raises: OpError (missing file, bad checksum,
# corrupt index), ValueError / AssertionError (objects that do not match) and
# IndexError ("Read less bytes than requested": a truncated data shard).
_READ_ERRORS = (tf.errors.OpError, ValueError, AssertionError, IndexError)


class CheckpointError(RuntimeError):
  """A checkpoint or workdir cannot be used; the message names the path and the fix."""


def config_path(workdir: str) -> str:
  return os.path.join(workdir, "config.json")


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, "checkpoints")


def write_config(workdir: str, cfg: config_lib.Config) -> None:
  write_json_atomic(config_path(workdir), cfg.to_dict())


def read_config(workdir: str) -> config_lib.Config:
  path = config_path(workdir)
  if not os.path.exists(path):
    raise CheckpointError(
        f"{path} does not exist: {workdir!r} is not a ppcd_tf workdir (run "
        "`python -m ppcd_tf.train --workdir=...` or tools/import_biggan first).")
  return read_config_file(path)


def read_config_file(path: str) -> config_lib.Config:
  """Reads a run's config.json; CheckpointError naming the path if it is unusable."""
  try:
    with open(path) as f:
      return config_lib.Config.from_dict(json.load(f))
  except OSError as e:
    raise CheckpointError(f"cannot read config {path}: {e.strerror or e}.") from e
  except (ValueError, TypeError, AttributeError) as e:
    raise CheckpointError(f"{path} is not a valid ppcd_tf config ({e}); restore it "
                          "from a backup or start a new workdir.") from e


def holds_object(prefix: str, name: str) -> bool:
  """Whether the checkpoint at `prefix` holds any variable of top-level object `name`
  (e.g. a generator-only teacher has no "discriminator")."""
  return any(key.split("/", 1)[0] == name for key, _ in tf.train.list_variables(prefix))


def read_record(path: str, convert: Callable[[Dict], Dict], advice: str) -> Optional[Dict]:
  """A workdir's small JSON record (slim switch, QAT ranges) through `convert`, or None
  when the file does not exist.

  Raises:
    CheckpointError: the file exists but cannot be read or converted; the message
      ends with `advice` (what the record is for and how to recover).
  """
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return convert(json.load(f))
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise CheckpointError(f"{path} is unreadable ({type(e).__name__}: {e}); {advice}") from e


def _architecture_fields(m: config_lib.ModelConfig) -> Dict:
  r = m.resolved()
  d = {k: v for k, v in vars(r).items()}
  return d


def replace_dir(tmp: str, out_dir: str) -> None:
  """Moves a finished directory `tmp` onto `out_dir`, replacing an earlier one."""
  if os.path.exists(out_dir):
    old = f"{out_dir}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
  else:
    os.replace(tmp, out_dir)


# ModelConfig fields that only set generator widths: a student trained without the
# teacher's weights may differ from its teacher in these (`ignore=` below).
GENERATOR_WIDTH_FIELDS = ("g_channels", "g_attention_widths")


def check_same_architecture(expected: config_lib.ModelConfig, found: config_lib.ModelConfig,
                            what: str, ignore: Tuple[str, ...] = ()) -> None:
  """Raises ConfigError listing every model field that differs (except `ignore`).

  Every ModelConfig field counts, `g_channels` and `g_attention_widths` included
  (pass `ignore=GENERATOR_WIDTH_FIELDS` where narrower widths are allowed).
  """
  a, b = _architecture_fields(expected), _architecture_fields(found)
  diff = [f"{k}: {b[k]!r} in {what} vs {a[k]!r} here" for k in sorted(a)
          if k not in ignore and a[k] != b.get(k)]
  if diff:
    raise config_lib.ConfigError(
        f"the model in {what} does not match this config: " + "; ".join(diff)
        + ". Use the same model flags (flagfile) as that run.")


def _read_state(directory: str):
  """The CheckpointState proto, or None if the state file is missing or unparseable."""
  try:
    return tf.train.get_checkpoint_state(directory)
  except ValueError as e:  # parses but has no model_checkpoint_path (e.g. emptied)
    logging.warning("Checkpoint state file in %s is invalid (%s); ignoring it.",
                    directory, e)
    return None


def _scan_index_files(directory: str) -> List[str]:
  """`<name>-N` prefixes that have an index file on disk, by N (oldest first)."""
  found = []
  if not tf.io.gfile.isdir(directory):
    return []
  for path in tf.io.gfile.glob(os.path.join(directory, "*.index")):
    match = _CKPT_INDEX.match(os.path.basename(path))
    if match:
      found.append((int(match.group(2)), os.path.join(directory, match.group(1))))
  return [prefix for _, prefix in sorted(found)]


def all_checkpoints(directory: str) -> List[str]:
  """Checkpoint prefixes, oldest first.

  They come from the directory's `checkpoint` state file. If that file is missing
  or unparseable (deleted, damaged) while `<name>-N.index` files exist, those are
  returned instead, ordered by N, with a warning: a lost state file must not make a
  rerun start over. `restore_latest` checks each one before using it.
  """
  state = _read_state(directory)
  if state is not None:
    return list(state.all_model_checkpoint_paths)
  scanned = _scan_index_files(directory)
  if scanned:
    logging.warning("%s has no usable '%s' state file; using the checkpoints found on "
                    "disk: %s", directory, _STATE_FILE,
                    ", ".join(os.path.basename(p) for p in scanned))
  return scanned


def _check_readable(prefix: str) -> None:
  """Raises if a checkpoint's index or data shards are missing or unreadable."""
  reader = tf.train.load_checkpoint(prefix)
  shapes = reader.get_variable_to_shape_map()
  for name in shapes:
    reader.get_tensor(name)  # reads the data shard: catches truncation and bad checksums


def newest_readable(directory: str) -> Optional[str]:
  """The newest checkpoint of `directory` whose files all read (the one
  `restore_latest` will restore, unless its objects do not match), or None."""
  for prefix in reversed(all_checkpoints(directory)):
    try:
      _check_readable(prefix)
      return prefix
    except _READ_ERRORS:
      continue
  return None


def _first_line(e: BaseException) -> str:
  text = str(e).strip()
  return text.splitlines()[0][:200] if text else type(e).__name__


def restore_latest(checkpoint: tf.train.Checkpoint, directory: str,
                   expect_partial: bool = False, require_all: bool = True,
                   skipped: Optional[List[str]] = None) -> Optional[str]:
  """Restores the newest *readable* checkpoint in `directory`.

  Newer checkpoints that fail to read (truncated or missing data shard, missing or
  corrupt index, objects that do not match) are skipped with a warning naming them.

  Args:
    checkpoint: what to restore into (objects must already be built).
    directory: a CheckpointManager directory.
    expect_partial: the checkpoint may hold values this object graph does not use.
    require_all: every variable of `checkpoint` must get a value.
    skipped: if given, the prefixes skipped as unreadable are appended to it.

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
        # Every object here got its values; values only the file has (e.g. the
        # manager's save_counter before this process saves) need no warning.
        status.assert_existing_objects_matched()
      if expect_partial or require_all:
        status.expect_partial()
      if errors:
        logging.warning("Restored %s after skipping unreadable checkpoint(s): %s",
                        prefix, "; ".join(errors))
      return prefix
    except _READ_ERRORS as e:
      msg = _first_line(e)
      logging.warning("Checkpoint %s cannot be restored (%s); trying an older one.",
                      prefix, msg)
      errors.append(f"{prefix}: {msg}")
      if skipped is not None:
        skipped.append(prefix)
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


def save_checkpoint(manager: tf.train.CheckpointManager, checkpoint_number: int,
                    before_publish: Optional[Callable[[str], None]] = None) -> str:
  """Writes a checkpoint, reads it back, and only then makes it the latest.

  `manager.save` writes the files and then calls its write callbacks in order; the
  manager's own callback, which rewrites the `checkpoint` state file (publishes
  the checkpoint and deletes the oldest beyond `max_to_keep`), runs last. The
  verification callback runs before it, so a checkpoint that does not read back
  is never published and the previous one stays the latest.

  Args:
    manager: the run's CheckpointManager.
    checkpoint_number: number of the checkpoint (the training step).
    before_publish: called with the new prefix after verification, before
      publishing (train_lib's crash-test hook uses it).

  Returns:
    The new checkpoint prefix.

  Raises:
    CheckpointError: the checkpoint could not be written (disk full, file size
      limit, failing disk), or it was written but does not read back. Either way
      it was not published, the previous checkpoint stays the latest and what the
      failed save left behind is removed.
  """
  def verify(save_path):
    try:
      _check_readable(save_path)
    except _READ_ERRORS as e:
      raise CheckpointError(
          f"checkpoint {save_path} was written but does not read back "
          f"({_first_line(e)}); it was not made the latest. Check the disk "
          f"under {manager.directory} and rerun to resume from the previous one.") from e
    if before_publish is not None:
      before_publish(save_path)

  options = tf.train.CheckpointOptions(experimental_write_callbacks=[verify])
  previous = manager.latest_checkpoint
  try:
    return manager.save(checkpoint_number=checkpoint_number, options=options)
  except (tf.errors.OpError, OSError) as e:
    prefix = os.path.join(manager.directory, f"ckpt-{checkpoint_number}")
    _remove_failed_save(manager.directory, prefix if prefix != previous else None)
    kept = (f"{os.path.basename(previous)} is still the latest" if previous
            else "no checkpoint was published")
    raise CheckpointError(
        f"could not write checkpoint ckpt-{checkpoint_number} in {manager.directory} "
        f"({_write_failure_reason(e)}); {kept}. Free disk space (or fix the disk) "
        "and rerun the same command to resume.") from e


def _write_failure_reason(e: BaseException) -> str:
  """The operating system's words in a failed save ('No space left on device')."""
  lines = str(e).strip().splitlines()
  text = re.sub(r"\s*\[Op:\w+\]\s*$", "", lines[0] if lines else type(e).__name__)
  return (text.rsplit("; ", 1)[-1] if "; " in text else text)[:200]


def _remove_failed_save(directory: str, prefix: Optional[str]) -> None:
  """Deletes the temporary files of a save that failed, and any files of its
  unpublished `prefix`; never raises (the write error is the one to report)."""
  try:
    remove_stale_temp_files(directory)
    if prefix:
      for path in _checkpoint_files(prefix):
        tf.io.gfile.remove(path)
  except (tf.errors.OpError, OSError) as e:
    logging.warning("Could not remove the files of the failed save in %s: %s",
                    directory, _first_line(e))


def require_finite(model, prefix: str, what: str) -> None:
  """Raises CheckpointError when a restored model holds NaN or Inf weights: sampling,
  slimming, exporting or evaluating them would only give NaN images."""
  import numpy as np
  bad = [v.name for v in model.variables
         if v.dtype.is_floating and not np.isfinite(v.numpy()).all()]
  if bad:
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    raise CheckpointError(
        f"{prefix} holds non-finite values (NaN or Inf) in {what}: "
        f"{', '.join(bad[:3])}{more}. The run diverged before this checkpoint; pass an "
        "earlier one (--checkpoint=WORKDIR/checkpoints/ckpt-N) or retrain from it.")


def _checkpoint_files(prefix: str) -> List[str]:
  return tf.io.gfile.glob(glob.escape(prefix) + ".index") + tf.io.gfile.glob(
      glob.escape(prefix) + ".data-*")


def forget_unreadable(directory: str, unreadable: List[str]) -> List[str]:
  """Moves unreadable checkpoints aside and drops them from the state file.

  Called once a resumed run has restored an older checkpoint: the files of each
  unreadable one go to `directory/unreadable/` (kept for inspection, never
  deleted), and the state file is rewritten (atomically) to list the remaining
  checkpoints with their timestamps, so the CheckpointManager neither counts nor
  names them. A state file that was missing or unparseable is rebuilt from the
  index files on disk.

  Returns:
    The paths the files were moved to.
  """
  state = _read_state(directory)
  if not unreadable and state is not None:
    return []  # nothing to repair
  unreadable_set = {os.path.normpath(p) for p in unreadable}
  moved = []
  if unreadable:
    target_dir = os.path.join(directory, UNREADABLE_DIR)
    tf.io.gfile.makedirs(target_dir)
    for prefix in unreadable:
      for path in _checkpoint_files(prefix):
        target = os.path.join(target_dir, os.path.basename(path))
        tf.io.gfile.rename(path, target, overwrite=True)
        moved.append(target)
    if moved:
      logging.warning("Moved unreadable checkpoint files to %s: %s", target_dir,
                      ", ".join(os.path.basename(p) for p in moved))
  if state is None:
    paths = _scan_index_files(directory)
    times = [tf.io.gfile.stat(p + ".index").mtime_nsec / 1e9 for p in paths]
    last_preserved = 0.0
  else:
    paths = list(state.all_model_checkpoint_paths)
    times = list(state.all_model_checkpoint_timestamps) or [
        state.last_preserved_timestamp] * len(paths)
    last_preserved = state.last_preserved_timestamp
  keep = [(p, t) for p, t in zip(paths, times)
          if os.path.normpath(p) not in unreadable_set]
  if not keep:
    return moved
  # The proto tf.train.get_checkpoint_state returns (not exported under tf.*).
  from google.protobuf import text_format
  from tensorflow.python.training.checkpoint_state_pb2 import CheckpointState
  new_state = CheckpointState(
      model_checkpoint_path=os.path.basename(keep[-1][0]),
      all_model_checkpoint_paths=[os.path.basename(p) for p, _ in keep],
      all_model_checkpoint_timestamps=[t for _, t in keep],
      last_preserved_timestamp=min([last_preserved] + [t for _, t in keep]) - 1.0)
  _write_text_atomic(os.path.join(directory, _STATE_FILE),
                     text_format.MessageToString(new_state))
  return moved


def _write_text_atomic(path: str, text: str) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(text)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def remove_stale_temp_files(directory: str) -> List[str]:
  """Deletes what an interrupted save leaves behind; returns the removed paths.

  A process killed while saving can leave `<prefix>_temp/` (data shards not yet
  merged), `*.tempstate*` (an index being written) and `checkpoint.tmp*` (a state
  file being written). None of them is ever read; call this only when no other
  process is saving into `directory` (the chief, at start-up).
  """
  if not tf.io.gfile.isdir(directory):
    return []
  removed = []
  for name in tf.io.gfile.listdir(directory):
    name = name.rstrip("/")
    path = os.path.join(directory, name)
    if name.endswith("_temp") and tf.io.gfile.isdir(path):
      tf.io.gfile.rmtree(path)
    elif ".tempstate" in name or name.startswith(_STATE_FILE + ".tmp"):
      tf.io.gfile.remove(path)
    else:
      continue
    removed.append(path)
  if removed:
    logging.info("Removed files of an interrupted checkpoint save: %s",
                 ", ".join(os.path.basename(p) for p in removed))
  return removed
