"""Fault-injection soak: a PPCD run killed again and again ends where an uninterrupted one ends.

  python -m tools.soak --workdir=/tmp/ppcd_soak --kills=20 --seed=0

Trains a tiny teacher (unless --teacher_dir), then runs one uninterrupted reference
`python -m ppcd_tf.train --mode=ppcd` and, alongside it, the same command stopped
again and again and rerun each time (it resumes from its newest good checkpoint):

  write:N   SIGKILL inside the save of ckpt-N, after its files are written and
            verified, before it is published (train_lib's PPCD_TF_TEST_PUBLISH_DELAY);
  prune:N   SIGKILL inside the pruning event of step N, after the masks are cut and
            the dead weights zeroed (PPCD_TF_TEST_PRUNE_DELAY);
  random    SIGKILL at a seeded-random moment once the run has published a new
            checkpoint (the final save is held, so the kill lands before the end);
  term      SIGTERM once the run has published a new checkpoint: it must save the
            step it is in, say `stopped:` and exit 143.

Before the last rerun the newest checkpoint is truncated and the leftovers of a
killed save are planted (disk trouble): the run must skip it, resume from the one
before and finish. Then every variable of both final checkpoints (weights, masks,
EMA, optimiser slots, step) must be equal bit for bit, and so must the final
evaluation JSON (FID & co.). With --kills the plan is the planned kills followed by
seeded-random `random`/`term` kills; `--plan` gives it explicitly. The report
(plan, what each kill hit, checkpoints, verdict) is WORKDIR/soak_report.json;
tests/test_crash_resume.py runs a five-kill plan in `make test`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLISH_ENV = "PPCD_TF_TEST_PUBLISH_DELAY"  # train_lib.TEST_PUBLISH_DELAY_ENV
PRUNE_ENV = "PPCD_TF_TEST_PRUNE_DELAY"      # train_lib.TEST_PRUNE_DELAY_ENV
HOLD_S = 300                                # how long a test hook holds the process
KINDS = ("write", "prune", "random", "term")


class SoakError(AssertionError):
  """A killed-and-resumed run did not behave (message says how; logs are kept)."""


def train_argv(workdir: str, teacher_dir: str, num_steps: int, classifier_dir: str,
               stats_dir: str, config: str = "configs/tiny_test.cfg",
               prune_end_step: int = 3) -> List[str]:
  """The PPCD command every process of the soak runs (one checkpoint a step; the last
  pruning event at `prune_end_step`, then the switch to the slim generator; one
  evaluation at the end)."""
  return [sys.executable, "-m", "ppcd_tf.train", f"--flagfile={os.path.join(REPO, config)}",
          "--mode=ppcd", f"--teacher_dir={teacher_dir}", f"--workdir={workdir}",
          "--strategy=one_device", f"--num_steps={num_steps}", "--save_every=1",
          "--keep_checkpoints=3", "--prune_begin_step=0",
          f"--prune_end_step={prune_end_step}", "--prune_frequency=1",
          "--sample_every=1000", "--log_every=1000", "--seed=7",
          f"--eval_every={num_steps}", "--eval_num_samples=20",
          f"--eval_extractor=classifier:{classifier_dir}", f"--stats_dir={stats_dir}"]


class Process:
  """One `ppcd_tf.train` process with its log file."""

  def __init__(self, argv: Sequence[str], log_path: str, **env):
    full_env = dict(os.environ, PYTHONPATH=REPO, TF_USE_LEGACY_KERAS="1",
                    TF_CPP_MIN_LOG_LEVEL="2")
    for name in (PUBLISH_ENV, PRUNE_ENV):
      full_env.pop(name, None)
    full_env.update(env)
    self.log_path = log_path
    with open(log_path, "w") as log:
      self.proc = subprocess.Popen(list(argv), cwd=REPO, env=full_env, stdout=log,
                                   stderr=subprocess.STDOUT, text=True)

  def log(self) -> str:
    with open(self.log_path) as f:
      return f.read()

  def wait_for(self, condition, what: str, timeout: float = 600.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
      if condition():
        return
      if self.proc.poll() is not None:
        raise SoakError(f"training exited ({self.proc.returncode}) before {what}:\n"
                        + self.log()[-3000:])
      time.sleep(0.02)
    self.proc.kill()
    raise SoakError(f"timed out waiting for {what}")

  def stop(self, sig: int, timeout: float = 300.0) -> int:
    self.proc.send_signal(sig)
    return self.proc.wait(timeout=timeout)

  def finish(self, timeout: float = 900.0) -> str:
    self.proc.wait(timeout=timeout)
    if self.proc.returncode != 0:
      raise SoakError(f"exit {self.proc.returncode}:\n" + self.log()[-3000:])
    return self.log()


def latest_step(workdir: str) -> Optional[int]:
  """The step of the published latest checkpoint, or None."""
  import tensorflow as tf
  state = tf.train.get_checkpoint_state(os.path.join(workdir, "checkpoints"))
  if not state or not state.model_checkpoint_path:
    return None
  return int(state.model_checkpoint_path.rsplit("-", 1)[1])


def checkpoint_values(prefix: str) -> Dict:
  import tensorflow as tf
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def random_plan(kills: int, seed: int, num_steps: int, prune_end_step: int) -> List[str]:
  """The planned kills (a write, a pruning event) and then seeded-random ones."""
  rng = random.Random(seed)
  plan = ["write:2", f"prune:{min(2, prune_end_step)}"]
  while len(plan) < kills:
    plan.append("term" if rng.random() < 0.25 else "random")
  return plan[:kills]


def _kill(argv, workdir: str, kind: str, num_steps: int, rng: random.Random,
          log_path: str) -> Dict:
  """Runs one process of the crashed line and stops it as `kind` says; what happened."""
  name, _, arg = kind.partition(":")
  before = latest_step(workdir)
  hold_end = {PUBLISH_ENV: f"{num_steps}:{HOLD_S}"}  # the run cannot finish first
  if name == "write":
    n = int(arg)
    proc = Process(argv, log_path, **{PUBLISH_ENV: f"{n}:{HOLD_S}"})
    index = os.path.join(workdir, "checkpoints", f"ckpt-{n}.index")
    proc.wait_for(lambda: os.path.exists(index) and "sleeping" in proc.log(),
                  f"ckpt-{n} was written")
    rc = proc.stop(signal.SIGKILL)
    if latest_step(workdir) == n:
      raise SoakError(f"ckpt-{n} was published although the kill came before that")
  elif name == "prune":
    n = int(arg)
    proc = Process(argv, log_path, **{PRUNE_ENV: f"{n}:{HOLD_S}"}, **hold_end)
    proc.wait_for(lambda: f"pruning event of step {n} applied" in proc.log(),
                  f"the pruning event of step {n}")
    rc = proc.stop(signal.SIGKILL)
  elif name in ("random", "term"):
    proc = Process(argv, log_path, **hold_end)
    proc.wait_for(lambda: (latest_step(workdir) or 0) > (before or 0)
                  or f"ckpt-{num_steps} written and verified" in proc.log(),
                  "a new checkpoint")
    if name == "random":
      time.sleep(rng.uniform(0.0, 0.5))
      rc = proc.stop(signal.SIGKILL)
    else:
      rc = proc.stop(signal.SIGTERM)
      log, after = proc.log(), latest_step(workdir)
      if rc != 143 or f"stopped: SIGTERM at step {after}" not in log:
        raise SoakError(f"SIGTERM: exit {rc}, latest ckpt-{after}; the run should save "
                        "its step, print `stopped:` and exit 143:\n" + log[-3000:])
      with open(os.path.join(workdir, "train_summary.json")) as f:
        if json.load(f).get("stopped_by_signal") != "SIGTERM":
          raise SoakError("train_summary.json does not record the SIGTERM stop")
  else:
    raise ValueError(f"kill kind {kind!r} must be one of {KINDS} (write:N, prune:N)")
  if name != "term" and rc != -signal.SIGKILL:
    raise SoakError(f"{kind}: exit {rc}, expected the SIGKILL's {-signal.SIGKILL}")
  return {"kind": kind, "exit": rc, "latest_before": before,
          "latest_after": latest_step(workdir)}


def run_soak(root: str, teacher_dir: str, classifier_dir: str, plan: Sequence[str],
             num_steps: int = 8, seed: int = 0, prune_end_step: int = 3,
             config: str = "configs/tiny_test.cfg", log=print) -> Dict:
  """The soak (module docstring) under `root`; returns the report (also written there).

  Raises:
    SoakError: a process misbehaved or the final states differ.
  """
  import numpy as np

  from ppcd_tf import checkpoints
  os.makedirs(root, exist_ok=True)
  ref_dir, crash_dir = os.path.join(root, "reference"), os.path.join(root, "crashed")
  # One statistics cache: the first evaluation computes the real data's statistics,
  # the other reads them back exactly (float64 .npz), so both compare alike.
  args = dict(teacher_dir=teacher_dir, num_steps=num_steps, classifier_dir=classifier_dir,
              stats_dir=os.path.join(root, "stats"), config=config,
              prune_end_step=prune_end_step)
  logs = os.path.join(root, "logs")
  os.makedirs(logs, exist_ok=True)
  reference = Process(train_argv(ref_dir, **args), os.path.join(logs, "reference.log"))
  rng = random.Random(seed)
  events = []
  argv = train_argv(crash_dir, **args)
  for i, kind in enumerate(plan):
    events.append(_kill(argv, crash_dir, kind, num_steps, rng,
                        os.path.join(logs, f"crashed_{i}_{kind.replace(':', '_')}.log")))
    log(f"kill {i + 1}/{len(plan)}: {events[-1]}")
  # Disk trouble on the newest checkpoint and the leftovers of a killed save.
  ckpt_dir = os.path.join(crash_dir, "checkpoints")
  newest = latest_step(crash_dir)
  published = [int(p.rsplit("-", 1)[1]) for p in checkpoints.all_checkpoints(ckpt_dir)]
  damaged = None
  if newest is not None and len(published) > 1:
    damaged = f"ckpt-{newest}"
    data = os.path.join(ckpt_dir, damaged + ".data-00000-of-00001")
    with open(data, "r+b") as f:
      f.truncate(os.path.getsize(data) // 3)
  os.makedirs(os.path.join(ckpt_dir, f"ckpt-{num_steps + 3}_temp"), exist_ok=True)
  final_log = Process(argv, os.path.join(logs, "crashed_final.log")).finish()
  if damaged:
    previous = published[published.index(newest) - 1]
    for text in (f"{damaged} cannot be restored",
                 f"Resumed from {os.path.join(ckpt_dir, f'ckpt-{previous}')}"):
      if text not in final_log:
        raise SoakError(f"the final rerun's log lacks {text!r}:\n" + final_log[-3000:])
  if os.path.exists(os.path.join(ckpt_dir, f"ckpt-{num_steps + 3}_temp")):
    raise SoakError("the leftovers of a killed save were not removed")
  reference.finish()
  final = f"ckpt-{num_steps}"
  for wd in (ref_dir, crash_dir):
    if latest_step(wd) != num_steps:
      raise SoakError(f"{wd} ends at ckpt-{latest_step(wd)}, not {final}")
  want = checkpoint_values(os.path.join(ref_dir, "checkpoints", final))
  got = checkpoint_values(os.path.join(ckpt_dir, final))
  if sorted(got) != sorted(want):
    raise SoakError(f"the final checkpoints hold different variables: "
                    f"{sorted(set(got) ^ set(want))}")
  differ = [n for n in want if not np.array_equal(got[n], want[n])]
  metrics = [_eval_json(wd, num_steps) for wd in (ref_dir, crash_dir)]
  report = {"plan": list(plan), "seed": seed, "num_steps": num_steps, "kills": events,
            "damaged_checkpoint": damaged, "variables": len(want),
            "variables_that_differ": differ, "metrics": metrics[1],
            "metrics_equal": metrics[0] == metrics[1],
            "passed": not differ and metrics[0] == metrics[1]}
  with open(os.path.join(root, "soak_report.json"), "w") as f:
    json.dump(report, f, indent=2, default=str)
  if differ:
    raise SoakError(f"{len(differ)} of {len(want)} variables differ, e.g. {differ[:5]}")
  if metrics[0] != metrics[1]:
    raise SoakError(f"the final evaluations differ: {metrics[0]} vs {metrics[1]}")
  return report


_TIMING_KEYS = ("seconds", "wall", "time")


def _eval_json(workdir: str, step: int) -> Dict:
  """The evaluation JSON of `step`, without its timing fields (not reproducible)."""
  with open(os.path.join(workdir, "eval", f"step_{step:06d}.json")) as f:
    result = json.load(f)
  return {k: v for k, v in result.items() if not any(t in k for t in _TIMING_KEYS)}


def main(argv):
  del argv
  from absl import flags

  from ppcd_tf import cli_errors
  from ppcd_tf.config import ConfigError
  f = flags.FLAGS
  with cli_errors.friendly_errors():
    if f.kills < 1 or f.num_steps < f.prune_end_step + 3:
      raise ConfigError(f"--kills={f.kills} must be >= 1 and --num_steps={f.num_steps} "
                        f">= --prune_end_step + 3 = {f.prune_end_step + 3}.")
    plan = f.plan or random_plan(f.kills, f.seed, f.num_steps, f.prune_end_step)
    bad = [k for k in plan if k.partition(":")[0] not in KINDS]
    if bad:
      raise ConfigError(f"--plan entries {bad} must be one of {KINDS} "
                        "(write:N and prune:N name a step).")
    os.makedirs(f.workdir, exist_ok=True)
    from ppcd_tf import tiny
    teacher = f.teacher_dir or tiny.teacher(os.path.join(f.workdir, "teacher"))
    classifier_dir = f.classifier_dir or tiny.classifier(os.path.join(f.workdir, "classifier"))
    report = run_soak(os.path.join(f.workdir, f"soak_seed{f.seed}"), teacher,
                      classifier_dir, plan, num_steps=f.num_steps, seed=f.seed,
                      prune_end_step=f.prune_end_step)
    print(f"soak passed: {len(plan)} kills, {report['variables']} variables equal, "
          f"final metrics equal ({report['metrics'].get('fid')} FID)")


def _define_flags():
  from absl import flags
  flags.DEFINE_string("workdir", "/tmp/ppcd_soak", "Where the runs, logs and "
                      "soak_report.json go (a teacher and classifier are trained there "
                      "unless given).")
  flags.DEFINE_integer("kills", 10, "How many times to stop the run (>= 1): a kill inside "
                       "a checkpoint write, one inside a pruning event, then seeded-random "
                       "SIGKILLs and SIGTERMs.")
  flags.DEFINE_integer("seed", 0, "Seed of the kill plan and moments.")
  flags.DEFINE_integer("num_steps", 16, "Training steps of the soaked run; random kills "
                       "need a new checkpoint each, so keep it above --kills.")
  flags.DEFINE_integer("prune_end_step", 3, "Last pruning event (then the slim switch).")
  flags.DEFINE_list("plan", [], "Explicit kills instead of --kills, e.g. "
                    "write:2,prune:2,random,term.")
  flags.DEFINE_string("teacher_dir", "", "Teacher workdir (default: a tiny one trained "
                      "under --workdir).")
  flags.DEFINE_string("classifier_dir", "", "Metrics classifier (default: a tiny one "
                      "trained under --workdir).")


if __name__ == "__main__":
  _define_flags()
  from ppcd_tf import cli_errors
  cli_errors.run(main)
