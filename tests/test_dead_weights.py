"""Pruning events zero dead weights and their Adam slots; they stay zero after."""
import os

import numpy as np
import tensorflow as tf
from absl.testing import absltest

from ppcd_tf import config as config_lib
from ppcd_tf import dead_weights, slim as slim_lib, train_lib
from ppcd_tf.generator import build_generator
from tests import tiny_runs


def _dead_entries(generator):
  """{variable name: boolean array of the entries indexed by a dead channel}."""
  dead = dead_weights.dead_index_sets(generator)
  out = {}
  for entry in slim_lib.channel_map(generator):
    layer = entry.layer(generator)
    if entry.kind != "sn":
      continue
    k = layer._raw_weight()  # pylint: disable=protected-access
    flag = np.zeros(k.shape, bool)
    for axis, key in ((entry.in_axis, entry.in_key), (entry.out_axis, entry.out_key)):
      idx = dead.get(key)
      if idx is not None and len(idx):
        sl = [slice(None)] * len(k.shape)
        sl[axis] = idx
        flag[tuple(sl)] = True
    out[k.name] = (k, flag)
  return out


class ZeroDeadWeightsTest(absltest.TestCase):

  def test_zeroes_exactly_the_dead_entries_and_sigma_is_the_live_subkernels(self):
    tf.keras.utils.set_random_seed(0)
    g = build_generator(config_lib.tiny_config().model, masked=True)
    z = np.random.RandomState(0).standard_normal((2, g.model_cfg.z_dim)).astype(np.float32)
    g((z, np.array([0, 1], np.int32)), training=True)
    conv = g.blocks[0].conv1
    raw = conv._raw_weight()  # pylint: disable=protected-access
    # Kernel entries of very different size, so the dead filters carry most of sigma.
    w = np.random.RandomState(1).standard_normal(raw.shape).astype(np.float32)
    w[..., [0, 3]] *= 10.0
    raw.assign(w)
    full = np.linalg.svd(w.reshape(-1, w.shape[-1]), compute_uv=False)[0]
    g.blocks[0].mask_mid.prune([0, 3])
    g.blocks[1].mask_out.prune([1])
    g.stem_mask.prune([2])
    before = {name: k.numpy().copy() for name, (k, _) in _dead_entries(g).items()}
    n = dead_weights.zero_dead_weights(g)
    self.assertGreater(n, 0)
    for name, (k, flag) in _dead_entries(g).items():
      np.testing.assert_array_equal(k.numpy()[flag], 0.0, err_msg=name)
      np.testing.assert_array_equal(k.numpy()[~flag], before[name][~flag], err_msg=name)
    # Sigma of conv1 of block 0 (dead outputs 0 and 3) is the sigma of its live part.
    live = np.delete(w, [0, 3], axis=3)
    expected = np.linalg.svd(live.reshape(-1, live.shape[-1]), compute_uv=False)[0]
    self.assertLess(expected, 0.5 * full)
    # Power iteration (a few steps at the event) is close to it, far from the full one.
    self.assertAlmostEqual(float(conv.spectral_sigma(training=False)), expected,
                           delta=0.05 * expected)
    self.assertEqual(dead_weights.zero_dead_weights(g), 0)  # done already: nothing to zero
    # Slimming is still exact.
    self.assertLess(slim_lib.verify_slim(g, slim_lib.slim_generator(g)), 1e-4)


class TrainingKeepsThemZeroTest(absltest.TestCase):

  def test_dead_weights_and_slots_stay_zero_after_the_last_event(self):
    wd = os.path.join(tiny_runs.root(), "dead_weights")
    # The masked G to the end (after the switch to the slim width there are no dead
    # weights left to watch: tests/test_slim_finetune.py).
    cfg = tiny_runs.ppcd_cfg(wd, tiny_runs.teacher(), optim=dict(num_steps=3),
                             pruning=dict(begin_step=0, end_step=1, frequency=1,
                                          slim_finetune=False))
    trainer = train_lib.Trainer(cfg)
    trainer.fit(progress=False, until_step=2)  # events at steps 0 and 1, then 1 step
    entries = _dead_entries(trainer.G)
    self.assertTrue(any(flag.any() for _, flag in entries.values()))
    before = {name: k.numpy().copy() for name, (k, _) in entries.items()}
    trainer.fit(progress=False)  # one more step
    for name, (k, flag) in entries.items():
      np.testing.assert_array_equal(k.numpy()[flag], 0.0, err_msg=name)
      for slot in dead_weights.optimizer_slots(trainer.g_opt, k):
        np.testing.assert_array_equal(slot.numpy()[flag], 0.0, err_msg=name)
    # The live weights did train in that step.
    self.assertTrue(any(not np.array_equal(k.numpy()[~flag], before[name][~flag])
                        for name, (k, flag) in entries.items()))


if __name__ == "__main__":
  absltest.main()
