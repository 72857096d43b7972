"""The whole import: reads, checks and maps G / G_ema / D, writes and verifies a workdir.

The workdir is written whole to a temporary sibling, reloaded and checked there, then
moved onto the target (`checkpoints.replace_dir`).
"""

from __future__ import annotations

import math
import os
import shutil
from typing import Any, Dict, Mapping, Optional

import numpy as np
from absl import logging

from ppcd_tf.biggan_import.architecture import check_against_config, infer_architecture
from ppcd_tf.biggan_import.common import (BigGANImportError, StateDict, StateSource,
                                          _listing)
from ppcd_tf.biggan_import.mapping import (discriminator_mapping, generator_mapping,
                                           load_into)
from ppcd_tf.biggan_import.reading import (CROSS_REPLICA_NOTE, _read_source,
                                           canonical_state_dict, cross_replica_keys)

IMPORT_SUMMARY_FILE = "biggan_import.json"
MODEL_FLAGFILE = "model.cfg"  # the model flags of a pytorch-pretrained-BigGAN import


def _max_abs_diff(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def _check_out_dir(out_dir: str, overwrite: bool) -> None:
  """Refuses an out_dir that holds anything but an earlier import (replaced whole)."""
  from ppcd_tf import checkpoints
  if not os.path.exists(out_dir):
    return
  if not os.path.isdir(out_dir):
    raise BigGANImportError(f"{out_dir} exists and is not a directory; choose another "
                            "--out.")
  ours = {os.path.basename(checkpoints.config_path(out_dir)),
          os.path.basename(checkpoints.checkpoint_dir(out_dir)), IMPORT_SUMMARY_FILE,
          MODEL_FLAGFILE}
  foreign = sorted(set(os.listdir(out_dir)) - ours)
  if foreign:
    raise BigGANImportError(
        f"{out_dir} holds {_listing('entry(ies) the importer does not write', foreign)}; "
        "--out must be a new or empty directory or a teacher workdir written by "
        "tools/import_biggan (config.json, checkpoints/, biggan_import.json), which "
        "--overwrite replaces as a whole.")
  ckpt_dir = checkpoints.checkpoint_dir(out_dir)
  if not overwrite and os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir):
    raise BigGANImportError(f"{ckpt_dir} already holds checkpoints; pass --overwrite "
                            "to replace them or choose another --out.")


