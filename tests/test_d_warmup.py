"""A teacher without a discriminator (`--d_warmup_steps`): the student's fresh D trains
first against the frozen teacher's samples, the CAM term then uses that D frozen, the
run resumes exactly inside the warm-up and slims exactly."""
import os
import tempfile

import numpy as np
import tensorflow as tf
from absl.testing import absltest

from ppcd_tf import biggan_import as bi, checkpoints, config as config_lib, pipeline
from ppcd_tf import train_lib
from ppcd_tf.discriminator import build_discriminator
from tests import biggan_numpy_reference as ref
from tests import tiny_runs
from tests.test_import_biggan import G_SHAPES, TINY_FLAGFILE

WARMUP = 2


def _d_from(prefix, name, model_cfg):
  d = build_discriminator(model_cfg, init="glorot")
  d((tf.zeros([1, 32, 32, 3]), tf.zeros([1], tf.int32)), training=False)
  tf.train.Checkpoint(**{name: d}).read(prefix).expect_partial()
  return [v.numpy() for v in d.variables]


class GeneratorOnlyTeacherTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    from ppcd_tf import flags as ppcd_flags
    root = tempfile.mkdtemp()
    cls.teacher = os.path.join(root, "teacher")
    summary = bi.import_teacher(cls.teacher, ppcd_flags.parse_flagfile(TINY_FLAGFILE),
                                ref.random_state(G_SHAPES, 1), None, step=100)
    cls.summary = summary
    cls.root = root
    # Run a is stopped inside the warm-up (step 1) and resumed to the end; run b goes
    # through the warm-up uninterrupted (to step 2, D steps only: cheap).
    cls.cfg = cls._cfg("a")
    first = train_lib.Trainer(cls.cfg)
    cls.d_initial = [v.numpy() for v in first.D.variables]
    first.fit(progress=False, until_step=1)
    cls.a = train_lib.Trainer(cls.cfg)
    cls.a.fit(progress=False)
    cls.b = train_lib.Trainer(cls._cfg("b"))
    cls.b.fit(progress=False, until_step=WARMUP)

  @classmethod
  def _cfg(cls, name, **distill):
    return tiny_runs.ppcd_cfg(
        os.path.join(cls.root, name), cls.teacher, optim=dict(num_steps=4),
        distill=dict(dict(d_warmup_steps=WARMUP), **distill),
        pruning=dict(begin_step=WARMUP, end_step=3))

  def test_the_import_has_no_discriminator(self):
    self.assertIsNone(self.summary["discriminator"])
    prefix = checkpoints.newest_readable(checkpoints.checkpoint_dir(self.teacher))
    self.assertFalse(checkpoints.holds_object(prefix, "discriminator"))
    self.assertTrue(checkpoints.holds_object(prefix, "ema_generator"))
    self.assertFalse(self.a.teacher_has_d)

  def test_without_a_warmup_it_is_refused_with_the_fix(self):
    with self.assertRaisesRegex(config_lib.ConfigError,
                                "has no discriminator.*--d_warmup_steps=N"):
      train_lib.Trainer(self._cfg("refused", d_warmup_steps=0))

  def test_pruning_inside_the_warmup_is_refused(self):
    cfg = self._cfg("early").replace(pruning=dict(begin_step=1))
    with self.assertRaisesRegex(config_lib.ConfigError, "--prune_begin_step=2 or more"):
      cfg.validate()

  def test_warmup_trains_d_only_then_freezes_it_for_the_cam_term(self):
    wd = self.cfg.run.workdir
    at_warmup = os.path.join(checkpoints.checkpoint_dir(wd), f"ckpt-{WARMUP}")
    m = self.a.model_cfg
    d_warm = _d_from(at_warmup, "discriminator", m)
    # D moved during the warm-up ...
    self.assertTrue(any(not np.array_equal(a, b) for a, b in zip(d_warm, self.d_initial)))
    # ... G did not: the student is still exactly the teacher at the end of it.
    z = tf.random.stateless_normal([2, m.z_dim], seed=[5, 6])
    y = tf.constant([1, 8], tf.int32)
    from ppcd_tf import slim as slim_lib
    g_warm, _ = slim_lib.restore_trained_generator(checkpoint=at_warmup, key="generator")
    np.testing.assert_array_equal(g_warm((z, y), training=False).numpy(),
                                  self.a.teacher_G((z, y), training=False).numpy())
    # The CAM term's teacher D is the D of that step, frozen: the last checkpoint
    # holds it unchanged while the student's D trained on.
    last = checkpoints.newest_readable(checkpoints.checkpoint_dir(wd))
    teacher_d = _d_from(last, "teacher_discriminator", m)
    for a, b in zip(teacher_d, d_warm):
      np.testing.assert_array_equal(a, b)
    for a, b in zip(teacher_d, [v.numpy() for v in self.a.teacher_D.variables]):
      np.testing.assert_array_equal(a, b)
    self.assertTrue(any(not np.array_equal(a, b.numpy())
                        for a, b in zip(teacher_d, self.a.D.variables)))

  def test_resume_inside_the_warmup_is_exact(self):
    # Run a's frozen CAM D (its D at step 2, after a stop at step 1) is run b's D at
    # step 2 bit for bit.
    for a, b in zip(self.a.teacher_D.variables, self.b.D.variables):
      np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)

  def test_the_student_slims_exactly(self):
    report = pipeline.slim_workdir(self.cfg.run.workdir)
    self.assertLess(report["max_abs_diff"], 1e-4)
    self.assertLess(report["params_after"], report["params_before"])


if __name__ == "__main__":
  absltest.main()
