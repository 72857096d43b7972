"""Reading BigGAN-PyTorch state dicts: `.pth` (needs torch) or `.npz` files, or mappings.

Unreadable files are one-line `BigGANImportError`s naming the file, its size and what
it looks like; `canonical_state_dict` normalises key names (`module.`, `--mybn`,
`--cross_replica`) and converts tensors to NumPy; `convert_to_npz` writes a file that
needs no torch to import.
"""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
from absl import logging

from ppcd_tf import files
from ppcd_tf.biggan_import.common import (BigGANImportError, StateDict, StateSource,
                                          _listing)

IGNORED_KEY_SUFFIXES = ("num_batches_tracked", "accumulation_counter")
TORCH_INSTALL_HINT = (
    "pip install torch==2.13.0 (the CPU build is enough), or convert the files to .npz "
    "on a machine that has torch (python -m tools.import_biggan --to_npz --G=G_ema.pth "
    "--D=D.pth) and pass the .npz files instead")


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
  if lower.endswith((".pth", ".pt", ".bin")):  # .bin: pytorch_model.bin (torch.save)
    return _read_pth(path)
  raise BigGANImportError(f"{path}: unknown file type; pass a PyTorch state dict (.pth, "
                          ".pt, .bin) or an .npz file with the same keys.")


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
