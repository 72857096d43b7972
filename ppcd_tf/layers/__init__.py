"""Layers of the BigGAN / PPCD-GAN generator and discriminator (NHWC tensors).

* `spectral_norm`: SNDense, SNConv2D, SNEmbedding (power iteration or frozen sigma).
* `conditional_batchnorm`: ConditionalBatchNorm (BigGAN ccbn).
* `truncation_batchnorm`: TruncationBatchNorm (statistics per truncation,
  pytorch-pretrained-BigGAN's BigGANBatchNorm).
* `attention`: SelfAttention (SA-GAN non-local block).
* `masks`: ChannelMask (exactly binary, straight-through learnable channel mask).
* `blocks`: PPResBlock (G up-block with PP-Res masks), DBlock (D down-block).
"""

from ppcd_tf.layers.attention import SelfAttention, attention_widths
from ppcd_tf.layers.blocks import DBlock, PPResBlock, downsample_avg_2x, upsample_nearest_2x
from ppcd_tf.layers.conditional_batchnorm import BN_MOMENTUM, ConditionalBatchNorm, batch_norm
from ppcd_tf.layers.masks import ChannelMask
from ppcd_tf.layers.spectral_norm import (SN_MODES, SNConv2D, SNDense, SNEmbedding,
                                          INITS, SpectralNormLayer, is_training,
                                          kernel_initializer, spectral_norm_layers)

__all__ = [
    "SelfAttention", "attention_widths", "DBlock", "PPResBlock", "downsample_avg_2x",
    "upsample_nearest_2x", "BN_MOMENTUM", "ConditionalBatchNorm", "batch_norm",
    "ChannelMask", "SN_MODES", "SNConv2D", "SNDense", "SNEmbedding",
    "SpectralNormLayer", "is_training", "spectral_norm_layers", "kernel_initializer",
    "INITS",
]
