r"""Inference latency of a teacher and a slim generator: Keras, SavedModel, TFLite.

Trained models (each a training workdir, slim model dir or SavedModel dir):
  .venv/bin/python -m tools.bench_infer --teacher=runs/demo/teacher --slim=runs/demo/ppcd

Random weights, no training needed (the numbers in docs/bench/):
  .venv/bin/python -m tools.bench_infer --flagfile=configs/mnist32_quick.cfg \
      --random_slim_fraction=0.19

Random mode builds the teacher from the flagfile's model with random weights and a
"slim" generator of the same architecture whose channel widths are all scaled by
one factor, chosen so that it keeps --random_slim_fraction of the teacher's
parameters (the budget PPCD-GAN reaches; where a real run prunes *which*
channels differs, so layer shapes differ too). Latency does not depend on weight
values, but int8 error figures of random weights say little; the JSON marks the
run "random-weights".

For each model, each variant - Keras (tf.function on the inference copy: slim,
frozen spectral norm), SavedModel (its signature), TFLite fp32 / float16 /
dynamic-range / int8 (attention core float32, the default export) / int8_full
(every op int8) (LiteRT interpreter, --num_threads) - and each batch size,
the tool measures the latency of one call. All cases are measured side by side
in ONE process and interleaved: every repeat visits every case once, so a burst of
background load hits all cases alike. Each case first warms up (--warmup calls),
then each of --repeats repeats times enough calls to last >= --min_repeat_s;
median, min and max over repeats are reported per image (call latency / batch)
with images/s = batch / median call latency. Exports go to a temp dir (no .tflite
is ever written into the repository). The headline is the slim/teacher latency
ratio per variant and batch.

Writes --out_json and --out_md (default docs/bench/bench_infer.{json,md}).
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List, Sequence, Tuple

import ppcd_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from ppcd_tf import checkpoints
from ppcd_tf import files
from ppcd_tf import export
from ppcd_tf import flags as ppcd_flags
from ppcd_tf import flops
from ppcd_tf.cli_errors import friendly_errors
from ppcd_tf.generator import Generator, GeneratorChannels, build_generator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ("keras", "saved_model", "tflite_fp32", "tflite_fp16", "tflite_dynamic",
            "tflite_int8", "tflite_int8_full")
_TFLITE_QUANT = {"tflite_fp32": "none", "tflite_fp16": "float16",
                 "tflite_dynamic": "dynamic", "tflite_int8": "int8",
                 "tflite_int8_full": "int8"}
# export_tflite(keep_float_ops=...) per variant: "tflite_int8" is the default export
# (attention core in float32, export.INT8_FLOAT_OPS); "tflite_int8_full" quantises
# everything, the int8 export as it was before that default.
_KEEP_FLOAT_OPS = {"tflite_int8_full": ()}

FLAGS = flags.FLAGS
ppcd_flags.define_flags()  # model flags for --flagfile (random mode)
flags.DEFINE_string("teacher", None, "Teacher generator: workdir, slim dir or SavedModel.")
flags.DEFINE_string("slim", None, "Slim generator: workdir (masked runs are slimmed), "
                    "slim dir or SavedModel.")
flags.DEFINE_float("random_slim_fraction", None,
                   "Random-weights mode (no --teacher/--slim): build the teacher from the "
                   "model flags (--flagfile) and a uniformly narrower slim generator "
                   "keeping this fraction of the teacher's parameters, e.g. 0.19.")
flags.DEFINE_list("variants", list(VARIANTS), f"Subset of {', '.join(VARIANTS)}.")
flags.DEFINE_list("batch_sizes", ["1", "16"], "Batch sizes to time.")
flags.DEFINE_integer("warmup", 5, "Untimed calls per case before timing.", lower_bound=1)
flags.DEFINE_integer("repeats", 15, "Timed repeats per case (median/min/max).",
                     lower_bound=5)
flags.DEFINE_float("min_repeat_s", 0.3, "Each repeat times enough calls to last this long.")
flags.DEFINE_integer("num_threads", 2, "LiteRT interpreter threads (TF uses all cores).",
                     lower_bound=1)
flags.DEFINE_string("out_json", os.path.join("docs", "bench", "bench_infer.json"),
                    "JSON result file (relative paths are under the repository root).")
flags.DEFINE_string("out_md", os.path.join("docs", "bench", "bench_infer.md"),
                    "Markdown table file (relative paths are under the repository root).")


def _log(msg: str) -> None:
  print(f"[bench_infer] {msg}", file=sys.stderr, flush=True)


def _repo_path(path: str) -> str:
  return path if os.path.isabs(path) else os.path.join(REPO, path)


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------
def scaled_channels(model_cfg, fraction: float):
  """Uniformly scaled GeneratorChannels keeping ~`fraction` of the parameters.

  Bisection on one width factor over the analytic cost (`ppcd_tf.flops`); widths
  round to integers >= 1, so the closest achievable fraction is returned.
  """
  full = GeneratorChannels.from_model_config(model_cfg)
  total = flops.generator_cost(model_cfg, full).total_params

  def at(scale):
    f = lambda c: max(1, int(round(c * scale)))  # noqa: E731
    ch = GeneratorChannels(stem=f(full.stem), mid=tuple(map(f, full.mid)),
                           out=tuple(map(f, full.out)))
    return ch, flops.generator_cost(model_cfg, ch).total_params / total

  lo, hi = 0.0, 1.0
  best = at(1.0)
  for _ in range(40):
    mid = (lo + hi) / 2
    ch, frac = at(mid)
    if abs(frac - fraction) < abs(best[1] - fraction):
      best = (ch, frac)
    lo, hi = (mid, hi) if frac < fraction else (lo, mid)
  return best


def _random_models(fraction: float) -> Dict[str, Any]:
  if not 0 < fraction <= 1:
    raise export.ExportError(f"--random_slim_fraction={fraction} must be in (0, 1] "
                             "(fraction of the teacher's parameters kept, e.g. 0.19).")
  cfg = ppcd_flags.config_from_flags(FLAGS)
  channels, got = scaled_channels(cfg.model, fraction)
  _log(f"random mode: slim widths {channels.to_dict()} keep {got:.3f} of the params")
  teacher = build_generator(cfg.model, name="generator")
  slim = build_generator(cfg.model, channels=channels, name="generator")
  return {"teacher": (teacher, "random weights, config widths"),
          "slim": (slim, f"random weights, widths scaled to keep {got:.3f} of params "
                   f"(target {fraction})")}


def _loaded_models() -> Dict[str, Any]:
  out = {}
  for role, path in (("teacher", FLAGS.teacher), ("slim", FLAGS.slim)):
    loaded = export.load_generator(path)
    out[role] = (loaded.generator, loaded.describe())
  return out


def _model_facts(generator) -> Dict[str, Any]:
  """Params (flops convention), MACs and widths; a SavedModel gets params only."""
  # pylint: disable=protected-access
  facts: Dict[str, Any] = {"spec": export._spec_of(generator).to_dict()}
  if isinstance(generator, Generator):
    cost = flops.count_generator(generator)
    facts.update(params=cost.total_params, macs_per_image=cost.total_macs,
                 channels=generator.live_channels().to_dict())
  else:
    facts["params"] = export._param_count(generator, generator.variables)
  return facts


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------
class _Case:
  """One (model, variant, batch): a runner, fixed inputs and its timings."""

  def __init__(self, model: str, variant: str, batch: int, runner, spec, seed: int):
    self.model, self.variant, self.batch, self.runner = model, variant, batch, runner
    rng = np.random.default_rng(seed)
    self.z = rng.standard_normal((batch, spec.z_dim)).astype(np.float32)
    self.y = (np.arange(batch) % spec.num_classes).astype(np.int32)
    self.calls = 1
    self.times: List[float] = []  # seconds per call, one per repeat

  def warm_up(self, n: int, min_repeat_s: float) -> None:
    start = time.perf_counter()
    for _ in range(n):
      self.runner(self.z, self.y)
    per_call = (time.perf_counter() - start) / n
    self.calls = max(1, int(np.ceil(min_repeat_s / max(per_call, 1e-6))))

  def repeat(self) -> None:
    start = time.perf_counter()
    for _ in range(self.calls):
      self.runner(self.z, self.y)
    self.times.append((time.perf_counter() - start) / self.calls)

  def result(self) -> Dict[str, Any]:
    per_image = [t / self.batch * 1e3 for t in self.times]
    median_call = statistics.median(self.times)
    return {"model": self.model, "variant": self.variant, "batch": self.batch,
            "median_ms_per_image": statistics.median(per_image),
            "min_ms_per_image": min(per_image), "max_ms_per_image": max(per_image),
            "median_ms_per_call": median_call * 1e3,
            "images_per_s": self.batch / median_call,
            "repeats": len(self.times), "calls_per_repeat": self.calls}


def _build_cases(models, variants, batches, tmp, num_threads: int,
                 representative_batches: int = 16) -> Tuple[List[_Case], Dict[str, Any]]:
  cases, artifacts = [], {}
  for role, (generator, _) in models.items():
    spec = export._spec_of(generator)  # pylint: disable=protected-access
    keras_like = not isinstance(generator, export.SavedModelGenerator)
    for variant in variants:
      info: Dict[str, Any] = {}
      if variant == "keras":
        if not keras_like:
          _log(f"{role}: a SavedModel source has no Keras model; skipping 'keras'")
          continue
        runner = export.KerasRunner(export.inference_generator(generator), spec)
        make = lambda runner=runner: runner  # noqa: E731
      elif variant == "saved_model":
        path = os.path.join(tmp, f"{role}_saved_model")
        report = export.export_saved_model(generator, path)
        runner = export.SavedModelRunner(path)
        make = lambda runner=runner: runner  # noqa: E731
        info = report
      else:
        path = os.path.join(tmp, f"{role}_{variant}.tflite")
        _log(f"{role}: converting {variant}")
        keep = _KEEP_FLOAT_OPS.get(variant, export.INT8_FLOAT_OPS)
        info = export.export_tflite(generator, path, quantize=_TFLITE_QUANT[variant],
                                    representative_batches=representative_batches,
                                    keep_float_ops=keep)
        # One interpreter per batch size, so timing never includes a resize.
        make = lambda path=path: export.TFLiteRunner(  # noqa: E731
            path, num_threads=num_threads)
      if info:
        artifacts[f"{role}/{variant}"] = {
            k: info[k] for k in ("file_size_bytes", "max_abs_diff", "mean_abs_diff",
                                 "params") if k in info}
      for b in batches:
        cases.append(_Case(role, variant, b, make(), spec, seed=b))
  return cases, artifacts


def measure_cases(models: Dict[str, Tuple[Any, str]], variants: Sequence[str],
                  batches: Sequence[int], warmup: int, repeats: int, min_repeat_s: float,
                  num_threads: int, representative_batches: int = 16
                  ) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
  """Exports every (model, variant) to a temp dir and times all cases interleaved.

  Args:
    models: {role: (generator, description)}.
    variants: names from VARIANTS.
    batches: batch sizes; one runner per (model, variant, batch).
    warmup: untimed calls per case (also sizes calls per repeat).
    repeats: timed rounds; each round visits every case once, so background load
      hits all cases alike.
    min_repeat_s: each repeat times enough calls to last this long.
    num_threads: LiteRT interpreter threads.
    representative_batches: int8 calibration batches (of 8) per export.

  Returns:
    (per-case results as `_Case.result()` dicts, {"role/variant": export facts}).
  """
  tmp = tempfile.mkdtemp(prefix="bench_infer_")
  try:
    cases, artifacts = _build_cases(models, variants, batches, tmp, num_threads,
                                    representative_batches)
    _log(f"{len(cases)} cases; warming up")
    for case in cases:
      case.warm_up(warmup, min_repeat_s)
    for r in range(repeats):
      _log(f"repeat {r + 1}/{repeats}")
      for case in cases:
        case.repeat()
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return [c.result() for c in cases], artifacts


def _ratios(results, key: str = "median_ms_per_image") -> Dict[str, Dict[str, float]]:
  """{variant: {batch: slim / teacher}} of `key` (median or min ms per image)."""
  by = {(r["model"], r["variant"], r["batch"]): r[key] for r in results}
  out: Dict[str, Dict[str, float]] = {}
  for (model, variant, batch), ms in by.items():
    if model == "slim" and ("teacher", variant, batch) in by:
      out.setdefault(variant, {})[str(batch)] = ms / by[("teacher", variant, batch)]
  return out


def _markdown(report: Dict[str, Any]) -> str:
  models, res, art = report["models"], report["results"], report["artifacts"]
  lines = [f"# Generator inference latency ({report['mode']})", "",
           f"Command: `{report['command']}`", "",
           f"{report['machine']['cpu_model']}, {report['machine']['cpu_count']} cores; "
           f"TF {report['versions']['tensorflow']}, LiteRT "
           f"{report['versions'].get('ai_edge_litert', '?')} with "
           f"{report['settings']['num_threads']} threads; {report['created']}; load "
           f"average {report['machine']['loadavg_before'][0]:.2f} before, "
           f"{report['machine']['loadavg_after'][0]:.2f} after.", ""]
  if max(report["machine"]["loadavg_before"][0],
         report["machine"]["loadavg_after"][0]) > 0.5 * report["machine"]["cpu_count"]:
    lines += ["**Busy machine**: other processes shared these cores during the run, so "
              "absolute latencies are inflated and the medians noisy; the interleaving "
              "keeps the comparison fair, and the minima show the undisturbed speed. "
              "Rerun on an idle machine for absolute numbers.", ""]
  if report["mode"] == "random-weights":
    lines += ["**Random weights**: teacher = config widths, slim = every width scaled "
              "by one factor to keep "
              f"{models['slim'].get('params', 0) / max(models['teacher'].get('params', 1), 1):.1%}"
              " of the parameters. Latency does not depend on the weight values; the "
              "|diff| columns (export vs Keras) of random weights say little about a "
              "trained model's quantisation error.", ""]
  lines += ["| model | params | MACs / image | source |", "|---|---:|---:|---|"]
  fmt = lambda v: "-" if v is None else f"{v:,}"  # noqa: E731
  for role, m in models.items():
    lines.append(f"| {role} | {fmt(m.get('params'))} | {fmt(m.get('macs_per_image'))} | "
                 f"{m['source']} |")
  lines += ["", "## Headline: slim / teacher latency per image", "",
            "| variant | " + " | ".join(f"batch {b}" for b in report["settings"]
                                         ["batch_sizes"]) + " |",
            "|---|" + "---:|" * len(report["settings"]["batch_sizes"])]
  mins = report["headline"]["slim_over_teacher_latency_min"]
  for variant, per in report["headline"]["slim_over_teacher_latency"].items():
    lines.append(f"| {variant} | " + " | ".join(
        f"{per.get(str(b), float('nan')):.2f}x ({mins[variant][str(b)]:.2f}x)"
        for b in report["settings"]["batch_sizes"]) + " |")
  lines += ["", "Cells: ratio of medians (ratio of minima). On a shared machine the "
            "minima are the least disturbed estimate; both come from the same "
            "interleaved run."]
  lines += ["", "## All cases (ms per image: median [min, max] over repeats)", "",
            "| model | variant | batch | median ms/img | min | max | images/s | file bytes |"
            " max abs diff | mean abs diff |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in res:
    a = art.get(f"{r['model']}/{r['variant']}", {})
    size = f"{a['file_size_bytes']:,}" if "file_size_bytes" in a else "-"
    dmax = f"{a['max_abs_diff']:.2g}" if "max_abs_diff" in a else "-"
    dmean = f"{a['mean_abs_diff']:.2g}" if "mean_abs_diff" in a else "-"
    lines.append(f"| {r['model']} | {r['variant']} | {r['batch']} | "
                 f"{r['median_ms_per_image']:.3f} | {r['min_ms_per_image']:.3f} | "
                 f"{r['max_ms_per_image']:.3f} | {r['images_per_s']:.0f} | {size} | "
                 f"{dmax} | {dmean} |")
  lines += ["", "Keras = tf.function on the inference copy (slimmed, frozen spectral "
            "norm); SavedModel = its serving signature; TFLite through "
            "`ai_edge_litert.interpreter`. Each repeat times >= "
            f"{report['settings']['min_repeat_s']} s of calls; cases are interleaved "
            "repeat by repeat. SavedModel file bytes are the directory total.", ""]
  return "\n".join(lines)


def _validate() -> Dict[str, Any]:
  have_paths = bool(FLAGS.teacher or FLAGS.slim)
  if have_paths and not (FLAGS.teacher and FLAGS.slim):
    raise export.ExportError("pass both --teacher and --slim (or neither, with "
                             "--random_slim_fraction for random-weights mode).")
  if have_paths and FLAGS.random_slim_fraction is not None:
    raise export.ExportError("--random_slim_fraction is for random-weights mode; drop "
                             "it or drop --teacher/--slim.")
  if not have_paths and FLAGS.random_slim_fraction is None:
    raise export.ExportError("nothing to measure: pass --teacher=PATH --slim=PATH, or "
                             "--flagfile=configs/X.cfg --random_slim_fraction=0.19.")
  bad = [v for v in FLAGS.variants if v not in VARIANTS]
  if bad:
    raise export.ExportError(f"--variants: unknown {bad}; choose from {VARIANTS}.")
  try:
    batches = [int(b) for b in FLAGS.batch_sizes]
  except ValueError:
    raise export.ExportError(f"--batch_sizes={FLAGS.batch_sizes} must be integers.") \
        from None
  if not batches or min(batches) < 1:
    raise export.ExportError(f"--batch_sizes={FLAGS.batch_sizes} must be >= 1.")
  return {"batches": batches, "random": not have_paths}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # TF logs several lines per export otherwise
  tf.get_logger().setLevel("ERROR")
  with friendly_errors():
    opts = _validate()
    models = _random_models(FLAGS.random_slim_fraction) if opts["random"] \
        else _loaded_models()
    load_before = os.getloadavg()
    results, artifacts = measure_cases(
        models, FLAGS.variants, opts["batches"], FLAGS.warmup, FLAGS.repeats,
        FLAGS.min_repeat_s, FLAGS.num_threads)
    ratios = _ratios(results)
    facts = {role: dict(_model_facts(g), source=src) for role, (g, src) in models.items()}
    tp, sp = facts["teacher"].get("params"), facts["slim"].get("params")
    tm, sm = facts["teacher"].get("macs_per_image"), facts["slim"].get("macs_per_image")
    headline = {"slim_over_teacher_latency": ratios,
                "slim_over_teacher_latency_min": _ratios(results, "min_ms_per_image")}
    if tp and sp:
      headline["slim_over_teacher_params"] = sp / tp
    if tm and sm:
      headline["slim_over_teacher_macs"] = sm / tm
    report = {
        "mode": "random-weights" if opts["random"] else "trained",
        "command": " ".join([".venv/bin/python -m tools.bench_infer"] + sys.argv[1:]),
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
                    "platform": platform.platform(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg(),
                    "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "")},
        "versions": export._versions(),  # pylint: disable=protected-access
        "settings": {"warmup_calls": FLAGS.warmup, "repeats": FLAGS.repeats,
                     "min_repeat_s": FLAGS.min_repeat_s, "num_threads": FLAGS.num_threads,
                     "tf_intra_op_threads":
                         tf.config.threading.get_intra_op_parallelism_threads(),
                     "batch_sizes": opts["batches"], "variants": list(FLAGS.variants)},
        "models": facts, "artifacts": artifacts, "headline": headline, "results": results,
    }
    if opts["random"]:
      report["note"] = ("random-weights: teacher and slim are randomly initialised; "
                        "latency and size are representative, export error figures "
                        "are not.")
      report["flagfiles"] = [a.split("=", 1)[1] for a in sys.argv[1:]
                             if a.startswith("--flagfile=")]
    checkpoints.write_json_atomic(_repo_path(FLAGS.out_json), report)
    files.write_text_atomic(_repo_path(FLAGS.out_md), _markdown(report))
    for variant, per in ratios.items():
      _log(f"slim/teacher latency {variant}: " +
           ", ".join(f"batch {b}: {v:.2f}x" for b, v in per.items()))
    _log(f"wrote {FLAGS.out_json} and {FLAGS.out_md}")


if __name__ == "__main__":
  from ppcd_tf import cli_errors
  cli_errors.run(main)
