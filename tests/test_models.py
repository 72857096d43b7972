"""Generator and discriminator: shapes, exact parameter counts, checkpoints, config."""
import dataclasses
import os
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from absl.testing import absltest, parameterized

from ppcd_tf import config as config_lib
from ppcd_tf.discriminator import Discriminator, build_discriminator
from ppcd_tf.generator import Generator, GeneratorChannels, build_generator


def tiny_model(**overrides) -> config_lib.ModelConfig:
  """32 px, g_ch = d_ch = 4 (all widths 16), z 32 = 4 chunks of 8, 10 classes."""
  return dataclasses.replace(config_lib.tiny_config().model, **overrides)


def model_at(resolution: int) -> config_lib.ModelConfig:
  """Tiny widths at 32 / 64 / 128 px with the BigGAN channel multipliers."""
  if resolution == 32:
    return tiny_model()
  attention = {64: (32,), 128: (64,)}[resolution]
  n_chunks = {64: 5, 128: 6}[resolution]
  return config_lib.ModelConfig(
      resolution=resolution, num_classes=5, g_ch=2, d_ch=2, z_dim=4 * n_chunks,
      shared_dim=8, g_attention_res=attention, d_attention_res=attention)


def inputs(cfg, batch=3, seed=0):
  rng = np.random.RandomState(seed)
  z = rng.standard_normal((batch, cfg.z_dim)).astype(np.float32)
  y = rng.randint(0, cfg.num_classes, size=batch).astype(np.int32)
  return tf.constant(z), tf.constant(y)


def trainable_count(model) -> int:
  return int(sum(np.prod(v.shape) for v in model.trainable_variables))


