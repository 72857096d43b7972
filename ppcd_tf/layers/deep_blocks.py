"""BigGAN-deep's bottleneck residual blocks (Brock et al. 2019, appendix B.5, Table 8).

Tensors are NHWC. `DeepGBlock` is the generator block, with PP-Res masks when
`masked=True`; `DeepDBlock` the discriminator block. Layer names follow the
pytorch-pretrained-BigGAN release (`bn_0`/`conv_0` ... become `bn0`/`conv0` ...).

Generator block (masks as in `ppcd_tf.layers.blocks`: each after the BN + ReLU that
precedes the conv it feeds, so a pruned channel is exactly zero where it is read):

    x ─ CBN0 ─ ReLU ─ in_mask ─ conv0 1x1 ─ CBN1 ─ ReLU ─ mid0 ─ [Up] ─ conv1 3x3 ─
        CBN2 ─ ReLU ─ mid1 ─ conv2 3x3 ─ CBN3 ─ ReLU ─ mid2 ─ conv3 1x1 ─┐
    │                                                                  (+) ─ mask_out
    └──────────── skip: select input channels (drop / zero) ─ [Up] ───┘

The skip has no weights: BigGAN-deep keeps the first `out` input channels. Here it is
a fixed selection `skip` (`ppcd_tf.generator_layout`): output p takes input `skip[p]`,
or zero where `skip[p] == in_channels`, so a slimmed block computes exactly what the
masked one did with independently pruned input and output channels. The upsampling
comes after mid0's mask and before conv1 (nearest-neighbour commutes with masks).

Discriminator block (BigGAN-deep's D): ReLU, 1x1 reduce to out/4, ReLU, 3x3, ReLU,
3x3, ReLU, [2x2 average pool], 1x1 expand; the shortcut pools too and, where the block
widens, concatenates a learnable 1x1 conv's `out - in` extra channels to the input.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras

from ppcd_tf.layers.attention import SelfAttention
from ppcd_tf.layers.blocks import (downsample_avg_2x, masked_block_output,
                                   relu_of_block_output, upsample_nearest_2x)
from ppcd_tf.layers.conditional_batchnorm import ConditionalBatchNorm
from ppcd_tf.layers.masks import ChannelMask
from ppcd_tf.layers.spectral_norm import SNConv2D

__all__ = ["DeepGBlock", "DeepDBlock", "select_channels"]


def select_channels(x: tf.Tensor, skip: Sequence[int]) -> tf.Tensor:
  """`x[..., skip[p]]` for each p, zero where `skip[p] == channels of x`.

  A plain slice when `skip` is 0..n-1 (the full-width rule), else a gather from x with
  one zero channel appended.
  """
  c = int(x.shape[-1])
  skip = tuple(int(k) for k in skip)
  if skip == tuple(range(len(skip))) and len(skip) <= c:
    return x if len(skip) == c else x[..., :len(skip)]
  padded = tf.concat([x, tf.zeros_like(x[..., :1])], axis=-1)
  return tf.gather(padded, tf.constant(skip, tf.int32), axis=-1)


class DeepGBlock(tf_keras.layers.Layer):
  """BigGAN-deep generator block with optional PP-Res channel masks.

  Args:
    in_channels: input width.
    mid_channels: the three hidden widths (conv0, conv1, conv2 outputs).
    out_channels: output width.
    upsample: double the resolution (the second block of each resolution).
    skip: the skip selection, one input position per output (module docstring).
    attention: (key, value) widths of a following self-attention block, or None.
    masked: add `mask_mid0..2` and `mask_out`.
    bn_eps, sn_eps, sn_mode, mask_initial_score, kernel_initializer: as PPResBlock.
  """

  def __init__(self, in_channels: int, mid_channels: Sequence[int], out_channels: int,
               upsample: bool, skip: Sequence[int],
               attention: Optional[Tuple[int, int]] = None, masked: bool = False,
               bn_eps: float = 1e-5, sn_eps: float = 1e-6,
               sn_mode: str = "power_iteration", mask_initial_score: float = 3.0,
               kernel_initializer="orthogonal", **kwargs):
    super().__init__(**kwargs)
    self.in_channels, self.out_channels = int(in_channels), int(out_channels)
    self.mid_channels = tuple(int(c) for c in mid_channels)
    if len(self.mid_channels) != 3:
      raise ValueError(f"{self.name}: mid_channels={mid_channels} needs 3 widths.")
    self.upsample, self.skip = bool(upsample), tuple(int(k) for k in skip)
    if len(self.skip) != self.out_channels:
      raise ValueError(f"{self.name}: skip has {len(self.skip)} entries for "
                       f"{self.out_channels} outputs.")
    self.attention_widths = tuple(attention) if attention else None
    self.masked = bool(masked)
    self.bn_eps, self.sn_eps, self.sn_mode = float(bn_eps), float(sn_eps), sn_mode
    self.mask_initial_score = float(mask_initial_score)
    sn = dict(sn_eps=sn_eps, sn_mode=sn_mode, kernel_initializer=kernel_initializer)
    widths_in = (self.in_channels,) + self.mid_channels
    widths_out = self.mid_channels + (self.out_channels,)
    for j in range(4):
      setattr(self, f"bn{j}", ConditionalBatchNorm(widths_in[j], bn_eps=bn_eps,
                                                   name=f"bn{j}", **sn))
      setattr(self, f"conv{j}", SNConv2D(widths_out[j], 1 if j in (0, 3) else 3,
                                         name=f"conv{j}", **sn))
    self.attention = (SelfAttention(self.out_channels, *self.attention_widths,
                                    name="attention", **sn)
                      if self.attention_widths else None)
    if self.masked:
      for j, c in enumerate(self.mid_channels):
        setattr(self, f"mask_mid{j}", ChannelMask(c, mask_initial_score,
                                                  name=f"mask_mid{j}"))
      self.mask_out = ChannelMask(self.out_channels, mask_initial_score, name="mask_out")
    else:
      self.mask_mid0 = self.mask_mid1 = self.mask_mid2 = self.mask_out = None

  @property
  def input_bn(self) -> ConditionalBatchNorm:
    """The CBN that reads the block input (class weights of the previous block)."""
    return self.bn0

  @property
  def mid_masks(self):
    return [self.mask_mid0, self.mask_mid1, self.mask_mid2] if self.masked else []

  def call(self, inputs, cond, in_mask: Optional[ChannelMask] = None, training=None):
    """[B, H, W, in] -> [B, H', W', out], H' = 2H when upsampling (args as PPResBlock)."""
    masks = [in_mask] + (self.mid_masks or [None] * 3)
    h = inputs
    for j in range(4):
      h = tf.nn.relu(getattr(self, f"bn{j}")(h, cond, training=training))
      if masks[j] is not None:
        h = masks[j](h)
      if j == 1 and self.upsample:
        h = upsample_nearest_2x(h)
      h = getattr(self, f"conv{j}")(h, training=training)
    shortcut = select_channels(inputs, self.skip)
    if self.upsample:
      shortcut = upsample_nearest_2x(shortcut)
    return masked_block_output(h + shortcut, self.mask_out, self.attention, training)

  def get_config(self):
    config = super().get_config()
    config.update(in_channels=self.in_channels, mid_channels=self.mid_channels,
                  out_channels=self.out_channels, upsample=self.upsample, skip=self.skip,
                  attention=self.attention_widths, masked=self.masked, bn_eps=self.bn_eps,
                  sn_eps=self.sn_eps, sn_mode=self.sn_mode,
                  mask_initial_score=self.mask_initial_score)
    return config


