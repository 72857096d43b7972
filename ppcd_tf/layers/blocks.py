"""Residual blocks of the BigGAN generator (PPResBlock) and discriminator (DBlock).

Tensors are NHWC. `PPResBlock` is BigGAN's G up-block (BigGAN-PyTorch `GBlock`)
with the PP-Res channel masks of METHOD.md; built with `masked=False` it is the
plain BigGAN block and has *no* mask layers, and its checkpoint dependencies
(`bn1`, `conv1`, `bn2`, `conv2`, `conv_sc`, `attention`) are the same either way,
so a teacher checkpoint restores into a masked student.

Where the masks act (masked=True). The forward value of every mask is exactly
0/1 (`ChannelMask`), and it is applied wherever a pruned channel could otherwise
leak into a live one, so removing the pruned channels (`ppcd_tf.slim`) gives
exactly the same function:

    x ─ CBN1 ─ ReLU ─ in_mask ─ Up ─ conv1 ─ CBN2 ─ ReLU ─ mask_mid ─ conv2 ─┐
    │                                                                    (+) ─ mask_out ─ h
    └───────────────────── conv_sc (1x1) ─ Up ───────────────────────────┘
    out = h, or mask_out(attention(h)) when self-attention follows the block

* `mask_mid` masks the channels between the two convs. It sits after CBN2+ReLU,
  right before conv2, not directly after conv1: BatchNorm in training mode is
  invariant to a per-channel scale, so a mask before it would get (almost) no
  score gradient, and BN maps a zeroed channel to relu(bias(c)) != 0, which conv2
  would still see.
* `mask_out` is one tied mask after the residual sum: a pruned output channel is
  zero on the whole residual stream. The same layer instance is re-applied after
  self-attention (whose `o` conv would refill the channel) and is passed to the
  *next* block as its `in_mask`, applied after that block's CBN1+ReLU for the same
  reason as above. The stem's mask is block 0's `in_mask`; the generator applies
  the last block's `mask_out` after its final BN+ReLU.
* The 1x1 shortcut conv runs before the nearest-neighbour upsampling: the two
  commute exactly, and the conv then costs 4x fewer MACs than BigGAN-PyTorch's
  upsample-then-conv order.
"""

from __future__ import annotations

from typing import Optional, Tuple

import tensorflow as tf
import tf_keras

from ppcd_tf.layers.attention import SelfAttention
from ppcd_tf.layers.conditional_batchnorm import ConditionalBatchNorm
from ppcd_tf.layers.masks import ChannelMask
from ppcd_tf.layers.spectral_norm import SNConv2D

__all__ = ["PPResBlock", "DBlock", "upsample_nearest_2x", "downsample_avg_2x",
           "relu_of_block_output", "masked_block_output"]


def _dims(x: tf.Tensor):
  """NHWC sizes: Python ints where static, scalar tensors where not."""
  dynamic = tf.shape(x)
  return [d if d is not None else dynamic[i] for i, d in enumerate(x.shape.as_list())]


def upsample_nearest_2x(x: tf.Tensor) -> tf.Tensor:
  """Nearest-neighbour 2x upsampling of an NHWC tensor (F.interpolate, scale 2).

  Written as two concat + reshape pairs instead of `tf.image.resize(..., "nearest")`:
  equal in value (tested), but XLA has a CPU kernel for every op here and none for
  the gradient of ResizeNearestNeighbor, and CONCATENATION / RESHAPE are plain
  int8 TFLite ops. Concatenating x with itself on the channel axis and reading
  [W, 2C] as [2W, C] repeats every pixel along W; the same on W repeats rows.
  """
  b, h, w, c = _dims(x)
  x = tf.reshape(tf.concat([x, x], axis=-1), [b, h, 2 * w, c])
  return tf.reshape(tf.concat([x, x], axis=2), [b, 2 * h, 2 * w, c])


def downsample_avg_2x(x: tf.Tensor) -> tf.Tensor:
  """2x2 average pooling, stride 2 (nn.AvgPool2d(2))."""
  return tf.nn.avg_pool2d(x, 2, 2, "VALID")


