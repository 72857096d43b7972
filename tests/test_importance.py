"""Channel importance for pruning: L1 filter norms, uniform widths, and the
controller's 'l1' and 'uniform_l1' rankings (the structured baselines)."""
import glob
import os

import numpy as np
import tensorflow as tf
from absl.testing import absltest

from ppcd_tf import config as config_lib
from ppcd_tf import flops, importance, pruning
from ppcd_tf import slim as slim_lib
from ppcd_tf.generator import BOTTOM_WIDTH, build_generator


def masked_generator(seed=0):
  tf.keras.utils.set_random_seed(seed)
  cfg = config_lib.tiny_config().model
  g = build_generator(cfg, masked=True)
  rng = np.random.RandomState(seed)
  z = rng.standard_normal((4, cfg.z_dim)).astype(np.float32)
  y = rng.randint(0, cfg.num_classes, 4).astype(np.int32)
  g((z, y), training=True)  # BN statistics and SN vectors that are not the initial ones
  return g


def controller(g, target, importance_name, **kw):
  schedule = pruning.ProgressivePruningSchedule(target, begin_step=0, end_step=1,
                                                frequency=1, schedule="constant")
  return pruning.PruningController(g, schedule, flops.live_params(g),
                                   importance=importance_name, **kw)


class L1FilterNormTest(absltest.TestCase):

  def test_norms_are_the_effective_producing_filters(self):
    g = masked_generator()
    norms = importance.l1_filter_norms(g)
    ch = g.channels
    # Stem channel j is written by the 16 output units p * C + j of the stem linear.
    raw = g.stem._raw_weight().numpy()  # pylint: disable=protected-access
    sigma = float(g.stem.spectral_sigma(training=False))
    for j in (0, ch.stem - 1):
      units = [p * ch.stem + j for p in range(BOTTOM_WIDTH * BOTTOM_WIDTH)]
      expected = sum(abs(raw[r, u]) for u in units for r in range(raw.shape[0])) / sigma
      self.assertAlmostEqual(float(norms["stem"][j]), expected, places=3)
    b = g.blocks[1]
    for layer_names, key in ((("conv1",), "block1/mid"), (("conv2", "conv_sc"), "block1/out")):
      j = 2
      expected = 0.0
      for layer_name in layer_names:
        layer = getattr(b, layer_name)
        k = layer._raw_weight().numpy()  # pylint: disable=protected-access
        expected += np.abs(k[..., j]).sum() / float(layer.spectral_sigma(training=False))
      self.assertAlmostEqual(float(norms[key][j]), expected, places=4)
    self.assertEqual({k: v.shape for k, v in norms.items()},
                     {name: (m.num_channels,) for name, m in g.masks})

  def test_normalised_mean_is_one(self):
    norms = importance.normalised({"a": np.array([1.0, 3.0]), "b": np.zeros(3)})
    np.testing.assert_allclose(norms["a"], [0.5, 1.5])
    np.testing.assert_allclose(norms["b"], [1.0, 1.0, 1.0])


class UniformWidthsTest(absltest.TestCase):

  def test_largest_common_fraction_within_budget(self):
    g = masked_generator()
    cfg, full = g.model_cfg, g.channels
    total = flops.generator_cost(cfg, full).total_params
    for fraction in (0.5, 0.19):
      budget = fraction * total
      w = importance.uniform_widths(cfg, full, budget)
      self.assertLessEqual(flops.generator_cost(cfg, w).total_params, budget)
      widths = (w.stem,) + w.mid + w.out
      fulls = (full.stem,) + full.mid + full.out
      # One common fraction f: every width is floor(f * full) (>= 1) for the f that is
      # the largest ratio achieved, and one channel more anywhere at that f is over.
      f = max(x / c for x, c in zip(widths, fulls))
      for x, c in zip(widths, fulls):
        self.assertEqual(x, max(1, int(np.floor(f * c + 1e-9))), (widths, fulls))
      bigger = importance.uniform_widths(cfg, full, total)  # no cut at full budget
      self.assertEqual(bigger, full)
    # Too small a budget names the smallest possible generator.
    with self.assertRaisesRegex(ValueError, "1 channel"):
      importance.uniform_widths(cfg, full, 10)

  def test_macs_metric(self):
    g = masked_generator()
    cfg, full = g.model_cfg, g.channels
    budget = 0.3 * flops.generator_cost(cfg, full).total_macs
    w = importance.uniform_widths(cfg, full, budget, metric="macs")
    self.assertLessEqual(flops.generator_cost(cfg, w).total_macs, budget)