def import_teacher(out_dir: str, cfg, g: StateSource, d: Optional[StateSource],
                   g_ema: Optional[StateSource] = None, step: int = 0,
                   overwrite: bool = False, verify: bool = True,
                   allow_cross_replica: bool = False) -> Dict[str, Any]:
  """Converts BigGAN-PyTorch G / G_ema / D weights into a teacher workdir.

  The complete workdir is written to a temporary sibling of `out_dir`, reloaded and
  checked there, and only then moved onto `out_dir`, so a failed import (with or
  without `overwrite`) leaves an earlier `out_dir` exactly as it was.

  Args:
    out_dir: workdir to write (config.json, checkpoints/, biggan_import.json). It
      must be new, empty, or an earlier import (nothing else in it).
    cfg: the `Config` the flagfile describes; its model must match the checkpoint
      (checked against shapes inferred from the tensors). Written with
      run.mode="teacher" and run.workdir=out_dir.
    g: the generator weights (path to .pth / .npz, or a mapping). Without `g_ema`
      these are used for both `generator` and `ema_generator` (pass G_ema.pth here).
    d: the discriminator weights, or None for a generator-only teacher (the
      checkpoint then has no "discriminator"; a PPCD student of it warms up a fresh D
      first, `--d_warmup_steps`).
    g_ema: optional EMA generator weights; then `g` fills `generator` and `g_ema`
      fills `ema_generator`.
    step: the checkpoint step (e.g. the BigGAN-PyTorch iteration, 138000).
    overwrite: replace an earlier import in out_dir.
    verify: reload the written workdir the way the PPCD trainer loads a teacher and
      check it reproduces the imported networks exactly.
    allow_cross_replica: import `--cross_replica` (SyncBN) generators with standard
      BatchNorm; their outputs then differ from BigGAN-PyTorch's (`CROSS_REPLICA_NOTE`,
      repeated in the summary's "warning").

  Returns:
    A summary dict (also written to out_dir/biggan_import.json).
  Raises:
    BigGANImportError: unreadable input, architecture mismatch with `cfg`, missing /
      extra / misshapen tensors, SyncBN buffers without `allow_cross_replica`, or
      out_dir already holds checkpoints (without `overwrite`) or other files.
  """
  # The models are imported here, not at module level, so that reading / converting
  # state dicts does not need TensorFlow.
  from ppcd_tf.discriminator import build_discriminator
  from ppcd_tf.generator import build_generator

  cfg = cfg.replace(run=dict(mode="teacher", workdir=out_dir)).validate()
  model_cfg = cfg.model.resolved()
  _check_out_dir(out_dir, overwrite)
  sources = {"generator": g, "ema_generator": g if g_ema is None else g_ema}
  if d is not None:
    sources["discriminator"] = d
  labels = {name: name if isinstance(src, Mapping) else f"{name} ({os.fspath(src)})"
            for name, src in sources.items()}
  # Without g_ema, one set of generator weights fills both generators.
  read = (("generator",) + (() if d is None else ("discriminator",))
          + (() if g_ema is None else ("ema_generator",)))
  synced: Dict[str, int] = {}
  states: Dict[str, StateDict] = {}
  for name in read:
    raw = _read_source(sources[name])
    if cross_replica_keys(raw):
      synced[name] = len(cross_replica_keys(raw))
    states[name] = canonical_state_dict(raw, labels[name], allow_cross_replica)
    del raw
  states.setdefault("ema_generator", states["generator"])

  diffs = []
  for name in ("generator", "ema_generator") if g_ema is not None else ("generator",):
    facts = infer_architecture(g_state=states[name])
    diffs += [f"{name}: {x}" for x in check_against_config(facts, model_cfg)]
  if d is not None:
    facts = infer_architecture(d_state=states["discriminator"])
    diffs += [f"discriminator: {x}" for x in check_against_config(facts, model_cfg)]
  if diffs:
    raise BigGANImportError(
        "the checkpoint's architecture does not match the config: "
        + "; ".join(dict.fromkeys(diffs))
        + ". Pass the flagfile (or model flags) that describe it, e.g. "
        "--flagfile=configs/imagenet128.cfg for the BigGAN-PyTorch ImageNet 128 model.")

  # Initial values are overwritten, so the cheapest initializer is used.
  nets = {"generator": build_generator(model_cfg, name="generator", init="glorot"),
          "ema_generator": build_generator(model_cfg, name="ema_generator",
                                           init="glorot")}
  if d is not None:
    nets["discriminator"] = build_discriminator(model_cfg, init="glorot")
  report: Dict[str, Any] = {}
  for name, net in nets.items():
    mapping = (discriminator_mapping(net) if name == "discriminator"
               else generator_mapping(net))
    report[name] = load_into(net, states[name], mapping, labels[name])
    src = sources[name]
    report[name]["source"] = (None if isinstance(src, Mapping)
                              else os.path.abspath(os.fspath(src)))
    report[name]["mapping"] = [
        {"source": m.source, "target": m.target_name, "layout": m.layout,
         "permuted": m.perm is not None} for m in mapping]
  if synced:
    logging.warning("%s: imported with standard BatchNorm (--allow_cross_replica); %s.",
                    ", ".join(labels[n] for n in synced), CROSS_REPLICA_NOTE)

  summary: Dict[str, Any] = {
      "g_params": report["ema_generator"]["params"],
      "d_params": report["discriminator"]["params"] if d is not None else None,
      "discriminator": None,
      "separate_ema": g_ema is not None, "cross_replica_bn": synced, **report}
  if synced:
    summary["warning"] = (f"imported BigGAN-PyTorch --cross_replica weights with "
                          f"standard BatchNorm: {CROSS_REPLICA_NOTE}")
  return write_teacher_workdir(out_dir, cfg, nets, step, summary, verify)