def relu_of_block_output(x: tf.Tensor) -> tf.Tensor:
  """ReLU of a `DBlock` output, as `where(x > 0, x, 0)` rather than the Relu op.

  Same values (NaN aside) and the same gradient as `tf.nn.relu` (ReluGrad is
  `where(x > 0, grad, 0)`), bit for bit. Why: in a block without downsampling the sum
  `conv2(...) + shortcut` is fed both to a ReLU (next block's pre-activation, or the
  head) and to the next sum; TF 2.21's grappler remapper (oneDNN on) then fuses
  Conv2D + BiasAdd + Add + Relu although the Add has another consumer, and the whole
  remapper pass fails on every training start: "remapper failed: INVALID_ARGUMENT:
  Mutation::Apply error: fanout 'discriminator/Relu_1' exist for missing node
  'discriminator/block2/add_1'". Without a Relu op there is nothing to fuse.
  """
  return tf.where(x > 0, x, tf.zeros_like(x))


def masked_block_output(out: tf.Tensor, mask_out: Optional[ChannelMask],
                        attention: Optional[SelfAttention], training) -> tf.Tensor:
  """A G block's residual sum through `mask_out`, then self-attention (if any) and
  `mask_out` again (attention's `o` conv would refill a pruned channel)."""
  if mask_out is not None:
    out = mask_out(out)
  if attention is not None:
    out = attention(out, training=training)
    if mask_out is not None:
      out = mask_out(out)
  return out


class PPResBlock(tf_keras.layers.Layer):
  """BigGAN generator up-block with optional PP-Res channel masks.

  Args:
    in_channels: input channels (previous block's output width).
    mid_channels: width between conv1 and conv2.
    out_channels: output width.
    attention: (key, value) widths of a self-attention block applied to the
      output, or None for no attention.
    masked: add `mask_mid` / `mask_out` ChannelMask layers.
    bn_eps, sn_eps, sn_mode: BatchNorm / spectral-norm settings.
    mask_initial_score: initial mask score.
    kernel_initializer: initializer of every conv / linear kernel.
  """

  def __init__(self, in_channels: int, mid_channels: int, out_channels: int,
               attention: Optional[Tuple[int, int]] = None, masked: bool = False,
               bn_eps: float = 1e-5, sn_eps: float = 1e-6,
               sn_mode: str = "power_iteration", mask_initial_score: float = 3.0,
               kernel_initializer="orthogonal", **kwargs):
    super().__init__(**kwargs)
    self.in_channels, self.mid_channels, self.out_channels = (
        int(in_channels), int(mid_channels), int(out_channels))
    self.attention_widths = tuple(attention) if attention else None
    self.masked = bool(masked)
    self.bn_eps, self.sn_eps, self.sn_mode = float(bn_eps), float(sn_eps), sn_mode
    self.mask_initial_score = float(mask_initial_score)
    sn = dict(sn_eps=sn_eps, sn_mode=sn_mode, kernel_initializer=kernel_initializer)
    self.bn1 = ConditionalBatchNorm(self.in_channels, bn_eps=bn_eps, name="bn1", **sn)
    self.conv1 = SNConv2D(self.mid_channels, 3, name="conv1", **sn)
    self.bn2 = ConditionalBatchNorm(self.mid_channels, bn_eps=bn_eps, name="bn2", **sn)
    self.conv2 = SNConv2D(self.out_channels, 3, name="conv2", **sn)
    # BigGAN: a learnable shortcut whenever in != out or the block upsamples; G
    # blocks always upsample.
    self.conv_sc = SNConv2D(self.out_channels, 1, name="conv_sc", **sn)
    self.attention = (SelfAttention(self.out_channels, *self.attention_widths,
                                    name="attention", **sn)
                      if self.attention_widths else None)
    if self.masked:
      self.mask_mid = ChannelMask(self.mid_channels, mask_initial_score, name="mask_mid")
      self.mask_out = ChannelMask(self.out_channels, mask_initial_score, name="mask_out")
    else:
      self.mask_mid = self.mask_out = None

  @property
  def input_bn(self) -> ConditionalBatchNorm:
    """The CBN that reads the block input (class weights of the previous block)."""
    return self.bn1

  @property
  def mid_masks(self):
    return [self.mask_mid] if self.masked else []

  def call(self, inputs, cond, in_mask: Optional[ChannelMask] = None, training=None):
    """Runs the block.

    Args:
      inputs: [B, H, W, in_channels].
      cond: [B, cond_dim] conditioning vector of this block.
      in_mask: the ChannelMask of the input channels (previous block's `mask_out`
        or the stem mask); None for an unmasked generator.
      training: BatchNorm / spectral-norm mode.

    Returns:
      [B, 2H, 2W, out_channels].
    """
    h = tf.nn.relu(self.bn1(inputs, cond, training=training))
    if in_mask is not None:
      h = in_mask(h)
    h = self.conv1(upsample_nearest_2x(h), training=training)
    h = tf.nn.relu(self.bn2(h, cond, training=training))
    if self.mask_mid is not None:
      h = self.mask_mid(h)
    h = self.conv2(h, training=training)
    shortcut = upsample_nearest_2x(self.conv_sc(inputs, training=training))
    return masked_block_output(h + shortcut, self.mask_out, self.attention, training)

  def get_config(self):
    config = super().get_config()
    config.update(in_channels=self.in_channels, mid_channels=self.mid_channels,
                  out_channels=self.out_channels, attention=self.attention_widths,
                  masked=self.masked, bn_eps=self.bn_eps, sn_eps=self.sn_eps,
                  sn_mode=self.sn_mode, mask_initial_score=self.mask_initial_score)
    return config