class ControllerImportanceTest(absltest.TestCase):

  def test_l1_prunes_a_zeroed_filter_first_and_keeps_a_strong_one(self):
    g = masked_generator()
    conv1 = g.blocks[0].conv1
    k = conv1._raw_weight().numpy()  # pylint: disable=protected-access
    k[..., 1] = 0.0      # mid channel 1 of block 0 writes nothing
    k[..., 2] *= 50.0    # channel 2 dominates its mask
    conv1._raw_weight().assign(k)  # pylint: disable=protected-access
    c = controller(g, 0.1, "l1", cost_exponent=0.0)
    event = c.prune_to(flops.live_params(g) - 1)  # one channel's worth
    live = g.blocks[0].mask_mid.live_indices()
    self.assertGreaterEqual(event.channels_pruned, 1)
    self.assertNotIn(1, live)
    self.assertIn(2, live)

  def test_learned_ranking_ignores_weights(self):
    # The same zeroed filter, but the learned scores say channel 0 of the stem is
    # the least important: 'learned' follows the scores, not the weights.
    g = masked_generator()
    scores = np.full(g.stem_mask.num_channels, 3.0, np.float32)
    scores[0] = -5.0
    g.stem_mask.score.assign(scores)
    c = controller(g, 0.1, "learned", cost_exponent=0.0)
    c.prune_to(flops.live_params(g) - 1)
    self.assertNotIn(0, g.stem_mask.live_indices())

  def test_uniform_l1_hits_uniform_widths_and_slims_exactly(self):
    g = masked_generator()
    full_params = flops.live_params(g)
    c = controller(g, 0.81, "uniform_l1")
    norms = importance.l1_filter_norms(g)
    event = c.maybe_prune(0)
    self.assertLessEqual(event.cost_after, event.budget)
    self.assertLess(event.cost_after, full_params)
    self.assertEqual(g.live_channels(),
                     importance.uniform_widths(g.model_cfg, g.channels, event.budget))
    for name, mask in g.masks:  # the kept channels are the strongest of each mask
      live = mask.live_indices()
      dead = np.setdiff1d(np.arange(mask.num_channels), live)
      if dead.size:
        self.assertGreaterEqual(norms[name][live].min(), norms[name][dead].max(), name)
    slim = slim_lib.slim_generator(g)
    self.assertLess(slim_lib.verify_slim(g, slim), 1e-4)
    # A second event at the same budget changes nothing.
    self.assertEqual(c.prune_to(event.budget).channels_pruned, 0)

  def test_unknown_importance(self):
    g = masked_generator()
    with self.assertRaisesRegex(ValueError, "importance='fisher'"):
      controller(g, 0.5, "fisher")
    with self.assertRaisesRegex(config_lib.ConfigError, "importance='fisher'"):
      config_lib.tiny_config(pruning=dict(importance="fisher")).validate()


class TaylorImportanceTest(absltest.TestCase):
  """The trainer's Taylor importance finds channels the loss does not use."""

  USELESS = [5, 6, 7]  # block1/mid channels whose outgoing weights are zeroed

  def _trainer(self, name, importance_name, **optim):
    import os
    from ppcd_tf import train_lib
    from tests import tiny_runs
    cfg = tiny_runs.ppcd_cfg(os.path.join(tiny_runs.root(), name), tiny_runs.teacher(),
                             pruning=dict(importance=importance_name, begin_step=3,
                                          end_step=4, frequency=1),
                             optim=dict(num_steps=6, **optim))
    trainer = train_lib.Trainer(cfg)
    conv2 = trainer.G.blocks[1].conv2
    k = conv2._raw_weight().numpy()  # pylint: disable=protected-access
    k[:, :, self.USELESS, :] = 0.0  # these mid channels reach nothing
    conv2._raw_weight().assign(k)  # pylint: disable=protected-access
    return trainer

  def _prune_three_of_block1_mid(self, trainer):
    """Prunes three block1/mid channels' worth, only from that mask; the dead ones."""
    mask = trainer.G.blocks[1].mask_mid
    c = trainer.controller
    c.cost_exponent = 0.0
    c._keep_at_least = lambda m: 1 if m is mask else m.num_channels  # pylint: disable=protected-access
    cost = flops.mask_channel_costs(trainer.G)["block1/mid"][0]
    c.prune_to(flops.live_params(trainer.G) - 3 * cost + 1)
    return sorted(set(range(mask.num_channels)) - set(mask.live_indices()))

  def test_zero_outgoing_channels_score_zero_and_go_first(self):
    # A tiny learning rate keeps the zeroed slices (almost) zero for the 3 steps.
    trainer = self._trainer("taylor", "taylor", g_lr=1e-9)
    scores_before = [mk.score.numpy().copy() for _, mk in trainer.G.masks]
    for _ in range(3):
      trainer.train_step()
    self.assertEqual(float(trainer.taylor_count.numpy()), 3.0)
    imp = trainer.taylor_importance()["block1/mid"]
    useful = np.delete(imp, self.USELESS)
    self.assertGreater(useful.min(), 0.0)
    self.assertLess(imp[self.USELESS].max(), 1e-6 * np.median(useful))
    for (_, mk), before in zip(trainer.G.masks, scores_before):  # scores do not train
      np.testing.assert_array_equal(mk.score.numpy(), before)
    # TensorBoard gets the importance per mask (what ranks the next event).
    trainer._write_summaries(3, {}, 1.0)  # pylint: disable=protected-access
    trainer._writer.flush()  # pylint: disable=protected-access
    tags = set()
    for path in glob.glob(os.path.join(trainer.workdir, "train", "events.out.tfevents.*")):
      for event in tf.compat.v1.train.summary_iterator(path):
        tags |= {v.tag for v in event.summary.value}
    self.assertTrue({f"taylor_importance/{name}" for name, _ in trainer.G.masks} <= tags,
                    tags)
    self.assertEqual(self._prune_three_of_block1_mid(trainer), self.USELESS)
    trainer._reset_taylor()  # pylint: disable=protected-access  (done at each event)
    self.assertEqual(float(trainer.taylor_count.numpy()), 0.0)

  def test_cost_ranking_would_keep_them(self):
    dead = self._prune_three_of_block1_mid(self._trainer("taylor_cost", "cost"))
    self.assertLen(dead, 3)
    self.assertNotEqual(dead, self.USELESS)


if __name__ == "__main__":
  absltest.main()
