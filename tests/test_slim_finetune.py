"""Fine-tuning at the slim width: the same training as the masked G, resumable across
the switch, read back by the workdir tools."""
import glob
import os
import shutil

import numpy as np
import tensorflow as tf
from absl.testing import absltest

from ppcd_tf import checkpoints, evaluate, flops, pipeline, slim as slim_lib
from ppcd_tf import slim_finetune, train_lib
from tests import tiny_runs

_Z = np.random.RandomState(0).standard_normal((4, 32)).astype(np.float32)
_Y = np.array([0, 3, 5, 9], np.int32)


def _cfg(name, **pruning):
  # Events at steps 0, 1, 2; masks frozen (and the switch) from step 3; 6 steps.
  wd = os.path.join(tiny_runs.root(), "slim_finetune", name)
  pruning = dict(dict(end_step=2, importance="taylor", slim_finetune=True), **pruning)
  return tiny_runs.ppcd_cfg(wd, tiny_runs.teacher(), pruning=pruning)


def _images(g):
  return g((_Z, _Y), training=False).numpy()


class SwitchTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.slim = train_lib.Trainer(_cfg("slim"))
    cls.slim_summary = cls.slim.fit(progress=False)
    cls.masked = train_lib.Trainer(_cfg("masked", slim_finetune=False))
    cls.masked_summary = cls.masked.fit(progress=False)

  def test_switches_after_the_last_event_and_records_it(self):
    self.assertTrue(self.slim.slim_phase)
    self.assertEqual(self.slim.G.masks, [])
    record = slim_finetune.read_switch(self.slim.workdir)
    self.assertEqual(record["step"], 3)
    self.assertEqual(record["channels"], self.masked.G.live_channels())
    self.assertEqual(self.slim.G.channels, self.masked.G.live_channels())
    self.assertEqual(self.slim_summary["slim_finetune_from_step"], 3)
    self.assertIsNone(self.masked_summary["slim_finetune_from_step"])
    self.assertFalse(self.masked.slim_phase)
    self.assertFalse(os.path.exists(os.path.join(self.masked.workdir,
                                                 slim_finetune.SWITCH_FILE)))
    self.assertEqual(self.slim_summary["channels_kept"], self.masked_summary["channels_kept"])

  def test_fine_tuning_the_slim_g_is_fine_tuning_the_masked_g(self):
    # Three steps after the switch (with the three distillation terms): the same
    # weights to float32 round-off, G and EMA. Adam turns round-off in near-zero
    # gradients into whole steps, so the images drift apart by up to 2.1e-4 in three
    # steps (one TensorFlow thread per pool, tests/conftest.py; under 2e-4 with two); a
    # wrong channel would differ by about 0.1.
    for a, b in ((self.slim.G, self.masked.G), (self.slim.G_ema, self.masked.G_ema)):
      np.testing.assert_allclose(_images(a), _images(b), atol=5e-4)
    # ... and the step's cost is the slim width's.
    self.assertEqual(flops.live_macs(self.slim.G), flops.live_macs(self.masked.G))
    dense = flops.generator_cost(self.masked.G.model_cfg, self.masked.G.channels)
    self.assertEqual(flops.count_generator(self.slim.G).total_macs,
                     flops.live_macs(self.masked.G))
    self.assertLess(flops.count_generator(self.slim.G).total_macs, 0.8 * dense.total_macs)

  def test_workdir_tools_read_the_slim_checkpoints(self):
    wd = self.slim.workdir
    report = pipeline.slim_workdir(wd)
    full = slim_lib.slim_and_report(self.masked.G_ema, os.path.join(
        self.masked.workdir, "slim"))
    self.assertEqual(report["params_before"], full["params_before"])
    self.assertEqual(report["params_after"], full["params_after"])
    self.assertLess(report["max_abs_diff"], 1e-5)
    g, _, _ = evaluate.load_for_eval(wd, "ema")
    np.testing.assert_allclose(_images(g), _images(self.slim.G_ema), atol=1e-5)
    # A checkpoint from before the switch still restores as the masked generator.
    early = [p for p in checkpoints.all_checkpoints(checkpoints.checkpoint_dir(wd))
             if slim_finetune.checkpoint_step(p) <= 3]
    self.assertTrue(early)  # ckpt-2 (save_every 2, 3 kept)
    g, _ = slim_lib.restore_trained_generator(checkpoint=early[-1])
    self.assertTrue(g.masks)


  def test_resume_across_the_switch_is_exact(self):
    # Against the uninterrupted run: stopped after the switch (events 0-2, switch at
    # step 3, slim ckpt-4), resumed from the slim checkpoint to the end. The stopped run
    # is the uninterrupted one's workdir with its last checkpoint (ckpt-6) removed: the
    # same files a run stopped at step 4 leaves (a run stopped by --until_step is
    # tests/test_train.py's), without a second trace of the whole pipeline. A resume
    # mid-pruning (Taylor sums and all) is tests/test_crash_resume.py's; one across the
    # switch at bf16, tests/test_precision.py's.
    whole = self.slim
    cfg = _cfg("pieces")
    wd = cfg.run.workdir
    shutil.rmtree(wd, ignore_errors=True)
    shutil.copytree(whole.workdir, wd)
    ckpt_dir = checkpoints.checkpoint_dir(wd)
    for f in glob.glob(os.path.join(ckpt_dir, "ckpt-6.*")):
      os.remove(f)
    state = tf.train.get_checkpoint_state(ckpt_dir)
    names = [os.path.basename(p) for p in state.all_model_checkpoint_paths]
    self.assertEqual(names, ["ckpt-2", "ckpt-4", "ckpt-6"])
    # Timestamps kept: without them CheckpointManager forgets ckpt-2, which the
    # disk-trouble fallback below needs.
    tf.compat.v1.train.update_checkpoint_state(
        ckpt_dir, os.path.join(ckpt_dir, "ckpt-4"),
        all_model_checkpoint_paths=[os.path.join(ckpt_dir, n) for n in names[:2]],
        all_model_checkpoint_timestamps=list(state.all_model_checkpoint_timestamps)[:2],
        last_preserved_timestamp=state.last_preserved_timestamp)
    summary = os.path.join(wd, "train_summary.json")
    if os.path.exists(summary):
      os.remove(summary)
    third = train_lib.Trainer(cfg)
    self.assertTrue(third.slim_phase)          # restored into slim generators
    self.assertEqual(int(third.step.numpy()), 4)
    third.fit(progress=False)
    for a, b in ((third.G, whole.G), (third.G_ema, whole.G_ema), (third.D, whole.D)):
      self.assertEqual(len(a.variables), len(b.variables))
      for u, v in zip(a.variables, b.variables):
        np.testing.assert_array_equal(u.numpy(), v.numpy(), err_msg=u.name)
    for u, v in zip(third.g_opt.variables, whole.g_opt.variables):
      np.testing.assert_array_equal(u.numpy(), v.numpy(), err_msg=u.name)
    # Disk trouble on both slim checkpoints: the run falls back to the masked ckpt-2
    # (and would switch again at step 3) instead of failing.
    for n in (4, 6):
      data = os.path.join(ckpt_dir, f"ckpt-{n}.data-00000-of-00001")
      with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 3)
    fallback = train_lib.Trainer(cfg)
    self.assertFalse(fallback.slim_phase)
    self.assertEqual(int(fallback.step.numpy()), 2)
    self.assertTrue(fallback.G.masks)


