"""Measures each loss term's gradient share on a PPCD student, to set the weights.

  python -m tools.grad_shares --config=configs/mnist32.cfg \
      --teacher_dir=assets/teachers/mnist32 [--steps=0,300] [--batches=8] \
      [--out=docs/results/grad_shares.json]

A student of the teacher (the config's PPCD settings and pruning schedule, `--seed`,
default 100, a tuning seed) is trained to each of `--steps`; at each, the gradient norm on G's weights of
every loss term (weights included: `ppcd_tf.grad_shares`) is measured over
`--batches` batches and reported as mean norm and mean share of the adversarial
term's. Nothing else is written; the workdir is temporary.
"""

import os
import tempfile

from absl import app, flags, logging


def _define_flags():
  flags.DEFINE_string("config", "configs/mnist32.cfg", "Base flagfile of the student.")
  flags.DEFINE_string("teacher_dir", "assets/teachers/mnist32", "The teacher.")
  flags.DEFINE_list("steps", ["0", "300"], "Student steps at which to measure.")
  flags.DEFINE_integer("batches", 8, "Batches averaged per measurement.", lower_bound=1)
  flags.DEFINE_integer("seed", 100, "Training seed (not a report seed).", lower_bound=0)
  flags.DEFINE_list("extra", [], "More flags for the student, e.g. --extra=--lambda_att=10.")
  flags.DEFINE_string("out", "", "JSON file for the measurements (empty: print only).")


def measure(config: str, teacher_dir: str, steps, batches: int, seed: int, extra=()):
  import numpy as np
  import tensorflow as tf
  from ppcd_tf import flags as ppcd_flags, grad_shares, train_lib
  from tools import tune
  tune.check_tuning_seed(seed)
  workdir = tempfile.mkdtemp(prefix="grad_shares_")
  last = max(steps)
  base = ppcd_flags.parse_flagfile(config)
  cfg = ppcd_flags.parse_flagfile(config, [
      f"--workdir={workdir}", "--mode=ppcd", f"--teacher_dir={teacher_dir}",
      f"--seed={seed}", f"--num_steps={max(base.optim.num_steps, last + 1)}",
      "--grad_norm_every=0", *extra])
  trainer = train_lib.Trainer(cfg)
  rows = []
  for step in sorted(steps):
    if step:
      trainer.fit(progress=False, until_step=step)
    samples = []
    for k in range(batches):
      z, y = trainer._latents(tf.constant(10_000 + k, tf.int64), 0, 0)  # pylint: disable=protected-access
      samples.append(grad_shares.term_gradient_norms(trainer, z, y))
    terms = list(samples[0])
    rows.append(dict(
        step=step, weights={"adv": 1.0, **trainer.terms},
        norm={t: float(np.mean([s[t] for s in samples])) for t in terms},
        share={t: float(np.mean([grad_shares.shares(s)[t] for s in samples])) for t in terms}))
  return dict(config=config, teacher_dir=teacher_dir, seed=seed, batches=batches,
              extra=list(extra), measurements=rows)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from ppcd_tf import cli_errors, files
  from ppcd_tf import flags as ppcd_flags
  f = flags.FLAGS
  with cli_errors.friendly_errors():
    steps = ppcd_flags.int_list("steps", f.steps)
    result = measure(f.config, f.teacher_dir, steps, f.batches, f.seed, f.extra)
  for row in result["measurements"]:
    print(f"step {row['step']}: " + ", ".join(
        f"{t} weight {row['weights'][t]:g} norm {row['norm'][t]:.3g} share "
        f"{row['share'][t]:.3g}" for t in row["norm"]))
  if f.out:
    os.makedirs(os.path.dirname(f.out) or ".", exist_ok=True)
    files.write_json_atomic(f.out, result)
    print(f"written: {f.out}")
  return 0


if __name__ == "__main__":
  _define_flags()
  logging.set_verbosity(logging.WARNING)
  from ppcd_tf import cli_errors
  cli_errors.run(main)
