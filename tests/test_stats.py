"""Seed statistics: hand values, scipy's Welch test as reference, verdicts, errors."""
import math

import numpy as np
from absl.testing import absltest
from scipy import stats as scipy_stats

from ppcd_tf import stats


class SummarizeTest(absltest.TestCase):

  def test_hand_values(self):
    s = stats.summarize([21.0, 23.0])
    self.assertEqual(s["n"], 2)
    self.assertAlmostEqual(s["mean"], 22.0)
    self.assertAlmostEqual(s["sd"], math.sqrt(2.0))  # ((1 + 1) / (2 - 1)) ** 0.5
    self.assertEqual(s["values"], [21.0, 23.0])

  def test_one_value_has_no_sd(self):
    self.assertEqual(stats.summarize([5]),
                     {"n": 1, "mean": 5.0, "sd": None, "values": [5.0]})

  def test_bad_input(self):
    with self.assertRaisesRegex(ValueError, "values is empty"):
      stats.summarize([])
    with self.assertRaisesRegex(ValueError, "values holds non-finite"):
      stats.summarize([1.0, float("nan")])
    with self.assertRaisesRegex(ValueError, "values holds non-finite"):
      stats.summarize([1.0, float("inf")])


class WelchTest(absltest.TestCase):

  def test_hand_example(self):
    # a = [1, 2, 3, 4]: mean 2.5, s^2 = (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3.
    # b = [2, 4, 6, 8, 10]: mean 6, s^2 = (16 + 4 + 0 + 4 + 16) / 4 = 10.
    # s_a^2/n_a = 5/12, s_b^2/n_b = 2, se^2 = 29/12, t = -3.5 / sqrt(29/12).
    # df = (29/12)^2 / ((5/12)^2 / 3 + 2^2 / 4) = (841/144) / (457/432) = 2523/457.
    r = stats.welch([1, 2, 3, 4], [2, 4, 6, 8, 10])
    self.assertAlmostEqual(r["diff"], -3.5, places=12)
    self.assertAlmostEqual(r["t"], -3.5 / math.sqrt(29 / 12), places=12)
    self.assertAlmostEqual(r["df"], 2523 / 457, places=12)

  def test_matches_scipy_ttest_ind(self):
    rng = np.random.default_rng(0)
    for n_a, n_b, shift, scale in ((3, 3, 0.0, 1.0), (4, 7, 1.5, 3.0),
                                   (10, 5, -0.4, 0.2), (2, 6, 2.0, 10.0)):
      a = rng.normal(size=n_a)
      b = rng.normal(loc=shift, scale=scale, size=n_b)
      ref = scipy_stats.ttest_ind(a, b, equal_var=False)
      r = stats.welch(a, b)
      self.assertAlmostEqual(r["t"], float(ref.statistic), delta=1e-10)
      self.assertAlmostEqual(r["p"], float(ref.pvalue), delta=1e-10)

  def test_ci_is_diff_plus_minus_t_times_se(self):
    a, b = [10.0, 11.0, 13.0], [9.0, 12.5, 15.0, 14.0]
    r = stats.welch(a, b)
    low, high = r["ci95"]
    self.assertLess(low, r["diff"])
    self.assertGreater(high, r["diff"])
    self.assertAlmostEqual((low + high) / 2, r["diff"], places=12)
    se = math.sqrt(np.var(a, ddof=1) / 3 + np.var(b, ddof=1) / 4)
    self.assertAlmostEqual((high - low) / 2,
                           scipy_stats.t.ppf(0.975, r["df"]) * se, places=12)

  def test_zero_variance(self):
    r = stats.welch([3.0, 3.0], [5.0, 5.0, 5.0])
    self.assertEqual(r, {"diff": -2.0, "t": -math.inf, "df": None, "p": 0.0,
                         "ci95": (-2.0, -2.0)})
    r = stats.welch([4.0, 4.0], [4.0, 4.0])
    self.assertEqual(r, {"diff": 0.0, "t": 0.0, "df": None, "p": 1.0,
                         "ci95": (0.0, 0.0)})

  def test_one_zero_variance_is_still_a_t_test(self):
    # s_a^2 = 0, s_b^2 = 1: se^2 = 1/3, t = -2 / sqrt(1/3); all the variance is
    # in b, so df = (1/3)^2 / ((1/3)^2 / 2) = n_b - 1 = 2.
    r = stats.welch([3.0, 3.0, 3.0], [4.0, 5.0, 6.0])
    self.assertAlmostEqual(r["t"], -2.0 / math.sqrt(1 / 3), places=12)
    self.assertAlmostEqual(r["df"], 2.0, places=12)
    self.assertAlmostEqual(r["p"], 2 * scipy_stats.t.sf(2.0 / math.sqrt(1 / 3), 2),
                           places=12)

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, "group a has n=1.*run at least 2 seeds"):
      stats.welch([1.0], [1.0, 2.0])
    with self.assertRaisesRegex(ValueError, "group b has n=0.*run at least 2 seeds"):
      stats.welch([1.0, 2.0], [])
    with self.assertRaisesRegex(ValueError, "b holds non-finite"):
      stats.welch([1.0, 2.0], [1.0, float("nan")])


