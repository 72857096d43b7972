"""Layers: spectral norm, ChannelMask, conditional BN, self-attention, blocks."""
import numpy as np
import tensorflow as tf
from absl.testing import absltest, parameterized

from ppcd_tf import layers


def _np_normalize(x, eps=1e-6):
  return x / max(np.linalg.norm(x), eps)


class SpectralNormTest(parameterized.TestCase):

  def _random_kernel(self, layer, rng):
    k = layer._raw_weight()
    k.assign(rng.standard_normal(k.shape).astype(np.float32))

  @parameterized.parameters("dense", "conv3", "conv1", "embedding")
  def test_largest_singular_value_is_one_after_power_iteration(self, kind):
    rng = np.random.RandomState(0)
    if kind == "dense":
      layer, x = layers.SNDense(7), tf.ones([2, 5])
    elif kind == "conv3":
      layer, x = layers.SNConv2D(6, 3), tf.ones([2, 4, 4, 3])
    elif kind == "conv1":
      layer, x = layers.SNConv2D(6, 1), tf.ones([2, 4, 4, 5])
    else:
      layer, x = layers.SNEmbedding(9, 4), tf.constant([1, 2])
    layer(x)
    self._random_kernel(layer, rng)  # an orthogonal init would trivially have sigma 1
    for _ in range(60):
      layer(x, training=True)
    w = layer.normalized_weight(training=False).numpy()
    w = w.reshape(-1, w.shape[-1]) if kind != "embedding" else w
    self.assertAlmostEqual(np.linalg.svd(w, compute_uv=False)[0], 1.0, delta=1e-3)
    raw = layer._raw_weight().numpy()
    raw = raw.reshape(-1, raw.shape[-1]) if kind != "embedding" else raw
    self.assertAlmostEqual(float(layer.sn_sigma.numpy()),
                           np.linalg.svd(raw, compute_uv=False)[0], delta=1e-3)

  def test_sigma_is_one_power_step_from_stored_u_like_biggan(self):
    layer = layers.SNDense(6, sn_eps=1e-6)
    layer(tf.ones([1, 4]))
    self._random_kernel(layer, np.random.RandomState(1))
    w, u = layer.kernel.numpy().astype(np.float64), layer.sn_u.numpy().astype(np.float64)
    v = _np_normalize(w @ u)
    u2 = _np_normalize(w.T @ v)
    self.assertAlmostEqual(float(layer.spectral_sigma(training=False)), v @ w @ u2,
                           places=5)

  def test_inference_does_not_update_training_does(self):
    layer = layers.SNConv2D(4, 3)
    x = tf.random.normal([2, 4, 4, 3])
    layer(x)
    u0, s0 = layer.sn_u.numpy().copy(), layer.sn_sigma.numpy().copy()
    a = layer(x, training=False).numpy()
    b = layer(x, training=False).numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(layer.sn_u.numpy(), u0)
    np.testing.assert_array_equal(layer.sn_sigma.numpy(), s0)
    layer(x, training=True)
    self.assertGreater(np.abs(layer.sn_u.numpy() - u0).max(), 0)

  def test_gradient_flows_through_sigma(self):
    layer = layers.SNDense(3, use_bias=False)
    x = tf.random.normal([4, 5])
    layer(x)
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(layer(x, training=False))
    grad = tape.gradient(loss, layer.kernel).numpy()
    sigma = float(layer.spectral_sigma(False))
    naive = np.tile(np.sum(x.numpy(), 0)[:, None], [1, 3]) / sigma
    self.assertGreater(np.abs(grad - naive).max(), 1e-4)  # d sigma / dW is not dropped

  def test_frozen_mode_divides_by_stored_sigma_and_never_updates(self):
    layer = layers.SNDense(3, sn_mode="frozen")
    x = tf.random.normal([2, 4])
    layer(x)
    layer.sn_sigma.assign(2.5)
    u0 = layer.sn_u.numpy().copy()
    out = layer(x, training=True).numpy()
    np.testing.assert_allclose(out, x.numpy() @ layer.kernel.numpy() / 2.5, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_array_equal(layer.sn_u.numpy(), u0)
    self.assertEqual(float(layer.sn_sigma.numpy()), 2.5)

  def test_bad_mode(self):
    with self.assertRaisesRegex(ValueError, "sn_mode"):
      layers.SNDense(3, sn_mode="nope")

  def test_non_trainable_state(self):
    layer = layers.SNConv2D(4, 3)
    layer(tf.zeros([1, 4, 4, 2]))
    self.assertEqual(sorted(v.name.split("/")[-1] for v in layer.trainable_variables),
                     ["bias:0", "kernel:0"])
    self.assertEqual(sorted(v.name.split("/")[-1] for v in layer.non_trainable_variables),
                     ["sn_sigma:0", "sn_u:0"])


class ChannelMaskTest(absltest.TestCase):

  def test_forward_is_exactly_binary_and_gradient_straight_through(self):
    mask = layers.ChannelMask(4)
    x = tf.random.normal([3, 2, 2, 4])
    mask(x)
    mask.score.assign([3.0, -1.0, 0.5, 2.0])
    mask.prune([2])
    with tf.GradientTape() as tape:
      out = mask(x)
      loss = tf.reduce_sum(out)
    np.testing.assert_array_equal(out.numpy(), x.numpy() * np.array([1, 1, 0, 1], np.float32))
    grad = tape.gradient(loss, mask.score).numpy()
    sig = 1 / (1 + np.exp(-mask.score.numpy()))
    expected = np.array([1, 1, 0, 1]) * sig * (1 - sig) * x.numpy().sum(axis=(0, 1, 2))
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)
    self.assertEqual(grad[2], 0.0)

  def test_prune_is_permanent_and_validated(self):
    mask = layers.ChannelMask(3)
    mask(tf.zeros([1, 3]))
    self.assertEqual(mask.num_alive(), 3)
    mask.prune([0])
    mask.prune([0])  # already pruned: ignored
    self.assertEqual(mask.num_alive(), 2)
    np.testing.assert_array_equal(mask.live_indices(), [1, 2])
    self.assertEqual(mask.score.trainable, True)
    self.assertEqual(mask.alive.trainable, False)
    with self.assertRaisesRegex(ValueError, "every channel"):
      mask.prune([1, 2])
    with self.assertRaisesRegex(ValueError, "out of range"):
      mask.prune([3])
    self.assertEqual(mask.num_alive(), 2)
    mask.set_alive([1, 1, 0])
    np.testing.assert_array_equal(mask.live_indices(), [0, 1])

  def test_initial_score(self):
    mask = layers.ChannelMask(2)
    mask(tf.zeros([1, 2]))
    np.testing.assert_array_equal(mask.score.numpy(), [3.0, 3.0])


