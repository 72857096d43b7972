r"""Latency at a scale where compute dominates: teacher vs two 81%-slimmed generators.

The published run (docs/bench/bench_infer_scale.{json,md}; 9.4 min on 2 cores):
  .venv/bin/python -m tools.bench_infer_scale --flagfile=configs/imagenet128.cfg \
      --prune_min_channel_fraction=0.19 --repeats=30 --min_repeat_s=0.5

At the demo scale (27M MACs per image) fixed per-op costs dominate TFLite latency,
so a MAC cut barely shows (docs/bench/bench_infer.md). This tool asks the question
where it matters: the BigGAN 128x128 architecture (20 GMACs per image), random
weights (latency does not depend on their values), three generators:

* `teacher`: the config's widths.
* `uniform`: every width scaled by one factor to keep `1 - target_fraction` of the
  teacher's parameters (`tools.bench_infer.scaled_channels`).
* `ppcd`: PPCD's allocation at the same budget. The masked generator
  (`build_generator(masked=True)`) is pruned by the project's own
  `ppcd_tf.pruning.PruningController` (from the flags' `PruningConfig`: target,
  per-mask floor `--prune_min_channel_fraction`, cost exponent) straight to the
  final budget with every mask score at its initial value, then slimmed by
  `ppcd_tf.slim.slim_generator`. With equal scores the ranking
  `sigmoid(score) / relative_cost` is decided by the per-channel cost alone, so
  the controller takes channels from the masks whose channels cost most (with a
  parameter budget: the wide low-resolution blocks) down to their floor first:
  this is the allocation the current controller produces in training too, where
  the learned scores barely differ and cost and floor decide. (At 128 px it keeps
  the narrow high-resolution blocks whole, hence most of the MACs: see the page.)

Every generator is built with `--init` (default "N02": orthogonal init of the 128 px
G spends ~25 s in QR decompositions and does not change latency). Each model is
exported to TFLite fp32 / float16 / dynamic-range / int8 (attention core float32,
the default export) / int8_full (every op int8) in a temp dir and timed with the
LiteRT interpreter at batch 1, all cases interleaved repeat by repeat
(`tools.bench_infer.measure_cases`). int8 calibration uses
--representative_batches batches of 8 (1 by default: enough for timing, not for
image quality).

Per variant the report gives the speed-up (teacher median latency / slim median
latency) against the MAC reduction (teacher MACs / slim MACs, `ppcd_tf.flops`), and
the achieved GFLOP/s = 2 * MACs / latency against the machine's peak, measured in
the same process before and after the timing by compute-bound probes
(`peak_probes`): a square fp32 `tf.matmul`, a fp32 3x3 `tf.nn.conv2d` of the
teacher's 64 px layer shape (TensorFlow, oneDNN as the process has it), and the
same conv as a one-op TFLite model in fp32 and int8 (LiteRT, XNNPACK,
--num_threads). MACs count convolutions, linear layers, CBN projections and the
attention matmuls only (`ppcd_tf.flops`), so GFLOP/s is a lower bound on the work
rate.

Writes --out_json and --out_md (default docs/bench/bench_infer_scale.{json,md}).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import ppcd_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from ppcd_tf import checkpoints
from ppcd_tf import config as config_lib
from ppcd_tf import export
from ppcd_tf import files
from ppcd_tf import flags as ppcd_flags
from ppcd_tf import flops
from ppcd_tf import pruning
from ppcd_tf import slim
from ppcd_tf.cli_errors import friendly_errors
from ppcd_tf.generator import build_generator
from tools import bench_infer  # defines the model and timing flags this tool reuses

__all__ = ["ROLES", "SCALE_VARIANTS", "ppcd_allocation", "peak_probes",
           "run_scale_benchmark", "markdown"]

ROLES = ("teacher", "uniform", "ppcd")
SCALE_VARIANTS = ("tflite_fp32", "tflite_fp16", "tflite_dynamic", "tflite_int8",
                  "tflite_int8_full")
# Which measured peak a variant's GFLOP/s is compared with: variants whose convs run
# integer GEMMs with the int8 probe - int8, and dynamic-range too, whose hybrid
# kernels quantise the activations on the fly and multiply in int8 - the float
# ones (fp32, float16 weights dequantised at load) with the fp32 probes.
_INT8_VARIANTS = ("tflite_dynamic", "tflite_int8", "tflite_int8_full")
# The teacher's 64 px conv of configs/imagenet128.cfg (192 -> 192 channels, 3x3).
DEFAULT_CONV_PROBE = (64, 192)
# Other processes' CPU share during the timing above which the page flags the run.
_BUSY_SHARE = 0.1

FLAGS = flags.FLAGS
flags.DEFINE_string("init", "N02", "Weight init of the random generators (ortho, N02, "
                    "glorot); N02 skips ortho's QR decompositions.")
flags.DEFINE_integer("representative_batches", 1,
                     "int8 calibration batches of 8 per export (timing needs few).",
                     lower_bound=1)
flags.DEFINE_integer("probe_matmul_n", 2048, "Side of the fp32 matmul peak probe.",
                     lower_bound=8)
flags.DEFINE_list("probe_conv", [str(v) for v in DEFAULT_CONV_PROBE],
                  "Conv peak probe RESOLUTION,CHANNELS (batch 1, 3x3, same padding).")


def _use_scale_defaults() -> None:
  """This tool's defaults for the flags it shares with tools/bench_infer.py.

  Called only when the tool runs, so importing the module (tests) leaves
  bench_infer's defaults alone.
  """
  FLAGS.set_default("variants", list(SCALE_VARIANTS))
  FLAGS.set_default("batch_sizes", ["1"])
  FLAGS.set_default("warmup", 2)
  FLAGS.set_default("repeats", 15)
  FLAGS.set_default("min_repeat_s", 0.3)
  FLAGS.set_default("out_json", os.path.join("docs", "bench", "bench_infer_scale.json"))
  FLAGS.set_default("out_md", os.path.join("docs", "bench", "bench_infer_scale.md"))


def _log(msg: str) -> None:
  print(f"[bench_infer_scale] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------
def ppcd_allocation(model_cfg, pruning_cfg: config_lib.PruningConfig, init: str = "N02"
                    ) -> Tuple[Any, Dict[str, Any]]:
  """The slim generator PPCD's controller allocates at the final budget.

  Builds the masked generator, prunes it with `PruningController.from_config` to
  the final budget in one `prune_to` call (every mask score at its initial value),
  slims it with `ppcd_tf.slim.slim_generator` and checks the slim model computes
  the masked function.

  Args:
    model_cfg: architecture.
    pruning_cfg: target, floor (`min_channel_fraction`), cost exponent, metric.
    init: weight init (random weights; "N02" is fast).

  Returns:
    (slim Generator, facts: the pruning event, budget, per-mask kept channels and
    whether each sits at its floor, max |slim - masked|).
  """
  masked = build_generator(model_cfg, masked=True, name="generator", init=init)
  full = flops.generator_cost(model_cfg)
  metric = "macs" if pruning_cfg.budget_macs else "params"
  full_cost = full.total_macs if metric == "macs" else full.total_params
  if pruning_cfg.importance in ("taylor", "learned"):
    # Both need training to differ from equal importances; untrained, they rank by cost.
    pruning_cfg = dataclasses.replace(pruning_cfg, importance="cost")
  controller = pruning.PruningController.from_config(masked, pruning_cfg, full_cost)
  event = controller.prune_to(controller.final_budget)
  kept = controller.channels_kept()
  masks = dict(masked.masks)
  # The floor each mask keeps, as the controller computes it.
  floor = controller._keep_at_least  # pylint: disable=protected-access
  per_mask = {name: {"kept": n, "of": masks[name].num_channels,
                     "floor": floor(masks[name]), "at_floor": n == floor(masks[name])}
              for name, n in kept.items()}
  slim_g = slim.slim_generator(masked, name="generator")
  max_diff = slim.verify_slim(masked, slim_g, num_batches=1, batch=1)
  facts = {
      "metric": metric, "full_cost": int(full_cost),
      "final_budget": int(controller.final_budget),
      "cost_after": int(event.cost_after), "channels_pruned": int(event.channels_pruned),
      "rounds": int(event.rounds),
      "pruning_config": {"target_fraction": pruning_cfg.target_fraction,
                         "min_channel_fraction": pruning_cfg.min_channel_fraction,
                         "cost_exponent": pruning_cfg.cost_exponent,
                         "budget_params": pruning_cfg.budget_params,
                         "budget_macs": pruning_cfg.budget_macs},
      "mask_scores": "all at the initial value (no training): the ranking is by "
                     "per-channel cost, each mask stops at its floor",
      "masks": per_mask, "max_abs_diff_slim_vs_masked": max_diff,
  }
  del masked
  return slim_g, facts


def _scale_models(model_cfg, pruning_cfg, init: str) -> Tuple[Dict[str, Any], Dict]:
  keep = 1.0 - pruning_cfg.target_fraction
  teacher = build_generator(model_cfg, name="generator", init=init)
  channels, got = bench_infer.scaled_channels(model_cfg, keep)
  uniform = build_generator(model_cfg, channels=channels, name="generator", init=init)
  _log(f"uniform widths {channels.to_dict()} keep {got:.4f} of the params")
  ppcd_g, ppcd_facts = ppcd_allocation(model_cfg, pruning_cfg, init)
  _log(f"PPCD widths {ppcd_g.live_channels().to_dict()} after "
       f"{ppcd_facts['rounds']} rounds, {ppcd_facts['metric']} "
       f"{ppcd_facts['cost_after']:,} <= budget {ppcd_facts['final_budget']:,}")
  models = {
      "teacher": (teacher, f"random weights ({init}), config widths"),
      "uniform": (uniform, f"random weights ({init}), every width scaled by one factor "
                  f"to keep {got:.4f} of the params (target {keep:.2f})"),
      "ppcd": (ppcd_g, f"random weights ({init}), PruningController allocation at "
               f"target_fraction={pruning_cfg.target_fraction}, min_channel_fraction="
               f"{pruning_cfg.min_channel_fraction}, cost_exponent="
               f"{pruning_cfg.cost_exponent}, slimmed"),
  }
  return models, {"uniform": {"params_fraction": got}, "ppcd": ppcd_facts}


# ---------------------------------------------------------------------------
# Peak probes
# ---------------------------------------------------------------------------
def _median_call_s(fn, min_s: float = 0.5, repeats: int = 5) -> float:
  """Median over `repeats` of the mean time of enough calls to last `min_s`."""
  fn()
  start = time.perf_counter()
  fn()
  per_call = max(time.perf_counter() - start, 1e-6)
  calls = max(1, int(np.ceil(min_s / per_call)))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      fn()
    times.append((time.perf_counter() - start) / calls)
  return statistics.median(times)


def _conv_tflite(res: int, ch: int, int8: bool) -> bytes:
  """A one-conv TFLite model (bias + ReLU, like the generator's convs after fusion)."""
  rng = np.random.default_rng(0)
  kernel = tf.constant(rng.normal(0, 0.05, (3, 3, ch, ch)).astype(np.float32))
  bias = tf.constant(rng.normal(0, 0.05, (ch,)).astype(np.float32))

  @tf.function(input_signature=[tf.TensorSpec([1, res, res, ch], tf.float32)])
  def conv(x):
    return tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME") + bias)

  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [conv.get_concrete_function()], conv)
  if int8:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [rng.standard_normal((1, res, res, ch)).astype(np.float32)] for _ in range(4))
  with warnings.catch_warnings():
    # The int8 conversion asks for input mean/std statistics that only a model with
    # quantised inputs reads (this one keeps a float input), and its calibrator
    # still runs the deprecated tf.lite.Interpreter: neither is ours to act on.
    warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
    return converter.convert()


