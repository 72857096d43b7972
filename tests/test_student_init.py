"""How a PPCD student starts from its teacher (ppcd_tf.train_lib.Trainer): the teacher's
weights and Adam states, and the teacher itself left unchanged by training."""
import os

import numpy as np
from absl.testing import absltest

from ppcd_tf import checkpoints, train_lib
from tests import tiny_runs


def _slots(opt, var):
  from ppcd_tf import dead_weights
  return [s.numpy() for s in dead_weights.optimizer_slots(opt, var)]


class StudentInitTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.teacher_dir = tiny_runs.teacher()
    # The teacher as its own trainer sees it: weights and Adam states of its checkpoint.
    cls.teacher = train_lib.Trainer(checkpoints.read_config(cls.teacher_dir).replace(
        run=dict(workdir=cls.teacher_dir)))

  def _student(self, name, **distill):
    cfg = tiny_runs.ppcd_cfg(os.path.join(tiny_runs.root(), name), self.teacher_dir,
                             distill=distill)
    return train_lib.Trainer(cfg)

  def test_adam_states_are_the_teachers(self):
    student = self._student("init_opt")
    t = self.teacher
    self.assertEqual(int(student.g_opt.iterations.numpy()), int(t.g_opt.iterations.numpy()))
    self.assertGreater(int(t.g_opt.iterations.numpy()), 0)
    self.assertLen(student.g_vars, len(t.G.trainable_variables))
    for sv, tv in zip(student.g_vars, t.G.trainable_variables):
      self.assertEqual(sv.name.split("/", 1)[1], tv.name.split("/", 1)[1])
      for a, b in zip(_slots(student.g_opt, sv), _slots(t.g_opt, tv)):
        np.testing.assert_array_equal(a, b, err_msg=sv.name)
    for sv, tv in zip(student.D.trainable_variables, t.D.trainable_variables):
      for a, b in zip(_slots(student.d_opt, sv), _slots(t.d_opt, tv)):
        np.testing.assert_array_equal(a, b, err_msg=sv.name)
    # This run's learning rates, not the teacher's saved ones.
    self.assertAlmostEqual(float(student.g_opt.learning_rate.numpy()),
                           student.cfg.optim.g_lr)

  def test_fresh_optimizer_on_request(self):
    student = self._student("init_opt_fresh", init_optimizer_from_teacher=False)
    self.assertEqual(int(student.g_opt.iterations.numpy()), 0)
    some = student.g_vars[0]
    for slot in _slots(student.g_opt, some):
      np.testing.assert_array_equal(slot, 0.0)

  def test_training_leaves_the_teacher_unchanged(self):
    student = self._student("init_teacher_fixed")
    before = {v.name: v.numpy().copy()
              for v in student.teacher_G.variables + student.teacher_D.variables}
    student.fit(progress=False)
    after = {v.name: v.numpy() for v in student.teacher_G.variables + student.teacher_D.variables}
    self.assertEqual(before.keys(), after.keys())
    for name, value in before.items():
      np.testing.assert_array_equal(after[name], value, err_msg=name)
    # And it is still the teacher's checkpoint, on disk and in memory.
    fresh = self.teacher
    for a, b in zip(student.teacher_G.variables, fresh.G_ema.variables):
      np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)


if __name__ == "__main__":
  absltest.main()
