"""How hard each loss term pulls on G: gradient norms on G's weights, per term.

A distillation weight only means something next to the gradient it produces. For
one batch, `term_gradient_norms` computes the global norm over G's weights (mask
scores excluded) of the gradient of each term of the student's loss, weight
included: the adversarial term, then every active distillation term. Its "share"
is that norm over the adversarial term's. The trainer logs both to TensorBoard
(`grad_norm/<term>`, `grad_share/<term>`) every `--grad_norm_every` steps, and
`tools/grad_shares.py` measures them over several batches to choose the weights.

The forward passes run in training mode, as in a real step, so BatchNorm uses batch
statistics; every non-trainable variable of G and D they would update (BatchNorm
moving statistics, spectral-norm vectors) is put back afterwards, so measuring
does not change the training run.
"""

from __future__ import annotations

from typing import Dict

import tensorflow as tf

from ppcd_tf import distill, losses

__all__ = ["term_gradient_norms", "shares"]


def _state(trainer):
  return [v for net in (trainer.G, trainer.D) for v in net.non_trainable_variables]


def term_gradient_norms(trainer, z, y) -> Dict[str, float]:
  """{"adv": ||grad adv||, term: ||grad weight * term||, ...} for one batch (z, y)."""
  state = _state(trainer)
  saved = [tf.identity(v) for v in state]
  ctx = None
  if trainer.terms:
    ctx = distill.DistillationContext(
        trainer.teacher_G, trainer.teacher_D, z, y, student_generator=trainer.G,
        student_channels=trainer.student_channels()).prepare(trainer.terms)
  with tf.GradientTape(persistent=True) as tape:
    fake, features = trainer.G.forward_with_features((z, y), training=True)
    values = {"adv": losses.hinge_generator_loss(trainer.D((fake, y), training=True))}
    if ctx is not None:
      ctx.set_student(fake, features)
      for name, weight in trainer.terms.items():
        values[name] = weight * tf.cast(distill.DISTILLATION_TERMS[name].fn(ctx), tf.float32)
  norms = {}
  for name, value in values.items():
    grads = tape.gradient(value, trainer.g_vars,
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    norms[name] = float(tf.linalg.global_norm([tf.cast(g, tf.float32) for g in grads]))
  del tape
  for v, s in zip(state, saved):
    v.assign(s)
  return norms


def shares(norms: Dict[str, float]) -> Dict[str, float]:
  """Each term's gradient norm over the adversarial term's (adv itself is 1)."""
  adv = norms["adv"]
  return {k: (v / adv if adv > 0 else float("nan")) for k, v in norms.items()}
