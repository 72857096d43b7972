"""Slimming: masked PP-Res generator -> smaller dense generator with the same function.

After training (METHOD.md "After training"), the pruned channels and the mask
layers are discarded: `slim_generator` builds
`build_generator(cfg, masked=False, channels=<live widths>, sn_mode="frozen")` and
copies every weight with the pruned channels sliced out (conv input/output
channels, CBN gain/bias projection outputs and moving statistics, the stem linear's
output units, attention 1x1 convs' input/output channels, final BN and conv
inputs). Inference (`training=False`) of the slim generator equals the masked one
to float32 round-off (`verify_slim`).

Spectral norm, the subtle part. A masked layer computes `W / sigma(W)`. Slicing
rows/columns out of `W` changes its largest singular value, so a slim layer that
renormalised its sliced kernel would compute a different function. The slim
generator's spectral-norm layers therefore run in `sn_mode="frozen"`: they divide
their (sliced, raw) kernel by the stored `sn_sigma`, which slimming sets to exactly
the sigma the masked layer uses at inference (`SpectralNormLayer.spectral_sigma(
training=False)`: one power-iteration step from its stored `u`, not written back).
The effective weights are thus identical element by element, also after
save/load, since `sn_sigma` is an ordinary (non-trainable) variable. `sn_u` is
sliced to the live outputs and renormalised, so switching a slim model back to
`sn_mode="power_iteration"` (e.g. to fine-tune it) starts from a sensible vector.

Exported artefacts (`save_slim_generator`): `config.json` (Generator.get_config),
Keras weights in TF checkpoint format under `weights/`, and a SavedModel under
`saved_model/` whose `serving_default` signature maps (z float32 [B, z_dim],
y int32 [B]) -> {"images": float32 [B, R, R, C] in [-1, 1]}.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import tensorflow as tf

from ppcd_tf import checkpoints
from ppcd_tf import config as config_lib
from ppcd_tf import flops
from ppcd_tf import qat
from ppcd_tf.generator import BOTTOM_WIDTH, Generator, GeneratorChannels, build_generator
from ppcd_tf.layers.spectral_norm import SpectralNormLayer

__all__ = ["slim_generator", "verify_slim", "save_slim_generator",
           "load_slim_generator", "export_saved_model", "slim_and_report",
           "live_index_sets", "restore_trained_generator", "REPORT_FILE",
           "ChannelSlice", "channel_map", "index_sets_with_stem_units"]

_CONFIG_FILE = "config.json"
_WEIGHTS_PREFIX = os.path.join("weights", "ckpt")
_SAVED_MODEL_DIR = "saved_model"
REPORT_FILE = "slim_report.json"


def live_index_sets(generator: Generator) -> Dict[str, np.ndarray]:
  """{mask name: live channel indices}; all channels for an unmasked generator."""
  if generator.masked:
    return {name: mask.live_indices() for name, mask in generator.masks}
  return {name: np.arange(width) for name, width in generator.channels.widths().items()}


def _take(array: np.ndarray, idx: Optional[np.ndarray], axis: int) -> np.ndarray:
  return array if idx is None else np.take(array, idx, axis=axis)


def _copy_spectral_norm(src: SpectralNormLayer, dst: SpectralNormLayer,
                        in_idx: Optional[np.ndarray], out_idx: Optional[np.ndarray],
                        in_axis: int, out_axis: int) -> None:
  """Copies a sliced raw kernel (+ bias) and freezes the source's inference sigma."""
  kernel = src._raw_weight().numpy()  # pylint: disable=protected-access
  kernel = _take(_take(kernel, in_idx, in_axis), out_idx, out_axis)
  dst._raw_weight().assign(kernel)  # pylint: disable=protected-access
  if getattr(src, "bias", None) is not None:
    dst.bias.assign(_take(src.bias.numpy(), out_idx, 0))
  u = _take(src.sn_u.numpy(), out_idx, 0)
  norm = float(np.linalg.norm(u))
  dst.sn_u.assign(u / norm if norm > 0 else u)
  dst.sn_sigma.assign(src.spectral_sigma(training=False))


