"""Atomic file writes: readers see the old file or the complete new one, never a part.

Kept free of TensorFlow so light modules (images) can use it.
"""

from __future__ import annotations

import json
import os
from typing import Callable


def write_json_atomic(path: str, obj) -> str:
  """Writes JSON to a temp file in the same directory, then renames it into place.

  Readers see the old file or the complete new one, never a partial one; if
  writing fails, the old file is kept and the temp file removed.
  """
  def write(tmp: str) -> None:
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=True, default=str)
      f.write("\n")
      f.flush()
      os.fsync(f.fileno())
  return write_atomically(path, write)


def write_atomically(path: str, write: Callable[[str], None]) -> str:
  """`write(tmp)` to a per-process temp file next to `path` (same extension, so
  writers that pick the format by name work), then renames it onto `path`; on
  failure the old file stays and the temp file is removed."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}{os.path.splitext(path)[1]}"
  try:
    write(tmp)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def write_text_atomic(path: str, text: str) -> str:
  """Writes `text` to `path` with `write_atomically`."""
  def write(tmp: str) -> None:
    with open(tmp, "w") as f:
      f.write(text)
  return write_atomically(path, write)
