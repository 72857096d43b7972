"""Training speed and memory: teacher vs PPCD steps, with and without XLA, per precision.

  python -m tools.bench_train --flagfile=configs/mnist32.cfg \\
      --bench_jit=false,true --bench_precisions=float32 \\
      --steps=15 --repeats=5 --out=docs/bench/bench_train.json

One process builds one Trainer per case, the product of --bench_modes (teacher,
ppcd, or PPCD with distillation terms off: `PPCD_VARIANTS`), --bench_jit (XLA off / on) and --bench_precisions, in temporary workdirs
(every PPCD case distils from one teacher checkpointed at step 0, so the student
has the teacher's width: PPCD's masked step at equal width). Each case traces and
warms up, then --repeats rounds each time --steps steps of every case in turn
(interleaved, so a burst of machine load hits all cases alike). A timed block runs
the steps without reading anything on the host and ends with one read of the
losses (the sync), as `Trainer.fit` does between its --log_every reads. Reported:
median/min/max steps/s and images/s per case, the PPCD/teacher step-time ratio and
the XLA and precision speed-ups as ratios of medians, trace times, and memory:
on GPU the peak of `tf.config.experimental.get_memory_info` per case (reset before
each case's warm-up), on CPU the host RSS after each case and the process peak
(VmHWM; the process holds every case, so it is an upper bound for one). Pruning
events are not in the timed steps. Weights are random (--weight_init=N02 by
default: speed does not depend on them, and orthogonal init of the 128 px
networks takes minutes of QR on 2 cores).

imagenet128 at a small per-device batch (the GPU recipe, tools/gpu_bench.sh, runs
this at bf16 + XLA):
  python -m tools.bench_train --flagfile=configs/imagenet128.cfg --batch_size=1 \\
      --bench_jit=true --bench_precisions=mixed_bfloat16 --steps=2 --repeats=2 --warmup=1
"""

import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

from absl import app, flags, logging

from ppcd_tf import config as config_lib
from ppcd_tf import flags as ppcd_flags

ppcd_flags.define_flags()
ppcd_flags.declare_key_flags()
_FLAGS = {}


def define_bench_flags() -> None:
  """Defines this tool's own flags (at run time: tools.bench_infer, imported in the
  same test process, defines a --repeats of its own)."""
  if _FLAGS:
    return
  _FLAGS['steps'] = flags.DEFINE_integer("steps", 20, "Timed steps per case and repeat.",
                                         lower_bound=1)
  _FLAGS['repeats'] = flags.DEFINE_integer("repeats", 5,
                                           "Interleaved rounds over all cases.",
                                           lower_bound=1)
  _FLAGS['warmup'] = flags.DEFINE_integer("warmup", 3,
                                          "Untimed steps per case after tracing.",
                                          lower_bound=0)
  _FLAGS['modes'] = flags.DEFINE_list(
      "bench_modes", ["teacher", "ppcd"],
      "Training modes to time: teacher, ppcd, and PPCD with parts of its distillation "
      "off to see where its extra time goes: ppcd_no_cam (attention + pixel terms: the "
      "teacher G pass), ppcd_cam_only (the CAM term: teacher G and two teacher D "
      "passes), ppcd_no_distill (masks only), ppcd_finetune (the fine-tuning step after "
      "the last pruning event: the dense slim generator at --target_fraction removed, "
      "uniform widths, all distillation terms).")
  _FLAGS['jit'] = flags.DEFINE_list(
      "bench_jit", ["false", "true"],
      "XLA settings to time (false, true); overrides --jit_compile.")
  _FLAGS['precisions'] = flags.DEFINE_list(
      "bench_precisions", ["float32"],
      f"Precisions to time, of {', '.join(config_lib.PRECISIONS)}; overrides --precision.")
  _FLAGS['weight_init'] = flags.DEFINE_enum("weight_init", "N02", ["N02", "ortho", "glorot"],
                                            "Initialisation of the random weights.")
  _FLAGS['out'] = flags.DEFINE_string("out", "docs/bench/bench_train.json",
                                      "Output JSON path.")


FLAGS = flags.FLAGS

# PPCD with parts of its distillation switched off: where its extra step time goes.
PPCD_VARIANTS = {
    "ppcd": {},
    "ppcd_no_cam": dict(lambda_cam=0.0),                   # + the teacher G pass
    "ppcd_cam_only": dict(lambda_att=0.0, lambda_pix=0.0),  # + teacher G and two teacher D passes
    "ppcd_no_distill": dict(lambda_att=0.0, lambda_cam=0.0, lambda_pix=0.0),  # masks only
    "ppcd_finetune": {},  # the fine-tuning step at the slim width (after the last event)
}
# Pruned to --target_fraction at once and switched to the slim generator before timing
# (ppcd_tf.slim_finetune). Uniform widths: every layer keeps the same share, so the
# step's MACs follow the parameter budget instead of one ranking's allocation.
FINETUNE_MODES = ("ppcd_finetune",)
MODES = ("teacher",) + tuple(PPCD_VARIANTS)