def write_teacher_workdir(out_dir: str, cfg, nets: Dict[str, Any], step: int,
                          summary: Dict[str, Any], verify: bool,
                          extra_files: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
  """Writes config.json, the checkpoint of `nets` and the summary, all or nothing.

  The workdir is written to a temporary sibling of `out_dir`, reloaded and checked
  there (`verify`: the way the PPCD trainer loads a teacher), then moved onto
  `out_dir`, so a failure leaves an earlier `out_dir` as it was. `cfg` must be the
  validated config with run.mode="teacher" and run.workdir=out_dir. `extra_files`:
  {name: text} written beside config.json (names `_check_out_dir` accepts).

  Returns:
    `summary` with "checkpoint", "step", "workdir" (and "verify_max_abs_diff") added,
    as written to out_dir/biggan_import.json.
  """
  import tensorflow as tf
  from ppcd_tf import checkpoints

  final = os.path.abspath(out_dir)
  parent = os.path.dirname(final)
  os.makedirs(parent, exist_ok=True)
  tmp = f"{final}.import-{os.getpid()}"  # a sibling: the final move is a rename
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    checkpoints.write_config(tmp, cfg)
    for name, text in (extra_files or {}).items():
      with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
        f.write(text)
    step_var = tf.Variable(int(step), dtype=tf.int64, trainable=False, name="step")
    ckpt = tf.train.Checkpoint(step=step_var, **nets)
    prefix = tf.train.CheckpointManager(
        ckpt, checkpoints.checkpoint_dir(tmp), max_to_keep=1).save(
            checkpoint_number=int(step))
    summary = {"checkpoint": os.path.join(checkpoints.checkpoint_dir(out_dir),
                                          os.path.basename(prefix)),
               "step": int(step), "workdir": out_dir, **summary}
    if verify:
      summary["verify_max_abs_diff"] = _verify_workdir(tmp, cfg, nets, out_dir)
    checkpoints.write_json_atomic(os.path.join(tmp, IMPORT_SUMMARY_FILE), summary)
    checkpoints.replace_dir(tmp, final)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return summary


def _verify_workdir(workdir: str, cfg, nets, what: str) -> float:
  """Reloads workdir as the PPCD trainer loads a teacher; returns the max abs diff."""
  import tensorflow as tf
  from ppcd_tf import checkpoints
  from ppcd_tf.discriminator import build_discriminator
  from ppcd_tf.generator import build_generator

  m = cfg.model.resolved()
  written = checkpoints.read_config(workdir)
  checkpoints.check_same_architecture(m, written.model, f"imported workdir {what}")
  tables = m.bn_stats > 0  # as the trainer builds a pytorch-pretrained-BigGAN teacher
  g2 = build_generator(m, name="teacher_generator", init="glorot", truncation_tables=tables)
  loaded = dict(ema_generator=g2)
  if "discriminator" in nets:
    loaded["discriminator"] = d2 = build_discriminator(m, init="glorot")
  checkpoints.restore_objects_from_workdir(workdir, **loaded)
  if tables:
    g2.select_truncation(m.latent_truncation)
  z = tf.random.stateless_normal([2, m.z_dim], seed=[3, 4])
  y = tf.constant([0, m.num_classes - 1], tf.int32)
  images = nets["ema_generator"]((z, y), training=False)
  diff = _max_abs_diff(g2((z, y), training=False), images)
  if "discriminator" in nets:
    diff = max(diff, _max_abs_diff(d2((images, y), training=False),
                                   nets["discriminator"]((images, y), training=False)))
  if not math.isfinite(diff) or diff > 1e-6:
    raise BigGANImportError(f"the written workdir {what} does not reproduce the "
                            f"imported networks (max abs diff {diff:g}).")
  return diff
