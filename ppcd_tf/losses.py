"""Loss functions of teacher and PPCD training: pure functions, tensors in, scalar out.

Conventions: feature maps are NHWC; every loss is the mean over the examples it
is given (the *per-replica* mean under a `tf.distribute` strategy; the training
loop divides by the number of replicas so gradients sum to the global mean).

Terms (METHOD.md "Objective" and "Class-aware distillation"):
  * hinge adversarial losses (Lim & Ye 2017, "Geometric GAN"; used by SAGAN and
    BigGAN), computed by tensorflow-gan's `wasserstein_hinge_*` functions;
  * class-aware attention distillation: attention maps of generator block outputs
    weighted by the teacher's class-conditional BN gains (PPCD-GAN, Vo et al.
    WACV 2022: "instructive attention maps"; the spatial attention map
    `sum_c f_c^2` follows Zagoruyko & Komodakis 2017, "Paying More Attention to
    Attention");
  * class activation maps of the teacher discriminator's projection head
    (projection discriminator: Miyato & Koyama 2018);
  * pixel L1 to the teacher image;
  * cost-weighted L1 sparsity on channel-mask scores.
"""

from typing import Optional, Sequence

import tensorflow as tf

from ppcd_tf.tfgan_compat import tfgan_losses

__all__ = [
    "hinge_generator_loss", "hinge_discriminator_loss", "class_aware_attention_map",
    "attention_distillation_loss", "normalized_map", "cam_distillation_loss",
    "pixel_l1_loss", "mask_sparsity_loss", "all_finite",
]

_EPS = 1e-8


def _check_rank(name: str, t: tf.Tensor, rank: int) -> None:
  t = tf.convert_to_tensor(t)
  if t.shape.rank is not None and t.shape.rank != rank:
    raise ValueError(f"{name} must have rank {rank}, got shape {t.shape}")


def _check_same_shape(name_a: str, a: tf.Tensor, name_b: str, b: tf.Tensor) -> None:
  a, b = tf.convert_to_tensor(a), tf.convert_to_tensor(b)
  if a.shape.is_fully_defined() and b.shape.is_fully_defined() and a.shape != b.shape:
    raise ValueError(f"{name_a} {a.shape} and {name_b} {b.shape} must have the same shape")


def hinge_generator_loss(fake_logits: tf.Tensor) -> tf.Tensor:
  """`-mean(D(G(z)))` (hinge / Geometric GAN generator loss).

  Args:
    fake_logits: [B] or [B, 1] discriminator logits of generated images.
  Returns:
    Scalar float32.
  """
  fake_logits = tf.reshape(tf.cast(fake_logits, tf.float32), [-1])
  return tfgan_losses.wasserstein_hinge_generator_loss(
      fake_logits, loss_collection=None)


def hinge_discriminator_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
  """`mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))`.

  Args:
    real_logits: [B] logits of real images.
    fake_logits: [B] logits of generated images.
  Returns:
    Scalar float32.
  """
  real_logits = tf.reshape(tf.cast(real_logits, tf.float32), [-1])
  fake_logits = tf.reshape(tf.cast(fake_logits, tf.float32), [-1])
  return tfgan_losses.wasserstein_hinge_discriminator_loss(
      real_logits, fake_logits, loss_collection=None)


def normalized_map(m: tf.Tensor) -> tf.Tensor:
  """Flattens [B, H, W] to [B, H*W] and L2-normalises each row."""
  _check_rank("map", m, 3)
  flat = tf.reshape(tf.cast(m, tf.float32), [tf.shape(m)[0], -1])
  return flat / (tf.norm(flat, axis=1, keepdims=True) + _EPS)


def class_aware_attention_map(features: tf.Tensor, class_weights: tf.Tensor) -> tf.Tensor:
  """`A_y(f) = normalize(sum_c w_c(y) * f_c^2)`.

  Args:
    features: [B, H, W, C] block output.
    class_weights: [B, C] non-negative class weights (the teacher's |gamma_c(y)|
      of the BN that consumes this block's output), so the map shows where the
      class-relevant channels fire.
  Returns:
    [B, H*W] L2-normalised attention map.
  """
  features = tf.convert_to_tensor(features)
  class_weights = tf.convert_to_tensor(class_weights)
  _check_rank("features", features, 4)
  _check_rank("class_weights", class_weights, 2)
  if (features.shape[-1] is not None and class_weights.shape[-1] is not None
      and features.shape[-1] != class_weights.shape[-1]):
    raise ValueError(f"features have {features.shape[-1]} channels but class_weights "
                     f"have {class_weights.shape[-1]}")
  w = tf.cast(class_weights, tf.float32)[:, None, None, :]
  m = tf.reduce_sum(w * tf.square(tf.cast(features, tf.float32)), axis=-1)
  return normalized_map(m)


