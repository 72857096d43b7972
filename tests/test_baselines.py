"""tfmot magnitude-pruning baseline at PPCD's parameter budget."""
import os

import numpy as np
import tensorflow as tf
from absl.testing import absltest

from ppcd_tf import baselines, flops
from tests import tiny_runs


class MagnitudeBaselineTest(absltest.TestCase):

  def test_reaches_budget_strips_to_sparse_generator_and_resumes(self):
    wd = os.path.join(tiny_runs.root(), "magnitude")
    cfg = baselines.magnitude_config(
        tiny_runs.ppcd_cfg(wd, tiny_runs.teacher()), tiny_runs.teacher())
    trainer = baselines.MagnitudePruningTrainer(cfg)
    # Starts as the teacher.
    z = tf.random.stateless_normal([2, trainer.model_cfg.z_dim], seed=[1, 2])
    y = tf.constant([1, 2], tf.int32)
    np.testing.assert_allclose(trainer.G((z, y), training=False).numpy(),
                               trainer.teacher_G((z, y), training=False).numpy(), atol=1e-6)
    # The EMA restarts right after every training step in which tfmot may update
    # the masks (its pruning turns), as PPCD's does after its pruning events.
    restarts, changed = [], []
    real_restart, real_step = trainer.restart_ema, trainer.run_step

    def masks():
      return [m.numpy() for w in trainer.wrappers for _, m, _ in w.pruning_vars]

    def spy_restart():
      restarts.append(int(trainer.step.numpy()))
      real_restart()

    def spy_step():
      before = masks()
      logs = real_step()
      if any((a != b).any() for a, b in zip(before, masks())):
        changed.append(int(trainer.step.numpy()))
      return logs
    trainer.restart_ema, trainer.run_step = spy_restart, spy_step
    summary = trainer.fit(progress=False)
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
    # of inside the compiled gradient function: same turns, same final sparsity.
    results = {}
    for jit in (False, True):
      wd = os.path.join(tiny_runs.root(), f"magnitude_jit{int(jit)}")
      cfg = baselines.magnitude_config(
          tiny_runs.ppcd_cfg(wd, tiny_runs.teacher(), run=dict(jit_compile=jit)),
          tiny_runs.teacher())
      trainer = baselines.MagnitudePruningTrainer(cfg)
      changed, real_step = [], trainer.run_step

      def masks(t=trainer):
        return [m.numpy() for w in t.wrappers for _, m, _ in w.pruning_vars]

      def spy_step(real=real_step, t=trainer, out=changed):
        before = masks(t)
        logs = real()
        after = masks(t)
        if any((a != b).any() for a, b in zip(before, after)):
          out.append(int(t.step.numpy()))
        return logs
      # With XLA the update happens in _prune_before_step, just before the step.
      real_prune = trainer._prune_before_step  # pylint: disable=protected-access

      def spy_prune(step, events, real=real_prune, t=trainer, out=changed):
        before = masks(t)
        real(step, events)
        if any((a != b).any() for a, b in zip(before, masks(t))):
          out.append(step + 1)
      trainer.run_step, trainer._prune_before_step = spy_step, spy_prune  # pylint: disable=protected-access
      summary = trainer.fit(progress=False)
      results[jit] = (changed, summary["nonzero_params"])
    self.assertNotEmpty(results[False][0])
    self.assertEqual(results[True][0], results[False][0])
    self.assertEqual(results[True][1], results[False][1])


if __name__ == "__main__":
  absltest.main()
