"""BigGAN-deep blocks (ppcd_tf.layers.deep_blocks) against hand-computed NumPy."""
import numpy as np
import tensorflow as tf
from absl.testing import absltest

from ppcd_tf.layers.deep_blocks import DeepDBlock, DeepGBlock, select_channels


class SelectChannelsTest(absltest.TestCase):

  def test_gather_with_zero_and_plain_prefix(self):
    x = np.arange(2 * 3, dtype=np.float32).reshape(1, 1, 2, 3) + 1
    got = select_channels(tf.constant(x), (2, 3, 0)).numpy()
    want = np.stack([x[..., 2], np.zeros_like(x[..., 0]), x[..., 0]], axis=-1)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(select_channels(tf.constant(x), (0, 1)).numpy(),
                                  x[..., :2])


class DeepGBlockTest(absltest.TestCase):

  def test_shapes_and_the_channel_dropping_skip(self):
    tf.random.set_seed(0)
    block = DeepGBlock(8, (2, 2, 2), 4, upsample=True, skip=(0, 1, 2, 3), sn_mode="frozen")
    x = tf.random.normal([2, 4, 4, 8])
    cond = tf.random.normal([2, 5])
    out = block(x, cond, training=False)
    self.assertEqual(out.shape, (2, 8, 8, 4))
    # With conv3 off (a huge frozen sigma, no bias) the block is its skip: the first 4
    # input channels, upsampled.
    block.conv3.sn_sigma.assign(1e30)
    block.conv3.bias.assign(tf.zeros_like(block.conv3.bias))
    got = block(x, cond, training=False).numpy()
    want = np.repeat(np.repeat(x.numpy()[..., :4], 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(got, want, atol=1e-6)

  def test_masks_zero_pruned_channels_everywhere(self):
    block = DeepGBlock(6, (3, 3, 3), 6, upsample=False, skip=tuple(range(6)), masked=True)
    x = tf.random.normal([2, 4, 4, 6], seed=1)
    block(x, tf.zeros([2, 5]), training=False)
    block.mask_out.prune([1, 4])
    out = block(x, tf.zeros([2, 5]), training=False).numpy()
    self.assertEqual(float(np.abs(out[..., [1, 4]]).max()), 0.0)
    self.assertGreater(float(np.abs(out[..., [0, 2, 3, 5]]).min()), 0.0)
    self.assertLen(block.mid_masks, 3)


class DeepDBlockTest(absltest.TestCase):

  def test_widening_shortcut_concatenates_a_learned_conv(self):
    block = DeepDBlock(4, 8, downsample=True, sn_mode="frozen")
    x = tf.random.normal([2, 8, 8, 4], seed=2)
    out = block(x, training=False)
    self.assertEqual(out.shape, (2, 4, 4, 8))
    self.assertEqual(block.conv_sc.kernel.shape, (1, 1, 4, 4))
    # The residual branch off: the first 4 channels are the pooled input itself.
    block.conv3.sn_sigma.assign(1e30)
    block.conv3.bias.assign(tf.zeros_like(block.conv3.bias))
    got = block(x, training=False).numpy()
    pooled = x.numpy().reshape(2, 4, 2, 4, 2, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(got[..., :4], pooled, atol=1e-6)
    with self.assertRaisesRegex(ValueError, "widens or keeps"):
      DeepDBlock(8, 4, downsample=False)


if __name__ == "__main__":
  absltest.main()