def peak_probes(num_threads: int, matmul_n: int = 2048,
                conv: Tuple[int, int] = DEFAULT_CONV_PROBE) -> Dict[str, Any]:
  """Compute-bound throughput probes of this machine, in GFLOP/s (2 per MAC).

  Args:
    num_threads: LiteRT interpreter threads (TensorFlow uses its own intra-op
      pool, recorded as `tf_intra_op_threads`; 0 = one thread per core).
    matmul_n: fp32 `tf.matmul` of two n x n matrices.
    conv: (resolution, channels) of a batch-1 3x3 same-padding conv C -> C.

  Returns:
    {"probes": {name: {"gflops", "ms", "flops", "how"}}, "peak_fp32_gflops" (max of
    the fp32 probes), "peak_int8_gops" (the LiteRT int8 conv), threads}.
  """
  res, ch = int(conv[0]), int(conv[1])
  rng = np.random.default_rng(0)
  probes: Dict[str, Dict[str, Any]] = {}

  def add(name, flop, seconds, how):
    probes[name] = {"gflops": flop / seconds / 1e9, "ms": seconds * 1e3,
                    "flops": int(flop), "how": how}

  a = tf.constant(rng.standard_normal((matmul_n, matmul_n)).astype(np.float32))
  mm = tf.function(lambda: tf.matmul(a, a))
  add("tf_matmul_fp32", 2 * matmul_n ** 3, _median_call_s(lambda: mm().numpy()),
      f"tf.matmul fp32 {matmul_n}x{matmul_n} @ {matmul_n}x{matmul_n} in a tf.function "
      "(TensorFlow CPU kernels, oneDNN per TF_ENABLE_ONEDNN_OPTS)")
  x = tf.constant(rng.standard_normal((1, res, res, ch)).astype(np.float32))
  k = tf.constant(rng.normal(0, 0.05, (3, 3, ch, ch)).astype(np.float32))
  cv = tf.function(lambda: tf.nn.conv2d(x, k, 1, "SAME"))
  conv_flop = 2 * res * res * 9 * ch * ch
  add("tf_conv2d_fp32", conv_flop, _median_call_s(lambda: cv().numpy()),
      f"tf.nn.conv2d fp32 batch 1 {res}x{res}x{ch} -> {ch}, 3x3 SAME in a tf.function")
  for name, int8 in (("litert_conv2d_fp32", False), ("litert_conv2d_int8", True)):
    interp = Interpreter(model_content=_conv_tflite(res, ch, int8),
                         num_threads=num_threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], rng.standard_normal(inp["shape"]).astype(np.float32))
    add(name, conv_flop, _median_call_s(interp.invoke),
        f"one-op TFLite model, conv2d {res}x{res}x{ch} -> {ch} 3x3 + bias + ReLU, "
        f"{'int8 (post-training, per-channel weights)' if int8 else 'fp32'}, LiteRT "
        f"interpreter (XNNPACK), {num_threads} threads"
        + ("; counts 2 int8 ops per MAC (GOP/s)" if int8 else ""))
  fp32 = [p["gflops"] for n, p in probes.items() if n.endswith("fp32")]
  return {"probes": probes, "peak_fp32_gflops": max(fp32),
          "peak_int8_gops": probes["litert_conv2d_int8"]["gflops"],
          "litert_threads": num_threads,
          "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads()}


# ---------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------
def _busy_cpu_s() -> Optional[float]:
  """CPU seconds all processes have spent busy since boot (/proc/stat), or None."""
  try:
    with open("/proc/stat") as f:
      fields = f.readline().split()
  except OSError:
    return None
  # user nice system idle iowait irq softirq steal: all but idle and iowait.
  ticks = [int(v) for v in fields[1:9]]
  return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class _OtherLoad:
  """Share of the machine's CPU time other processes used while the timing ran.

  The load average counts this process too (it is busy converting right before
  the timing), so it cannot tell whether someone else shared the cores; busy CPU
  time from /proc/stat minus this process's own (`os.times`) can.
  """

  def __init__(self):
    self._busy, self._own, self._wall = _busy_cpu_s(), self._own_s(), time.time()

  @staticmethod
  def _own_s() -> float:
    t = os.times()
    return t.user + t.system

  def share(self) -> Optional[float]:
    busy = _busy_cpu_s()
    if busy is None or self._busy is None:
      return None
    others = (busy - self._busy) - (self._own_s() - self._own)
    wall = max(time.time() - self._wall, 1e-6)
    return max(0.0, others / (wall * (os.cpu_count() or 1)))


def _headline(results: List[Dict[str, Any]], facts: Dict[str, Dict[str, Any]],
              peak_fp32: float, peak_int8: float) -> Dict[str, Any]:
  """{variant: {role: ms, GFLOP/s, share of peak[, speed-up, MAC reduction]}} at batch 1."""
  by = {(r["model"], r["variant"]): r for r in results if r["batch"] == 1}
  out: Dict[str, Any] = {}
  for variant in sorted({v for _, v in by}, key=list(bench_infer.VARIANTS).index):
    if ("teacher", variant) not in by:
      continue
    peak = peak_int8 if variant in _INT8_VARIANTS else peak_fp32
    t = by[("teacher", variant)]
    row: Dict[str, Any] = {"peak_used_gflops": peak}
    for role in ROLES:
      if (role, variant) not in by:
        continue
      r, macs = by[(role, variant)], facts[role]["macs_per_image"]
      gflops = 2 * macs / (r["median_ms_per_call"] / 1e3) / 1e9
      cell = {"median_ms": r["median_ms_per_call"], "min_ms": r["min_ms_per_image"],
              "gflops": gflops, "fraction_of_peak": gflops / peak}
      if role != "teacher":
        speedup = t["median_ms_per_call"] / r["median_ms_per_call"]
        mac_reduction = facts["teacher"]["macs_per_image"] / macs
        cell.update(speedup=speedup, speedup_min=t["min_ms_per_image"] / r["min_ms_per_image"],
                    mac_reduction=mac_reduction,
                    speedup_over_mac_reduction=speedup / mac_reduction)
      row[role] = cell
    out[variant] = row
  return out


def run_scale_benchmark(model_cfg, pruning_cfg: config_lib.PruningConfig,
                        variants: Sequence[str] = SCALE_VARIANTS, repeats: int = 15,
                        warmup: int = 2, min_repeat_s: float = 0.3, num_threads: int = 2,
                        representative_batches: int = 1, init: str = "N02",
                        probe_matmul_n: int = 2048,
                        probe_conv: Tuple[int, int] = DEFAULT_CONV_PROBE,
                        command: str = "", flagfiles: Optional[List[str]] = None
                        ) -> Dict[str, Any]:
  """Builds the three generators, times every variant interleaved, returns the report.

  Args:
    model_cfg: architecture (e.g. from configs/imagenet128.cfg).
    pruning_cfg: PPCD's budget and floor; `uniform` keeps 1 - target_fraction.
    variants: TFLite variants of `tools.bench_infer.VARIANTS` (batch 1 only).
    repeats, warmup, min_repeat_s, num_threads: see `bench_infer.measure_cases`.
    representative_batches: int8 calibration batches of 8.
    init: weight init of the random generators.
    probe_matmul_n, probe_conv: peak probe sizes (`peak_probes`).
    command: the command line, recorded verbatim.
    flagfiles: the flagfiles the config came from, recorded.

  Returns:
    The JSON report (see docs/bench/bench_infer_scale.json).

  Raises:
    ValueError: a variant is not a TFLite variant, or the pruning config is invalid.
  """
  bad = [v for v in variants if v not in SCALE_VARIANTS]
  if bad:
    raise ValueError(f"variants {bad} are not timed here; choose from {SCALE_VARIANTS} "
                     "(Keras and SavedModel: tools/bench_infer.py).")
  pruning_cfg.validate()
  start = time.time()
  models, extra = _scale_models(model_cfg, pruning_cfg, init)
  facts = {role: dict(bench_infer._model_facts(g), source=src)  # pylint: disable=protected-access
           for role, (g, src) in models.items()}
  for role, more in extra.items():
    facts[role].update(more)
  load_before = os.getloadavg()
  other_load = _OtherLoad()
  _log("peak probes (before)")
  peak_before = peak_probes(num_threads, probe_matmul_n, probe_conv)
  results, artifacts = bench_infer.measure_cases(
      models, list(variants), [1], warmup, repeats, min_repeat_s, num_threads,
      representative_batches)
  _log("peak probes (after)")
  peak_after = peak_probes(num_threads, probe_matmul_n, probe_conv)
  load_after = os.getloadavg()
  other_share = other_load.share()
  peak_fp32 = max(peak_before["peak_fp32_gflops"], peak_after["peak_fp32_gflops"])
  peak_int8 = max(peak_before["peak_int8_gops"], peak_after["peak_int8_gops"])
  return {
      "mode": "random-weights-at-scale",
      "command": command,
      "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      "wall_s": time.time() - start,
      "machine": {"cpu_model": bench_infer._cpu_model(),  # pylint: disable=protected-access
                  "cpu_flags": _cpu_flags(),
                  "cpu_count": os.cpu_count(), "platform": platform.platform(),
                  "loadavg_before": list(load_before), "loadavg_after": list(load_after),
                  "other_processes_cpu_share": other_share,
                  "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "")},
      "versions": export._versions(),  # pylint: disable=protected-access
      "git": _git_state(),
      "settings": {"variants": list(variants), "batch": 1, "repeats": repeats,
                   "warmup_calls": warmup, "min_repeat_s": min_repeat_s,
                   "num_threads": num_threads,
                   "representative_batches": representative_batches,
                   "calibration_batch": 8, "init": init,
                   "flagfiles": list(flagfiles or []),
                   "resolution": model_cfg.resolution, "num_classes": model_cfg.num_classes},
      "peak": {"peak_fp32_gflops": peak_fp32, "peak_int8_gops": peak_int8,
               "how": "max over the probes run before and after the timing; fp32: max "
                      "of tf_matmul_fp32, tf_conv2d_fp32, litert_conv2d_fp32; int8: "
                      "litert_conv2d_int8",
               "before": peak_before, "after": peak_after},
      "models": facts,
      "artifacts": artifacts,
      "headline": _headline(results, facts, peak_fp32, peak_int8),
      "results": results,
      "note": ("random weights: latency and MACs are representative, export error "
               "figures are not. GFLOP/s = 2 * MACs / median latency, with MACs "
               "from ppcd_tf.flops (convs, linears, CBN projections, attention "
               "matmuls; element-wise work not counted)."),
  }


# ---------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------
def _cpu_flags() -> List[str]:
  """The SIMD / matrix extensions in /proc/cpuinfo that decide conv throughput."""
  wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
            "amx_bf16", "amx_int8", "amx_tile")
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("flags"):
          have = set(line.split(":", 1)[1].split())
          return [w for w in wanted if w in have]
  except OSError:
    pass
  return []


def _git_state() -> Dict[str, Any]:
  """HEAD commit and whether tracked files differ from it (uncommitted edits)."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=True, timeout=10).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=repo, capture_output=True, text=True, check=True,
                           timeout=10).stdout.split("\n")
    return {"head": head, "modified": sorted(l[3:] for l in dirty if l.strip())}
  except (OSError, subprocess.SubprocessError):
    return {"head": "unknown", "modified": []}


def _share(v: Optional[float]) -> str:
  return "an unknown share" if v is None else f"{v:.1%}"


def _ms(v: float) -> str:
  return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def _widths(ch: Dict[str, Any]) -> str:
  return f"stem {ch['stem']}; mid {ch['mid']}; out {ch['out']}"


def markdown(report: Dict[str, Any]) -> str:
  """The report as a markdown page, the command first."""
  m, models, head = report["machine"], report["models"], report["headline"]
  peak, s = report["peak"], report["settings"]
  lines = [
      "# Generator latency at a scale where compute dominates (random weights)", "",
      f"Command: `{report['command']}`", "",
      f"{m['cpu_model']} ({', '.join(m['cpu_flags']) or 'no AVX flags read'}), "
      f"{m['cpu_count']} cores; TF {report['versions']['tensorflow']}, "
      f"LiteRT {report['versions'].get('ai_edge_litert', '?')} with {s['num_threads']} "
      f"threads, batch {s['batch']}; {report['created']}; load average "
      f"{m['loadavg_before'][0]:.2f} before, {m['loadavg_after'][0]:.2f} after (this "
      "process included); other processes used "
      f"{_share(m.get('other_processes_cpu_share'))} of the CPU time during the "
      "probes and timing; "
      f"{s['repeats']} interleaved repeats (each >= {s['min_repeat_s']} s of calls), "
      f"medians; whole run {report['wall_s'] / 60:.1f} min.", ""]
  if (m.get("other_processes_cpu_share") or 0.0) > _BUSY_SHARE:
    lines += ["**Busy machine**: other processes shared these cores, so absolute "
              "latencies are inflated; the interleaving keeps the ratios fair.", ""]
  lines += ["| model | params | MACs / image | widths | source |",
            "|---|---:|---:|---|---|"]
  for role in ROLES:
    f = models[role]
    lines.append(f"| {role} | {f['params']:,} ({f['params'] / models['teacher']['params']:.1%})"
                 f" | {f['macs_per_image']:,} | {_widths(f['channels'])} | {f['source']} |")
  pp = models["ppcd"]
  floors = [n for n, v in pp["masks"].items() if v["at_floor"]]
  lines += [
      "", "PPCD's allocation: `PruningController.from_config` with target_fraction="
      f"{pp['pruning_config']['target_fraction']}, min_channel_fraction="
      f"{pp['pruning_config']['min_channel_fraction']}, cost_exponent="
      f"{pp['pruning_config']['cost_exponent']} ({pp['metric']} budget "
      f"{pp['final_budget']:,}, reached {pp['cost_after']:,} in {pp['rounds']} rounds), "
      "every mask score at its initial value, then `slim.slim_generator` (max |slim - "
      f"masked| {pp['max_abs_diff_slim_vs_masked']:.2g}). Equal scores leave the ranking "
      "`sigmoid(score) / relative cost` to the cost: the most expensive channels go "
      f"first and {len(floors)} of {len(pp['masks'])} masks end at their floor "
      f"({', '.join(floors)}). Nothing is trained here, so this is the cost-only "
      "allocation (`--prune_importance=cost`); in training the default Taylor "
      "importance moves channels between layers (docs/RESULTS.md). The budget counts "
      f"{pp['metric']}: a channel's parameter cost grows with the widths of the layers "
      "it connects, not with resolution, so the wide low-resolution blocks are cut "
      "and the narrow high-resolution ones, which hold most of the MACs, are kept; "
      "the slim model keeps "
      f"{models['ppcd']['macs_per_image'] / models['teacher']['macs_per_image']:.0%}"
      " of the teacher's MACs (uniform widths: "
      f"{models['uniform']['macs_per_image'] / models['teacher']['macs_per_image']:.0%}).", "",
      "## Speed-up against MAC reduction, achieved GFLOP/s", "",
      "| variant | teacher ms | uniform ms | uniform speed-up | uniform MAC cut | "
      "PPCD ms | PPCD speed-up | PPCD MAC cut | GFLOP/s teacher / uniform / PPCD | "
      "% of peak |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  # A JSON round trip sorts keys: present rows in VARIANTS order, probes as measured.
  order = list(bench_infer.VARIANTS)
  for variant, row in sorted(head.items(), key=lambda kv: order.index(kv[0])):
    t, u, p = row["teacher"], row.get("uniform"), row.get("ppcd")
    cells = [_ms(t["median_ms"])]
    for c in (u, p):
      cells += ([_ms(c["median_ms"]), f"{c['speedup']:.2f}x",
                 f"{c['mac_reduction']:.2f}x"] if c else ["-"] * 3)
    cs = [c for c in (t, u, p) if c]
    cells.append(" / ".join(f"{c['gflops']:.0f}" for c in cs))
    cells.append(" / ".join(f"{100 * c['fraction_of_peak']:.0f}%" for c in cs))
    lines.append(f"| {variant} | " + " | ".join(cells) + " |")
  lines += [
      "", f"Peak: fp32 {peak['peak_fp32_gflops']:.0f} GFLOP/s, int8 "
      f"{peak['peak_int8_gops']:.0f} GOP/s ({peak['how']}); int8 and dynamic-range "
      "variants (whose hybrid kernels quantise activations on the fly and multiply "
      "in int8) are compared with the int8 peak, fp32 and float16 with fp32. "
      "Speed-up = teacher median "
      "latency / slim median latency; MAC cut = teacher MACs / slim MACs; GFLOP/s = "
      "2 x MACs / median latency (`ppcd_tf.flops` MACs: element-wise work not "
      "counted). tflite_int8 = the default int8 export (attention BATCH_MATMULs and "
      "SOFTMAX in float32, `export.INT8_FLOAT_OPS`); tflite_int8_full = every op "
      "int8.", "", "## Peak probes", "",
      "| probe | before GFLOP/s | after GFLOP/s | how |", "|---|---:|---:|---|"]
  probe_order = ("tf_matmul_fp32", "tf_conv2d_fp32", "litert_conv2d_fp32",
                 "litert_conv2d_int8")
  for name, p in sorted(peak["before"]["probes"].items(),
                        key=lambda kv: probe_order.index(kv[0])):
    lines.append(f"| {name} | {p['gflops']:.0f} | "
                 f"{peak['after']['probes'][name]['gflops']:.0f} | {p['how']} |")
  lines += ["", "## All cases (ms per call, batch 1: median [min, max])", "",
            "| model | variant | median | min | max | calls/repeat | file bytes |",
            "|---|---|---:|---:|---:|---:|---:|"]
  for r in report["results"]:
    a = report["artifacts"].get(f"{r['model']}/{r['variant']}", {})
    size = f"{a['file_size_bytes']:,}" if "file_size_bytes" in a else "-"
    lines.append(f"| {r['model']} | {r['variant']} | {_ms(r['median_ms_per_call'])} | "
                 f"{_ms(r['min_ms_per_image'])} | {_ms(r['max_ms_per_image'])} | "
                 f"{r['calls_per_repeat']} | {size} |")
  lines += ["", f"Random weights ({s['init']} init); int8 calibrated on "
            f"{s['representative_batches']} batch(es) of {s['calibration_batch']}, enough "
            "for timing, not for image quality. Exports live in a temp dir only.", ""]
  return "\n".join(lines)


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  tf.get_logger().setLevel("ERROR")
  with friendly_errors():
    if FLAGS.teacher or FLAGS.slim or FLAGS.random_slim_fraction is not None:
      raise export.ExportError(
          "--teacher/--slim/--random_slim_fraction belong to tools/bench_infer.py; this "
          "tool builds its own models from --flagfile (the budget is --target_fraction).")
    if [int(b) for b in FLAGS.batch_sizes] != [1]:
      raise export.ExportError("--batch_sizes: this tool times batch 1 only.")
    if len(FLAGS.probe_conv) != 2:
      raise export.ExportError(f"--probe_conv={FLAGS.probe_conv} must be "
                               "RESOLUTION,CHANNELS, e.g. 64,192.")
    bad = [v for v in FLAGS.variants if v not in SCALE_VARIANTS]
    if bad:
      raise export.ExportError(f"--variants: {bad} are not timed here; choose from "
                               f"{', '.join(SCALE_VARIANTS)}.")
    cfg = ppcd_flags.config_from_flags(FLAGS)
    report = run_scale_benchmark(
        cfg.model, cfg.pruning, FLAGS.variants, FLAGS.repeats, FLAGS.warmup,
        FLAGS.min_repeat_s, FLAGS.num_threads, FLAGS.representative_batches,
        FLAGS.init, FLAGS.probe_matmul_n, tuple(int(v) for v in FLAGS.probe_conv),
        command=" ".join([".venv/bin/python -m tools.bench_infer_scale"] + sys.argv[1:]),
        flagfiles=[a.split("=", 1)[1] for a in sys.argv[1:]
                   if a.startswith("--flagfile=")])
    repo_path = bench_infer._repo_path  # pylint: disable=protected-access
    checkpoints.write_json_atomic(repo_path(FLAGS.out_json), report)
    files.write_text_atomic(repo_path(FLAGS.out_md), markdown(report))
    for variant, row in report["headline"].items():
      _log(f"{variant}: " + ", ".join(
          f"{role} {row[role]['speedup']:.2f}x speed-up for {row[role]['mac_reduction']:.2f}x"
          " fewer MACs" for role in ("uniform", "ppcd") if role in row))
    _log(f"wrote {FLAGS.out_json} and {FLAGS.out_md}")


if __name__ == "__main__":
  _use_scale_defaults()
  from ppcd_tf import cli_errors
  cli_errors.run(main)
