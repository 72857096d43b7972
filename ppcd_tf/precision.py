"""Mixed precision for training: the Keras policy, where float32 is kept, loss scaling.

`--precision` picks a tf_keras mixed-precision policy (Micikevicius et al. 2018,
"Mixed Precision Training"; the TF guide "Mixed precision"):

* `float32`: everything float32 (the default, bit-reproducible in tests).
* `mixed_bfloat16`: convolutions, matmuls and activations in bfloat16, variables in
  float32. bfloat16 has float32's exponent range, so no loss scaling is needed.
  On GPUs (Ampere and later) and on CPUs with AMX-BF16, oneDNN / cuDNN run these
  ops several times faster than float32 (docs/bench/).
* `mixed_float16`: float16 compute with dynamic loss scaling
  (`tf_keras.mixed_precision.LossScaleOptimizer`), for GPUs without bfloat16.

What stays float32 whatever the policy (the layers do it, not the policy):
variables and checkpoints (a policy only changes the compute dtype), the
spectral-norm power iteration and sigma (`ppcd_tf.layers.spectral_norm` runs with
`autocast=False` and casts the normalised kernel), BatchNorm statistics (tf_keras
BatchNormalization computes them in float32), the attention softmax, the images
G returns and the logits D returns (so every loss is computed in float32), the mask
scores, and the EMA of G's weights (float32 variables updated outside any layer).
Slimming and export build fresh float32 models from the float32 checkpoint, so
they are exactly as before whatever precision trained the weights.

The policy is set only while a Trainer builds its networks (`policy_scope`): a
layer keeps the policy it was built under, and nothing else in the process (tests,
evaluation, export) sees a changed global policy.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, List, Sequence

import tensorflow as tf
import tf_keras

from ppcd_tf.config import PRECISIONS

__all__ = ["PRECISIONS", "policy_scope", "needs_loss_scaling", "wrap_optimizer",
           "scale_loss", "unscale_gradients"]




def _check(precision: str) -> None:
  if precision not in PRECISIONS:
    raise ValueError(f"precision={precision!r} must be one of {PRECISIONS}.")


@contextlib.contextmanager
def policy_scope(precision: str) -> Iterator[None]:
  """Sets the global tf_keras policy to `precision` inside the block, restores it after."""
  _check(precision)
  previous = tf_keras.mixed_precision.global_policy()
  tf_keras.mixed_precision.set_global_policy(precision)
  try:
    yield
  finally:
    tf_keras.mixed_precision.set_global_policy(previous)


def needs_loss_scaling(precision: str) -> bool:
  """float16's narrow exponent range needs loss scaling; bfloat16 and float32 do not."""
  _check(precision)
  return precision == "mixed_float16"


def wrap_optimizer(optimizer, precision: str):
  """`optimizer` wrapped in a dynamic LossScaleOptimizer for float16, else unchanged."""
  if needs_loss_scaling(precision):
    return tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
  return optimizer


def _is_loss_scaled(optimizer) -> bool:
  return isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)


def scale_loss(optimizer, loss: tf.Tensor) -> tf.Tensor:
  """The loss to differentiate: multiplied by the loss scale when `optimizer` has one."""
  return optimizer.get_scaled_loss(loss) if _is_loss_scaled(optimizer) else loss


def unscale_gradients(optimizer, grads: Sequence[tf.Tensor]) -> List[tf.Tensor]:
  """Gradients of `scale_loss(...)` divided by the loss scale again (no-op otherwise).

  Non-finite unscaled gradients make the LossScaleOptimizer skip that update and
  lower its scale, so one float16 overflow costs a step, not the run.
  """
  if _is_loss_scaled(optimizer):
    return optimizer.get_unscaled_gradients(list(grads))
  return list(grads)
