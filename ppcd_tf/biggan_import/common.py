"""What the parts of the importer share: the error type, type aliases and constants.

`BigGANImportError` is raised for every problem; `_listing` formats the names of
one category of problems for its message.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Sequence, Union

import numpy as np

_BOTTOM = 4          # BigGAN's bottom_width: the stem output is 4x4
_MAX_LISTED = 25     # names listed per category in an error message

StateDict = Dict[str, np.ndarray]
StateSource = Union[str, os.PathLike, Mapping[str, Any]]


class BigGANImportError(ValueError):
  """A BigGAN-PyTorch checkpoint cannot be imported; the message names every problem."""


def _listing(label: str, items: Sequence[str]) -> str:
  shown = ", ".join(items[:_MAX_LISTED])
  more = f", ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
  return f"{len(items)} {label}: {shown}{more}"
