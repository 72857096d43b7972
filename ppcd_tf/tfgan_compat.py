"""Imports tensorflow-gan's losses and eval modules on TF 2.21.

`import tensorflow_gan` fails on TF 2.21 (its package `__init__` imports Estimator
code: `module 'tensorflow' has no attribute 'estimator'`). Its `python/losses` and
`python/eval` modules do not need that code, so we register stand-in package modules
for `tensorflow_gan` and `tensorflow_gan.python` (with the real `__path__`, so
submodules resolve to the installed files) and import only those submodules.
See ../shared/design/TOOLCHAIN.md. Everything else in ppcd_tf imports TF-GAN
through this module: `from ppcd_tf.tfgan_compat import tfgan_losses, tfgan_eval`.
"""

import importlib
import importlib.util
import os
import sys
import types

__all__ = ["tfgan_losses", "tfgan_eval"]


def _stand_in_packages() -> None:
  if "tensorflow_gan" in sys.modules and hasattr(sys.modules["tensorflow_gan"], "losses"):
    return  # the real package imported fine (older TF): nothing to do
  spec = importlib.util.find_spec("tensorflow_gan")
  if spec is None or not spec.submodule_search_locations:
    raise ImportError("tensorflow-gan is not installed; run `make venv` "
                      "(requirements.txt pins tensorflow-gan==2.1.0).")
  root = list(spec.submodule_search_locations)[0]
  for name, path in (("tensorflow_gan", root),
                     ("tensorflow_gan.python", os.path.join(root, "python"))):
    if name not in sys.modules:
      module = types.ModuleType(name)
      module.__path__ = [path]  # type: ignore[attr-defined]
      module.__package__ = name
      sys.modules[name] = module


_stand_in_packages()
tfgan_losses = importlib.import_module("tensorflow_gan.python.losses.losses_impl")
tfgan_eval = importlib.import_module("tensorflow_gan.python.eval.classifier_metrics")
