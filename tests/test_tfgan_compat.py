"""tensorflow-gan's losses and metrics import and compute on TF 2.21."""
import numpy as np
import tensorflow as tf
from absl.testing import absltest

from ppcd_tf.tfgan_compat import tfgan_eval, tfgan_losses


class TfganCompatTest(absltest.TestCase):

  def test_hinge_losses_match_hand_values(self):
    real = tf.constant([[0.5], [2.0]])
    fake = tf.constant([[-2.0], [0.25]])
    d = tfgan_losses.wasserstein_hinge_discriminator_loss(real, fake)
    # mean(relu(1 - real)) + mean(relu(1 + fake)) = (0.5 + 0)/2 + (0 + 1.25)/2
    self.assertAlmostEqual(float(d), 0.25 + 0.625, places=6)
    g = tfgan_losses.wasserstein_hinge_generator_loss(fake)
    self.assertAlmostEqual(float(g), -(-2.0 + 0.25) / 2, places=6)

  def test_fid_matches_scipy(self):
    from scipy import linalg
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 8))
    b = rng.normal(loc=0.3, size=(200, 8))
    fid = float(tfgan_eval.frechet_classifier_distance_from_activations(
        tf.constant(a), tf.constant(b)))
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    self.assertAlmostEqual(fid, ref, delta=1e-6 * max(1.0, abs(ref)))


if __name__ == "__main__":
  absltest.main()
