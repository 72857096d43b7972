"""BigGAN projection discriminator (METHOD.md "Architecture").

Conventions: images x are float32 NHWC [B, R, R, image_channels] in [-1, 1],
labels y are int32 [B]; the output is one logit per image, [B].

Structure (BigGAN-PyTorch `Discriminator`, D_wide=True):
  * `blocks`: DBlock i maps in_i -> d_ch*d_channel_mults[i] (in_0 = image channels),
    ReLU pre-activation except block 0, average-pool 2x where `d_downsample[i]`,
    learnable 1x1 shortcut when in != out or downsampling; self-attention after
    every block whose output resolution is in `d_attention_res`.
  * head: `h = sum_{i,j} relu(f)_ij` (global sum pool), logit `linear(h) + <embed(y), h>`
    with SN `linear` (C -> 1) and SN `embed` (num_classes x C), the projection
    discriminator of Miyato & Koyama (2018).

BigGAN-deep (`--arch=biggan_deep`): an input 3x3 conv, then two `DeepDBlock`s per
width (`discriminator_layout`), the same head.

`class_activation_map` is the projection term before pooling, per position, used by
the class-aware distillation (METHOD.md item 2).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Tuple

import tensorflow as tf
import tf_keras

from ppcd_tf.config import ModelConfig
from ppcd_tf.generator import DummyCallBuildMixin, model_config_from_dict
from ppcd_tf.layers.attention import attention_widths
from ppcd_tf.layers.blocks import DBlock, relu_of_block_output
from ppcd_tf.layers.deep_blocks import DeepDBlock
from ppcd_tf.layers.spectral_norm import SNConv2D, SNDense, SNEmbedding, kernel_initializer

__all__ = ["Discriminator", "build_discriminator", "discriminator_layout"]


@dataclasses.dataclass(frozen=True)
class _DLayout:
  in_channels: Tuple[int, ...]
  out_channels: Tuple[int, ...]
  downsample: Tuple[bool, ...]
  resolutions: Tuple[int, ...]      # output resolution of each block
  attention: Tuple[Optional[Tuple[int, int]], ...]
  input_conv: int = 0               # BigGAN-deep: width of the input 3x3 conv


def discriminator_layout(model_cfg: ModelConfig) -> _DLayout:
  """Per-block widths, resolutions and attention widths of D.

  BigGAN-deep: an input conv to d_ch * d_channel_mults[0], then per later entry j a
  pair of blocks, the first widening to it (and downsampling where d_downsample[j-1]),
  self-attention after a pair whose resolution is in `d_attention_res`.
  """
  m = model_cfg.resolved()
  widths = tuple(m.d_ch * k for k in m.d_channel_mults)
  if m.deep:
    ins, outs, down, res, attn, size = [], [], [], [], [], m.resolution
    for j, flag in enumerate(m.d_downsample):
      size = size // 2 if flag else size
      for first in (True, False):
        ins.append(widths[j] if first else widths[j + 1])
        outs.append(widths[j + 1])
        down.append(bool(flag) and first)
        res.append(size)
        attn.append(attention_widths(widths[j + 1])
                    if not first and size in m.d_attention_res else None)
    return _DLayout(tuple(ins), tuple(outs), tuple(down), tuple(res), tuple(attn),
                    input_conv=widths[0])
  ins = (m.image_channels,) + widths[:-1]
  res, size = [], m.resolution
  for down in m.d_downsample:
    size = size // 2 if down else size
    res.append(size)
  attn = tuple(attention_widths(widths[i]) if res[i] in m.d_attention_res else None
               for i in range(len(widths)))
  return _DLayout(ins, widths, tuple(bool(d) for d in m.d_downsample), tuple(res), attn)


@tf_keras.saving.register_keras_serializable(package="ppcd_tf")
class Discriminator(DummyCallBuildMixin, tf_keras.Model):
  """BigGAN class-conditional projection discriminator.

  Call: `D((x, y), training=False) -> logits [B]`. Build with `build_discriminator`.

  Args:
    model_cfg: architecture (resolved and validated here).
    sn_mode: spectral-norm mode of every layer.
    init: "ortho" (BigGAN default), "N02" or "glorot".
  """

  def __init__(self, model_cfg: ModelConfig, sn_mode: str = "power_iteration",
               init: str = "ortho", name: str = "discriminator", **kwargs):
    super().__init__(name=name, **kwargs)
    cfg = model_cfg.resolved()
    cfg.validate()
    layout = discriminator_layout(cfg)
    self._model_cfg, self._layout, self._sn_mode, self._init = cfg, layout, sn_mode, init
    sn = dict(sn_eps=cfg.sn_eps, sn_mode=sn_mode)
    blocks_sn = dict(sn, kernel_initializer=kernel_initializer(init))
    n = len(layout.out_channels)
    if cfg.deep:
      self.input_conv = SNConv2D(layout.input_conv, 3, name="input_conv", **blocks_sn)
      self.blocks = [
          DeepDBlock(layout.in_channels[i], layout.out_channels[i],
                     downsample=layout.downsample[i], attention=layout.attention[i],
                     name=f"block{i}", **blocks_sn) for i in range(n)]
    else:
      self.input_conv = None
      self.blocks = [
          DBlock(layout.in_channels[i], layout.out_channels[i],
                 downsample=layout.downsample[i], preactivation=i > 0,
                 attention=layout.attention[i], name=f"block{i}", **blocks_sn)
          for i in range(n)]
    # The projection head runs in float32 under a mixed policy (the output layer,
    # as the Keras mixed-precision guide advises): logits and CAMs keep full precision.
    self.linear = SNDense(1, name="linear", kernel_initializer=kernel_initializer(init),
                          dtype="float32", **sn)
    self.embed = SNEmbedding(cfg.num_classes, layout.out_channels[-1], name="embed",
                             embeddings_initializer=kernel_initializer(init),
                             dtype="float32", **sn)

  @property
  def model_cfg(self) -> ModelConfig:
    return self._model_cfg

  def features(self, x, training=False) -> tf.Tensor:
    """Last feature map before the head's ReLU, [B, h, w, C]."""
    h = tf.cast(x, self.compute_dtype)  # float32 unless a mixed policy is active
    if self.input_conv is not None:
      h = self.input_conv(h, training=training)
    for block in self.blocks:
      h = block(h, training=training)
    return h

  def call(self, inputs, training=None):
    x, y = inputs
    y = tf.cast(tf.reshape(y, [-1]), tf.int32)
    f = tf.cast(relu_of_block_output(self.features(x, training=training)), tf.float32)
    h = tf.reduce_sum(f, axis=[1, 2])
    logits = tf.squeeze(self.linear(h, training=training), axis=-1)
    return logits + tf.reduce_sum(self.embed(y, training=training) * h, axis=-1)

  def class_activation_map(self, inputs, training=False) -> tf.Tensor:
    """`CAM_ij = <embed(y), relu(f)_ij>` on the last feature map f, [B, h, w].

    Summing it over (i, j) gives the projection term of the logit.
    """
    x, y = inputs
    y = tf.cast(tf.reshape(y, [-1]), tf.int32)
    f = tf.cast(relu_of_block_output(self.features(x, training=training)), tf.float32)
    e = self.embed(y, training=training)
    return tf.einsum("bhwc,bc->bhw", f, e)

  def get_config(self) -> Dict[str, Any]:
    return {"model_cfg": dataclasses.asdict(self._model_cfg), "sn_mode": self._sn_mode,
            "init": self._init, "name": self.name}

  @classmethod
  def from_config(cls, config: Dict[str, Any], custom_objects=None) -> "Discriminator":
    del custom_objects
    return build_discriminator(model_config_from_dict(config["model_cfg"]),
                               sn_mode=config.get("sn_mode", "power_iteration"),
                               init=config.get("init", "ortho"),
                               name=config.get("name", "discriminator"))

  def build_by_dummy_call(self) -> None:
    """Creates every variable by one inference call on a batch of 1."""
    m = self._model_cfg
    x = tf.zeros([1, m.resolution, m.resolution, m.image_channels], tf.float32)
    self((x, tf.zeros([1], tf.int32)), training=False)


def build_discriminator(model_cfg: ModelConfig, sn_mode: str = "power_iteration",
                        name: str = "discriminator", init: str = "ortho") -> Discriminator:
  """Builds a Discriminator with all variables created (arguments as in the class)."""
  d = Discriminator(model_cfg, sn_mode=sn_mode, init=init, name=name)
  d.build_by_dummy_call()
  return d

