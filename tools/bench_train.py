"""Training speed: teacher steps/s vs PPCD steps/s on the same config and machine.

  python -m tools.bench_train --flagfile=configs/mnist32_quick.cfg \
      --steps=20 --repeats=5 --out=docs/bench/bench_train.json

Builds a teacher Trainer and a PPCD Trainer (whose teacher is the first one,
checkpointed at step 0) in temporary workdirs, traces both, then times
`--steps` training steps of each, alternating teacher / PPCD for `--repeats`
rounds so both see the same machine load. Reports the median, min and max
steps/s and images/s of each and the ratio of medians (PPCD / teacher). The
PPCD step includes the teacher forward pass, the distillation terms and the mask
updates; pruning events (every --prune_frequency steps) are not in the timed
steps. Weights are random: speed does not depend on them.
"""

import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

from absl import app, flags, logging

from ppcd_tf import flags as ppcd_flags

ppcd_flags.define_flags()
ppcd_flags.declare_key_flags()
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per repeat.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Alternating teacher/PPCD rounds.",
                                lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps after tracing.", lower_bound=1)
_OUT = flags.DEFINE_string("out", "docs/bench/bench_train.json", "Output JSON path.")
FLAGS = flags.FLAGS


def _time_steps(trainer, n: int) -> float:
  start = time.perf_counter()
  for _ in range(n):
    trainer.train_step()
  return n / (time.perf_counter() - start)


def _stats(values):
  return {"median": statistics.median(values), "min": min(values), "max": max(values),
          "all": values}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import tensorflow as tf

  from ppcd_tf import checkpoints, cli_errors, flops, train_lib
  with cli_errors.friendly_errors():
    base = ppcd_flags.config_from_flags(FLAGS)
    root = tempfile.mkdtemp(prefix="ppcd_bench_train_")
    try:
      tdir = os.path.join(root, "teacher")
      teacher_cfg = base.replace(run=dict(workdir=tdir, mode="teacher"))
      teacher = train_lib.Trainer(teacher_cfg)
      teacher.manager.save(checkpoint_number=0)
      ppcd_cfg = base.replace(run=dict(workdir=os.path.join(root, "ppcd"), mode="ppcd"),
                              distill=dict(teacher_dir=tdir))
      student = train_lib.Trainer(ppcd_cfg.validate())
      trainers = {"teacher": teacher, "ppcd": student}
      trace = {}
      for name, t in trainers.items():
        start = time.perf_counter()
        t.train_step()
        trace[name] = time.perf_counter() - start
        for _ in range(_WARMUP.value):
          t.train_step()
      rates = {name: [] for name in trainers}
      for r in range(_REPEATS.value):
        for name, t in trainers.items():
          rates[name].append(_time_steps(t, _STEPS.value))
        print(f"repeat {r + 1}/{_REPEATS.value}: teacher {rates['teacher'][-1]:.2f} "
              f"steps/s, ppcd {rates['ppcd'][-1]:.2f} steps/s", file=sys.stderr)
      batch = base.optim.batch_size
      result = {
          "command": "python -m tools.bench_train " + " ".join(argv[1:] or sys.argv[1:]),
          "config": {"resolution": base.model.resolution, "g_ch": base.model.g_ch,
                     "d_ch": base.model.d_ch, "batch_size": batch,
                     "distill_terms": sorted(student.terms),
                     "g_params": flops.live_params(teacher.G),
                     "g_macs_per_image": flops.live_macs(teacher.G)},
          "steps_per_repeat": _STEPS.value, "repeats": _REPEATS.value,
          "trace_seconds": trace,
          "steps_per_second": {k: _stats(v) for k, v in rates.items()},
          "images_per_second": {k: _stats([x * batch for x in v]) for k, v in rates.items()},
          "ppcd_over_teacher_speed": (statistics.median(rates["ppcd"])
                                      / statistics.median(rates["teacher"])),
          "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                      "tensorflow": tf.__version__,
                      "load_average": os.getloadavg()},
      }
      checkpoints.write_json_atomic(_OUT.value, result)
    finally:
      shutil.rmtree(root, ignore_errors=True)
  print(json.dumps({k: result[k] for k in ("ppcd_over_teacher_speed",)}, indent=1))
  print(f"teacher {result['steps_per_second']['teacher']['median']:.2f} steps/s, "
        f"ppcd {result['steps_per_second']['ppcd']['median']:.2f} steps/s -> {_OUT.value}")


if __name__ == "__main__":
  logging.set_verbosity(logging.WARNING)
  app.run(main)
