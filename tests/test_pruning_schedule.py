"""ProgressivePruningSchedule: values by hand, events, serialisation."""
from absl.testing import absltest, parameterized

from ppcd_tf import config as config_lib
from ppcd_tf.pruning import ProgressivePruningSchedule


class ScheduleTest(parameterized.TestCase):

  def test_polynomial_values_by_hand(self):
    s = ProgressivePruningSchedule(0.8, begin_step=100, end_step=300, frequency=50, power=3)
    # tfmot PolynomialDecay: target + (0 - target) * (1 - (t - b)/(e - b))^3
    for step, want in [(0, 0.0), (99, 0.0), (100, 0.0), (200, 0.8 * (1 - 0.5 ** 3)),
                       (300, 0.8), (10_000, 0.8)]:
      self.assertAlmostEqual(s.fraction(step), want, places=5, msg=f"step {step}")

  def test_constant(self):
    s = ProgressivePruningSchedule(0.5, begin_step=10, end_step=20, frequency=5,
                                   schedule="constant")
    self.assertEqual(s.fraction(9), 0.0)
    self.assertAlmostEqual(s.fraction(10), 0.5, places=6)
    self.assertAlmostEqual(s.fraction(15), 0.5, places=6)

  def test_events_include_end_step(self):
    s = ProgressivePruningSchedule(0.81, begin_step=0, end_step=110, frequency=50)
    events = [t for t in range(200) if s.should_prune(t)]
    self.assertEqual(events, [0, 50, 100, 110])
    self.assertFalse(s.is_frozen(110))
    self.assertTrue(s.is_frozen(111))

  def test_monotone(self):
    s = ProgressivePruningSchedule(0.9, begin_step=0, end_step=1000, frequency=10)
    values = [s.fraction(t) for t in range(0, 1001, 10)]
    self.assertEqual(values, sorted(values))

  def test_config_round_trip(self):
    s = ProgressivePruningSchedule(0.7, 5, 500, 25, "polynomial", 2.0)
    s2 = ProgressivePruningSchedule.from_config(s.get_config())
    self.assertEqual(s, s2)
    self.assertEqual(s2.fraction(100), s.fraction(100))
    cfg = config_lib.PruningConfig(target_fraction=0.7, begin_step=5, end_step=500,
                                   frequency=25, power=2.0)
    self.assertEqual(ProgressivePruningSchedule.from_pruning_config(cfg), s)

  @parameterized.named_parameters(
      ("target", dict(target_fraction=1.0), "target_fraction=1.0"),
      ("order", dict(begin_step=10, end_step=10), "begin_step=10"),
      ("freq", dict(frequency=0), "frequency=0"),
      ("kind", dict(schedule="cosine"), "cosine"),
  )
  def test_validation(self, kwargs, msg):
    with self.assertRaisesRegex(config_lib.ConfigError, msg):
      ProgressivePruningSchedule(**kwargs)


if __name__ == "__main__":
  absltest.main()
