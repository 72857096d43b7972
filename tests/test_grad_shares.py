"""Per-term gradient norms on G (ppcd_tf.grad_shares) and their TensorBoard scalars."""
import glob
import os

import numpy as np
import tensorflow as tf
from absl.testing import absltest

from ppcd_tf import grad_shares, train_lib
from tests import tiny_runs


def _trainer(name, **distill):
  cfg = tiny_runs.ppcd_cfg(os.path.join(tiny_runs.root(), name), tiny_runs.teacher(),
                           distill=distill, run=dict(grad_norm_every=2))
  return train_lib.Trainer(cfg)


def _batch(trainer):
  m = trainer.model_cfg
  z = tf.random.stateless_normal([4, m.z_dim], seed=[3, 4])
  y = tf.constant([0, 1, 2, 3], tf.int32)
  return z, y


class GradShareTest(absltest.TestCase):

  def test_norms_scale_with_the_weights_and_leave_state_alone(self):
    one = _trainer("grad_one", lambda_att=1.0, lambda_cam=1.0, lambda_pix=1.0)
    z, y = _batch(one)
    state = [v.numpy().copy() for net in (one.G, one.D) for v in net.non_trainable_variables]
    a = grad_shares.term_gradient_norms(one, z, y)
    self.assertEqual(set(a), {"adv", "att", "cam", "pix"})
    for v, before in zip([v for net in (one.G, one.D) for v in net.non_trainable_variables],
                         state):
      np.testing.assert_array_equal(v.numpy(), before, err_msg=v.name)
    self.assertTrue(all(x > 0 for x in a.values()), a)
    # The same batch again gives the same norms (nothing was updated).
    self.assertEqual(grad_shares.term_gradient_norms(one, z, y), a)
    # Weights 3x: the weighted term's norm is 3x, the adversarial term's unchanged.
    three = _trainer("grad_three", lambda_att=3.0, lambda_cam=1.0, lambda_pix=1.0)
    b = grad_shares.term_gradient_norms(three, z, y)
    self.assertAlmostEqual(b["att"], 3 * a["att"], delta=1e-4 * a["att"])
    for k in ("adv", "cam", "pix"):
      self.assertAlmostEqual(b[k], a[k], delta=1e-5 * a[k])
    s = grad_shares.shares(a)
    self.assertEqual(s["adv"], 1.0)
    self.assertAlmostEqual(s["pix"], a["pix"] / a["adv"])

  def test_fit_writes_them_to_tensorboard(self):
    trainer = _trainer("grad_tb", lambda_pix=1.0)
    trainer.fit(progress=False, until_step=2)
    tags = set()
    for path in glob.glob(os.path.join(trainer.workdir, "train", "events*")):
      for event in tf.compat.v1.train.summary_iterator(path):
        for value in event.summary.value:
          if event.step == 2:
            tags.add(value.tag)
    for term in trainer.terms:
      self.assertIn(f"grad_share/{term}", tags)
      self.assertIn(f"grad_norm/{term}", tags)
    self.assertIn("grad_norm/adv", tags)


if __name__ == "__main__":
  absltest.main()
