"""Parameter / MAC accounting (`ppcd_tf.flops`)."""
import dataclasses
import os

import numpy as np
from absl.testing import absltest, parameterized

from ppcd_tf import config as config_lib
from ppcd_tf import flags as ppcd_flags
from ppcd_tf import flops
from ppcd_tf.discriminator import build_discriminator
from ppcd_tf.generator import GeneratorChannels, build_generator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_model(**overrides):
  return dataclasses.replace(config_lib.tiny_config().model, **overrides)


def model_64():
  return config_lib.ModelConfig(resolution=64, num_classes=5, g_ch=2, d_ch=2, z_dim=20,
                                shared_dim=8, g_attention_res=(32,), d_attention_res=(32,))


def trainable_count(model) -> int:
  return int(sum(np.prod(v.shape) for v in model.trainable_variables))


class FlopsTest(parameterized.TestCase):

  def test_imagenet128_matches_biggan(self):
    cfg = ppcd_flags.parse_flagfile(os.path.join(ROOT, "configs", "imagenet128.cfg")).model
    self.assertEqual(flops.generator_cost(cfg).total_params, 70_433_988)
    self.assertEqual(flops.discriminator_cost(cfg).total_params, 87_982_370)
    g_blocks = flops.generator_cost(cfg).by_block()
    # Block 0 (1536 -> 1536 at 8x8): 2 convs 3x3, 1x1 shortcut, 2 CBNs of 148 -> 1536.
    self.assertEqual(g_blocks["block0"][0],
                     2 * (9 * 1536 ** 2 + 1536) + 1536 ** 2 + 1536 + 4 * 148 * 1536)

  @parameterized.parameters("tiny", "64")
  def test_counts_equal_built_models(self, which):
    cfg = tiny_model() if which == "tiny" else model_64()
    g, d = build_generator(cfg), build_discriminator(cfg)
    self.assertEqual(flops.count_generator(g).total_params, trainable_count(g))
    self.assertEqual(flops.count_discriminator(d).total_params, trainable_count(d))
    masked = build_generator(cfg, masked=True)
    self.assertEqual(flops.live_params(masked), trainable_count(g))
    self.assertEqual(flops.live_macs(masked), flops.live_macs(g))

  def test_macs_by_hand(self):
    rows = {r.name: r for r in flops.generator_cost(tiny_model()).rows}
    self.assertEqual(rows["stem/linear"].macs, 8 * 256)
    self.assertEqual(rows["block0/bn1"].macs, 2 * 24 * 16)
    self.assertEqual(rows["block0/conv1"].macs, 8 * 8 * 9 * 16 * 16)   # at the output res
    self.assertEqual(rows["block0/conv_sc"].macs, 4 * 4 * 16 * 16)    # before upsampling
    self.assertEqual(rows["block1/attention/theta"].macs, 16 * 16 * 16 * 2)
    self.assertEqual(rows["block1/attention/scores"].macs, 256 * 64 * 2)
    self.assertEqual(rows["block1/attention/values"].macs, 256 * 64 * 8)
    self.assertEqual(rows["output/conv"].macs, 32 * 32 * 9 * 16 * 3)
    self.assertEqual(rows["output/bn"].macs, 0)
    d_rows = {r.name: r for r in flops.discriminator_cost(tiny_model()).rows}
    self.assertEqual(d_rows["block0/conv1"].macs, 32 * 32 * 9 * 3 * 16)
    self.assertEqual(d_rows["block0/conv_sc"].macs, 16 * 16 * 3 * 16)  # pools first
    self.assertEqual(d_rows["block1/conv_sc"].macs, 16 * 16 * 16 * 16)  # conv first

  def test_live_counts_follow_masks(self):
    cfg = tiny_model()
    g = build_generator(cfg, masked=True)
    g.stem_mask.prune([0, 1, 2])
    g.blocks[1].mask_out.prune(list(range(15)))
    g.blocks[2].mask_mid.prune([4])
    live = GeneratorChannels(stem=13, mid=(16, 16, 15), out=(16, 1, 16))
    self.assertEqual(g.live_channels(), live)
    self.assertEqual(flops.count_generator(g), flops.generator_cost(cfg, live))

  def test_g_attention_widths_set_the_attention_cost(self):
    # The live count of a pruned generator keeps the config's attention widths; a
    # config with g_channels = the live widths needs g_attention_widths to match it.
    g = build_generator(tiny_model(), masked=True)
    g.blocks[1].mask_out.prune(list(range(12)))
    live = g.live_channels()
    flat = (live.stem,) + live.mid + live.out
    derived = tiny_model(g_channels=flat)                      # C/8, C/2 of 4: (1, 2)
    kept = tiny_model(g_channels=flat, g_attention_widths=(2, 8))
    self.assertEqual(flops.generator_cost(kept), flops.count_generator(g))
    self.assertNotEqual(flops.generator_cost(derived), flops.count_generator(g))
    rows = {r.name: r for r in flops.generator_cost(kept).rows}
    self.assertEqual(rows["block1/attention/theta"].macs, 16 * 16 * 4 * 2)
    self.assertEqual(rows["block1/attention/values"].macs, 256 * 64 * 8)
    self.assertEqual(flops.generator_cost(kept).total_params,
                     trainable_count(build_generator(kept, init="N02")))

  @parameterized.parameters("tiny", "64")
  def test_mask_channel_costs_are_exact_savings(self, which):
    cfg = tiny_model() if which == "tiny" else model_64()
    g = build_generator(cfg, masked=True)
    rng = np.random.RandomState(0)
    for _, mask in g.masks:  # a random live state, at least 2 channels each
      n = mask.num_channels
      mask.prune(rng.choice(n, rng.randint(0, n - 1), replace=False))
    costs = flops.mask_channel_costs(g)
    self.assertEqual(list(costs), [name for name, _ in g.masks])
    for name, mask in g.masks:
      params, macs = flops.live_params(g), flops.live_macs(g)
      alive = mask.alive.numpy().copy()
      mask.prune(mask.live_indices()[:1])
      self.assertEqual((params - flops.live_params(g), macs - flops.live_macs(g)),
                       costs[name], name)
      mask.set_alive(alive)
      self.assertGreater(costs[name][0], 0)

  def test_report_table_and_dict(self):
    report = flops.generator_cost(tiny_model())
    table = report.format_table("G")
    self.assertIn("block1", table)
    self.assertIn("22,596", table)
    self.assertIn("block1/attention/o", report.format_table(per_layer=True))
    d = report.to_dict()
    self.assertEqual(d["total_params"], 22596)
    self.assertEqual(sum(b["params"] for b in d["blocks"].values()), 22596)


if __name__ == "__main__":
  absltest.main()
