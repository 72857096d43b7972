"""Class-aware distillation terms, chosen by name from a registry.

Each term is a function `term(ctx) -> scalar loss` registered with the config
field holding its weight. The training loop adds `weight * term(ctx)` for every
term whose weight is > 0, so setting a weight to 0 is the ablation and adding a
term is one registration here, not a branch in the loop.

`DistillationContext` computes the teacher's outputs lazily (at most once per
step) so a run with only the pixel term does not pay for class weights.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List

import tensorflow as tf

from ppcd_tf import config as config_lib
from ppcd_tf import losses

__all__ = ["DistillationContext", "DISTILLATION_TERMS", "register_term", "active_terms"]


class DistillationContext:
  """Student outputs for one (z, y) batch plus lazily computed teacher outputs."""

  def __init__(self, teacher_generator, teacher_discriminator, z, y,
               student_images, student_features, student_generator=None):
    self.teacher_generator = teacher_generator
    self.student_generator = student_generator
    self.teacher_discriminator = teacher_discriminator
    self.z, self.y = z, y
    self.student_images = student_images
    self.student_features = student_features
    self._cache: Dict[str, object] = {}

  def _get(self, key: str, fn: Callable[[], object]):
    if key not in self._cache:
      self._cache[key] = fn()
    return self._cache[key]

  def teacher_outputs(self):
    """(images, block features) of the teacher in inference mode, no gradient."""
    def run():
      images, feats = self.teacher_generator.forward_with_features(
          (self.z, self.y), training=False)
      return tf.stop_gradient(images), [tf.stop_gradient(f) for f in feats]
    return self._get("teacher", run)

  def teacher_class_weights(self) -> List[tf.Tensor]:
    return self._get("weights", lambda: [
        tf.stop_gradient(w) for w in
        self.teacher_generator.class_channel_weights((self.z, self.y))])

  def student_class_weights(self) -> List[tf.Tensor]:
    """The student's own class weights (for a student narrower than the teacher)."""
    if self.student_generator is None:
      raise ValueError("DistillationContext was built without student_generator")
    return self._get("student_weights", lambda: [
        tf.stop_gradient(w) for w in
        self.student_generator.class_channel_weights((self.z, self.y))])


@dataclasses.dataclass(frozen=True)
class DistillationTerm:
  name: str
  weight_field: str
  fn: Callable[[DistillationContext], tf.Tensor]


DISTILLATION_TERMS: Dict[str, DistillationTerm] = {}


def register_term(name: str, weight_field: str):
  """Decorator: registers `fn(ctx) -> loss` as term `name`, weighted by `DistillConfig.<field>`."""
  def wrap(fn):
    DISTILLATION_TERMS[name] = DistillationTerm(name, weight_field, fn)
    return fn
  return wrap


@register_term("att", "lambda_att")
def attention_term(ctx: DistillationContext) -> tf.Tensor:
  """Class-aware attention maps of every G block, student vs teacher.

  A student with the teacher's channels (masked PP-Res) is weighted by the
  teacher's class weights; a narrower one (distillation without pruning) by its own.
  """
  _, teacher_features = ctx.teacher_outputs()
  same_width = all(s.shape[-1] == t.shape[-1]
                   for s, t in zip(ctx.student_features, teacher_features))
  return losses.attention_distillation_loss(
      ctx.student_features, teacher_features, ctx.teacher_class_weights(),
      None if same_width else ctx.student_class_weights())


@register_term("cam", "lambda_cam")
def cam_term(ctx: DistillationContext) -> tf.Tensor:
  """Teacher-D class activation maps of the student's vs the teacher's image."""
  teacher_images, _ = ctx.teacher_outputs()
  d = ctx.teacher_discriminator
  cam_student = d.class_activation_map((ctx.student_images, ctx.y), training=False)
  cam_teacher = d.class_activation_map((teacher_images, ctx.y), training=False)
  return losses.cam_distillation_loss(cam_student, cam_teacher)


@register_term("pix", "lambda_pix")
def pixel_term(ctx: DistillationContext) -> tf.Tensor:
  teacher_images, _ = ctx.teacher_outputs()
  return losses.pixel_l1_loss(ctx.student_images, teacher_images)


def active_terms(cfg: config_lib.DistillConfig) -> Dict[str, float]:
  """{term name: weight} for the terms with weight > 0."""
  out = {}
  for name, term in DISTILLATION_TERMS.items():
    w = float(getattr(cfg, term.weight_field))
    if w > 0:
      out[name] = w
  return out