_BOOLS = {"false": False, "0": False, "no": False, "true": True, "1": True, "yes": True}


def _parse_cases():
  modes = [m.strip() for m in _FLAGS['modes'].value if m.strip()]
  bad = [m for m in modes if m not in MODES]
  if bad or not modes:
    raise config_lib.ConfigError(f"--bench_modes={','.join(_FLAGS['modes'].value)}: use some of "
                                 f"{', '.join(MODES)}.")
  try:
    jits = [_BOOLS[v.strip().lower()] for v in _FLAGS['jit'].value if v.strip()]
  except KeyError:
    raise config_lib.ConfigError(f"--bench_jit={','.join(_FLAGS['jit'].value)}: use false and/or "
                                 "true.") from None
  precisions = [p.strip() for p in _FLAGS['precisions'].value if p.strip()]
  bad = [p for p in precisions if p not in config_lib.PRECISIONS]
  if bad or not precisions or not jits:
    raise config_lib.ConfigError(
        f"--bench_precisions={','.join(_FLAGS['precisions'].value)} / --bench_jit: give at least "
        f"one of each; precisions are {', '.join(config_lib.PRECISIONS)}.")
  return list(itertools.product(modes, jits, precisions))


def case_name(mode: str, jit: bool, precision: str) -> str:
  return f"{mode}/{'xla' if jit else 'no_xla'}/{precision}"


