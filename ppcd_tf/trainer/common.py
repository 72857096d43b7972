"""What the Trainer and its parts share: RNG salts, the sample seed, the crash-test
hooks, the divergence error and the host read of the logs (`ppcd_tf.train_lib`
re-exports the public ones)."""

from __future__ import annotations

import os
import time
from typing import Dict

import numpy as np
import tensorflow as tf
from absl import logging

SAMPLE_SEED = 1234
_Z_SALT, _Y_SALT = 0x5EED, 0xC1A55
# Latent stream of the gradient-norm diagnostics, apart from every training step's.
_GRAD_NORM_SALT = 1 << 40
TEST_PUBLISH_DELAY_ENV = "PPCD_TF_TEST_PUBLISH_DELAY"
TEST_PRUNE_DELAY_ENV = "PPCD_TF_TEST_PRUNE_DELAY"


class TrainingDivergedError(RuntimeError):
  """A loss became NaN or Inf; the message names the term, the step and the checkpoint."""


def _test_delay_hook(env: str, step: int):
  """A crash-test hook (`ppcd_tf.train_lib` docstring): `pause(what)` sleeps when
  `env` is set for `step` (or for every step); None when it is not."""
  value = os.environ.get(env, "").strip()
  if not value:
    return None
  at, _, seconds = value.rpartition(":")
  if at and int(at) != step:
    return None
  delay = float(seconds)

  def pause(what: str) -> None:
    logging.warning("%s: %s; sleeping %.1fs.", env, what, delay)
    time.sleep(delay)
  return pause


def _publish_delay_hook(step: int):
  """The hook `checkpoints.save_checkpoint` calls before publishing, or None."""
  pause = _test_delay_hook(TEST_PUBLISH_DELAY_ENV, step)
  return pause and (lambda prefix: pause(f"{prefix} written and verified, not published"))


def _sample_rows(num_classes: int, max_rows: int = 10) -> np.ndarray:
  if num_classes <= max_rows:
    return np.arange(num_classes, dtype=np.int32)
  return np.linspace(0, num_classes - 1, max_rows).round().astype(np.int32)


def read_logs(logs: Dict[str, tf.Tensor]) -> Dict[str, float]:
  """Reads a step's losses on the host (one device sync)."""
  return {k: float(v) for k, v in logs.items()}
