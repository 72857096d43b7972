"""Losses against values computed by hand / in numpy."""
import numpy as np
import tensorflow as tf
from absl.testing import absltest

from ppcd_tf import losses


def _np_norm_map(m):
  flat = m.reshape(m.shape[0], -1).astype(np.float64)
  return flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-8)


class HingeTest(absltest.TestCase):

  def test_discriminator(self):
    real = tf.constant([0.5, 2.0, -1.0])
    fake = tf.constant([-2.0, 0.25, 0.0])
    # relu(1-real) = [0.5, 0, 2] -> 2.5/3 ; relu(1+fake) = [0, 1.25, 1] -> 2.25/3
    self.assertAlmostEqual(float(losses.hinge_discriminator_loss(real, fake)),
                           2.5 / 3 + 2.25 / 3, places=6)

  def test_generator(self):
    fake = tf.constant([[-2.0], [0.25], [1.0]])
    self.assertAlmostEqual(float(losses.hinge_generator_loss(fake)), 0.75 / 3, places=6)

  def test_gradient_flows(self):
    fake = tf.Variable([0.3, -0.2])
    with tf.GradientTape() as tape:
      loss = losses.hinge_generator_loss(fake)
    np.testing.assert_allclose(tape.gradient(loss, fake).numpy(), [-0.5, -0.5])


class AttentionTest(absltest.TestCase):

  def test_map_by_hand(self):
    # B=1, H=1, W=2, C=2: f = [[1, 2], [3, 0]], w = [1, 0.5]
    f = tf.constant([[[[1.0, 2.0], [3.0, 0.0]]]])
    w = tf.constant([[1.0, 0.5]])
    # raw = [1 + 0.5*4, 9] = [3, 9]; norm = sqrt(90)
    got = losses.class_aware_attention_map(f, w).numpy()
    np.testing.assert_allclose(got, [[3 / np.sqrt(90), 9 / np.sqrt(90)]], rtol=1e-6)

  def test_distillation_loss_vs_numpy(self):
    rng = np.random.default_rng(0)
    s = [rng.normal(size=(2, 4, 4, 3)).astype(np.float32),
         rng.normal(size=(2, 8, 8, 5)).astype(np.float32)]
    t = [rng.normal(size=x.shape).astype(np.float32) for x in s]
    w = [np.abs(rng.normal(size=(2, x.shape[-1]))).astype(np.float32) for x in s]
    ref = np.mean([np.mean((_np_norm_map((wi[:, None, None] * si ** 2).sum(-1))
                            - _np_norm_map((wi[:, None, None] * ti ** 2).sum(-1))) ** 2)
                   for si, ti, wi in zip(s, t, w)])
    got = float(losses.attention_distillation_loss(s, t, w))
    self.assertAlmostEqual(got, ref, places=6)
    self.assertAlmostEqual(float(losses.attention_distillation_loss(s, s, w)), 0.0, places=7)

  def test_narrower_student_uses_its_own_weights(self):
    # Distillation without pruning: the student has 2 channels where the teacher has 3.
    rng = np.random.default_rng(1)
    s = [rng.normal(size=(2, 4, 4, 2)).astype(np.float32)]
    t = [rng.normal(size=(2, 4, 4, 3)).astype(np.float32)]
    w_t = [np.abs(rng.normal(size=(2, 3))).astype(np.float32)]
    w_s = [np.abs(rng.normal(size=(2, 2))).astype(np.float32)]
    ref = np.mean((_np_norm_map((w_s[0][:, None, None] * s[0] ** 2).sum(-1))
                   - _np_norm_map((w_t[0][:, None, None] * t[0] ** 2).sum(-1))) ** 2)
    got = float(losses.attention_distillation_loss(s, t, w_t, student_class_weights=w_s))
    self.assertAlmostEqual(got, ref, places=6)
    # The student's weights are constants: only its features get a gradient.
    sv, wv = tf.Variable(s[0]), tf.Variable(w_s[0])
    with tf.GradientTape() as tape:
      loss = losses.attention_distillation_loss([sv], t, w_t, student_class_weights=[wv])
    g_s, g_w = tape.gradient(loss, [sv, wv])
    self.assertGreater(float(tf.reduce_max(tf.abs(g_s))), 0.0)
    self.assertIsNone(g_w)

  def test_shape_errors(self):
    with self.assertRaisesRegex(ValueError, "channels"):
      losses.class_aware_attention_map(tf.zeros([1, 2, 2, 3]), tf.zeros([1, 4]))
    with self.assertRaisesRegex(ValueError, "spatial sizes"):
      losses.attention_distillation_loss([tf.zeros([1, 2, 2, 3])], [tf.zeros([1, 4, 4, 3])],
                                         [tf.ones([1, 3])])
    with self.assertRaisesRegex(ValueError, "channels"):  # narrower student, no own weights
      losses.attention_distillation_loss([tf.zeros([1, 2, 2, 2])], [tf.zeros([1, 2, 2, 3])],
                                         [tf.ones([1, 3])])
    with self.assertRaisesRegex(ValueError, "student"):
      losses.attention_distillation_loss([tf.zeros([1, 2, 2, 3])], [], [])


class OtherTermsTest(absltest.TestCase):

  def test_cam(self):
    a = np.array([[[1.0, 0.0], [0.0, 0.0]]], np.float32)
    b = np.array([[[0.0, 0.0], [0.0, 2.0]]], np.float32)
    # normalised maps are one-hot at different places: mean((e1 - e4)^2) = 2/4
    self.assertAlmostEqual(float(losses.cam_distillation_loss(a, b)), 0.5, places=6)
    # scale invariant
    self.assertAlmostEqual(float(losses.cam_distillation_loss(a, 7 * a)), 0.0, places=7)

  def test_pixel(self):
    a = tf.constant([[[[0.5, -0.5]]]])
    b = tf.constant([[[[0.0, 0.5]]]])
    self.assertAlmostEqual(float(losses.pixel_l1_loss(a, b)), 0.75, places=6)

  def test_sparsity_by_hand(self):
    scores = [tf.constant([0.0, 0.0]), tf.constant([100.0, -100.0, 0.0])]
    alive = [tf.constant([1.0, 0.0]), tf.constant([1.0, 1.0, 1.0])]
    costs = [10.0, 2.0]
    # num = 10*0.5 + 2*(1 + 0 + 0.5) = 8 ; den = 10*1 + 2*3 = 16
    self.assertAlmostEqual(float(losses.mask_sparsity_loss(scores, alive, costs)), 0.5,
                           places=5)
    self.assertEqual(float(losses.mask_sparsity_loss([], [], [])), 0.0)

  def test_all_finite(self):
    self.assertTrue(bool(losses.all_finite([tf.constant(1.0), tf.constant([2.0, 3.0])])))
    self.assertFalse(bool(losses.all_finite([tf.constant(1.0), tf.constant(np.nan)])))
    self.assertFalse(bool(losses.all_finite([tf.constant(np.inf)])))


if __name__ == "__main__":
  absltest.main()
