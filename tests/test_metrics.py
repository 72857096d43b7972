"""ppcd_tf.metrics against independent numpy/scipy references on fixed activations."""
import numpy as np
from absl.testing import absltest
from scipy import linalg, special

from ppcd_tf import metrics

RTOL = 1e-6


def _ref_fid(a, b):
  """Textbook FID (Heusel et al. 2017) with scipy's general matrix square root."""
  mu1, mu2 = a.mean(0), b.mean(0)
  s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  covmean = linalg.sqrtm(s1 @ s2).real
  return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def _ref_is(logits, splits):
  scores = []
  for chunk in np.array_split(logits, splits):
    p = special.softmax(chunk, axis=1)
    py = p.mean(0, keepdims=True)
    kl = (p * (np.log(p) - np.log(py))).sum(1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))


def _ref_mmd2(x, y):
  """Unbiased squared MMD, cubic polynomial kernel (Binkowski et al. 2018, eq. 3)."""
  d = x.shape[1]
  k = lambda u, v: (u @ v.T / d + 1.0) ** 3  # noqa: E731
  m, n = len(x), len(y)
  kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
  return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
          + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())


def _close(test, got, want, rtol=RTOL):
  test.assertLessEqual(abs(got - want), rtol * max(1.0, abs(want)),
                       msg=f"got {got!r}, want {want!r}")


class MetricsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(1234)
    mix = rng.normal(size=(6, 6))
    self.a = rng.normal(size=(300, 6)) @ mix
    self.b = rng.normal(loc=0.4, size=(250, 6)) @ (mix + 0.3 * rng.normal(size=(6, 6)))

  def test_fid_matches_reference(self):
    _close(self, metrics.fid(self.a, self.b), _ref_fid(self.a, self.b))

  def test_fid_from_stats_matches_reference_and_fid(self):
    mu1, s1 = metrics.activation_stats(self.a)
    mu2, s2 = metrics.activation_stats(self.b)
    np.testing.assert_allclose(s1, np.cov(self.a, rowvar=False), rtol=1e-12)
    got = metrics.fid_from_stats(mu1, s1, mu2, s2)
    _close(self, got, _ref_fid(self.a, self.b))
    _close(self, got, metrics.fid(self.a, self.b), rtol=1e-9)

  def test_fid_from_stats_handles_singular_covariance(self):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 12)), rng.normal(size=(7, 12))  # N < D: rank-deficient
    got = metrics.fid_from_stats(*metrics.activation_stats(a), *metrics.activation_stats(b))
    self.assertTrue(np.isfinite(got))
    _close(self, got, metrics.fid(a, b), rtol=1e-6)

  def test_fid_of_set_with_itself_is_zero_and_grows_with_noise(self):
    rng = np.random.default_rng(7)
    self.assertLess(abs(metrics.fid(self.a, self.a)), 1e-8)
    noise = rng.normal(size=self.a.shape)
    values = [metrics.fid(self.a, self.a + s * noise) for s in (0.05, 0.2, 0.5, 1.0, 2.0)]
    self.assertTrue(all(x < y for x, y in zip(values, values[1:])), values)
    self.assertGreater(values[0], 0.0)

  def test_fid_rejects_bad_input(self):
    with self.assertRaisesRegex(ValueError, "same extractor"):
      metrics.fid(self.a, self.b[:, :5])
    with self.assertRaisesRegex(ValueError, "2-D"):
      metrics.fid(self.a[0], self.b)
    bad = self.a.copy()
    bad[0, 0] = np.nan
    with self.assertRaisesRegex(ValueError, "NaN"):
      metrics.fid(bad, self.b)
    with self.assertRaisesRegex(ValueError, "expected"):
      metrics.fid_from_stats(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))

  def test_inception_score_matches_reference(self):
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=3.0, size=(200, 10))
    for splits in (1, 4, 10):
      mean, std = metrics.inception_score(logits, splits=splits)
      ref_mean, ref_std = _ref_is(logits, splits)
      _close(self, mean, ref_mean)
      _close(self, std, ref_std)
    self.assertEqual(metrics.inception_score(logits, splits=1)[1], 0.0)

  def test_inception_score_extremes(self):
    confident = np.tile(np.eye(10) * 50.0, (20, 1))  # every class, one-hot predictions
    self.assertAlmostEqual(metrics.inception_score(confident, splits=2)[0], 10.0, places=6)
    uniform = np.zeros((40, 10))
    self.assertAlmostEqual(metrics.inception_score(uniform, splits=2)[0], 1.0, places=9)
    with self.assertRaisesRegex(ValueError, "splits"):
      metrics.inception_score(uniform, splits=30)

  def test_kid_matches_reference(self):
    subset, num, seed = 60, 5, 11
    mean, std = metrics.kid(self.a, self.b, subset_size=subset, num_subsets=num, seed=seed)
    rng = np.random.default_rng(seed)
    ests = []
    for _ in range(num):
      ia = rng.choice(len(self.a), subset, replace=False)
      ib = rng.choice(len(self.b), subset, replace=False)
      ests.append(_ref_mmd2(self.a[ia], self.b[ib]))
    _close(self, mean, float(np.mean(ests)))
    _close(self, std, float(np.std(ests)))
    self.assertGreater(std, 0.0)

  def test_kid_whole_set_when_small(self):
    mean, std = metrics.kid(self.a[:40], self.b[:30], subset_size=1000, num_subsets=3)
    # m = 30: each subset of a is 30 of its 40 rows; b is used whole (permuted).
    self.assertTrue(np.isfinite(mean) and std >= 0.0)
    mean, std = metrics.kid(self.a[:30], self.b[:30], subset_size=1000, num_subsets=3)
    _close(self, mean, _ref_mmd2(self.a[:30], self.b[:30]))
    self.assertLess(std, 1e-9)

  def test_kid_near_zero_for_same_distribution_and_ordered(self):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(400, 6)), rng.normal(size=(400, 6))
    same, _ = metrics.kid(x, y, subset_size=200, num_subsets=10)
    shifted, _ = metrics.kid(x, y + 1.0, subset_size=200, num_subsets=10)
    self.assertLess(abs(same), 0.05)
    self.assertGreater(shifted, 10 * abs(same))

  def test_intra_class_fid_matches_reference(self):
    rng = np.random.default_rng(9)
    y_gen = np.arange(len(self.a)) % 3
    y_real = rng.permutation(np.arange(len(self.b)) % 3)
    mean, per_class = metrics.intra_class_fid(self.a, y_gen, self.b, y_real)
    self.assertEqual(sorted(per_class), [0, 1, 2])
    for c in range(3):
      _close(self, per_class[c], _ref_fid(self.a[y_gen == c], self.b[y_real == c]))
    _close(self, mean, float(np.mean([per_class[c] for c in range(3)])))
    with self.assertRaisesRegex(ValueError, "class 2"):
      metrics.intra_class_fid(self.a, np.minimum(y_gen, 1), self.b, y_real)

  def test_class_accuracy(self):
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [0.0, 0.0, 1.0]])
    labels = np.array([0, 1, 1, 2], np.int32)
    self.assertEqual(metrics.class_accuracy(logits, labels), 0.75)
    with self.assertRaisesRegex(ValueError, "labels must lie"):
      metrics.class_accuracy(logits, np.array([0, 1, 3, 2]))


if __name__ == "__main__":
  absltest.main()
