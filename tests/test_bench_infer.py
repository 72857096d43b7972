"""tools/bench_infer_scale.py at tiny size: the report's structure and its arithmetic.

One run of `run_scale_benchmark` on the tiny test config (32 px, width 4), fp32 and
int8 only, one repeat, tiny peak probes; the tests then check the JSON holds the
three models, PPCD's allocation, the peaks and a headline whose speed-ups, MAC
reductions and GFLOP/s are positive, finite and follow from the raw numbers in
the same report. Timings themselves are not asserted (they depend on the machine).
"""

import json
import math

from absl.testing import absltest

from ppcd_tf import config as config_lib
from ppcd_tf import flops
from tools import bench_infer_scale

VARIANTS = ("tflite_fp32", "tflite_int8")


def positive_finite(test, value, what):
  test.assertIsInstance(value, float, what)
  test.assertTrue(math.isfinite(value) and value > 0, f"{what} = {value}")


class BenchInferScaleTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cfg = config_lib.tiny_config()
    cls.model_cfg = cfg.model
    cls.pruning_cfg = config_lib.PruningConfig(target_fraction=0.81,
                                               min_channel_fraction=0.19)
    report = bench_infer_scale.run_scale_benchmark(
        cls.model_cfg, cls.pruning_cfg, variants=VARIANTS, repeats=1, warmup=1,
        min_repeat_s=0.0, num_threads=2, representative_batches=1,
        probe_matmul_n=64, probe_conv=(8, 16), command="test")
    cls.report = json.loads(json.dumps(report))  # what the JSON file holds

  def test_structure(self):
    r = self.report
    for key in ("command", "created", "machine", "versions", "settings", "peak",
                "models", "headline", "results", "artifacts"):
      self.assertIn(key, r)
    for key in ("cpu_model", "cpu_count", "loadavg_before", "loadavg_after"):
      self.assertIn(key, r["machine"])
    share = r["machine"]["other_processes_cpu_share"]
    self.assertTrue(share is None or 0.0 <= share <= 1.0, share)
    self.assertIn("tensorflow", r["versions"])
    self.assertIn("ai_edge_litert", r["versions"])
    self.assertEqual(sorted(r["models"]), sorted(bench_infer_scale.ROLES))
    self.assertEqual(sorted(r["headline"]), sorted(VARIANTS))
    self.assertLen(r["results"], len(VARIANTS) * len(bench_infer_scale.ROLES))
    for res in r["results"]:
      self.assertEqual((res["batch"], res["repeats"]), (1, 1))

  def test_models_keep_the_budget(self):
    models = self.report["models"]
    teacher = models["teacher"]
    self.assertEqual(teacher["macs_per_image"],
                     flops.generator_cost(self.model_cfg).total_macs)
    for role in ("uniform", "ppcd"):
      self.assertLess(models[role]["params"], 0.25 * teacher["params"])
      self.assertLess(models[role]["macs_per_image"], teacher["macs_per_image"])
    ppcd = models["ppcd"]
    self.assertLessEqual(ppcd["cost_after"], ppcd["final_budget"])
    self.assertEqual(ppcd["params"], ppcd["cost_after"])  # params metric: live = slim
    self.assertLess(ppcd["max_abs_diff_slim_vs_masked"], 1e-5)  # float32 round-off
    self.assertEqual(ppcd["pruning_config"]["min_channel_fraction"], 0.19)
    for name, mask in ppcd["masks"].items():
      self.assertGreaterEqual(mask["kept"], mask["floor"], name)
    self.assertTrue(any(m["at_floor"] for m in ppcd["masks"].values()))

  def test_peak_is_measured(self):
    peak = self.report["peak"]
    positive_finite(self, peak["peak_fp32_gflops"], "fp32 peak")
    positive_finite(self, peak["peak_int8_gops"], "int8 peak")
    fp32 = [p["gflops"] for when in ("before", "after")
            for name, p in peak[when]["probes"].items() if name.endswith("fp32")]
    self.assertAlmostEqual(peak["peak_fp32_gflops"], max(fp32))
    for p in peak["before"]["probes"].values():
      self.assertAlmostEqual(p["gflops"], p["flops"] / (p["ms"] / 1e3) / 1e9, places=6)

  def test_headline_follows_from_the_results(self):
    r = self.report
    ms = {(c["model"], c["variant"]): c["median_ms_per_call"] for c in r["results"]}
    macs = {role: m["macs_per_image"] for role, m in r["models"].items()}
    for variant, row in r["headline"].items():
      integer = variant in ("tflite_dynamic", "tflite_int8", "tflite_int8_full")
      peak = r["peak"]["peak_int8_gops"] if integer else r["peak"]["peak_fp32_gflops"]
      self.assertAlmostEqual(row["peak_used_gflops"], peak)
      for role in bench_infer_scale.ROLES:
        cell = row[role]
        self.assertAlmostEqual(cell["median_ms"], ms[(role, variant)])
        positive_finite(self, cell["gflops"], f"{variant}/{role} GFLOP/s")
        self.assertAlmostEqual(cell["gflops"],
                               2 * macs[role] / (ms[(role, variant)] / 1e3) / 1e9)
        self.assertAlmostEqual(cell["fraction_of_peak"], cell["gflops"] / peak)
        if role == "teacher":
          continue
        for key in ("speedup", "mac_reduction", "speedup_over_mac_reduction"):
          positive_finite(self, cell[key], f"{variant}/{role} {key}")
        self.assertAlmostEqual(cell["speedup"],
                               ms[("teacher", variant)] / ms[(role, variant)])
        self.assertAlmostEqual(cell["mac_reduction"], macs["teacher"] / macs[role])
        self.assertAlmostEqual(cell["speedup_over_mac_reduction"],
                               cell["speedup"] / cell["mac_reduction"])
        # Speed-up / MAC cut = slim GFLOP/s / teacher GFLOP/s: the two views agree.
        self.assertAlmostEqual(cell["speedup_over_mac_reduction"],
                               cell["gflops"] / row["teacher"]["gflops"])

  def test_markdown_starts_with_the_command(self):
    md = bench_infer_scale.markdown(self.report)
    self.assertIn("Command: `test`", md.splitlines()[2])
    for variant in VARIANTS:
      self.assertIn(f"| {variant} |", md)

  def test_rejects_non_tflite_variants(self):
    with self.assertRaisesRegex(ValueError, "keras"):
      bench_infer_scale.run_scale_benchmark(self.model_cfg, self.pruning_cfg,
                                            variants=("keras",))


if __name__ == "__main__":
  absltest.main()