class DBlock(tf_keras.layers.Layer):
  """BigGAN discriminator down-block (BigGAN-PyTorch `DBlock`, wide=True).

  `h = conv2(relu(conv1(act(x))))`, average-pooled when downsampling, plus a
  shortcut; `act` is ReLU except in the first block (`preactivation=False`), which
  sees raw images. The shortcut is a learnable 1x1 conv when in != out or when
  downsampling; it pools before the conv in the first block and after it in the
  others, as in BigGAN-PyTorch. An optional self-attention block follows.

  Args:
    in_channels, out_channels: widths; the hidden width equals out_channels.
    downsample: halve the resolution.
    preactivation: apply ReLU to the input of the residual branch.
    attention: (key, value) widths of a following self-attention block or None.
    sn_eps, sn_mode: spectral-norm settings.
    kernel_initializer: initializer of every conv kernel.
  """

  def __init__(self, in_channels: int, out_channels: int, downsample: bool = True,
               preactivation: bool = True,
               attention: Optional[Tuple[int, int]] = None, sn_eps: float = 1e-6,
               sn_mode: str = "power_iteration", kernel_initializer="orthogonal",
               **kwargs):
    super().__init__(**kwargs)
    self.in_channels, self.out_channels = int(in_channels), int(out_channels)
    self.downsample, self.preactivation = bool(downsample), bool(preactivation)
    self.attention_widths = tuple(attention) if attention else None
    self.sn_eps, self.sn_mode = float(sn_eps), sn_mode
    sn = dict(sn_eps=sn_eps, sn_mode=sn_mode, kernel_initializer=kernel_initializer)
    self.conv1 = SNConv2D(self.out_channels, 3, name="conv1", **sn)
    self.conv2 = SNConv2D(self.out_channels, 3, name="conv2", **sn)
    self.learnable_shortcut = self.in_channels != self.out_channels or self.downsample
    self.conv_sc = (SNConv2D(self.out_channels, 1, name="conv_sc", **sn)
                    if self.learnable_shortcut else None)
    self.attention = (SelfAttention(self.out_channels, *self.attention_widths,
                                    name="attention", **sn)
                      if self.attention_widths else None)

  def _shortcut(self, x, training):
    if self.preactivation:
      if self.conv_sc is not None:
        x = self.conv_sc(x, training=training)
      if self.downsample:
        x = downsample_avg_2x(x)
    else:
      if self.downsample:
        x = downsample_avg_2x(x)
      if self.conv_sc is not None:
        x = self.conv_sc(x, training=training)
    return x

  def call(self, inputs, training=None):
    h = relu_of_block_output(inputs) if self.preactivation else inputs
    h = self.conv1(h, training=training)
    h = self.conv2(tf.nn.relu(h), training=training)
    if self.downsample:
      h = downsample_avg_2x(h)
    out = h + self._shortcut(inputs, training)
    if self.attention is not None:
      out = self.attention(out, training=training)
    return out

  def get_config(self):
    config = super().get_config()
    config.update(in_channels=self.in_channels, out_channels=self.out_channels,
                  downsample=self.downsample, preactivation=self.preactivation,
                  attention=self.attention_widths, sn_eps=self.sn_eps,
                  sn_mode=self.sn_mode)
    return config