class GeneratorTest(parameterized.TestCase):

  @parameterized.parameters(32, 64, 128)
  def test_output_shape_and_range(self, resolution):
    cfg = model_at(resolution)
    g = build_generator(cfg, masked=resolution == 64)
    z, y = inputs(cfg)
    for training in (False, True):
      x = g((z, y), training=training).numpy()
      self.assertEqual(x.shape, (3, resolution, resolution, 3))
      self.assertLessEqual(np.abs(x).max(), 1.0)
      self.assertTrue(np.isfinite(x).all())

  def test_exact_parameter_count_by_hand(self):
    # tiny: every width 16, cond = shared 16 + chunk 8 = 24, attention at 16 px
    # (after block 1) with key 16/8 = 2 and value 16/2 = 8.
    shared = 10 * 16
    stem = (8 + 1) * (4 * 4 * 16)
    cbn = 2 * 24 * 16
    conv3 = 9 * 16 * 16 + 16
    conv1 = 16 * 16 + 16
    block = cbn + conv3 + cbn + conv3 + conv1
    attention = 16 * 2 + 16 * 2 + 16 * 8 + 8 * 16 + 1
    output = 2 * 16 + (9 * 16 * 3 + 3)
    expected = shared + stem + 3 * block + attention + output
    self.assertEqual(expected, 22596)
    self.assertEqual(trainable_count(build_generator(tiny_model())), expected)
    masked = build_generator(tiny_model(), masked=True)
    self.assertEqual(trainable_count(masked), expected + 16 + 3 * (16 + 16))  # + scores
    self.assertEqual(sum(int(np.prod(v.shape)) for v in masked.non_mask_trainable_variables),
                     expected)

  def test_features_masks_and_class_weights(self):
    cfg = tiny_model()
    g = build_generator(cfg, masked=True)
    z, y = inputs(cfg)
    images, feats = g.forward_with_features((z, y), training=False)
    np.testing.assert_array_equal(images.numpy(), g((z, y)).numpy())
    self.assertEqual([f.shape for f in feats], [(3, 8, 8, 16), (3, 16, 16, 16),
                                                (3, 32, 32, 16)])
    self.assertEqual([n for n, _ in g.masks], ["stem", "block0/mid", "block0/out",
                                               "block1/mid", "block1/out", "block2/mid",
                                               "block2/out"])
    self.assertEqual(build_generator(cfg).masks, [])
    weights = g.class_channel_weights((z, y))
    self.assertEqual([w.shape for w in weights], [(3, 16)] * 3)
    np.testing.assert_allclose(weights[-1].numpy(),
                               np.tile(np.abs(g.final_bn.gamma.numpy()), [3, 1]))
    # Block 0's weights are |1 + W_gain [shared(y), z_chunk_2]| of block 1's CBN1.
    chunk = cfg.z_dim // 4
    cond = np.concatenate([g.shared(y).numpy(), z.numpy()[:, 2 * chunk:3 * chunk]], 1)
    w_gain = g.blocks[1].bn1.gain_linear.normalized_weight(False).numpy()
    np.testing.assert_allclose(weights[0].numpy(), np.abs(1 + cond @ w_gain), rtol=1e-5,
                               atol=1e-6)
    # A pruned output channel is zero in the block's feature map.
    g.blocks[1].mask_out.prune([0, 5])
    _, feats = g.forward_with_features((z, y), training=True)
    self.assertEqual(np.abs(feats[1].numpy()[..., [0, 5]]).max(), 0.0)

  def test_mask_scores_get_gradients_pruned_ones_do_not(self):
    cfg = tiny_model()
    g = build_generator(cfg, masked=True)
    g.blocks[0].mask_mid.prune([3])
    z, y = inputs(cfg)
    scores = [m.score for _, m in g.masks]
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(g((z, y), training=True)))
    grads = tape.gradient(loss, scores)
    for (name, _), grad in zip(g.masks, grads):
      self.assertIsNotNone(grad, name)
      self.assertGreater(np.abs(grad.numpy()).max(), 0, name)
    self.assertEqual(grads[1].numpy()[3], 0.0)

  def test_non_hierarchical_z(self):
    cfg = tiny_model(hierarchical_z=False, z_dim=20)
    g = build_generator(cfg)
    self.assertEqual(g.stem.kernel.shape, (20, 256))
    self.assertEqual(g.blocks[0].bn1.gain_linear.kernel.shape, (16, 16))  # shared only
    self.assertEqual(g(inputs(cfg)).shape, (3, 32, 32, 3))

  def test_custom_channels(self):
    ch = GeneratorChannels(stem=5, mid=(3, 4, 2), out=(6, 1, 7))
    g = build_generator(tiny_model(), channels=ch)
    self.assertEqual(g.channels, ch)
    self.assertEqual(g.blocks[1].attention.key_channels, 2)  # from the config width 16
    self.assertEqual(g(inputs(tiny_model())).shape, (3, 32, 32, 3))
    self.assertEqual(GeneratorChannels.from_dict(ch.to_dict()), ch)
    with self.assertRaisesRegex(ValueError, ">= 1"):
      GeneratorChannels(stem=0, mid=(1,), out=(1,))

  def test_batchnorm_and_sn_state_only_change_in_training(self):
    cfg = tiny_model()
    g = build_generator(cfg)
    state = lambda: [v.numpy().copy() for v in g.non_trainable_variables]  # noqa: E731
    before = state()
    g(inputs(cfg), training=False)
    for a, b in zip(before, state()):
      np.testing.assert_array_equal(a, b)
    g(inputs(cfg), training=True)
    # Every moving statistic and power-iteration vector moves (sigma too, unless the
    # orthogonally initialised kernel has sigma exactly 1).
    for v, a, b in zip(g.non_trainable_variables, before, state()):
      if "sn_sigma" not in v.name:
        self.assertGreater(np.abs(a - b).max(), 0, v.name)

  def test_teacher_checkpoint_restores_into_student(self):
    cfg = tiny_model()
    teacher = build_generator(cfg, name="teacher")
    z, y = inputs(cfg)
    for _ in range(2):
      teacher((z, y), training=True)  # non-trivial BN statistics and u
    teacher.blocks[1].attention.gamma.assign(0.5)
    student = build_generator(cfg, masked=True, name="student")
    with tempfile.TemporaryDirectory() as d:
      path = tf.train.Checkpoint(generator=teacher).write(os.path.join(d, "t"))
      tf.train.Checkpoint(generator=student).read(path).expect_partial()
      teacher_keys = {k for k, _ in tf.train.list_variables(path)}
      path_s = tf.train.Checkpoint(generator=student).write(os.path.join(d, "s"))
      student_keys = {k for k, _ in tf.train.list_variables(path_s)}
    mask_keys = {k for k in student_keys if "mask" in k}
    self.assertLen(mask_keys, 7 * 2)  # score and alive of 7 masks
    self.assertEqual(student_keys - mask_keys, teacher_keys)
    np.testing.assert_array_equal(teacher((z, y)).numpy(), student((z, y)).numpy())

  def test_config_round_trip_and_keras_save_load(self):
    cfg = tiny_model()
    g = build_generator(cfg, masked=True)
    g.stem_mask.prune([2, 3])
    z, y = inputs(cfg)
    clone = Generator.from_config(g.get_config())
    self.assertEqual(clone.get_config(), g.get_config())
    clone.set_weights(g.get_weights())
    np.testing.assert_array_equal(clone((z, y)).numpy(), g((z, y)).numpy())
    with tempfile.TemporaryDirectory() as d:
      path = os.path.join(d, "g.keras")
      g.save(path)
      loaded = tf_keras.models.load_model(path)
    self.assertIsInstance(loaded, Generator)
    self.assertEqual(loaded.stem_mask.num_alive(), 14)
    np.testing.assert_array_equal(loaded((z, y)).numpy(), g((z, y)).numpy())