class ConditionalBatchNormTest(absltest.TestCase):

  def test_inference_formula_and_moving_stats(self):
    cbn = layers.ConditionalBatchNorm(3, bn_eps=1e-5)
    x = tf.random.normal([4, 2, 2, 3]) * 2 + 1
    c = tf.random.normal([4, 5])
    cbn(x, c)
    mean0 = cbn.bn.moving_mean.numpy().copy()
    cbn(x, c, training=False)
    np.testing.assert_array_equal(cbn.bn.moving_mean.numpy(), mean0)
    cbn(x, c, training=True)
    self.assertGreater(np.abs(cbn.bn.moving_mean.numpy() - mean0).max(), 0)
    out = cbn(x, c, training=False).numpy()
    wg = cbn.gain_linear.normalized_weight(False).numpy()
    wb = cbn.bias_linear.normalized_weight(False).numpy()
    mean, var = cbn.bn.moving_mean.numpy(), cbn.bn.moving_variance.numpy()
    ref = ((x.numpy() - mean) / np.sqrt(var + 1e-5) * (1 + c.numpy() @ wg)[:, None, None]
           + (c.numpy() @ wb)[:, None, None])
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    self.assertEqual(len(cbn.trainable_variables), 2)  # gain and bias kernels, no bias


def _np_attention(x, att):
  k = lambda conv: conv.normalized_weight(False).numpy()[0, 0]  # noqa: E731
  b, h, w, _ = x.shape
  pool = lambda t: t.reshape(b, h // 2, 2, w // 2, 2, -1).max(axis=(2, 4))  # noqa: E731
  theta = (x @ k(att.theta)).reshape(b, h * w, -1)
  phi = pool(x @ k(att.phi)).reshape(b, h * w // 4, -1)
  g = pool(x @ k(att.g)).reshape(b, h * w // 4, -1)
  logits = theta @ phi.transpose(0, 2, 1)
  beta = np.exp(logits - logits.max(-1, keepdims=True))
  beta /= beta.sum(-1, keepdims=True)
  o = (beta @ g).reshape(b, h, w, -1) @ k(att.o)
  return x + att.gamma.numpy() * o


class SelfAttentionTest(absltest.TestCase):

  def test_identity_at_init_and_matches_numpy(self):
    att = layers.SelfAttention(16)
    x = tf.random.normal([2, 4, 6, 16])
    np.testing.assert_array_equal(att(x).numpy(), x.numpy())  # gamma starts at 0
    self.assertEqual((att.key_channels, att.value_channels), (2, 8))
    att.gamma.assign(0.8)
    np.testing.assert_allclose(att(x).numpy(), _np_attention(x.numpy(), att), rtol=1e-4,
                               atol=1e-5)
    # theta, phi: 16*2 each; g, o: 16*8 each; gamma.
    self.assertEqual(sum(int(np.prod(v.shape)) for v in att.trainable_variables),
                     2 * 32 + 2 * 128 + 1)

  def test_rejects_odd_sizes(self):
    with self.assertRaisesRegex(ValueError, "even"):
      layers.SelfAttention(8)(tf.zeros([1, 3, 3, 8]))


class BlockTest(parameterized.TestCase):

  @parameterized.parameters(False, True)
  def test_pp_res_block_shapes_and_masks(self, masked):
    block = layers.PPResBlock(8, 6, 4, attention=(1, 2), masked=masked)
    out = block(tf.random.normal([2, 4, 4, 8]), tf.random.normal([2, 5]))
    self.assertEqual(out.shape, (2, 8, 8, 4))
    self.assertEqual(block.mask_mid is not None, masked)
    if masked:
      self.assertEqual((block.mask_mid.num_channels, block.mask_out.num_channels), (6, 4))

  def test_pruned_output_channel_is_zero_after_attention(self):
    block = layers.PPResBlock(4, 4, 4, attention=(1, 2), masked=True)
    x, c = tf.random.normal([2, 4, 4, 4]), tf.random.normal([2, 3])
    block(x, c)
    block.attention.gamma.assign(1.0)
    block.mask_out.prune([1, 3])
    out = block(x, c).numpy()
    self.assertEqual(np.abs(out[..., [1, 3]]).max(), 0.0)
    self.assertGreater(np.abs(out[..., [0, 2]]).max(), 0.0)

  def test_in_mask_removes_pruned_input_channels(self):
    block = layers.PPResBlock(4, 3, 3, masked=True)
    in_mask = layers.ChannelMask(4)
    x, c = tf.random.normal([2, 4, 4, 4]), tf.random.normal([2, 3])
    x = x * tf.constant([1.0, 0.0, 1.0, 1.0])  # channel 1 is pruned upstream
    in_mask(x)
    in_mask.prune([1])
    block(x, c, in_mask=in_mask)
    a = block(x, c, in_mask=in_mask).numpy()
    # Whatever CBN1 makes of channel 1 (here: a shifted moving mean) must not reach
    # the output, although BN maps the zero channel to a non-zero value.
    mean = block.bn1.bn.moving_mean.numpy()
    mean[1] = 5.0
    block.bn1.bn.moving_mean.assign(mean)
    b = block(x, c, in_mask=in_mask).numpy()
    np.testing.assert_allclose(a, b, atol=1e-6)

  @parameterized.parameters((True, False, True), (True, True, True), (False, True, False))
  def test_d_block(self, downsample, preactivation, learnable):
    in_ch, out_ch = (3, 8) if not preactivation else (8, 8)
    block = layers.DBlock(in_ch, out_ch, downsample=downsample, preactivation=preactivation)
    out = block(tf.random.normal([2, 8, 8, in_ch]))
    self.assertEqual(out.shape, (2, 4 if downsample else 8, 4 if downsample else 8, out_ch))
    self.assertEqual(block.conv_sc is not None, learnable or in_ch != out_ch)

  def test_upsample_nearest(self):
    x = tf.reshape(tf.range(4, dtype=tf.float32), [1, 2, 2, 1])
    np.testing.assert_array_equal(
        layers.upsample_nearest_2x(x).numpy()[0, :, :, 0],
        [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])

  def test_upsample_nearest_equals_resize_with_unknown_shapes(self):
    # The concat/reshape form must equal tf.image.resize "nearest", value and
    # gradient, also traced with unknown batch / spatial sizes.
    x = tf.random.normal([3, 5, 4, 7])
    want = tf.image.resize(x, [10, 8], method="nearest")
    traced = tf.function(layers.upsample_nearest_2x, input_signature=[
        tf.TensorSpec([None, None, None, 7], tf.float32)])
    np.testing.assert_array_equal(traced(x).numpy(), want.numpy())
    w = tf.random.normal([3, 10, 8, 7])
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(x)
      ours = tf.reduce_sum(layers.upsample_nearest_2x(x) * w)
      ref = tf.reduce_sum(tf.image.resize(x, [10, 8], method="nearest") * w)
    np.testing.assert_allclose(tape.gradient(ours, x).numpy(),
                               tape.gradient(ref, x).numpy(), rtol=1e-6, atol=1e-6)


if __name__ == "__main__":
  absltest.main()