class CompareTest(absltest.TestCase):

  def test_clear_difference(self):
    low, high = [10.0, 10.5, 9.5], [20.0, 21.0, 19.0]
    self.assertEqual(stats.compare(low, high)["verdict"], "better")
    self.assertEqual(stats.compare(high, low)["verdict"], "worse")
    self.assertEqual(stats.compare(low, high, lower_is_better=False)["verdict"],
                     "worse")
    self.assertEqual(stats.compare(high, low, lower_is_better=False)["verdict"],
                     "better")

  def test_overlapping_noisy_samples_tie(self):
    r = stats.compare([10.0, 12.0, 11.0, 13.0], [11.5, 10.5, 12.5, 11.0])
    self.assertEqual(r["verdict"], "tie")
    self.assertGreater(r["p"], 0.5)
    self.assertLess(r["ci95"][0], 0.0)
    self.assertGreater(r["ci95"][1], 0.0)

  def test_alpha_decides_not_the_fixed_95_ci(self):
    # The 95% CI excludes 0, but p is above this alpha: a tie at that alpha.
    r = stats.compare([10.0, 10.5, 9.5], [20.0, 21.0, 19.0], alpha=1e-12)
    self.assertGreater(r["p"], 1e-12)
    self.assertLess(r["ci95"][1], 0.0)
    self.assertEqual(r["verdict"], "tie")
    self.assertEqual(stats.compare([10.0, 10.5, 9.5], [20.0, 21.0, 19.0])["verdict"],
                     "better")

  def test_zero_variance_verdicts(self):
    self.assertEqual(stats.compare([3.0, 3.0], [5.0, 5.0])["verdict"], "better")
    self.assertEqual(stats.compare([5.0, 5.0], [5.0, 5.0])["verdict"], "tie")

  def test_keeps_welch_keys(self):
    a, b = [1.0, 2.0, 3.0], [2.0, 3.0, 5.0]
    r = stats.compare(a, b)
    self.assertEqual({k: v for k, v in r.items() if k != "verdict"},
                     stats.welch(a, b))

  def test_untested(self):
    r = stats.compare([21.0], [20.0, 22.0])
    self.assertEqual(r["verdict"], "untested")
    self.assertAlmostEqual(r["diff"], 0.0)
    self.assertIsNone(r["p"])
    self.assertIsNone(r["ci95"])
    self.assertIn("n=1 in a", r["reason"])
    self.assertIsNone(stats.compare([20.0, 22.0], [])["diff"])

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, "a holds non-finite"):
      stats.compare([float("nan")], [1.0, 2.0])
    with self.assertRaisesRegex(ValueError, "alpha"):
      stats.compare([1.0, 2.0], [1.0, 2.0], alpha=0.0)


class WithinTest(absltest.TestCase):

  def test_rule(self):
    self.assertTrue(stats.within(21.0, 20.0, 0.10))
    self.assertTrue(stats.within(22.0, 20.0, 0.10))  # the edge counts
    self.assertFalse(stats.within(22.5, 20.0, 0.10))
    self.assertTrue(stats.within(20.0, 20.0, 0.0))
    self.assertFalse(stats.within(math.inf, 20.0, 0.10))

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, "value is NaN"):
      stats.within(float("nan"), 20.0, 0.1)
    with self.assertRaisesRegex(ValueError, "reference"):
      stats.within(1.0, math.inf, 0.1)
    with self.assertRaisesRegex(ValueError, "fraction"):
      stats.within(1.0, 20.0, -0.1)


if __name__ == "__main__":
  absltest.main()