class DeepDBlock(tf_keras.layers.Layer):
  """BigGAN-deep discriminator block (module docstring).

  Args:
    in_channels, out_channels: widths (out >= in); the hidden width is out / 4.
    downsample: halve the resolution.
    attention: (key, value) widths of a following self-attention block or None.
    sn_eps, sn_mode, kernel_initializer: spectral-norm settings.
  """

  def __init__(self, in_channels: int, out_channels: int, downsample: bool,
               attention: Optional[Tuple[int, int]] = None, sn_eps: float = 1e-6,
               sn_mode: str = "power_iteration", kernel_initializer="orthogonal",
               **kwargs):
    super().__init__(**kwargs)
    self.in_channels, self.out_channels = int(in_channels), int(out_channels)
    if self.out_channels < self.in_channels:
      raise ValueError(f"{self.name}: a BigGAN-deep D block widens or keeps its width; "
                       f"got {in_channels} -> {out_channels}.")
    self.downsample = bool(downsample)
    self.attention_widths = tuple(attention) if attention else None
    self.sn_eps, self.sn_mode = float(sn_eps), sn_mode
    hidden = max(1, self.out_channels // 4)
    sn = dict(sn_eps=sn_eps, sn_mode=sn_mode, kernel_initializer=kernel_initializer)
    self.conv0 = SNConv2D(hidden, 1, name="conv0", **sn)
    self.conv1 = SNConv2D(hidden, 3, name="conv1", **sn)
    self.conv2 = SNConv2D(hidden, 3, name="conv2", **sn)
    self.conv3 = SNConv2D(self.out_channels, 1, name="conv3", **sn)
    extra = self.out_channels - self.in_channels
    self.conv_sc = SNConv2D(extra, 1, name="conv_sc", **sn) if extra else None
    self.attention = (SelfAttention(self.out_channels, *self.attention_widths,
                                    name="attention", **sn)
                      if self.attention_widths else None)

  def call(self, inputs, training=None):
    h = self.conv0(relu_of_block_output(inputs), training=training)
    h = self.conv1(tf.nn.relu(h), training=training)
    h = tf.nn.relu(self.conv2(tf.nn.relu(h), training=training))
    shortcut = inputs
    if self.downsample:
      h, shortcut = downsample_avg_2x(h), downsample_avg_2x(shortcut)
    h = self.conv3(h, training=training)
    if self.conv_sc is not None:
      shortcut = tf.concat([shortcut, self.conv_sc(shortcut, training=training)], axis=-1)
    out = h + shortcut
    if self.attention is not None:
      out = self.attention(out, training=training)
    return out

  def get_config(self):
    config = super().get_config()
    config.update(in_channels=self.in_channels, out_channels=self.out_channels,
                  downsample=self.downsample, attention=self.attention_widths,
                  sn_eps=self.sn_eps, sn_mode=self.sn_mode)
    return config