def _proc_status_mb(field: str) -> float:
  """VmRSS / VmHWM of this process in MiB (Linux), or NaN where unavailable."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  return float("nan")


def _time_steps(trainer, n: int) -> float:
  from ppcd_tf import train_lib
  start = time.perf_counter()
  logs = None
  for _ in range(n):
    logs = trainer.run_step()
  train_lib.read_logs(logs)  # the one host sync of the block
  return n / (time.perf_counter() - start)


def _stats(values):
  return {"median": statistics.median(values), "min": min(values), "max": max(values),
          "all": values}


def _prune_and_switch(trainer) -> None:
  """Prunes `trainer`'s G to its final budget in one event and switches it to the
  slim generator, as training does after --prune_end_step."""
  from ppcd_tf import dead_weights, slim_finetune
  c = trainer.controller
  c.prune_to(c.final_budget)
  dead_weights.zero_dead_weights(trainer.G, [trainer.g_opt])
  trainer.restart_ema()  # the EMA generator takes G's masks, as after every event
  slim_finetune.switch_to_slim(trainer, int(trainer.step.numpy()))


def _ratio(rates, a, b):
  """median(a) / median(b) of steps/s, or None when a case was not timed."""
  if a in rates and b in rates:
    return statistics.median(rates[a]) / statistics.median(rates[b])
  return None


def run_benchmark(base: config_lib.Config, cases, steps: int, repeats: int, warmup: int,
                  weight_init: str = "N02", log=print):
  """Times every case interleaved; returns the result dict (see module docstring)."""
  import tensorflow as tf

  from ppcd_tf import flops, train_lib
  gpus = tf.config.list_logical_devices("GPU")
  memory_device = gpus[0].name.replace("/device:", "") if gpus else None
  root = tempfile.mkdtemp(prefix="ppcd_bench_train_")
  try:
    tdir = os.path.join(root, "teacher_ckpt")
    trainers, trace, memory, slim_cost = {}, {}, {}, {}
    for mode, jit, prec in cases:
      name = case_name(mode, jit, prec)
      wd = os.path.join(root, name.replace("/", "_"))
      run = dict(workdir=wd, mode="teacher" if mode == "teacher" else "ppcd",
                 jit_compile=jit, precision=prec)
      if mode == "teacher":
        cfg = base.replace(run=run)
      else:
        if not os.path.isdir(tdir):  # the shared teacher: random weights at step 0
          seed = train_lib.Trainer(base.replace(run=dict(workdir=tdir, mode="teacher")),
                                   weight_init=weight_init)
          seed.manager.save(checkpoint_number=0)
          del seed
        cfg = base.replace(run=run, distill=dict(teacher_dir=tdir, **PPCD_VARIANTS[mode]))
        if mode in FINETUNE_MODES:
          cfg = cfg.replace(pruning=dict(importance="uniform_l1"))
        cfg = cfg.validate()
      t = train_lib.Trainer(cfg, weight_init=weight_init)
      if mode in FINETUNE_MODES:
        _prune_and_switch(t)
        slim_cost[name] = {"g_params": flops.live_params(t.G),
                           "g_macs_per_image": flops.live_macs(t.G),
                           "channels": t.G.channels.to_dict()}
      if memory_device:
        tf.config.experimental.reset_memory_stats(memory_device)
      start = time.perf_counter()
      logs = t.run_step()
      train_lib.read_logs(logs)
      trace[name] = time.perf_counter() - start
      for _ in range(warmup):
        logs = t.run_step()
      train_lib.read_logs(logs)  # waits for the warm-up steps
      memory[name] = ({"gpu_peak_mb": tf.config.experimental.get_memory_info(
                          memory_device)["peak"] / 2 ** 20} if memory_device else
                      {"host_rss_mb": _proc_status_mb("VmRSS")})
      trainers[name] = t
      log(f"{name}: traced in {trace[name]:.1f}s")
    rates = {name: [] for name in trainers}
    for r in range(repeats):
      for name, t in trainers.items():
        rates[name].append(_time_steps(t, steps))
      log(f"repeat {r + 1}/{repeats}: " + ", ".join(
          f"{n} {v[-1]:.2f} steps/s" for n, v in rates.items()))
    batch = base.optim.batch_size
    first = next(iter(trainers.values()))
    ratios = {}
    for _, jit, prec in cases:
      t_name, p_name = case_name("teacher", jit, prec), case_name("ppcd", jit, prec)
      speed = _ratio(rates, t_name, p_name)  # teacher speed / ppcd speed = time ratio
      if speed is not None:
        ratios[f"{'xla' if jit else 'no_xla'}/{prec}"] = speed
    # Every PPCD variant against the teacher at the same XLA setting and precision.
    over_teacher = {}
    for mode, jit, prec in cases:
      if mode != "teacher":
        r = _ratio(rates, case_name("teacher", jit, prec), case_name(mode, jit, prec))
        if r is not None:
          over_teacher[case_name(mode, jit, prec)] = r
    xla = {}
    for mode, _, prec in cases:
      sp = _ratio(rates, case_name(mode, True, prec), case_name(mode, False, prec))
      if sp is not None:
        xla[f"{mode}/{prec}"] = sp
    prec_speedup = {}
    for mode, jit, prec in cases:
      if prec == "float32":
        continue
      sp = _ratio(rates, case_name(mode, jit, prec), case_name(mode, jit, "float32"))
      if sp is not None:
        prec_speedup[f"{mode}/{'xla' if jit else 'no_xla'}/{prec}"] = sp
    return {
        "config": {"resolution": base.model.resolution, "g_ch": base.model.g_ch,
                   "d_ch": base.model.d_ch, "batch_size": batch,
                   "d_steps": base.optim.d_steps,
                   "distill_terms": sorted(next(
                       (t.terms for t in trainers.values() if t.ppcd), {})),
                   "g_params": flops.live_params(first.G),
                   "g_macs_per_image": flops.live_macs(first.G),
                   "weight_init": weight_init},
        "finetune_generator": slim_cost,
        "cases": [case_name(*c) for c in cases],
        "steps_per_repeat": steps, "repeats": repeats, "warmup_steps": warmup,
        "trace_seconds": trace,
        "steps_per_second": {k: _stats(v) for k, v in rates.items()},
        "images_per_second": {k: _stats([x * batch for x in v]) for k, v in rates.items()},
        "step_time_ratio_ppcd_over_teacher": ratios,
        "step_time_ratio_over_teacher": over_teacher,
        "xla_speedup": xla,
        "precision_speedup_over_float32": prec_speedup,
        "memory": {"per_case": memory, "host_peak_rss_mb": _proc_status_mb("VmHWM"),
                   "device": memory_device or "cpu"},
    }
  finally:
    shutil.rmtree(root, ignore_errors=True)


def _machine():
  import tensorflow as tf
  cpu = ""
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((line.split(":", 1)[1].strip() for line in f
                  if line.startswith("model name")), "")
  except OSError:
    pass
  return {"cpus": os.cpu_count(), "cpu_model": cpu, "platform": platform.platform(),
          "tensorflow": tf.__version__,
          "gpus": [d.name for d in tf.config.list_logical_devices("GPU")],
          "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset: on)")}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from ppcd_tf import checkpoints, cli_errors
  with cli_errors.friendly_errors():
    base = ppcd_flags.config_from_flags(FLAGS)
    cases = _parse_cases()
    load_before = os.getloadavg()
    result = run_benchmark(base, cases, _FLAGS['steps'].value, _FLAGS['repeats'].value, _FLAGS['warmup'].value,
                           _FLAGS['weight_init'].value,
                           log=lambda m: print(m, file=sys.stderr, flush=True))
    result = {"command": "python -m tools.bench_train " + " ".join(sys.argv[1:]),
              **result,
              "machine": {**_machine(), "load_average_before": load_before,
                          "load_average_after": os.getloadavg()}}
    checkpoints.write_json_atomic(_FLAGS['out'].value, result)
  print(json.dumps({k: result[k] for k in ("step_time_ratio_ppcd_over_teacher",
                                           "xla_speedup",
                                           "precision_speedup_over_float32")}, indent=1))
  for name, s in result["images_per_second"].items():
    print(f"{name}: {s['median']:.1f} images/s")
  print(f"-> {_FLAGS['out'].value}")


if __name__ == "__main__":
  define_bench_flags()
  logging.set_verbosity(logging.WARNING)
  from ppcd_tf import cli_errors
  cli_errors.run(main)
