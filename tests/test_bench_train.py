"""tools/bench_train.py and the GPU recipe (tools/gpu_bench.sh), at tiny sizes on CPU."""
import json
import os
import statistics
import subprocess
import sys
import tempfile

import pytest
from absl.testing import absltest

from ppcd_tf import flags as ppcd_flags
from tests import imagenet_step

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env():
  env = dict(os.environ, PYTHONPATH=REPO, TF_USE_LEGACY_KERAS="1",
             TF_CPP_MIN_LOG_LEVEL="2")
  return env


class BenchTrainTest(absltest.TestCase):

  def test_interleaved_cases_ratios_and_memory(self):
    from tools import bench_train
    base = ppcd_flags.parse_flagfile(os.path.join(REPO, "configs", "tiny_test.cfg"))
    # float32 only: bf16 is emulated with oneDNN off (the tests' setting), a minute more
    # for the same bookkeeping; bf16 training itself is tests/test_precision.py's.
    cases = [("teacher", False, "float32"), ("ppcd", False, "float32"),
             ("ppcd_finetune", False, "float32")]
    result = bench_train.run_benchmark(base, cases, steps=1, repeats=2, warmup=0,
                                       log=lambda m: None)
    names = ["teacher/no_xla/float32", "ppcd/no_xla/float32",
             "ppcd_finetune/no_xla/float32"]
    self.assertEqual(result["cases"], names)
    sps = result["steps_per_second"]
    for n in names:
      self.assertLen(sps[n]["all"], 2)
      self.assertGreater(sps[n]["min"], 0)
      self.assertAlmostEqual(result["images_per_second"][n]["median"],
                             sps[n]["median"] * base.optim.batch_size)
      self.assertGreater(result["memory"]["per_case"][n]["host_rss_mb"], 100)
    # The step-time ratio is teacher speed / PPCD speed, from the same medians.
    self.assertAlmostEqual(
        result["step_time_ratio_ppcd_over_teacher"]["no_xla/float32"],
        statistics.median(sps["teacher/no_xla/float32"]["all"])
        / statistics.median(sps["ppcd/no_xla/float32"]["all"]))
    over = result["step_time_ratio_over_teacher"]
    self.assertEqual(over["ppcd/no_xla/float32"],
                     result["step_time_ratio_ppcd_over_teacher"]["no_xla/float32"])
    self.assertAlmostEqual(over["ppcd_finetune/no_xla/float32"],
                           statistics.median(sps["teacher/no_xla/float32"]["all"])
                           / statistics.median(sps["ppcd_finetune/no_xla/float32"]["all"]))
    # The fine-tuning case trains the slim generator of the config's budget.
    slim = result["finetune_generator"]["ppcd_finetune/no_xla/float32"]
    self.assertLessEqual(slim["g_params"], (1 - base.pruning.target_fraction)
                         * result["config"]["g_params"] * 1.05)
    self.assertLess(slim["g_macs_per_image"], 0.5 * result["config"]["g_macs_per_image"])
    self.assertEqual(result["xla_speedup"], {})  # no XLA case was timed
    self.assertEqual(result["precision_speedup_over_float32"], {})  # nor a bf16 one
    self.assertEqual(result["config"]["distill_terms"], ["att", "cam", "pix"])
    self.assertGreaterEqual(result["memory"]["host_peak_rss_mb"],
                            max(m["host_rss_mb"] for m in result["memory"]["per_case"].values()))

  def test_ppcd_variants_switch_off_the_named_terms(self):
    from ppcd_tf import distill
    from tools import bench_train
    base = ppcd_flags.parse_flagfile(os.path.join(REPO, "configs", "mnist32.cfg"))
    terms = {mode: sorted(distill.active_terms(base.replace(distill=over).distill))
             for mode, over in bench_train.PPCD_VARIANTS.items()}
    self.assertEqual(terms, {"ppcd": ["att", "cam", "pix"], "ppcd_no_cam": ["att", "pix"],
                             "ppcd_cam_only": ["cam"], "ppcd_no_distill": [],
                             "ppcd_finetune": ["att", "cam", "pix"]})

  @pytest.mark.slow
  def test_imagenet128_teacher_step_at_batch_1(self):
    # The full BigGAN 128x128 networks (70M-parameter G, 88M D) build, trace and
    # take timed steps on CPU: what the GPU recipe runs, at the smallest size. The
    # teacher case only: the PPCD case adds the teacher networks and about 4 more
    # minutes on 2 cores (the suite's 20-minute budget); its step code is the one
    # the tiny cases above time.
    _, result = imagenet_step.teacher_step("imagenet128.cfg")
    self.assertEqual(result["config"]["g_params"], 70_433_988)
    self.assertEqual(result["config"]["batch_size"], 1)
    rate = result["steps_per_second"][imagenet_step.CASE]
    self.assertLen(rate["all"], 1)
    self.assertGreater(rate["median"], 0)
    self.assertGreater(result["memory"]["per_case"][imagenet_step.CASE]
                       ["host_rss_mb"], 1000)  # 158M float32 parameters + Adam slots


class GpuRecipeTest(absltest.TestCase):
  """tools/gpu_bench.sh, run as on a GPU machine but on CPU with the tiny config."""

  def _run(self, out, **env):
    cmd_env = dict(_env(), SKIP_SETUP="1", PY=sys.executable,
                   CONFIG="configs/tiny_test.cfg", BATCH="4", STEPS="1", REPEATS="1",
                   WARMUP="0", OUT=out, **env)
    return subprocess.run(["bash", os.path.join(REPO, "tools", "gpu_bench.sh")],
                          cwd=REPO, env=cmd_env, capture_output=True, text=True,
                          timeout=600)

  def test_script_runs_at_tiny_size_on_cpu_and_writes_the_json(self):
    # XLA off and float32 here: compiling both steps on 2 CPU cores would cost about
    # a minute of the suite, and bf16 convolutions with oneDNN off (the tests) are
    # emulated, slowly; XLA steps are tested in test_train.XlaTest, bf16 steps in
    # BenchTrainTest above. The recipe's defaults (bf16 + XLA) are checked below from
    # the script itself.
    out = os.path.join(tempfile.mkdtemp(), "bench_train_gpu.json")
    proc = self._run(out, REQUIRE_GPU="0", JIT="false", PRECISIONS="float32")
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    with open(out) as f:
      result = json.load(f)
    self.assertEqual(result["cases"], ["teacher/no_xla/float32", "ppcd/no_xla/float32"])
    self.assertIn("no_xla/float32", result["step_time_ratio_ppcd_over_teacher"])
    self.assertIn("--bench_precisions=float32", result["command"])
    self.assertIn("--bench_jit=false", result["command"])
    self.assertIn("gpu_bench: done", proc.stderr)

  def test_script_defaults_are_bf16_xla_imagenet128(self):
    text = open(os.path.join(REPO, "tools", "gpu_bench.sh")).read()
    for default in ("JIT=${JIT:-true}", "PRECISIONS=${PRECISIONS:-mixed_bfloat16}",
                    "CONFIG=${CONFIG:-configs/imagenet128.cfg}",
                    '--bench_jit="$JIT"', '--bench_precisions="$PRECISIONS"',
                    "--bench_modes=teacher,ppcd"):
      self.assertIn(default, text)

  def test_script_refuses_a_machine_without_gpu(self):
    out = os.path.join(tempfile.mkdtemp(), "never.json")
    proc = self._run(out)
    self.assertEqual(proc.returncode, 2)
    self.assertIn("TensorFlow sees no GPU", proc.stderr)
    self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
  absltest.main()