def _copy_cbn(src, dst, idx) -> None:
  for name in ("gain_linear", "bias_linear"):
    _copy_spectral_norm(getattr(src, name), getattr(dst, name), None, idx, 0, 1)
  _copy_bn(src.bn, dst.bn, idx)


def _copy_bn(src, dst, idx) -> None:
  for s, d in zip(src.weights, dst.weights):
    d.assign(_take(s.numpy(), idx, 0))


@dataclasses.dataclass(frozen=True)
class ChannelSlice:
  """One layer of a generator and the mask channel sets its weights are indexed by.

  `layer(g)` finds the layer in generator `g` (the same path in a masked generator and
  its slim copy). For kind "sn" (a spectral-norm conv/dense), the kernel's `in_axis`
  follows mask `in_key` and its `out_axis` mask `out_key` (None: not sliced; the
  stem's output axis uses "stem_units", the 4x4 output units of the stem channels).
  For "cbn" / "bn" every per-channel weight follows mask `out_key`.
  """
  layer: Callable[[Generator], Any]
  kind: str
  in_key: Optional[str]
  out_key: Optional[str]
  in_axis: int = 2
  out_axis: int = 3


def channel_map(generator: Generator) -> List[ChannelSlice]:
  """Every layer whose weights follow a mask's channels, in forward order."""
  out = [ChannelSlice(lambda g: g.stem, "sn", None, "stem_units", 0, 1)]
  prev = "stem"
  deep = generator.model_cfg.deep
  for i, block in enumerate(generator.blocks):
    mids, res = generator.channels.mid_names(i), f"block{i}/out"
    blk = lambda g, i=i: g.blocks[i]  # noqa: E731
    # BigGAN: bn1, conv1, bn2, conv2 (+ conv_sc); BigGAN-deep: bn0..bn3, conv0..conv3.
    chain = [prev] + mids + [res]
    first = 0 if deep else 1
    for j in range(len(chain) - 1):
      out += [ChannelSlice(lambda g, b=blk, n=f"bn{first + j}": getattr(b(g), n), "cbn",
                           None, chain[j]),
              ChannelSlice(lambda g, b=blk, n=f"conv{first + j}": getattr(b(g), n), "sn",
                           chain[j], chain[j + 1])]
    if not deep:
      out.append(ChannelSlice(lambda g, b=blk: b(g).conv_sc, "sn", prev, res))
    if block.attention is not None:
      att = lambda g, b=blk: b(g).attention  # noqa: E731
      out += [ChannelSlice(lambda g, a=att, c=c: getattr(a(g), c), "sn", res, None)
              for c in ("theta", "phi", "g")]
      out.append(ChannelSlice(lambda g, a=att: a(g).o, "sn", None, res))
    prev = res
  out += [ChannelSlice(lambda g: g.final_bn, "bn", None, prev),
          ChannelSlice(lambda g: g.final_conv, "sn", prev, None)]
  return out