class DiscriminatorTest(parameterized.TestCase):

  @parameterized.parameters(32, 64, 128)
  def test_logits_shape(self, resolution):
    cfg = model_at(resolution)
    d = build_discriminator(cfg)
    x = tf.random.uniform([3, resolution, resolution, 3], -1, 1)
    _, y = inputs(cfg)
    for training in (False, True):
      self.assertEqual(d((x, y), training=training).shape, (3,))

  def test_exact_parameter_count_by_hand(self):
    # tiny D: widths 16, downsample 1,1,0,0, attention after block 0 (16 px).
    block0 = (9 * 3 * 16 + 16) + (9 * 16 * 16 + 16) + (3 * 16 + 16)
    attention = 2 * 16 * 2 + 2 * 16 * 8 + 1
    block1 = 2 * (9 * 16 * 16 + 16) + (16 * 16 + 16)  # downsamples: learnable shortcut
    block23 = 2 * (9 * 16 * 16 + 16)                  # identity shortcut
    head = (16 + 1) + 10 * 16
    expected = block0 + attention + block1 + 2 * block23 + head
    self.assertEqual(expected, 17522)
    d = build_discriminator(tiny_model())
    self.assertEqual(trainable_count(d), expected)
    self.assertIsNotNone(d.blocks[0].attention)
    self.assertIsNone(d.blocks[2].conv_sc)

  def test_class_activation_map_is_the_projection_term(self):
    cfg = tiny_model()
    d = build_discriminator(cfg)
    x = tf.random.uniform([3, 32, 32, 3], -1, 1)
    _, y = inputs(cfg)
    cam = d.class_activation_map((x, y)).numpy()
    self.assertEqual(cam.shape, (3, 8, 8))
    h = tf.reduce_sum(tf.nn.relu(d.features(x)), [1, 2])
    unconditional = d.linear(h).numpy()[:, 0]
    np.testing.assert_allclose(cam.sum(axis=(1, 2)) + unconditional, d((x, y)).numpy(),
                               rtol=1e-4, atol=1e-4)

  def test_config_round_trip(self):
    cfg = tiny_model()
    d = build_discriminator(cfg)
    clone = Discriminator.from_config(d.get_config())
    clone.set_weights(d.get_weights())
    x = tf.random.uniform([2, 32, 32, 3], -1, 1)
    y = tf.constant([1, 2])
    np.testing.assert_array_equal(clone((x, y)).numpy(), d((x, y)).numpy())


class ImageNet128Test(absltest.TestCase):
  """The `imagenet128` config is BigGAN 128x128 (Brock et al. 2019)."""

  @pytest.mark.slow
  def test_biggan128_builds_runs_and_has_the_paper_parameter_counts(self):
    from ppcd_tf import flags as ppcd_flags
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = ppcd_flags.parse_flagfile(os.path.join(root, "configs", "imagenet128.cfg")).model
    # "N02" init: same shapes, without ~50 s of QR decompositions of "ortho".
    g = build_generator(cfg, init="N02")
    z, y = inputs(cfg, batch=1)
    x = g((z, y), training=False)
    self.assertEqual(x.shape, (1, 128, 128, 3))
    g_params = trainable_count(g)
    del g
    d = build_discriminator(cfg, init="N02")
    self.assertEqual(d((x, y), training=False).shape, (1,))
    d_params = trainable_count(d)
    # BigGAN-PyTorch's layout gives exactly these; the paper rounds to 70.4M / 88.0M.
    self.assertEqual(g_params, 70_433_988)
    self.assertEqual(d_params, 87_982_370)
    self.assertLess(abs(g_params / 70.4e6 - 1), 1e-3)
    self.assertLess(abs(d_params / 88.0e6 - 1), 1e-3)


