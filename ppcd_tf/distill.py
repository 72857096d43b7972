"""Class-aware distillation terms, chosen by name from a registry.

Each term is a function `term(ctx) -> scalar loss` registered with the config
field holding its weight. The training loop adds `weight * term(ctx)` for every
term whose weight is > 0, so setting a weight to 0 is the ablation and adding a
term is one registration here, not a branch in the loop.

Teacher work happens off the student's tape. A term registers, next to its loss,
a `prepare(ctx)` that computes the teacher-side tensors it reads (the teacher's
images and block features, its class weights, its discriminator's CAM of its own
images). The training step calls `DistillationContext.prepare` *before* opening
the student's GradientTape, so none of the teacher's forward passes is recorded
there; inside the tape only the student's generator and the teacher D's pass over
the *student's* images (which the CAM gradient must flow through) are recorded.
The teacher D therefore runs once on the student's images (taped) and once on the
teacher's (untaped). One pass on the concatenated batch would be recorded on the
tape whole, and its backward pass would compute input gradients for the teacher's
half too: 4 D passes' worth of work per step instead of 3.

`DistillationContext` caches every quantity (at most one computation per step),
so a run with only the pixel term does not pay for class weights.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Sequence

import tensorflow as tf

from ppcd_tf import config as config_lib
from ppcd_tf import losses

__all__ = ["DistillationContext", "DISTILLATION_TERMS", "register_term", "active_terms"]


class DistillationContext:
  """One (z, y) batch: the teacher's cached outputs, then the student's.

  Build it, call `prepare(term_names)` outside any tape (teacher passes, no
  gradient), then `set_student(images, features)` inside the student's tape and
  evaluate the terms.
  """

  def __init__(self, teacher_generator, teacher_discriminator, z, y,
               student_images=None, student_features=None, student_generator=None,
               student_channels=None):
    """`student_channels`: for a student slimmed from the teacher's widths
    (`ppcd_tf.slim_finetune`), per block the teacher channels its outputs are; the
    attention term then weights them with the teacher's class weights of exactly
    those channels, as it did while the others were masked to zero."""
    self.teacher_generator = teacher_generator
    self.student_channels = student_channels
    self.student_generator = student_generator
    self.teacher_discriminator = teacher_discriminator
    self.z, self.y = z, y
    self.student_images = student_images
    self.student_features = student_features
    self._cache: Dict[str, object] = {}

  def prepare(self, names: Sequence[str]) -> "DistillationContext":
    """Computes the teacher-side tensors of the terms `names` (call it off the tape)."""
    for name in names:
      DISTILLATION_TERMS[name].prepare(self)
    return self

  def set_student(self, images, features) -> None:
    """The student's images and block features of this batch (on the tape)."""
    self.student_images, self.student_features = images, features

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
    def run():
      return [tf.stop_gradient(w) for w in
              self.teacher_generator.class_channel_weights((self.z, self.y))]
    return self._get("weights", run)

  def teacher_cam(self) -> tf.Tensor:
    """The teacher D's class activation map of the teacher's images, no gradient."""
    def run():
      images, _ = self.teacher_outputs()
      return tf.stop_gradient(self.teacher_discriminator.class_activation_map(
          (images, self.y), training=False))
    return self._get("teacher_cam", run)

  def student_class_weights(self) -> List[tf.Tensor]:
    """The student's own class weights (for a student narrower than the teacher)."""
    if self.student_generator is None:
      raise ValueError("DistillationContext was built without student_generator")
    def run():
      return [tf.stop_gradient(w) for w in
              self.student_generator.class_channel_weights((self.z, self.y))]
    return self._get("student_weights", run)

  def teacher_class_weights_of_student(self) -> List[tf.Tensor]:
    """The teacher's class weights of the student's channels (`student_channels`)."""
    return [tf.gather(w, idx, axis=1) for w, idx in
            zip(self.teacher_class_weights(), self.student_channels)]

  def student_is_narrower(self) -> bool:
    """True when the student's built widths differ from the teacher's (and are not a
    slice of them, `student_channels`)."""
    if self.student_generator is None or self.student_channels is not None:
      return False
    return self.student_generator.channels != self.teacher_generator.channels


@dataclasses.dataclass(frozen=True)
class DistillationTerm:
  name: str
  weight_field: str
  fn: Callable[[DistillationContext], tf.Tensor]
  prepare: Callable[[DistillationContext], None]


DISTILLATION_TERMS: Dict[str, DistillationTerm] = {}


def register_term(name: str, weight_field: str,
                  prepare: Optional[Callable[[DistillationContext], None]] = None):
  """Decorator: registers `fn(ctx) -> loss` as term `name`, weighted by `DistillConfig.<field>`.

  `prepare(ctx)` computes (and caches on ctx) the teacher-side tensors `fn` reads,
  so the training step can run them before the student's tape opens.
  """
  def wrap(fn):
    DISTILLATION_TERMS[name] = DistillationTerm(
        name, weight_field, fn, prepare or _prepare_nothing)
    return fn
  return wrap


def _prepare_attention(ctx: DistillationContext) -> None:
  ctx.teacher_outputs()
  ctx.teacher_class_weights()
  if ctx.student_is_narrower():
    ctx.student_class_weights()


@register_term("att", "lambda_att", prepare=_prepare_attention)
def attention_term(ctx: DistillationContext) -> tf.Tensor:
  """Class-aware attention maps of every G block, student vs teacher.

  A student with the teacher's channels (masked PP-Res) is weighted by the
  teacher's class weights; a narrower one (distillation without pruning) by its own.
  """
  _, teacher_features = ctx.teacher_outputs()
  if ctx.student_channels is not None:  # slim copy of a pruned student
    return losses.attention_distillation_loss(
        ctx.student_features, teacher_features, ctx.teacher_class_weights(),
        ctx.teacher_class_weights_of_student())
  same_width = all(s.shape[-1] == t.shape[-1]
                   for s, t in zip(ctx.student_features, teacher_features))
  return losses.attention_distillation_loss(
      ctx.student_features, teacher_features, ctx.teacher_class_weights(),
      None if same_width else ctx.student_class_weights())


def _prepare_cam(ctx: DistillationContext) -> None:
  ctx.teacher_cam()  # runs the teacher G first


def _prepare_pixel(ctx: DistillationContext) -> None:
  ctx.teacher_outputs()


def _prepare_nothing(ctx: DistillationContext) -> None:
  del ctx


@register_term("cam", "lambda_cam", prepare=_prepare_cam)
def cam_term(ctx: DistillationContext) -> tf.Tensor:
  """Teacher-D class activation maps of the student's vs the teacher's image."""
  cam_student = ctx.teacher_discriminator.class_activation_map(
      (ctx.student_images, ctx.y), training=False)
  return losses.cam_distillation_loss(cam_student, ctx.teacher_cam())


@register_term("pix", "lambda_pix", prepare=_prepare_pixel)
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
