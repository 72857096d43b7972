"""Keeps TensorFlow's start-up notices off a CPU user's terminal.

TF 2.21 prints, on every start on a machine without a GPU:
  * `oneDNN custom operations are on ...` and `Could not find cuda drivers ...` (I0000),
    logged by absl from shared-library static initialisers while `import tensorflow`
    loads its libraries, before TensorFlow reads TF_CPP_MIN_LOG_LEVEL, so that variable
    cannot hide them (checked: level 3 still prints them);
  * `failed call to cuInit: ... UNKNOWN ERROR (303)` (E0000) when the devices are first
    listed: no CUDA driver is installed. TF_CPP_MIN_LOG_LEVEL=3 hides it, but also every
    real C++ error.

`install()` (called by `ppcd_tf/__init__.py`) wraps the first `import tensorflow`: file
descriptor 2 goes to a temporary file while TensorFlow loads and lists its physical devices,
then every captured line except the known notices above is written back to stderr, in
order. Nothing else is filtered, and nothing after start-up.

The notices come back when the user asks: TF_CPP_MIN_LOG_LEVEL set in the environment, or
absl's `--verbosity`/`-v` at 1 or more on the command line.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile
from typing import Iterator, Sequence

__all__ = ["NOTICES", "install", "wants_startup_notices"]

# Substrings of the start-up lines that are dropped; anything else is kept.
NOTICES = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "] oneDNN custom operations are on.",
    "] Could not find cuda drivers on your machine, GPU will not be used.",
    # 303: no driver installed; 100: a driver but no GPU. Other cuInit codes are real errors.
    "Failed call to cuInit: UNKNOWN ERROR (303)",
    "Failed call to cuInit: CUDA_ERROR_NO_DEVICE",
)


def wants_startup_notices(argv: Sequence[str], environ=os.environ) -> bool:
  """True when the user asked for TensorFlow's start-up notices.

  Args:
    argv: the command line (sys.argv); absl's `--verbosity=N`, `--verbosity N`, `-v N`,
      `-v=N` or `--v=N` with N >= 1 asks for them.
    environ: the environment; any TF_CPP_MIN_LOG_LEVEL set by the user asks for them (the
      user then controls TensorFlow's C++ logging themselves).
  """
  if "TF_CPP_MIN_LOG_LEVEL" in environ:
    return True
  args = list(argv[1:])
  for i, arg in enumerate(args):
    name, eq, value = arg.partition("=")
    if name not in ("--verbosity", "-v", "--v"):
      continue
    if not eq:
      value = args[i + 1] if i + 1 < len(args) else ""
    try:
      if int(value) >= 1:
        return True
    except ValueError:
      return True  # Not a number: let absl report it, with the notices shown.
  return False


@contextlib.contextmanager
def _drop_notices_from_stderr() -> Iterator[None]:
  """Captures fd 2 in a temporary file; writes back all lines but `NOTICES` on exit."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      lines = capture.read().decode("utf-8", "replace").splitlines(keepends=True)
      kept = "".join(l for l in lines if not any(n in l for n in NOTICES))
      if kept:
        os.write(2, kept.encode("utf-8", "replace"))


class _QuietLoader(importlib.abc.Loader):
  """Runs TensorFlow's own loader, and its first device listing, with notices dropped."""

  def __init__(self, loader):
    self._loader = loader

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module):
    with _drop_notices_from_stderr():
      self._loader.exec_module(module)
      module.config.list_physical_devices()  # cuInit happens here, once per process.
    module.__loader__ = module.__spec__.loader = self._loader  # no trace left behind

  def __getattr__(self, name):
    return getattr(self._loader, name)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
  """Finds `tensorflow` through the other finders and wraps its loader, once."""

  def find_spec(self, name, path, target=None):
    if name != "tensorflow":
      return None
    sys.meta_path.remove(self)
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.loader is not None:
      spec.loader = _QuietLoader(spec.loader)
    return spec


def install() -> None:
  """Sets the C++ log default and wraps the first `import tensorflow` (see module doc).

  Does nothing when TensorFlow is already imported or the user asked for the notices.
  """
  if "tensorflow" in sys.modules or wants_startup_notices(sys.argv):
    return
  # INFO and WARNING off (as before); C++ errors stay visible.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if not any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _QuietTensorFlowFinder())