def attention_distillation_loss(student_features: Sequence[tf.Tensor],
                                teacher_features: Sequence[tf.Tensor],
                                class_weights: Sequence[tf.Tensor],
                                student_class_weights: Optional[Sequence[tf.Tensor]] = None
                                ) -> tf.Tensor:
  """Mean over blocks of the mean squared difference of class-aware attention maps.

  By default both maps use the *teacher's* class weights. A student's pruned
  channels are zero, so they contribute nothing to the student map, and the loss
  asks the surviving channels to reproduce the teacher's class-relevant activity.
  A student narrower than the teacher (distillation without pruning) has other
  channels, so its map uses its own class weights (`student_class_weights`); the
  maps are [B, H*W] either way, so only the spatial sizes must match.

  Args:
    student_features: list of [B, H, W, C_s] student block outputs.
    teacher_features: list of the teacher's [B, H, W, C_t].
    class_weights: list of [B, C_t] teacher class weights.
    student_class_weights: list of [B, C_s] student class weights, or None to
      use the teacher's (then C_s must equal C_t).
  Returns:
    Scalar float32.
  """
  if student_class_weights is None:
    student_class_weights = class_weights
  if not (len(student_features) == len(teacher_features) == len(class_weights)
          == len(student_class_weights)):
    raise ValueError(f"got {len(student_features)} student, {len(teacher_features)} "
                     f"teacher feature maps and {len(class_weights)} / "
                     f"{len(student_class_weights)} weight sets")
  if not student_features:
    raise ValueError("attention_distillation_loss needs at least one feature map")
  terms = []
  for i, (s, t, w, w_s) in enumerate(zip(student_features, teacher_features, class_weights,
                                         student_class_weights)):
    s_shape, t_shape = tf.convert_to_tensor(s).shape, tf.convert_to_tensor(t).shape
    if s_shape[:-1].is_fully_defined() and t_shape[:-1].is_fully_defined() and (
        s_shape[:-1] != t_shape[:-1]):
      raise ValueError(f"student_features[{i}] {s_shape} and teacher_features[{i}] "
                       f"{t_shape} must have the same batch and spatial sizes")
    a_s = class_aware_attention_map(s, tf.stop_gradient(w_s))
    a_t = class_aware_attention_map(tf.stop_gradient(t), tf.stop_gradient(w))
    terms.append(tf.reduce_mean(tf.square(a_s - a_t)))
  return tf.add_n(terms) / float(len(terms))


def cam_distillation_loss(student_cam: tf.Tensor, teacher_cam: tf.Tensor) -> tf.Tensor:
  """Mean squared difference of L2-normalised class activation maps [B, h, w]."""
  _check_same_shape("student_cam", student_cam, "teacher_cam", teacher_cam)
  a_s = normalized_map(student_cam)
  a_t = normalized_map(tf.stop_gradient(teacher_cam))
  return tf.reduce_mean(tf.square(a_s - a_t))


def pixel_l1_loss(student_images: tf.Tensor, teacher_images: tf.Tensor) -> tf.Tensor:
  """Mean absolute pixel difference."""
  _check_same_shape("student_images", student_images, "teacher_images", teacher_images)
  return tf.reduce_mean(tf.abs(tf.cast(student_images, tf.float32)
                               - tf.stop_gradient(tf.cast(teacher_images, tf.float32))))


def mask_sparsity_loss(scores: Sequence[tf.Tensor], alive: Sequence[tf.Tensor],
                       costs: Sequence[float]) -> tf.Tensor:
  """Cost-weighted L1 on the masks' soft gates, as a fraction of the live cost.

  `sum_m cost_m * sum_c alive_mc * sigmoid(score_mc) / sum_m cost_m * sum_c alive_mc`.
  Each channel's pull towards zero is proportional to the parameters it costs,
  and the value stays in [0, 1] whatever the network size, so one weight
  (`--sparsity_weight`) works across configs.

  Args:
    scores: list of [C_m] mask score variables.
    alive: list of [C_m] 0/1 alive masks (pruned channels contribute nothing).
    costs: per-mask parameter cost of one channel (floats or scalar tensors).
  Returns:
    Scalar float32.
  """
  if not (len(scores) == len(alive) == len(costs)):
    raise ValueError(f"got {len(scores)} scores, {len(alive)} alive masks and "
                     f"{len(costs)} costs")
  if not scores:
    return tf.constant(0.0)
  num, den = [], []
  for s, a, c in zip(scores, alive, costs):
    _check_same_shape("score", s, "alive", a)
    a = tf.stop_gradient(tf.cast(a, tf.float32))
    c = tf.cast(c, tf.float32)
    num.append(c * tf.reduce_sum(a * tf.sigmoid(tf.cast(s, tf.float32))))
    den.append(c * tf.reduce_sum(a))
  return tf.add_n(num) / (tf.add_n(den) + _EPS)


def all_finite(values: Sequence[tf.Tensor]) -> tf.Tensor:
  """True when every value is finite (used to stop a diverging run)."""
  return tf.reduce_all([tf.reduce_all(tf.math.is_finite(tf.cast(v, tf.float32)))
                        for v in values])