class UnitTest(absltest.TestCase):

  def test_slim_checkpoints_are_the_ones_after_the_switch_step(self):
    switch = {"step": 3}
    self.assertFalse(slim_finetune.is_slim_checkpoint(switch, "/w/checkpoints/ckpt-3"))
    self.assertTrue(slim_finetune.is_slim_checkpoint(switch, "/w/checkpoints/ckpt-4"))
    self.assertFalse(slim_finetune.is_slim_checkpoint(None, "/w/checkpoints/ckpt-9"))
    with self.assertRaises(checkpoints.CheckpointError):
      slim_finetune.checkpoint_step("/w/checkpoints/latest")

  def test_a_damaged_switch_record_is_a_clear_error(self):
    wd = os.path.join(tiny_runs.root(), "slim_finetune", "damaged")
    os.makedirs(wd, exist_ok=True)
    with open(os.path.join(wd, slim_finetune.SWITCH_FILE), "w") as f:
      f.write('{"step": 3, "chann')
    with self.assertRaisesRegex(checkpoints.CheckpointError, "slim_switch.json"):
      slim_finetune.read_switch(wd)

  def test_optimizer_slices_follow_the_live_channels(self):
    from ppcd_tf import config as config_lib
    from ppcd_tf.generator import build_generator
    import tf_keras
    tf.keras.utils.set_random_seed(0)
    g = build_generator(config_lib.tiny_config().model, masked=True)
    g.blocks[0].mask_mid.prune([0, 3])
    g.stem_mask.prune([2])
    scores = {mk.score.ref() for _, mk in g.masks}
    old_vars = [v for v in g.trainable_variables if v.ref() not in scores]
    old = tf_keras.optimizers.Adam()
    old.build(old_vars)
    for v in old_vars:  # moments numbered by position, to see the slicing
      for slot in _adam_slots(old, v):
        slot.assign(np.arange(np.prod(v.shape), dtype=np.float32).reshape(v.shape))
    old.iterations.assign(7)
    s = slim_finetune.slim_copy(g, "g")
    new = tf_keras.optimizers.Adam()
    new.build(s.trainable_variables)
    slim_finetune.slice_optimizer_state(old, old_vars, new, s.trainable_variables,
                                        slim_finetune.variable_slices(g))
    self.assertEqual(int(new.iterations.numpy()), 7)
    conv_old = g.blocks[0].conv1._raw_weight()  # pylint: disable=protected-access
    conv_new = s.blocks[0].conv1._raw_weight()  # pylint: disable=protected-access
    live_in = g.stem_mask.live_indices()
    live_out = g.blocks[0].mask_mid.live_indices()
    expected = np.arange(np.prod(conv_old.shape), dtype=np.float32).reshape(
        conv_old.shape)[:, :, live_in][..., live_out]
    for slot in _adam_slots(new, conv_new):
      np.testing.assert_array_equal(slot.numpy(), expected)
    with self.assertRaisesRegex(ValueError, "trainable variables"):
      slim_finetune.slice_optimizer_state(old, old_vars[:-1], new, s.trainable_variables,
                                          {})


def _adam_slots(opt, var):
  from ppcd_tf import dead_weights
  slots = dead_weights.optimizer_slots(opt, var)
  assert len(slots) == 2, slots
  return slots


if __name__ == "__main__":
  absltest.main()
