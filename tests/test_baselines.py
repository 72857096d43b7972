"""tfmot magnitude-pruning baseline at PPCD's parameter budget."""
import os

import numpy as np
import tensorflow as tf
from absl.testing import absltest

from ppcd_tf import baselines, flops
from tests import tiny_runs


def _masks(trainer):
  return [m.numpy() for w in trainer.wrappers for _, m, _ in w.pruning_vars]


def _spy_mask_changes(trainer, changed):
  """Records in `changed` the step counter after every training step that changed a
  tfmot mask, and (with --jit_compile, where tfmot's update runs eagerly just before
  the step) the step whose pruning turn changed one."""
  real_step, real_prune = trainer.run_step, trainer._prune_before_step  # pylint: disable=protected-access

  def spy_step():
    before = _masks(trainer)
    logs = real_step()
    if any((a != b).any() for a, b in zip(before, _masks(trainer))):
      changed.append(int(trainer.step.numpy()))
    return logs

  def spy_prune(step, events):
    before = _masks(trainer)
    real_prune(step, events)
    if any((a != b).any() for a, b in zip(before, _masks(trainer))):
      changed.append(step + 1)
  trainer.run_step, trainer._prune_before_step = spy_step, spy_prune  # pylint: disable=protected-access


class MagnitudeBaselineTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    # One run without XLA, watched: the tests below read it (the XLA test compares
    # against it instead of training it a second time).
    super().setUpClass()
    wd = os.path.join(tiny_runs.root(), "magnitude")
    cls.cfg = baselines.magnitude_config(
        tiny_runs.ppcd_cfg(wd, tiny_runs.teacher()), tiny_runs.teacher())
    cls.trainer = trainer = baselines.MagnitudePruningTrainer(cls.cfg)
    cls.z = tf.random.stateless_normal([2, trainer.model_cfg.z_dim], seed=[1, 2])
    cls.y = tf.constant([1, 2], tf.int32)
    cls.start = (trainer.G((cls.z, cls.y), training=False).numpy(),
                 trainer.teacher_G((cls.z, cls.y), training=False).numpy())
    cls.restarts, cls.changed = [], []
    real_restart = trainer.restart_ema

    def spy_restart():
      cls.restarts.append(int(trainer.step.numpy()))
      real_restart()
    trainer.restart_ema = spy_restart
    _spy_mask_changes(trainer, cls.changed)
    cls.summary = trainer.fit(progress=False)

  def test_reaches_budget_strips_to_sparse_generator_and_resumes(self):
    cfg, trainer, summary, z, y = self.cfg, self.trainer, self.summary, self.z, self.y
    # Started as the teacher.
    np.testing.assert_allclose(*self.start, atol=1e-6)
    # The EMA restarts right after every training step in which tfmot may update
    # the masks (its pruning turns), as PPCD's does after its pruning events.
    restarts, changed = self.restarts, self.changed
    p = cfg.pruning
    self.assertEqual(restarts, list(range(p.begin_step + 1, p.end_step + 2, p.frequency)))
    self.assertNotEmpty(changed)
    self.assertContainsSubset(changed, restarts)
    budget = int(np.floor(0.19 * flops.live_params(trainer.teacher_G)))
    self.assertEqual(summary["magnitude_budget"], budget)
    self.assertLessEqual(summary["nonzero_params"], budget)
    self.assertGreater(summary["nonzero_params"], 0.9 * budget)
    # Stripping leaves a plain generator with exactly that many non-zero weights,
    # computing what the wrapped EMA generator computes.
    before = trainer.G_ema((z, y), training=False).numpy()
    expected = baselines.nonzero_params(trainer.G_ema)
    self.assertEqual(baselines.strip_magnitude_pruning(trainer.G_ema), 27)
    self.assertEqual(baselines.nonzero_params(trainer.G_ema), expected)
    self.assertLessEqual(expected, budget)
    np.testing.assert_allclose(trainer.G_ema((z, y), training=False).numpy(), before,
                               atol=1e-6)
    # Resume from the workdir restores the wrapped state.
    resumed = baselines.MagnitudePruningTrainer(cfg)
    self.assertEqual(int(resumed.step.numpy()), summary["step"])
    self.assertEqual(baselines.nonzero_params(resumed.G), summary["nonzero_params"])

  def test_jit_compiled_magnitude_baseline_prunes_at_the_same_steps(self):
    # With --jit_compile tfmot's mask update runs eagerly before the step instead
    # of inside the compiled gradient function: same turns, same final sparsity as
    # the run without XLA (setUpClass).
    wd = os.path.join(tiny_runs.root(), "magnitude_jit")
    cfg = baselines.magnitude_config(
        tiny_runs.ppcd_cfg(wd, tiny_runs.teacher(), run=dict(jit_compile=True)),
        tiny_runs.teacher())
    self.assertEqual(cfg.replace(run=dict(jit_compile=False, workdir=self.cfg.run.workdir)),
                     self.cfg)
    trainer = baselines.MagnitudePruningTrainer(cfg)
    changed = []
    _spy_mask_changes(trainer, changed)
    summary = trainer.fit(progress=False)
    self.assertNotEmpty(self.changed)
    self.assertEqual(changed, self.changed)
    self.assertEqual(summary["nonzero_params"], self.summary["nonzero_params"])


