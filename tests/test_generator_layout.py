"""Generator widths and layout (ppcd_tf.generator_layout), both block designs."""
import numpy as np
from absl.testing import absltest

from ppcd_tf import config as config_lib
from ppcd_tf import flags as ppcd_flags
from ppcd_tf.generator_layout import (GeneratorChannels, compose_skip, generator_layout,
                                      prefix_skip)


def deep_tiny():
  return config_lib.tiny_config(model=dict(arch="biggan_deep", hierarchical_z=False)).model


class DeepLayoutTest(absltest.TestCase):

  def test_two_blocks_per_resolution_with_a_quarter_bottleneck(self):
    m = deep_tiny()  # g_ch 4, mults 4,4,4,4: widths 16 everywhere, 3 resolutions
    ch = GeneratorChannels.from_model_config(m)
    self.assertEqual(ch.num_blocks, 6)
    self.assertEqual(ch.mids_per_block, 3)
    self.assertEqual(ch.block_mids(4), (4, 4, 4))
    layout = generator_layout(m)
    self.assertEqual(layout.upsample, (False, True) * 3)
    self.assertEqual(layout.resolutions, (4, 8, 8, 16, 16, 32))
    # attention after the up-block into 16 (after the pair), not after block 4
    self.assertEqual([a is not None for a in layout.attention],
                     [False, False, False, True, False, False])
    self.assertEqual((layout.stem_z_dim, layout.cond_dim), (32 + 16, 32 + 16))
    self.assertEqual(list(ch.widths())[:6], ["stem", "block0/mid0", "block0/mid1",
                                             "block0/mid2", "block0/out", "block1/mid0"])

  def test_imagenet128_deep_widths_follow_the_paper_table(self):
    m = ppcd_flags.parse_flagfile("configs/imagenet128_deep.cfg").model
    ch = GeneratorChannels.from_model_config(m)
    # Table 8 (BigGAN-deep 128): 16ch at 4x4 twice ... the up-blocks end at 1ch.
    self.assertEqual(ch.inputs[::2], (2048, 2048, 1024, 512, 256))
    self.assertEqual(ch.out, (2048, 2048, 2048, 1024, 1024, 512, 512, 256, 256, 128))
    self.assertEqual(ch.mid[::3], (512, 512, 512, 512, 256, 256, 128, 128, 64, 64))

  def test_biggan_keeps_one_hidden_width_per_block(self):
    m = config_lib.tiny_config().model
    ch = GeneratorChannels.from_model_config(m)
    self.assertEqual(ch.mids_per_block, 1)
    self.assertEqual(list(ch.widths()), ["stem", "block0/mid", "block0/out", "block1/mid",
                                         "block1/out", "block2/mid", "block2/out"])
    self.assertEqual(generator_layout(m).upsample, (True,) * 3)


class SkipTest(absltest.TestCase):

  def test_prefix_rule_and_zero_past_the_input(self):
    self.assertEqual(prefix_skip(4, 2), (0, 1))
    self.assertEqual(prefix_skip(2, 4), (0, 1, 2, 2))

  def test_compose_skip_by_hand(self):
    # full block 6 -> 3 (drops channels 3..5): outputs 0, 1, 2 take inputs 0, 1, 2.
    # Keep inputs {1, 2, 4} and outputs {0, 2}: output 0's input is pruned -> zero (3);
    # output 2 takes input 2, which is slim input position 1.
    got = compose_skip(prefix_skip(6, 3), np.array([1, 2, 4]), np.array([0, 2]))
    self.assertEqual(got, (3, 1))
    # Composing again (a slim copy of a slim block) keeps zeros zero.
    self.assertEqual(compose_skip(got, np.array([0, 1]), np.array([0, 1])), (2, 1))

  def test_skip_is_validated_round_trips_and_the_default_has_one_spelling(self):
    ch = GeneratorChannels(stem=3, mid=(1, 1, 1), out=(2,), skip=((3, 0),))
    self.assertEqual(GeneratorChannels.from_dict(ch.to_dict()), ch)
    self.assertIsNone(GeneratorChannels(stem=3, mid=(1, 1, 1), out=(2,),
                                        skip=((0, 1),)).skip)
    with self.assertRaisesRegex(ValueError, "skip"):
      GeneratorChannels(stem=3, mid=(1, 1, 1), out=(2,), skip=((4, 0),))
    with self.assertRaisesRegex(ValueError, "1 \\(BigGAN\\) or 3"):
      GeneratorChannels(stem=3, mid=(1, 1), out=(2,))

  def test_with_widths_replaces_named_widths(self):
    ch = GeneratorChannels.from_model_config(deep_tiny())
    narrower = ch.with_widths({"block2/mid1": 2, "block5/out": 7})
    self.assertEqual(narrower.block_mids(2), (4, 2, 4))
    self.assertEqual(narrower.out[5], 7)
    self.assertEqual(narrower.flat()[0], 16)


class DeepConfigTest(absltest.TestCase):

  def test_bad_deep_settings_are_named(self):
    with self.assertRaisesRegex(config_lib.ConfigError, "nohierarchical_z"):
      config_lib.tiny_config(model=dict(arch="biggan_deep")).validate()
    with self.assertRaisesRegex(config_lib.ConfigError, "one bool per block pair"):
      config_lib.tiny_config(model=dict(arch="biggan_deep", hierarchical_z=False,
                                        d_channel_mults=(4, 4), d_downsample=(1, 1))
                             ).validate()
    with self.assertRaisesRegex(config_lib.ConfigError, "arch="):
      config_lib.tiny_config(model=dict(arch="deep")).validate()


if __name__ == "__main__":
  absltest.main()
