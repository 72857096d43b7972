"""Import a published BigGAN-PyTorch checkpoint as a ppcd_tf teacher workdir.

BigGAN-PyTorch (Brock, Andonian; github.com/ajbrock/BigGAN-PyTorch, `BigGAN.py`,
`layers.py`) saves `G.pth`, `G_ema.pth` and `D.pth` as PyTorch state dicts. This
module maps every tensor of those state dicts onto `ppcd_tf.generator.Generator` and
`ppcd_tf.discriminator.Discriminator` and writes a workdir that `--teacher_dir`
accepts (`config.json` + a checkpoint with `step`, `generator`, `ema_generator` and
`discriminator`, see `ppcd_tf.checkpoints`). `tools/import_biggan.py` is the command.

Inputs: `.pth` files need PyTorch (an optional dependency, imported only to read
them); `.npz` files holding the same keys -> arrays need nothing but NumPy
(`convert_to_npz` writes them on a machine that has torch).

Supported BigGAN-PyTorch settings: `G_shared` (shared class embedding), with or
without `hier`, one singular vector per SN layer (`num_G_SVs = num_D_SVs = 1`),
`D_wide`, `norm_style='bn'`; BN buffers from the plain `ccbn`/`bn` or from `--mybn`
(`X.bn.stored_mean`). Not `--cross_replica` (SyncBN, `X.bn.running_mean`): BigGAN-
PyTorch's SyncBN eval path adds the CBN gain instead of multiplying by it
(x_hat + gain + bias), which no ppcd_tf generator computes, so such state dicts are
refused; `allow_cross_replica=True` (`--allow_cross_replica`) imports them with
standard BatchNorm (x_hat * gain + bias), and the teacher's outputs then differ from
BigGAN-PyTorch's SyncBN eval outputs (the summary says so).

Key mapping (PyTorch key -> our variable; i = block index):

  G  shared.weight                     shared/embeddings          copy
     linear.{weight,bias,u0,sv0}       stem/{kernel,bias,sn_u,sn_sigma}
                                       kernel = W^T, output units permuted (below)
     blocks.i.0.conv{1,2,_sc}.*        block{i}/conv{1,2,_sc}/*   OIHW -> HWIO
     blocks.i.0.bn{1,2}.{gain,bias}.*  block{i}/bn{1,2}/{gain,bias}/*  [out,in] -> [in,out]
     blocks.i.0.bn{1,2}.stored_{mean,var}  block{i}/bn{1,2}/bn/moving_{mean,variance}
     blocks.i.1.{theta,phi,g,o}.*      block{i}/attention/{theta,phi,g,o}/*
     blocks.i.1.gamma                  block{i}/attention/gamma
     output_layer.0.{gain,bias}        final_bn/{gamma,beta}
     output_layer.0.stored_{mean,var}  final_bn/moving_{mean,variance}
     output_layer.2.*                  final_conv/*
  D  blocks.i.0.conv{1,2,_sc}.*        block{i}/conv{1,2,_sc}/*
     blocks.i.1.*                      block{i}/attention/*
     linear.*                          linear/*                   [1,C] -> [C,1]
     embed.{weight,u0,sv0}             embed/{embeddings,sn_u,sn_sigma}  copy

Every SN layer: `weight` -> kernel, `bias` -> bias, `u0` [1, N] -> `sn_u` [N],
`sv0` [1] -> `sn_sigma` []. Both codes index u by the layer's N *outputs* (PyTorch
views the weight as [out, in*kh*kw] and multiplies `u @ W`; ours is the [K, N]
transpose), so u0 is copied unpermuted except for the stem. Both run one power-
iteration step from the stored u in inference without storing it, so the imported
generator computes BigGAN-PyTorch's eval-mode function (with the supported BN styles
above); `sv0` (BigGAN-PyTorch logs it, never divides by it) becomes `sn_sigma`, used
only by `sn_mode="frozen"`.

Stem: PyTorch views the linear output as NCHW [C, 4, 4] (unit c*16 + h*4 + w), ours
as NHWC [4, 4, C] (unit (h*4 + w)*C + c); kernel columns, bias and u0 are permuted
accordingly. Hierarchical z: both split z into equal chunks in order (chunk 0 feeds the
stem) and condition block i on `concat[shared(y), z_chunk_{i+1}]`, so the CBN
projections map without permutation.

Ignored bookkeeping keys (not weights): any key ending in `num_batches_tracked`
(PyTorch BatchNorm / SyncBN counters) or `accumulation_counter` (`--mybn` standing-
statistics counter; a warning is logged if it is non-zero, because the stored
statistics are then sums that BigGAN-PyTorch divides by it only in its standing-stats
mode). Everything else must be consumed: a missing, unexpected or wrongly shaped
tensor is a `BigGANImportError` naming all of them.

Files: an unreadable input (empty, truncated, not a zip archive, not a state dict) is
a `BigGANImportError` naming the file, its size and what it looks like. The workdir
is written whole to a temporary sibling, checked, then moved onto the target
(`checkpoints.replace_dir`), so a failed import, `overwrite` or not, leaves an
earlier teacher there unchanged and no temporary directory behind.

TensorFlow is imported lazily, so reading and converting state dicts
(`load_state_dict`, `convert_to_npz`) works without it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import zipfile
import zlib
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from absl import logging

from ppcd_tf import files

__all__ = [
    "BigGANImportError", "IGNORED_KEY_SUFFIXES", "TORCH_INSTALL_HINT", "StateDict",
    "TensorMapping", "load_state_dict", "canonical_state_dict", "convert_to_npz",
    "infer_architecture", "check_against_config", "generator_mapping",
    "discriminator_mapping", "check_state_dict", "load_into", "import_teacher",
    "IMPORT_SUMMARY_FILE", "CROSS_REPLICA_NOTE", "cross_replica_keys",
]

IGNORED_KEY_SUFFIXES = ("num_batches_tracked", "accumulation_counter")
TORCH_INSTALL_HINT = (
    "pip install torch==2.13.0 (the CPU build is enough), or convert the files to .npz "
    "on a machine that has torch (python -m tools.import_biggan --to_npz --G=G_ema.pth "
    "--D=D.pth) and pass the .npz files instead")
IMPORT_SUMMARY_FILE = "biggan_import.json"
_BOTTOM = 4          # BigGAN's bottom_width: the stem output is 4x4
_MAX_LISTED = 25     # names listed per category in an error message

StateDict = Dict[str, np.ndarray]
StateSource = Union[str, os.PathLike, Mapping[str, Any]]


class BigGANImportError(ValueError):
  """A BigGAN-PyTorch checkpoint cannot be imported; the message names every problem."""


# --------------------------------------------------------------------------- reading
_ZIP_MAGIC = b"PK\x03\x04"   # first bytes of a zip archive (.npz, torch.save >= 1.6)
_ZIP_END = b"PK\x05\x06"     # its end-of-central-directory record, within the last
_ZIP_END_SPAN = 22 + 65535   # 22 bytes + an optional comment of up to 64 KiB
_NPY_MAGIC = b"\x93NUMPY"
# BN buffers of BigGAN-PyTorch --cross_replica (SyncBN2d) and of --mybn (myBN).
_CROSS_REPLICA_KEY = re.compile(r"\.bn\.running_(?:mean|var)$")
_WRAPPED_BN_KEY = re.compile(r"\.bn\.(?:stored|running)_(mean|var)$")
CROSS_REPLICA_NOTE = (
    "BigGAN-PyTorch's SyncBN eval path adds the CBN gain instead of multiplying by it "
    "(x_hat + gain + bias, not x_hat * gain + bias), so the imported teacher's outputs "
    "will not equal BigGAN-PyTorch's SyncBN eval outputs")


def _to_numpy(value, key: str, what: str) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch.Tensor
    value = value.detach().cpu()
    if value.dtype.is_floating_point:
      value = value.float()
    return value.numpy()
  if isinstance(value, (np.ndarray, np.generic, int, float)):
    return np.asarray(value)
  raise BigGANImportError(f"{what}: entry {key!r} is a {type(value).__name__}, not a "
                          "tensor; pass a BigGAN-PyTorch state dict (G.pth, G_ema.pth, "
                          "D.pth), not a training-state file (state_dict.pth).")


_AGAIN = "copy or download it again"
_NPZ_FIX = ("write it with numpy.savez(path, **state_dict) or python -m "
            "tools.import_biggan --to_npz")


def _unreadable(path: str, looks: str, fix: str = _AGAIN) -> BigGANImportError:
  return BigGANImportError(f"{path} {looks}; {fix}.")


def _short(error: BaseException) -> str:
  """`Type: first line` of an exception (torch's messages run over many lines)."""
  text = str(error).strip().splitlines()
  first = text[0] if text else ""
  first = first if len(first) <= 200 else first[:197] + "..."
  return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _file_head(path: str) -> Tuple[int, bytes]:
  """(size, first 8 bytes); raises the one-line error for an empty or cut zip file."""
  try:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      head = f.read(8)
      f.seek(max(0, size - _ZIP_END_SPAN))
      tail = f.read()
  except OSError as e:
    raise BigGANImportError(f"{path} cannot be read ({e.strerror or e}).") from e
  if size == 0:
    raise _unreadable(path, "is empty (0 bytes)")
  if head.startswith(_ZIP_MAGIC) and _ZIP_END not in tail:
    raise _unreadable(path, f"is truncated ({size:,} bytes: a zip archive without its "
                      "end record, as an interrupted download or copy leaves it)")
  return size, head


def _read_npz(path: str) -> Dict[str, np.ndarray]:
  size, head = _file_head(path)
  if head.startswith(_NPY_MAGIC):
    raise _unreadable(path, f"is a single .npy array ({size:,} bytes), not an .npz "
                      "archive of the state dict's tensors", _NPZ_FIX)
  if not head.startswith((_ZIP_MAGIC, _ZIP_END)):  # (an empty archive is its end record)
    raise _unreadable(path, f"is not a zip archive, so not an .npz file ({size:,} bytes "
                      f"starting with {head!r})", _NPZ_FIX)
  try:
    with zipfile.ZipFile(path) as archive:
      names = archive.namelist()
    if any(n.endswith("data.pkl") for n in names):
      raise _unreadable(path, "is a PyTorch checkpoint (torch.save's zip format), not "
                        "an .npz file", "pass it under a .pth name (reading it needs "
                        "torch) or convert it with --to_npz")
    with np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  except BigGANImportError:
    raise
  except (zipfile.BadZipFile, EOFError, zlib.error) as e:
    raise _unreadable(path, f"is a truncated or damaged zip archive ({size:,} bytes; "
                      f"{_short(e)})") from e
  except Exception as e:  # numpy raises ValueError, OSError, KeyError, ...
    raise _unreadable(path, f"cannot be read as an .npz file ({size:,} bytes; "
                      f"{_short(e)})", _NPZ_FIX) from e


def _read_pth(path: str) -> Mapping[str, Any]:
  size, _ = _file_head(path)
  try:
    import torch  # optional dependency, only for .pth files
  except ImportError:
    raise BigGANImportError(
        f"reading {path} needs PyTorch, which is not installed: {TORCH_INSTALL_HINT}."
    ) from None
  try:
    raw = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch.load raises many exception types
    # EOFError: a legacy (pickle) format file that ends early.
    looks = "is truncated or not" if isinstance(e, EOFError) else "is not"
    raise _unreadable(path, f"{looks} a PyTorch checkpoint ({size:,} bytes; torch.load: "
                      f"{_short(e)})", "pass a state dict saved with torch.save("
                      "model.state_dict(), path) (G.pth, G_ema.pth, D.pth)") from e
  if not isinstance(raw, Mapping):
    raise BigGANImportError(f"{path} holds a {type(raw).__name__}, not a state dict; "
                            "save it with torch.save(model.state_dict(), path).")
  return raw


def _read_source(path: StateSource) -> Mapping[str, Any]:
  """The raw key -> tensor mapping of a file (keys as saved) or of a mapping."""
  if isinstance(path, Mapping):
    return path
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise BigGANImportError(f"{path} does not exist or is not a file.")
  lower = path.lower()
  if lower.endswith(".npz"):
    return _read_npz(path)
  if lower.endswith((".pth", ".pt")):
    return _read_pth(path)
  raise BigGANImportError(f"{path}: unknown file type; pass a BigGAN-PyTorch .pth "
                          "state dict or an .npz file with the same keys.")


def cross_replica_keys(state: Mapping[str, Any]) -> List[str]:
  """The keys of `state` that are BigGAN-PyTorch `--cross_replica` (SyncBN) buffers."""
  return sorted(str(k) for k in state if _CROSS_REPLICA_KEY.search(str(k)))


def canonical_state_dict(state: Mapping[str, Any], what: str = "state dict",
                         allow_cross_replica: bool = False) -> StateDict:
  """Keys -> float/int NumPy arrays with BigGAN-PyTorch's plain key names.

  Strips a `module.` prefix shared by every key (a DataParallel-wrapped save), turns
  `X.bn.stored_mean` (`--mybn`) into `X.stored_mean` (same for var), converts torch
  tensors to arrays. `X.bn.running_mean` / `running_var` (`--cross_replica`, SyncBN)
  are refused unless `allow_cross_replica`, and then renamed the same way: see
  `CROSS_REPLICA_NOTE` for why no exact import of them exists.

  Raises:
    BigGANImportError: the mapping is empty, holds SyncBN buffers (without
      `allow_cross_replica`), two keys collapse to the same name, or a value is no
      tensor.
  """
  keys = list(state.keys())
  if not keys:
    raise BigGANImportError(f"{what} holds no tensors.")
  synced = cross_replica_keys(state)
  if synced and not allow_cross_replica:
    raise BigGANImportError(
        f"{what} comes from BigGAN-PyTorch --cross_replica "
        f"({_listing('SyncBN buffer(s)', synced)}). No exact import exists: "
        f"{CROSS_REPLICA_NOTE}. Pass --allow_cross_replica "
        "(allow_cross_replica=True) to import it with standard BatchNorm anyway.")
  prefix = "module."
  strip = all(str(k).startswith(prefix) for k in keys)
  out: StateDict = {}
  for key in keys:
    name = str(key)[len(prefix):] if strip else str(key)
    name = _WRAPPED_BN_KEY.sub(r".stored_\1", name)
    if name in out:
      raise BigGANImportError(f"{what}: keys {key!r} and another one both map to "
                              f"{name!r}; the state dict mixes BatchNorm styles.")
    out[name] = _to_numpy(state[key], str(key), what)
  return out


def load_state_dict(path: StateSource, what: Optional[str] = None,
                    allow_cross_replica: bool = False) -> StateDict:
  """Reads a BigGAN-PyTorch state dict from `.pth` (needs torch) or `.npz`.

  Args:
    path: a `.pth` / `.pt` file (`torch.save(G.state_dict())`), an `.npz` file with the
      same keys, or an already loaded mapping of key -> tensor/array.
    what: name used in error messages (default: the path).
    allow_cross_replica: accept `--cross_replica` SyncBN buffers (see
      `canonical_state_dict`).

  Returns:
    key -> NumPy array (see `canonical_state_dict`).
  Raises:
    BigGANImportError: the file is missing, of an unknown kind, unreadable (empty,
      truncated, not an archive, not a state dict: the message names the file and
      what it looks like), or torch is needed but not installed (the message says
      how to install it or convert to .npz).
  """
  if what is None:
    what = "state dict" if isinstance(path, Mapping) else os.fspath(path)
  return canonical_state_dict(_read_source(path), what, allow_cross_replica)


def convert_to_npz(pth_path: str, out_dir: Optional[str] = None) -> str:
  """Writes `<name>.npz` (the same keys, as NumPy arrays) next to `pth_path` or in
  `out_dir`.

  Needs torch (to read the .pth); the .npz is then importable without torch. Keys
  are kept as saved, so the import still sees `--cross_replica` buffers.

  Returns:
    The path written.
  """
  raw = _read_source(pth_path)
  if not raw:
    raise BigGANImportError(f"{pth_path} holds no tensors.")
  state = {str(k): _to_numpy(v, str(k), pth_path) for k, v in raw.items()}
  base = os.path.splitext(os.path.basename(pth_path))[0] + ".npz"
  out_dir = out_dir or os.path.dirname(os.path.abspath(pth_path))
  return files.write_atomically(os.path.join(out_dir, base),
                                lambda tmp: np.savez(tmp, **state))


def _is_ignored(key: str) -> bool:
  return key.endswith(IGNORED_KEY_SUFFIXES)


def _warn_standing_stats(state: StateDict, what: str) -> None:
  for key, value in state.items():
    if key.endswith("accumulation_counter") and np.any(np.asarray(value) != 0):
      logging.warning(
          "%s: %s = %s is non-zero: the BatchNorm statistics beside it may be sums of "
          "standing statistics (BigGAN-PyTorch --accumulate_stats); they are imported "
          "as they are.", what, key, np.asarray(value).ravel()[:1])


# ----------------------------------------------------------------- architecture checks
def _block_indices(state: StateDict, suffix: str) -> List[int]:
  pattern = re.compile(r"^blocks\.(\d+)\." + re.escape(suffix) + "$")
  return sorted(int(m.group(1)) for k in state for m in [pattern.match(k)] if m)


def _shape(state: StateDict, key: str) -> Optional[Tuple[int, ...]]:
  return tuple(state[key].shape) if key in state else None


def infer_architecture(g_state: Optional[StateDict] = None,
                       d_state: Optional[StateDict] = None) -> Dict[str, Any]:
  """Architecture facts read off the tensor shapes (missing tensors are skipped).

  Returns a dict with any of: resolution, num_classes, image_channels, z_dim,
  shared_dim, hierarchical_z, g_widths (stem + block outputs), g_attention_blocks,
  d_image_channels, d_num_classes, d_widths, d_shortcut (per block: has conv_sc),
  d_attention_blocks. G facts: number of blocks -> resolution = 4 * 2**blocks, stem
  width = linear outputs / 16, shared embedding -> classes and shared_dim, CBN input
  width - shared_dim = z chunk (> 0: hierarchical, z_dim = chunk * (blocks + 1)).
  """
  facts: Dict[str, Any] = {}
  if g_state is not None:
    s = g_state
    blocks = _block_indices(s, "0.conv1.weight")
    if blocks:
      facts["resolution"] = _BOTTOM * 2 ** len(blocks)
    shared = _shape(s, "shared.weight")
    if shared:
      facts["num_classes"], facts["shared_dim"] = shared
    lin = _shape(s, "linear.weight")
    widths = [lin[0] // (_BOTTOM * _BOTTOM) if lin and lin[0] % (_BOTTOM * _BOTTOM) == 0
              else None]
    widths += [_shape(s, f"blocks.{i}.0.conv1.weight")[0] for i in blocks]
    facts["g_widths"] = tuple(widths)
    cond = _shape(s, "blocks.0.0.bn1.gain.weight")
    if lin and cond and shared:
      chunk = cond[1] - shared[1]
      facts["hierarchical_z"] = chunk > 0
      facts["z_dim"] = lin[1] * (len(blocks) + 1) if chunk > 0 else lin[1]
      if chunk > 0 and chunk != lin[1]:
        facts["z_chunk_conflict"] = (lin[1], chunk)
    out = _shape(s, "output_layer.2.weight")
    if out:
      facts["image_channels"] = out[0]
    facts["g_attention_blocks"] = tuple(_block_indices(s, "1.gamma"))
  if d_state is not None:
    s = d_state
    blocks = _block_indices(s, "0.conv1.weight")
    facts["d_widths"] = tuple(_shape(s, f"blocks.{i}.0.conv1.weight")[0] for i in blocks)
    if blocks:
      facts["d_image_channels"] = _shape(s, "blocks.0.0.conv1.weight")[1]
    facts["d_shortcut"] = tuple(f"blocks.{i}.0.conv_sc.weight" in s for i in blocks)
    facts["d_attention_blocks"] = tuple(_block_indices(s, "1.gamma"))
    embed = _shape(s, "embed.weight")
    if embed:
      facts["d_num_classes"] = embed[0]
  return facts


def check_against_config(facts: Dict[str, Any], model_cfg) -> List[str]:
  """Differences between inferred `facts` and a `ModelConfig` (empty list = match).

  g_ch / d_ch are inferred as stem width / g_channel_mults[0] and first D width /
  d_channel_mults[0]: multipliers from the config, or BigGAN's for the checkpoint's
  resolution (G: from its number of blocks) or number of D blocks if those differ.
  """
  from ppcd_tf import config as config_lib
  m = model_cfg.resolved()
  diffs: List[str] = []

  def differ(name, found, expected, hint=""):
    if found is not None and found != expected:
      diffs.append(f"{name}: {found!r} in the checkpoint vs {expected!r} in the config"
                   + (f" ({hint})" if hint else ""))

  res = facts.get("resolution")
  differ("resolution", res, m.resolution, "from the number of G blocks")
  for key, name in (("num_classes", "num_classes (G shared embedding)"),
                    ("d_num_classes", "num_classes (D embed)")):
    differ(name, facts.get(key), m.num_classes)
  differ("image_channels", facts.get("image_channels"), m.image_channels)
  differ("image_channels (D input)", facts.get("d_image_channels"), m.image_channels)
  differ("shared_dim", facts.get("shared_dim"), m.shared_dim)
  differ("hierarchical_z", facts.get("hierarchical_z"), m.hierarchical_z)
  differ("z_dim", facts.get("z_dim"), m.z_dim,
         "linear input width x (blocks + 1) with hierarchical z")
  if "z_chunk_conflict" in facts:
    lin, chunk = facts["z_chunk_conflict"]
    diffs.append(f"z chunk: the stem takes {lin} z entries but the CBN layers {chunk}; "
                 "BigGAN-PyTorch splits z into equal chunks")

  g_widths = facts.get("g_widths")
  if g_widths:
    mults = m.g_channel_mults
    if res and res != m.resolution and res in config_lib.ARCHITECTURES:
      mults = config_lib.ARCHITECTURES[res].g_channel_mults
    expected = tuple(m.g_ch * k for k in m.g_channel_mults)
    if tuple(g_widths) != expected:
      g_ch = (g_widths[0] // mults[0]) if g_widths[0] and len(mults) else None
      diffs.append(
          f"G widths (stem, block outputs): {tuple(g_widths)} in the checkpoint vs "
          f"{expected} in the config (g_ch={m.g_ch}, g_channel_mults="
          f"{','.join(map(str, m.g_channel_mults))}); the stem suggests g_ch={g_ch}")
  if "g_attention_blocks" in facts and g_widths:
    found = tuple(_BOTTOM * 2 ** (i + 1) for i in facts["g_attention_blocks"])
    differ("g_attention_res", found, tuple(sorted(m.g_attention_res)),
           "resolutions of the G blocks followed by attention")

  d_widths = facts.get("d_widths")
  if d_widths is not None:
    expected = tuple(m.d_ch * k for k in m.d_channel_mults)
    if tuple(d_widths) != expected:
      # D block 0 outputs d_ch * d_channel_mults[0] (BigGAN-PyTorch's D_arch), with
      # the multipliers of the layout that has the checkpoint's number of D blocks.
      mults, layout = m.d_channel_mults, ""
      fits = [(r, a.d_channel_mults) for r, a in config_lib.ARCHITECTURES.items()
              if len(a.d_channel_mults) == len(d_widths)]
      if len(d_widths) != len(mults) and len(fits) == 1:
        (r, mults), = fits
        layout = (f" ({len(d_widths)} D blocks: BigGAN's {r} px layout, "
                  f"d_channel_mults={','.join(map(str, mults))})")
      d_ch = d_widths[0] // mults[0] if d_widths and mults else None
      diffs.append(
          f"D widths: {tuple(d_widths)} in the checkpoint vs {expected} in the config "
          f"(d_ch={m.d_ch}, d_channel_mults={','.join(map(str, m.d_channel_mults))}); "
          f"the first block suggests d_ch={d_ch}{layout}")
    else:
      ins = (m.image_channels,) + expected[:-1]
      want_sc = tuple(i != o or bool(dn) for i, o, dn in zip(ins, expected, m.d_downsample))
      if tuple(facts.get("d_shortcut", want_sc)) != want_sc:
        diffs.append(
            f"D shortcut convs (per block) {facts['d_shortcut']} in the checkpoint vs "
            f"{want_sc} for d_downsample={','.join(str(int(d)) for d in m.d_downsample)}"
            " (a block has conv_sc when it downsamples or changes width)")
      size, res_d = m.resolution, []
      for down in m.d_downsample:
        size = size // 2 if down else size
        res_d.append(size)
      found = tuple(sorted({res_d[i] for i in facts.get("d_attention_blocks", ())
                            if i < len(res_d)}))
      want_blocks = tuple(i for i, r in enumerate(res_d) if r in m.d_attention_res)
      if tuple(facts.get("d_attention_blocks", want_blocks)) != want_blocks:
        diffs.append(
            f"D attention after blocks {facts['d_attention_blocks']} (resolutions "
            f"{found}) in the checkpoint vs blocks {want_blocks} for d_attention_res="
            f"{','.join(map(str, m.d_attention_res))}")
  return diffs


# ---------------------------------------------------------------------- tensor mapping
@dataclasses.dataclass(frozen=True)
class TensorMapping:
  """One source tensor -> one target variable.

  layout: "copy" (same shape), "linear" ([out, in] -> [in, out]), "conv"
  ([out, in, kh, kw] -> [kh, kw, in, out]), "u" ([1, N] -> [N]), "sv" ([1] -> []).
  perm: optional index on the last axis after the layout change (the stem's
  NCHW -> NHWC output-unit order): `ours[..., j] = theirs[..., perm[j]]`.
  """
  source: str
  target: Any  # tf.Variable
  layout: str
  perm: Optional[np.ndarray] = None

  @property
  def source_shape(self) -> Tuple[int, ...]:
    t = tuple(int(d) for d in self.target.shape)
    if self.layout == "copy":
      return t
    if self.layout == "linear":
      return (t[1], t[0])
    if self.layout == "conv":
      return (t[3], t[2], t[0], t[1])
    if self.layout == "u":
      return (1, t[0])
    if self.layout == "sv":
      return (1,)
    raise ValueError(f"unknown layout {self.layout!r}")

  def convert(self, value: np.ndarray) -> np.ndarray:
    a = np.asarray(value, dtype=np.float32)
    if self.layout == "linear":
      a = a.T
    elif self.layout == "conv":
      a = a.transpose(2, 3, 1, 0)
    elif self.layout == "u":
      a = a.reshape(-1)
    elif self.layout == "sv":
      a = a.reshape(())
    if self.perm is not None:
      a = a[..., self.perm]
    return np.array(a, dtype=np.float32, order="C")  # (ascontiguousarray makes 0-d 1-d)

  @property
  def target_name(self) -> str:
    return self.target.name.split(":")[0]


def _stem_permutation(channels: int) -> np.ndarray:
  """perm[j] = PyTorch unit (c*16 + h*4 + w) of our NHWC unit j = (h*4 + w)*C + c."""
  j = np.arange(_BOTTOM * _BOTTOM * channels)
  hw, c = j // channels, j % channels
  return c * (_BOTTOM * _BOTTOM) + hw


def _sn_layer(prefix: str, layer, layout: str,
              perm: Optional[np.ndarray] = None) -> List[TensorMapping]:
  weight = getattr(layer, "kernel", None)
  if weight is None:
    weight = layer.embeddings
  out = [TensorMapping(f"{prefix}.weight", weight, layout, perm)]
  if getattr(layer, "bias", None) is not None:
    out.append(TensorMapping(f"{prefix}.bias", layer.bias, "copy", perm))
  out += [TensorMapping(f"{prefix}.u0", layer.sn_u, "u", perm),
          TensorMapping(f"{prefix}.sv0", layer.sn_sigma, "sv")]
  return out


def _attention(prefix: str, attention) -> List[TensorMapping]:
  out = [TensorMapping(f"{prefix}.gamma", attention.gamma, "copy")]
  for name in ("theta", "phi", "g", "o"):
    out += _sn_layer(f"{prefix}.{name}", getattr(attention, name), "conv")
  return out


def _bn_stats(prefix: str, bn) -> List[TensorMapping]:
  return [TensorMapping(f"{prefix}.stored_mean", bn.moving_mean, "copy"),
          TensorMapping(f"{prefix}.stored_var", bn.moving_variance, "copy")]


def generator_mapping(generator) -> List[TensorMapping]:
  """Every variable of an unmasked `Generator` with its BigGAN-PyTorch source key."""
  if generator.masked:
    raise BigGANImportError("BigGAN-PyTorch weights import into an unmasked generator "
                            "(the teacher); build it with masked=False.")
  g = generator
  out = [TensorMapping("shared.weight", g.shared.embeddings, "copy")]
  out += _sn_layer("linear", g.stem, "linear", _stem_permutation(g.channels.stem))
  for i, block in enumerate(g.blocks):
    p = f"blocks.{i}.0"
    for name in ("bn1", "bn2"):
      cbn = getattr(block, name)
      out += _sn_layer(f"{p}.{name}.gain", cbn.gain_linear, "linear")
      out += _sn_layer(f"{p}.{name}.bias", cbn.bias_linear, "linear")
      out += _bn_stats(f"{p}.{name}", cbn.bn)
    for name in ("conv1", "conv2", "conv_sc"):
      out += _sn_layer(f"{p}.{name}", getattr(block, name), "conv")
    if block.attention is not None:
      out += _attention(f"blocks.{i}.1", block.attention)
  out += [TensorMapping("output_layer.0.gain", g.final_bn.gamma, "copy"),
          TensorMapping("output_layer.0.bias", g.final_bn.beta, "copy")]
  out += _bn_stats("output_layer.0", g.final_bn)
  out += _sn_layer("output_layer.2", g.final_conv, "conv")
  return out


def discriminator_mapping(discriminator) -> List[TensorMapping]:
  """Every variable of a `Discriminator` with its BigGAN-PyTorch source key."""
  d = discriminator
  out: List[TensorMapping] = []
  for i, block in enumerate(d.blocks):
    p = f"blocks.{i}.0"
    for name in ("conv1", "conv2", "conv_sc"):
      layer = getattr(block, name)
      if layer is not None:
        out += _sn_layer(f"{p}.{name}", layer, "conv")
    if block.attention is not None:
      out += _attention(f"blocks.{i}.1", block.attention)
  out += _sn_layer("linear", d.linear, "linear")
  out += _sn_layer("embed", d.embed, "copy")
  return out


def _listing(label: str, items: Sequence[str]) -> str:
  shown = ", ".join(items[:_MAX_LISTED])
  more = f", ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
  return f"{len(items)} {label}: {shown}{more}"


def check_state_dict(state: StateDict, mapping: Sequence[TensorMapping], model,
                     what: str) -> List[str]:
  """Checks a state dict against a mapping and the mapping against the model.

  Returns:
    The ignored bookkeeping keys found in `state`.
  Raises:
    BigGANImportError: listing every missing, unexpected and wrongly shaped source
      tensor, and every model variable the mapping does not fill.
  """
  expected = {m.source: m for m in mapping}
  ignored = sorted(k for k in state if _is_ignored(k) and k not in expected)
  missing = sorted(k for k in expected if k not in state)
  extra = sorted(k for k in state if k not in expected and not _is_ignored(k))
  wrong = [f"{k} {tuple(state[k].shape)} (expected {expected[k].source_shape})"
           for k in sorted(expected) if k in state
           and tuple(state[k].shape) != expected[k].source_shape]
  filled = [id(m.target) for m in mapping]
  unfilled = [v.name for v in model.variables if id(v) not in set(filled)]
  doubled = sorted({m.target_name for m in mapping if filled.count(id(m.target)) > 1})
  problems = []
  if missing:
    problems.append(_listing("missing tensor(s)", missing))
  if extra:
    problems.append(_listing("unexpected tensor(s)", extra))
  if wrong:
    problems.append(_listing("tensor(s) of the wrong shape", wrong))
  if unfilled:
    problems.append(_listing("model variable(s) with no source", unfilled))
  if doubled:
    problems.append(_listing("model variable(s) with several sources", doubled))
  if problems:
    raise BigGANImportError(
        f"{what} does not fit the {model.name} built from the config: "
        + "; ".join(problems) + ". Check that the flagfile describes the checkpoint's "
        "architecture (see ppcd_tf/biggan_import.py for the supported BigGAN-PyTorch "
        "settings).")
  return ignored


def load_into(model, state: StateDict, mapping: Sequence[TensorMapping],
              what: str) -> Dict[str, Any]:
  """Strictly checks `state` (see `check_state_dict`) and assigns every variable.

  Returns:
    {"tensors": consumed count, "ignored": bookkeeping keys, "params": trainable
    parameters filled}.
  """
  ignored = check_state_dict(state, mapping, model, what)
  _warn_standing_stats(state, what)
  for m in mapping:
    value = state[m.source]
    if not np.all(np.isfinite(value)):
      raise BigGANImportError(f"{what}: {m.source} holds NaN or inf values.")
    m.target.assign(m.convert(value))
  params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
  return {"tensors": len(mapping), "ignored": ignored, "params": params}


# ---------------------------------------------------------------------- whole import
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
          os.path.basename(checkpoints.checkpoint_dir(out_dir)), IMPORT_SUMMARY_FILE}
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


def import_teacher(out_dir: str, cfg, g: StateSource, d: StateSource,
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
    d: the discriminator weights.
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
  # TensorFlow and the models are imported here, not at module level, so that
  # reading / converting state dicts does not need TensorFlow.
  import tensorflow as tf
  from ppcd_tf import checkpoints
  from ppcd_tf.discriminator import build_discriminator
  from ppcd_tf.generator import build_generator

  cfg = cfg.replace(run=dict(mode="teacher", workdir=out_dir)).validate()
  model_cfg = cfg.model.resolved()
  _check_out_dir(out_dir, overwrite)
  sources = {"generator": g, "ema_generator": g if g_ema is None else g_ema,
             "discriminator": d}
  labels = {name: name if isinstance(src, Mapping) else f"{name} ({os.fspath(src)})"
            for name, src in sources.items()}
  # Without g_ema, one set of generator weights fills both generators.
  read = ("generator", "discriminator") + (() if g_ema is None else ("ema_generator",))
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
                                           init="glorot"),
          "discriminator": build_discriminator(model_cfg, init="glorot")}
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

  final = os.path.abspath(out_dir)
  parent = os.path.dirname(final)
  os.makedirs(parent, exist_ok=True)
  tmp = f"{final}.import-{os.getpid()}"  # a sibling: the final move is a rename
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    checkpoints.write_config(tmp, cfg)
    step_var = tf.Variable(int(step), dtype=tf.int64, trainable=False, name="step")
    ckpt = tf.train.Checkpoint(step=step_var, **nets)
    prefix = tf.train.CheckpointManager(
        ckpt, checkpoints.checkpoint_dir(tmp), max_to_keep=1).save(
            checkpoint_number=int(step))
    summary: Dict[str, Any] = {
        "checkpoint": os.path.join(checkpoints.checkpoint_dir(out_dir),
                                   os.path.basename(prefix)),
        "step": int(step), "workdir": out_dir,
        "g_params": report["ema_generator"]["params"],
        "d_params": report["discriminator"]["params"],
        "separate_ema": g_ema is not None, "cross_replica_bn": synced, **report}
    if synced:
      summary["warning"] = (f"imported BigGAN-PyTorch --cross_replica weights with "
                            f"standard BatchNorm: {CROSS_REPLICA_NOTE}")
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
  g2 = build_generator(m, name="teacher_generator", init="glorot")
  d2 = build_discriminator(m, init="glorot")
  checkpoints.restore_objects_from_workdir(workdir, ema_generator=g2, discriminator=d2)
  z = tf.random.stateless_normal([2, m.z_dim], seed=[3, 4])
  y = tf.constant([0, m.num_classes - 1], tf.int32)
  images = nets["ema_generator"]((z, y), training=False)
  diff = _max_abs_diff(g2((z, y), training=False), images)
  diff = max(diff, _max_abs_diff(d2((images, y), training=False),
                                 nets["discriminator"]((images, y), training=False)))
  if not math.isfinite(diff) or diff > 1e-6:
    raise BigGANImportError(f"the written workdir {what} does not reproduce the "
                            f"imported networks (max abs diff {diff:g}).")
  return diff