def _wrapped_tiny_generator(policy, strategy=None):
  """(generator, wrappers, z, y): a tiny G under `policy` (and `strategy`'s scope),
  every SN layer wrapped at 50% constant sparsity, built, pruning step 1."""
  import contextlib
  import tensorflow_model_optimization as tfmot
  from ppcd_tf import config as config_lib, precision
  from ppcd_tf.generator import build_generator
  m = config_lib.tiny_config().model
  z = tf.random.stateless_normal([2, m.z_dim], seed=[1, 2])
  y = tf.constant([1, 2], tf.int32)
  with precision.policy_scope(policy), (strategy.scope() if strategy
                                        else contextlib.nullcontext()):
    g = build_generator(m, init="N02")
    wrappers = baselines.wrap_for_magnitude_pruning(
        g, tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1))
    g((z, y), training=False)
  for w in wrappers:
    w.pruning_step.assign(1)
  return g, wrappers, z, y


class MixedPrecisionWrapperTest(absltest.TestCase):

  def test_wrapped_generator_prunes_under_mixed_bfloat16(self):
    # The experiment's config (configs/mnist32.cfg) trains in mixed_bfloat16: tfmot's
    # mask update must still assign to the float32 kernels, the float32 to-RGB conv
    # included (it failed there: the wrapper read the kernel as bfloat16).
    from ppcd_tf import precision
    g, wrappers, z, y = _wrapped_tiny_generator("mixed_bfloat16")
    with precision.policy_scope("mixed_bfloat16"):
      g((z, y), training=True)   # a pruning turn: masks at 50%, kernels multiplied
      out = g((z, y), training=False)
    self.assertEqual(out.dtype, tf.float32)
    self.assertTrue(np.isfinite(out.numpy()).all())
    self.assertEqual(sorted({w.layer.compute_dtype for w in wrappers}),
                     ["bfloat16", "float32"])
    for w in wrappers:
      self.assertEqual(w.compute_dtype, "float32")
      for weight, mask, _ in w.pruning_vars:
        self.assertEqual(weight.dtype, tf.float32)
        m_ = mask.numpy()
        self.assertAlmostEqual(float(m_.mean()), 0.5, delta=0.05)
        self.assertEqual(np.count_nonzero(weight.numpy()[m_ == 0]), 0)

  def test_ema_inference_runs_under_mirrored_strategy(self):
    # The experiment (configs/mnist32.cfg: mirrored, mixed_bfloat16) evaluates the
    # baseline's EMA generator inside a tf.function during training. Called from
    # cross-replica context, the wrappers' mask op failed ("tuple indices must be
    # integers or slices, not AutoCastDistributedVariable"; MirroredVariable in
    # float32); `_ema_call` runs it in replica context. In float32 it gives exactly
    # what the stripped generator gives; in bfloat16 it runs and is finite.
    import types
    from ppcd_tf import config as config_lib, precision
    m = config_lib.tiny_config().model
    for policy in ("float32", "mixed_bfloat16"):
      strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
      g, _, z, y = _wrapped_tiny_generator(policy, strategy)
      with precision.policy_scope(policy):
        stub = types.SimpleNamespace(strategy=strategy, G_ema=g)
        got = baselines.MagnitudePruningTrainer._ema_call(stub, z, y).numpy()  # pylint: disable=protected-access
        self.assertEqual(got.shape, (2, m.resolution, m.resolution, m.image_channels))
        self.assertTrue(np.isfinite(got).all(), policy)
        if policy == "float32":
          baselines.strip_magnitude_pruning(g)  # a plain generator runs in any context
          want = g((z, y), training=False).numpy()
          np.testing.assert_allclose(got, want, atol=1e-6)
          self.assertGreater(float(np.std(want)), 0.05)

if __name__ == "__main__":
  absltest.main()