if __name__ == "__main__":
  absltest.main()


class ExplicitChannelsTest(parameterized.TestCase):

  def test_g_channels_builds_that_architecture(self):
    from ppcd_tf import config as config_lib, flops
    from ppcd_tf.generator import GeneratorChannels, build_generator
    base = config_lib.tiny_config().model
    channels = GeneratorChannels(stem=3, mid=(2, 5, 1), out=(4, 2, 6))
    cfg = dataclasses.replace(base, g_channels=(3, 2, 5, 1, 4, 2, 6))
    cfg.validate()
    g = build_generator(cfg)
    self.assertEqual(g.channels, channels)
    self.assertEqual(flops.count_generator(g).total_params,
                     sum(int(np.prod(v.shape)) for v in g.trainable_variables))
    with self.assertRaisesRegex(config_lib.ConfigError, "g_channels=.*7 positive widths"):
      dataclasses.replace(base, g_channels=(3, 2)).validate()

  def test_g_attention_widths_override_the_layout(self):
    from ppcd_tf import flops
    from ppcd_tf.generator import generator_layout
    cfg = tiny_model(g_channels=(3, 2, 5, 1, 4, 2, 6), g_attention_widths=(3, 5))
    cfg.validate()
    # Attention after block 1 (16 px): the override, not C/8, C/2 of its width 2.
    self.assertEqual(generator_layout(cfg).attention, (None, (3, 5), None))
    self.assertEqual(generator_layout(dataclasses.replace(cfg, g_attention_widths=()))
                     .attention, (None, (1, 1), None))
    g = build_generator(cfg, init="N02")
    att = g.blocks[1].attention
    self.assertEqual([tuple(c.kernel.shape) for c in (att.theta, att.phi, att.g, att.o)],
                     [(1, 1, 2, 3), (1, 1, 2, 3), (1, 1, 2, 5), (1, 1, 5, 2)])
    self.assertEqual(flops.count_generator(g).total_params, trainable_count(g))
    # Keras config round trip (JSON lists back to tuples) keeps the override.
    import json
    config = json.loads(json.dumps(g.get_config()))
    again = Generator.from_config(config)
    self.assertEqual(again.model_cfg.g_attention_widths, (3, 5))
    self.assertEqual([v.shape for v in again.variables], [v.shape for v in g.variables])

  @parameterized.named_parameters(
      ("one_width", (2,), r"g_attention_widths=\(2,\) must be two positive widths"),
      ("three_widths", (2, 8, 8), "must be two positive widths"),
      ("zero", (0, 8), r"g_attention_widths=\(0, 8\) must be two positive"),
  )
  def test_bad_g_attention_widths(self, widths, expected):
    with self.assertRaisesRegex(config_lib.ConfigError, expected):
      tiny_model(g_attention_widths=widths).validate()

  def test_g_attention_widths_without_attention_is_an_error(self):
    with self.assertRaisesRegex(config_lib.ConfigError,
                                "g_attention_widths=.*no effect.*g_attention_res"):
      tiny_model(g_attention_widths=(2, 8), g_attention_res=()).validate()

  def test_slim_architecture(self):
    from ppcd_tf.generator import slim_architecture
    slim = GeneratorChannels(stem=3, mid=(2, 5, 1), out=(4, 2, 6))
    arch = slim_architecture(tiny_model(), slim)
    # The teacher widths are 16, so its attention is (16 / 8, 16 / 2).
    self.assertEqual(arch, tiny_model(g_channels=(3, 2, 5, 1, 4, 2, 6),
                                      g_attention_widths=(2, 8)))
    no_attention = slim_architecture(tiny_model(g_attention_res=()), slim)
    self.assertEqual(no_attention.g_attention_widths, ())
    self.assertEqual(no_attention.g_channels, (3, 2, 5, 1, 4, 2, 6))
    with self.assertRaisesRegex(ValueError, "2 blocks, resolution 32 needs 3"):
      slim_architecture(tiny_model(), GeneratorChannels(stem=3, mid=(2, 5), out=(4, 2)))
    # Two attention layers of different widths cannot share one (key, value) pair.
    two = tiny_model(g_channels=(16, 16, 16, 16, 16, 32, 16), g_attention_res=(8, 16))
    with self.assertRaisesRegex(ValueError, r"different \(key, value\) widths"):
      slim_architecture(two, slim)