def index_sets_with_stem_units(generator: Generator,
                               sets: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """`sets` ({mask name: channel indices}) plus "stem_units": the stem linear's output
  units of the stem channels in `sets["stem"]`."""
  units = (np.arange(BOTTOM_WIDTH * BOTTOM_WIDTH)[:, None] * generator.channels.stem
           + sets["stem"][None, :]).reshape(-1)
  return dict(sets, stem_units=units)


def slim_generator(masked_generator: Generator, name: Optional[str] = None,
                   sn_mode: str = "frozen") -> Generator:
  """Builds the dense generator of the live channels of `masked_generator`.

  Args:
    masked_generator: a built Generator (masked, or unmasked for a plain copy).
    name: Keras name of the result (default: "<name>_slim").
    sn_mode: "frozen" (inference and export: exactly the masked function) or
      "power_iteration" (to train on, `ppcd_tf.slim_finetune`: the same function
      once the dead weights are zero, `ppcd_tf.dead_weights`).

  Returns:
    A built Generator with `masked=False`, `sn_mode="frozen"` and
    `channels=masked_generator.live_channels()`; its `training=False` output equals
    the masked generator's (a quantisation-aware one's fake quant included,
    `ppcd_tf.qat`).
  """
  src = masked_generator
  live = index_sets_with_stem_units(src, live_index_sets(src))
  # Every weight is overwritten below; "N02" skips the QR decompositions of "ortho".
  dst = build_generator(src.model_cfg, masked=False, channels=src.live_channels(),
                        name=name or f"{src.name}_slim", sn_mode=sn_mode, init="N02")
  dst.shared.embeddings.assign(src.shared.embeddings)
  for entry in channel_map(src):
    s, d = entry.layer(src), entry.layer(dst)
    idx = live.get(entry.out_key)
    if entry.kind == "sn":
      _copy_spectral_norm(s, d, live.get(entry.in_key), idx, entry.in_axis, entry.out_axis)
    elif entry.kind == "cbn":
      _copy_cbn(s, d, idx)
    else:
      _copy_bn(s, d, idx)
  for s, d in zip(src.blocks, dst.blocks):
    if s.attention is not None:
      d.attention.gamma.assign(s.attention.gamma)
  qat.copy_quantization(src, dst)  # a QAT generator's copy computes its fake quant too
  return dst


def verify_slim(masked: Generator, slim: Generator, num_batches: int = 3, batch: int = 4,
                seed: int = 0) -> float:
  """Max |masked - slim| over `num_batches` fixed batches of (z ~ N(0, 1), y), inference."""
  cfg = masked.model_cfg
  rng = np.random.RandomState(seed)
  worst = 0.0
  for _ in range(num_batches):
    z = rng.standard_normal((batch, cfg.z_dim)).astype(np.float32)
    y = rng.randint(0, cfg.num_classes, size=batch).astype(np.int32)
    a = masked((z, y), training=False).numpy()
    b = slim((z, y), training=False).numpy()
    worst = max(worst, float(np.max(np.abs(a - b))))
  return worst


def export_saved_model(generator: Generator, path: str) -> str:
  """Writes a SavedModel with `serving_default`: (z, y) -> {"images": ...}.

  Only the variables and the inference function are exported (no Keras metadata),
  so the SavedModel loads with plain `tf.saved_model.load` and converts to TFLite.
  """
  cfg = generator.model_cfg
  module = tf.Module()
  module.generator_variables = list(generator.variables)

  @tf.function(input_signature=[tf.TensorSpec([None, cfg.z_dim], tf.float32, name="z"),
                                tf.TensorSpec([None], tf.int32, name="y")])
  def serve(z, y):
    return {"images": generator((z, y), training=False)}

  module.serve = serve
  tf.saved_model.save(module, path, signatures={"serving_default": serve})
  return path


@contextlib.contextmanager
def _published_dir(directory: str):
  """Yields a temporary sibling of `directory`; on success it replaces `directory`.

  An error while writing leaves the previous `directory` as it was. An existing `directory` that
  holds anything but a slim generator is refused instead of replaced.
  """
  directory = os.path.abspath(directory)
  if os.path.isdir(directory) and os.listdir(directory) and not os.path.exists(
      os.path.join(directory, _CONFIG_FILE)):
    raise config_lib.ConfigError(
        f"{directory} exists and is not a slim generator directory; pass a new or "
        "empty directory (it would be replaced).")
  tmp = f"{directory}.tmp-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    yield tmp
    checkpoints.replace_dir(tmp, directory)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def _write_slim_files(generator: Generator, directory: str) -> None:
  with open(os.path.join(directory, _CONFIG_FILE), "w") as f:
    json.dump({"generator": generator.get_config()}, f, indent=2)
  generator.save_weights(os.path.join(directory, _WEIGHTS_PREFIX), save_format="tf")
  export_saved_model(generator, os.path.join(directory, _SAVED_MODEL_DIR))


def save_slim_generator(generator: Generator, directory: str) -> str:
  """Saves config JSON, Keras weights (TF checkpoint format) and a SavedModel.

  Written to a temporary directory first, then renamed onto `directory`.

  Returns:
    `directory`.
  """
  with _published_dir(directory) as tmp:
    _write_slim_files(generator, tmp)
  return directory


def load_slim_generator(directory: str) -> Generator:
  """Rebuilds a generator written by `save_slim_generator` (config + weights).

  Raises:
    checkpoints.CheckpointError: the directory is missing, incomplete or damaged
      (named, with how to re-create it).
  """
  try:
    with open(os.path.join(directory, _CONFIG_FILE)) as f:
      config = json.load(f)["generator"]
    generator = Generator.from_config(config)
    status = generator.load_weights(os.path.join(directory, _WEIGHTS_PREFIX))
    status.assert_existing_objects_matched()
  except (OSError, ValueError, KeyError, TypeError, IndexError, AssertionError,
          tf.errors.OpError) as e:
    raise checkpoints.CheckpointError(
        f"slim generator {directory} cannot be loaded ({type(e).__name__}: "
        f"{str(e).splitlines()[0] if str(e) else ''}); it is incomplete or damaged. "
        "Re-create it with `python -m tools.slim --workdir=WORKDIR`.") from e
  return generator


def slim_and_report(masked_generator: Generator, out_dir: str,
                    verify_batches: int = 3) -> Dict[str, Any]:
  """Slims, verifies, saves the slim generator to `out_dir` and writes a report.

  Args:
    masked_generator: trained masked (or unmasked) generator.
    out_dir: destination of config.json, weights/, saved_model/, slim_report.json.
    verify_batches: batches of 4 used by `verify_slim`.

  Returns:
    The report dict also written to `out_dir/slim_report.json`: params/MACs before
    (dense widths of the masked generator) and after, reductions, channels kept per
    mask, per-layer cost rows of the slim generator, max abs difference.
  """
  slim = slim_generator(masked_generator)
  diff = verify_slim(masked_generator, slim, num_batches=verify_batches)
  # "Before" is the run's full width: the masked generator's, or, for a generator
  # fine-tuned at the slim width (ppcd_tf.slim_finetune), its config's.
  full = GeneratorChannels.from_model_config(masked_generator.model_cfg)
  before = flops.generator_cost(masked_generator.model_cfg, full)
  after = flops.count_generator(slim)
  kept = slim.channels
  channels = {name: {"kept": kept.widths()[name], "total": total}
              for name, total in full.widths().items()}
  report = {
      "params_before": before.total_params, "params_after": after.total_params,
      "param_reduction": 1.0 - after.total_params / before.total_params,
      "macs_before": before.total_macs, "macs_after": after.total_macs,
      "mac_reduction": 1.0 - after.total_macs / before.total_macs,
      "channels": channels, "slim_channels": kept.to_dict(),
      "max_abs_diff": diff, "verify_batches": verify_batches,
      "layers_after": after.to_dict()["rows"],
      "out_dir": os.path.abspath(out_dir),
  }
  with _published_dir(out_dir) as tmp:  # generator and report appear together
    _write_slim_files(slim, tmp)
    with open(os.path.join(tmp, REPORT_FILE), "w") as f:
      json.dump(report, f, indent=2)
  return report


def _generator_for(cfg: config_lib.Config, run_dir: str, checkpoint: Optional[str],
                   key: str) -> "tuple[Generator, Optional[str]]":
  """The empty generator a run's checkpoint holds under `key` (weights are restored
  after): masked for a PPCD run, slim where the checkpoint was written after the
  switch to the slim width (`ppcd_tf.slim_finetune`), else the plain BigGAN
  generator. Also the checkpoint to restore: `checkpoint`, or where a switch record
  made this look one up, the newest readable one (None: the latest readable)."""
  masked = cfg.run.mode == "ppcd" and cfg.distill.use_masks
  if masked:
    from ppcd_tf import slim_finetune
    switch = slim_finetune.read_switch(run_dir)
    if switch is not None:
      if checkpoint is None:
        checkpoint = checkpoints.newest_readable(checkpoints.checkpoint_dir(run_dir))
      if slim_finetune.is_slim_checkpoint(switch, checkpoint):
        return (slim_finetune.build_slim_generator(cfg.model, switch["channels"], key),
                checkpoint)
  return build_generator(cfg.model, masked=masked, name=key, init="N02"), checkpoint


def restore_trained_generator(workdir: Optional[str] = None,
                              checkpoint: Optional[str] = None,
                              config_path: Optional[str] = None,
                              key: str = "ema_generator") -> "tuple[Generator, str]":
  """Builds the run's generator and restores it from a training checkpoint.

  The run's `config.json` (`Config.to_dict()`) gives the architecture and whether
  the generator is masked (`--mode=ppcd` with `--use_masks`); the checkpoint holds
  it under `key` (`ema_generator`: the EMA weights used for evaluation).

  Args:
    workdir: a training workdir; its latest readable checkpoint is used unless
      `checkpoint` is given.
    checkpoint: an explicit checkpoint prefix (e.g. WORKDIR/checkpoints/ckpt-7).
    config_path: config.json to use; default WORKDIR/config.json, or the one two
      directories above `checkpoint`.
    key: checkpoint object name of the generator.

  Returns:
    (generator, checkpoint prefix).

  Raises:
    checkpoints.CheckpointError: no config, no restorable checkpoint, or one whose
      generator holds NaN/Inf weights.
  """
  if not workdir and not checkpoint:
    raise config_lib.ConfigError("pass --workdir=DIR or --checkpoint=PREFIX.")
  run_dir = workdir or os.path.dirname(os.path.dirname(os.path.abspath(checkpoint)))
  if config_path is None:
    config_path = checkpoints.config_path(run_dir)
  if not os.path.exists(config_path):
    raise checkpoints.CheckpointError(
        f"{config_path} does not exist; pass --config=PATH to the run's config.json.")
  with open(config_path) as f:
    cfg = config_lib.Config.from_dict(json.load(f))
  generator, checkpoint = _generator_for(cfg, run_dir, checkpoint, key)
  if checkpoint:
    try:
      status = tf.train.Checkpoint(**{key: generator}).read(checkpoint)
      status.assert_existing_objects_matched()
      status.expect_partial()
    except (tf.errors.OpError, ValueError, AssertionError) as e:
      raise checkpoints.CheckpointError(
          f"cannot restore {key} from {checkpoint}: {str(e).splitlines()[0][:200]}") from e
    checkpoints.require_finite(generator, checkpoint, key)
    _quantize_if_qat(generator, run_dir, checkpoint)
    return generator, checkpoint
  prefix, _ = checkpoints.restore_objects_from_workdir(workdir, **{key: generator})
  checkpoints.require_finite(generator, prefix, key)
  _quantize_if_qat(generator, run_dir, prefix)
  return generator, prefix


def _quantize_if_qat(generator: Generator, run_dir: str, prefix: str) -> None:
  """A checkpoint from a run's QAT phase (`--qat_steps`, at or after the step in
  WORKDIR/qat.json) gives the fake-quant generator it was trained as."""
  from ppcd_tf import slim_finetune  # it imports this module
  record = qat.read_record(run_dir)
  if record is not None and slim_finetune.checkpoint_step(prefix) >= record["step"]:
    qat.enable(generator, record["ranges"])
