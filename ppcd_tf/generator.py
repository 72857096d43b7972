"""BigGAN generator with optional PP-Res channel masks (METHOD.md "Architecture").

Conventions: z is float32 [B, z_dim], labels y are int32 [B] in [0, num_classes),
images are float32 NHWC [B, R, R, image_channels] in [-1, 1] (tanh).

Structure (BigGAN-PyTorch `Generator`, G_shared=True):
  * `shared`: class embedding num_classes x shared_dim (not spectrally normalised,
    as in BigGAN).
  * hierarchical z: z is split into num_blocks + 1 chunks; chunk 0 feeds the stem,
    block i is conditioned on `concat[shared(y), z_chunk_{i+1}]` (BigGAN-PyTorch's
    order, so its CBN projection weights map 1:1). Without hierarchical z the stem
    takes all of z and every block is conditioned on shared(y) alone.
  * `stem`: SN linear z_0 -> 4*4*C_stem, reshaped to [B, 4, 4, C_stem] (NHWC: unit
    index (h*4 + w)*C + c; BigGAN-PyTorch's NCHW view orders units c*16 + h*4 + w).
  * `blocks`: PPResBlock up-blocks (CBN, ReLU, nearest 2x, SN conv3x3, CBN, ReLU, SN
    conv3x3, learnable 1x1 shortcut); self-attention after the block whose output
    resolution is in `g_attention_res`.
  * `final_bn` (unconditional) -> ReLU -> `final_conv` (SN conv3x3) -> tanh.

BigGAN-deep (`--arch=biggan_deep`, Brock et al. 2019, appendix B.5): the stem and every
block read `concat[z, shared(y)]` (no z split); `blocks` are two DeepGBlocks per
resolution (`ppcd_tf.layers.deep_blocks`: 1x1 reduce, two 3x3, 1x1 expand, a skip that
keeps or drops channels), self-attention after the up-block into each resolution of
`g_attention_res`; widths and the skip rule are in `ppcd_tf.generator_layout`.

`masked=True` adds ChannelMask layers (`stem_mask`, each block's `mask_mid` (BigGAN-deep:
`mask_mid0..2`) and `mask_out`; see `ppcd_tf.layers.blocks` for where they act). Masked and unmasked
generators of one config have identical checkpoint paths for every non-mask
variable, so `tf.train.Checkpoint(generator=teacher)` restores into a student.

Imported pytorch-pretrained-BigGAN teachers (`ppcd_tf.biggan_import.pretrained`):
`ModelConfig.g_sn_mode="frozen"` divides every G layer by its stored sigma, and
`truncation_tables=True` (teachers only) gives every BatchNorm statistics per truncation
(`ppcd_tf.layers.truncation_batchnorm`), picked by `select_truncation(t)`.

`channels` (GeneratorChannels) sets the widths, so the same builder makes the
teacher, the masked student and the slimmed dense network. Self-attention's
internal widths (C/8, C/2) always come from the *config* width of its block,
because they are never pruned, or from `ModelConfig.g_attention_widths` when set.
`slim_architecture` turns a config plus slim widths into a config that builds the
slim generator's architecture directly (same variables, for training from scratch).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple


import tensorflow as tf
import tf_keras

from ppcd_tf.config import ModelConfig
from ppcd_tf.generator_layout import (BOTTOM_WIDTH, GeneratorChannels, compose_skip,
                                      generator_layout, model_config_from_dict,
                                      slim_architecture)
from ppcd_tf.layers.blocks import PPResBlock
from ppcd_tf.layers.deep_blocks import DeepGBlock
from ppcd_tf.layers.conditional_batchnorm import batch_norm, truncation_statistics
from ppcd_tf.layers.masks import ChannelMask
from ppcd_tf.layers.spectral_norm import SNConv2D, SNDense, kernel_initializer

__all__ = ["GeneratorChannels", "Generator", "build_generator", "model_config_from_dict",
           "generator_layout", "slim_architecture", "BOTTOM_WIDTH"]


class DummyCallBuildMixin:
  """Keras build config for models whose variables come from one dummy call.

  `.keras` loading calls `build_from_config`; subclasses define
  `build_by_dummy_call()` (a batch-1 inference call creating every variable).
  """

  def get_build_config(self) -> Dict[str, Any]:
    return {"built_by_dummy_call": True}

  def build_from_config(self, config) -> None:
    del config
    self.build_by_dummy_call()


@tf_keras.saving.register_keras_serializable(package="ppcd_tf")
class Generator(DummyCallBuildMixin, tf_keras.Model):
  """BigGAN conditional generator; `masked=True` adds PP-Res channel masks.

  Call: `G((z, y), training=False) -> images`. Build with `build_generator`, which
  also creates the variables (a Keras subclassed model creates them on first call).
  `training` must be a Python bool (or None = False): layers branch on it.

  Args:
    model_cfg: architecture (resolved and validated here).
    masked: add ChannelMask layers.
    channels: widths (default: the config's BigGAN widths).
    sn_mode: "power_iteration" (train/teacher/student) or "frozen" (slimmed
      generators: divide by the stored sigma, see `ppcd_tf.layers.spectral_norm`).
    mask_initial_score: initial mask score.
    init: weight initialisation, BigGAN-PyTorch's G_init: "ortho" (default),
      "N02" or "glorot" (see `ppcd_tf.layers.kernel_initializer`).
    truncation_tables: with `model_cfg.bn_stats` > 0, every BatchNorm also holds
      statistics per truncation (`ppcd_tf.layers.truncation_batchnorm`; teachers
      imported from pytorch-pretrained-BigGAN); `select_truncation` picks them.

  `model_cfg.g_sn_mode="frozen"` freezes spectral norm whatever `sn_mode` says.
  """

  def __init__(self, model_cfg: ModelConfig, masked: bool = False,
               channels: Optional[GeneratorChannels] = None,
               sn_mode: str = "power_iteration", mask_initial_score: float = 3.0,
               init: str = "ortho", name: str = "generator",
               truncation_tables: bool = False, **kwargs):
    super().__init__(name=name, **kwargs)
    cfg = model_cfg.resolved()
    cfg.validate()
    channels = channels or GeneratorChannels.from_model_config(cfg)
    layout = generator_layout(cfg)
    if channels.num_blocks != layout.num_blocks:
      raise ValueError(f"channels has {channels.num_blocks} blocks, resolution "
                       f"{cfg.resolution} needs {layout.num_blocks}.")
    if truncation_tables and (masked or not cfg.bn_stats):
      raise ValueError("truncation_tables needs an unmasked generator of a config with "
                       f"bn_stats > 0 (masked={masked}, bn_stats={cfg.bn_stats}).")
    sn_mode = "frozen" if cfg.g_sn_mode == "frozen" else sn_mode
    self._model_cfg = cfg
    self._channels = channels
    self._layout = layout
    self._masked = bool(masked)
    self._sn_mode = sn_mode
    self._truncation_tables = bool(truncation_tables)
    self._mask_initial_score = float(mask_initial_score)
    self._init = init
    # Each layer copies the initializer (ppcd_tf.layers.spectral_norm), so kernels
    # of equal shape do not start equal.
    sn = dict(sn_eps=cfg.sn_eps, sn_mode=sn_mode,
              kernel_initializer=kernel_initializer(init))

    with truncation_statistics(cfg.bn_stats if truncation_tables else 0):
      self._build_layers(cfg, channels, layout, masked, mask_initial_score, init, sn)
    # Set by ppcd_tf.qat: fake quant of z, of the class embedding and of the images.
    self.quant = None

  def _build_layers(self, cfg, channels, layout, masked, mask_initial_score, init, sn):
    self.shared = tf_keras.layers.Embedding(
        cfg.num_classes, cfg.shared_dim, embeddings_initializer=kernel_initializer(init),
        name="shared")
    self.stem = SNDense(BOTTOM_WIDTH * BOTTOM_WIDTH * channels.stem, name="stem", **sn)
    self.stem_mask = (ChannelMask(channels.stem, mask_initial_score, name="stem_mask")
                      if masked else None)
    common = dict(masked=masked, bn_eps=cfg.bn_eps, mask_initial_score=mask_initial_score,
                  **sn)
    if cfg.deep:
      self.blocks = [
          DeepGBlock(channels.inputs[i], channels.block_mids(i), channels.out[i],
                     upsample=layout.upsample[i], skip=channels.block_skip(i),
                     attention=layout.attention[i], name=f"block{i}", **common)
          for i in range(layout.num_blocks)]
    else:
      self.blocks = [
          PPResBlock(channels.inputs[i], channels.mid[i], channels.out[i],
                     attention=layout.attention[i], name=f"block{i}", **common)
          for i in range(layout.num_blocks)]
    self.final_bn = batch_norm(cfg.bn_eps, affine=True, name="final_bn")
    # The RGB conv runs in float32 under a mixed policy (the output layer; 3 channels,
    # a negligible share of G's MACs), so images are computed, not just cast, in float32.
    self.final_conv = SNConv2D(cfg.image_channels, 3, name="final_conv", dtype="float32",
                               **sn)

  # ---- properties ----
  @property
  def model_cfg(self) -> ModelConfig:
    """The resolved ModelConfig."""
    return self._model_cfg

  @property
  def channels(self) -> GeneratorChannels:
    """Built widths (for a masked generator: including pruned channels)."""
    return self._channels

  @property
  def masked(self) -> bool:
    return self._masked

  @property
  def sn_mode(self) -> str:
    return self._sn_mode

  @property
  def truncation_tables(self) -> bool:
    return self._truncation_tables

  def batch_norms(self) -> List[tf_keras.layers.BatchNormalization]:
    """Every BatchNorm in forward order (each block's CBNs, then `final_bn`)."""
    out = []
    for block in self.blocks:
      out += [getattr(block, f"bn{j}").bn for j in range(4) if hasattr(block, f"bn{j}")]
    return out + [self.final_bn]

  def select_truncation(self, truncation: float) -> None:
    """Sets every BatchNorm's moving statistics to those of `truncation` (a
    `truncation_tables` generator: pytorch-pretrained-BigGAN's rule,
    `ppcd_tf.layers.truncation_batchnorm.release_statistics`)."""
    if not self._truncation_tables:
      raise ValueError(f"{self.name} holds no statistics per truncation "
                       "(build it with truncation_tables=True and bn_stats > 0).")
    for bn in self.batch_norms():
      bn.select_truncation(truncation)

  @property
  def masks(self) -> List[Tuple[str, ChannelMask]]:
    """Ordered (name, ChannelMask): "stem", "block0/mid", "block0/out", ...

    Empty for an unmasked generator.
    """
    if not self._masked:
      return []
    layers = [self.stem_mask]
    for block in self.blocks:
      layers += block.mid_masks + [block.mask_out]
    return list(zip(self._channels.widths(), layers))

  @property
  def non_mask_trainable_variables(self) -> List[tf.Variable]:
    """Trainable variables except mask scores (the network weights proper)."""
    scores = {id(m.score) for _, m in self.masks}
    return [v for v in self.trainable_variables if id(v) not in scores]

  def live_channels(self) -> GeneratorChannels:
    """Widths counting live channels only (= `channels` when unmasked)."""
    if not self._masked:
      return self._channels
    live = {name: mask.live_indices() for name, mask in self.masks}
    widths = self._channels.with_widths({name: len(idx) for name, idx in live.items()})
    if not self._model_cfg.deep:
      return widths
    # BigGAN-deep: each slim skip selects among the live inputs (generator_layout).
    inputs = ["stem"] + [f"block{i}/out" for i in range(len(self.blocks) - 1)]
    skip = tuple(
        compose_skip(self._channels.block_skip(i), live[inputs[i]], live[f"block{i}/out"])
        for i in range(len(self.blocks)))
    return dataclasses.replace(widths, skip=skip)

  # ---- forward ----
  def _split_inputs(self, inputs):
    z, y = inputs
    # The compute dtype: float32, or bfloat16 / float16 under a mixed policy.
    z = tf.cast(z, self.compute_dtype)
    if self.quant is not None:
      z = self.quant.latent(z)
    y = tf.cast(tf.reshape(y, [-1]), tf.int32)
    n = self._layout.num_blocks
    if self._model_cfg.hierarchical_z:
      chunks = tf.split(z, n + 1, axis=1)
      stem_z, block_z = chunks[0], chunks[1:]
    else:
      stem_z, block_z = z, [None] * n
    return stem_z, block_z, y

  def _conditions(self, stem_z, block_z, y) -> "tuple[tf.Tensor, List[tf.Tensor]]":
    """The stem's input and each block's conditioning vector."""
    shared = self.shared(y)
    if self.quant is not None:
      shared = self.quant.shared(shared)
    if self._model_cfg.deep:  # BigGAN-deep: concat[z, shared(y)] everywhere
      cond = tf.concat([stem_z, shared], axis=1)
      return cond, [cond] * len(block_z)
    return stem_z, [shared if zc is None else tf.concat([shared, zc], axis=1)
                    for zc in block_z]

  def forward_with_features(self, inputs, training=False):
    """Runs G and returns `(images, features)`.

    Args:
      inputs: `(z, y)`, z float32 [B, z_dim], y int32 [B].
      training: BatchNorm batch statistics and SN power-iteration updates.

    Returns:
      images [B, R, R, image_channels] in [-1, 1], and a list with one tensor per
      G block: the block output after `mask_out` and after self-attention if any.
    """
    stem_z, block_z, y = self._split_inputs(inputs)
    stem_in, conds = self._conditions(stem_z, block_z, y)
    h = self.stem(stem_in, training=training)
    h = tf.reshape(h, [-1, BOTTOM_WIDTH, BOTTOM_WIDTH, self._channels.stem])
    in_mask = self.stem_mask
    if in_mask is not None:
      h = in_mask(h)
    features = []
    for block, cond in zip(self.blocks, conds):
      h = block(h, cond, in_mask=in_mask, training=training)
      features.append(h)
      in_mask = block.mask_out
    h = tf.nn.relu(self.final_bn(h, training=training))
    if in_mask is not None:
      h = in_mask(h)
    # Images are float32 under every policy, so losses and metrics see float32.
    images = tf.tanh(tf.cast(self.final_conv(h, training=training), tf.float32))
    if self.quant is not None:
      images = self.quant.images(images)
    return images, features

  def call(self, inputs, training=None):
    images, _ = self.forward_with_features(inputs, training=training)
    return images

  def class_channel_weights(self, inputs) -> List[tf.Tensor]:
    """Per G block, [B, C_i] = |gain_c| of the BatchNorm that consumes its output.

    For block i < last this is the next block's first CBN gain `|1 + W_gain c|`,
    which depends on the class embedding *and* that block's z chunk (hence the
    `(z, y)` input); for the last block it is the final BN's |gamma| broadcast to
    [B, C]. Spectral norm runs in inference mode (nothing is updated). A masked
    generator returns all its built channels (pruned ones too; their features are
    zero anyway). Used by the class-aware attention distillation (METHOD.md item 1).

    Args:
      inputs: `(z, y)` as for `call`.
    """
    stem_z, block_z, y = self._split_inputs(inputs)
    _, conds = self._conditions(stem_z, block_z, y)
    weights = [tf.abs(self.blocks[i + 1].input_bn.channel_gain(conds[i + 1], training=False))
               for i in range(len(self.blocks) - 1)]
    batch = tf.shape(y)[0]
    gamma = tf.abs(tf.convert_to_tensor(self.final_bn.gamma))
    weights.append(tf.tile(gamma[None, :], [batch, 1]))
    return weights

  # ---- serialisation ----
  def get_config(self) -> Dict[str, Any]:
    return {"model_cfg": dataclasses.asdict(self._model_cfg), "masked": self._masked,
            "channels": self._channels.to_dict(), "sn_mode": self._sn_mode,
            "mask_initial_score": self._mask_initial_score, "init": self._init,
            "name": self.name, "truncation_tables": self._truncation_tables}

  @classmethod
  def from_config(cls, config: Dict[str, Any], custom_objects=None) -> "Generator":
    del custom_objects
    return build_generator(
        model_config_from_dict(config["model_cfg"]), masked=config.get("masked", False),
        channels=(GeneratorChannels.from_dict(config["channels"])
                  if config.get("channels") else None),
        sn_mode=config.get("sn_mode", "power_iteration"),
        mask_initial_score=config.get("mask_initial_score", 3.0),
        init=config.get("init", "ortho"), name=config.get("name", "generator"),
        truncation_tables=config.get("truncation_tables", False))

  def build_by_dummy_call(self) -> None:
    """Creates every variable by one inference call on a batch of 1."""
    z = tf.zeros([1, self._model_cfg.z_dim], tf.float32)
    y = tf.zeros([1], tf.int32)
    self((z, y), training=False)


def build_generator(model_cfg: ModelConfig, masked: bool = False,
                    channels: Optional[GeneratorChannels] = None,
                    name: str = "generator", sn_mode: str = "power_iteration",
                    mask_initial_score: float = 3.0, init: str = "ortho",
                    truncation_tables: bool = False) -> Generator:
  """Builds a Generator with all variables created.

  Args:
    model_cfg: architecture.
    masked: False for the plain BigGAN generator (teacher, no mask layers); True
      for the PP-Res student with ChannelMask layers.
    channels: widths; default BigGAN's widths from the config.
    name: Keras model name.
    sn_mode: "power_iteration" or "frozen" (slimmed generators).
    mask_initial_score: initial mask score (masked only).
    init: "ortho" (BigGAN default; ~25 s for the 128x128 G on 2 CPU cores, all
      of it QR decompositions), "N02" or "glorot".
    truncation_tables: BatchNorm statistics per truncation (see `Generator`).

  Returns:
    A built `Generator`.
  """
  g = Generator(model_cfg, masked=masked, channels=channels, sn_mode=sn_mode,
                mask_initial_score=mask_initial_score, init=init, name=name,
                truncation_tables=truncation_tables)
  g.build_by_dummy_call()
  return g

