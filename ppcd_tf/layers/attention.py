"""Non-local self-attention of SA-GAN / BigGAN (BigGAN-PyTorch `layers.Attention`).

NHWC in, NHWC out with the same shape:

    theta = conv1x1(x) -> C_k        phi = maxpool2x2(conv1x1(x)) -> C_k
    g = maxpool2x2(conv1x1(x)) -> C_v
    beta = softmax(theta phi^T)      [B, HW, HW/4]
    out = x + gamma * conv1x1(beta g) -> C

All four 1x1 convs are spectrally normalised and have no bias; `gamma` is a
learnable scalar initialised to 0 (the block starts as the identity). BigGAN uses
C_k = C / 8 and C_v = C / 2 of the full width; the widths are separate arguments
because a slimmed generator keeps them while its C (input/output channels) shrinks.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf
import tf_keras

from ppcd_tf.layers.spectral_norm import SNConv2D

__all__ = ["SelfAttention", "attention_widths"]


def attention_widths(channels: int) -> "tuple[int, int]":
  """BigGAN's (key, value) widths C/8 and C/2, at least 1 for tiny test widths."""
  return max(1, channels // 8), max(1, channels // 2)


class SelfAttention(tf_keras.layers.Layer):
  """Non-local block `x + gamma * o(softmax(theta phi^T) g)`.

  Args:
    channels: input and output channels C.
    key_channels: theta/phi width (default C // 8).
    value_channels: g width (default C // 2).
    sn_eps, sn_mode: spectral norm settings of the four 1x1 convs.
    kernel_initializer: initializer of the four kernels.
  """

  def __init__(self, channels: int, key_channels: Optional[int] = None,
               value_channels: Optional[int] = None, sn_eps: float = 1e-6,
               sn_mode: str = "power_iteration", kernel_initializer="orthogonal",
               **kwargs):
    super().__init__(**kwargs)
    default_k, default_v = attention_widths(channels)
    self.channels = int(channels)
    self.key_channels = int(key_channels or default_k)
    self.value_channels = int(value_channels or default_v)
    self.sn_eps, self.sn_mode = float(sn_eps), sn_mode
    conv = dict(kernel_size=1, use_bias=False, sn_eps=sn_eps, sn_mode=sn_mode,
                kernel_initializer=kernel_initializer)
    self.theta = SNConv2D(self.key_channels, name="theta", **conv)
    self.phi = SNConv2D(self.key_channels, name="phi", **conv)
    self.g = SNConv2D(self.value_channels, name="g", **conv)
    self.o = SNConv2D(self.channels, name="o", **conv)
    self.quant = None  # set by ppcd_tf.qat: fake quant of the attention map

  def build(self, input_shape):
    if input_shape[1] is not None and (input_shape[1] < 2 or input_shape[1] % 2 or
                                       input_shape[2] % 2):
      raise ValueError(f"{self.name}: attention needs even H, W >= 2 for its 2x2 "
                       f"max-pool, got {input_shape}.")
    self.gamma = self.add_weight("gamma", shape=[], initializer="zeros",
                                 trainable=True)
    super().build(input_shape)

  def call(self, inputs, training=None):
    shape = tf.shape(inputs)
    b, h, w = shape[0], shape[1], shape[2]
    pool = lambda t: tf.nn.max_pool2d(t, 2, 2, "VALID")  # noqa: E731
    theta = tf.reshape(self.theta(inputs, training=training), [b, h * w, self.key_channels])
    phi = tf.reshape(pool(self.phi(inputs, training=training)),
                     [b, (h // 2) * (w // 2), self.key_channels])
    g = tf.reshape(pool(self.g(inputs, training=training)),
                   [b, (h // 2) * (w // 2), self.value_channels])
    # The softmax runs in float32 under a mixed policy (its exp overflows float16).
    logits = tf.cast(tf.matmul(theta, phi, transpose_b=True), tf.float32)
    beta = tf.cast(tf.nn.softmax(logits, axis=-1), g.dtype)
    if self.quant is not None:
      beta = self.quant(beta)
    attended = tf.reshape(tf.matmul(beta, g), [b, h, w, self.value_channels])
    return inputs + tf.cast(self.gamma, inputs.dtype) * self.o(attended, training=training)

  def get_config(self):
    config = super().get_config()
    config.update(channels=self.channels, key_channels=self.key_channels,
                  value_channels=self.value_channels, sn_eps=self.sn_eps,
                  sn_mode=self.sn_mode)
    return config
