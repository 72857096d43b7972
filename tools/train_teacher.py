"""Trains a teacher until its FID stops improving, then packages it to ship.

  python -m tools.train_teacher --config=configs/mnist32_teacher.cfg \
      --workdir=runs/teachers/mnist32 --out=assets/teachers/mnist32

1. The metrics classifier (`--classifier_dir`, trained once; the experiment's own by
   default, so the curve is in the units of docs/RESULTS.md).
2. The teacher: `--config` with `--eval_every` and `--early_stop_evals` (FID of the EMA
   generator every few thousand steps; stop when the best has not improved by more
   than `--early_stop_min_delta` over that many evaluations, or at `--num_steps`).
   A rerun resumes; a run that already stopped trains nothing more.
3. The package (`ppcd_tf.teacher_asset`): the best evaluation's checkpoint, config,
   FID curve (JSON + PNG), the command and SHA256SUMS, in `--out`.

Every invocation's wall time and machine load are appended to
WORKDIR/train_teacher_log.json and summed into teacher.json. `--package_only`
repackages a finished workdir; `--max_minutes` stops (saving) after that long, so a
2-hour teacher can be trained in chunks that fit a session.
"""

import os

from absl import app, flags, logging


def _define_flags():
  flags.DEFINE_string("config", "configs/mnist32_teacher.cfg",
                      "Teacher flagfile (needs --eval_every; --early_stop_evals to stop "
                      "at the plateau).")
  flags.DEFINE_string("workdir", "runs/teachers/mnist32", "Training workdir (resumed).")
  flags.DEFINE_string("out", "assets/teachers/mnist32", "Package directory (replaced).")
  flags.DEFINE_string("classifier_dir", "runs/experiment/classifier",
                      "Metrics classifier for the FID curve; trained here if missing.")
  flags.DEFINE_integer("classifier_epochs", 10, "Epochs of that classifier.", lower_bound=1)
  flags.DEFINE_float("max_minutes", 0.0,
                     "Stop training at the first checkpoint after this many minutes; a "
                     "rerun resumes. 0 = no limit.", lower_bound=0.0)
  flags.DEFINE_bool("package_only", False, "Only (re)write --out from --workdir.")
  flags.DEFINE_bool("package", True, "Write --out once training has finished or stopped.")


LOG_FILE = "train_teacher_log.json"  # ppcd_tf.wall_log, one entry per invocation


def train_until_plateau(config: str, workdir: str, classifier_dir: str,
                        classifier_epochs: int = 10, max_minutes: float = 0.0,
                        extra_flags=(), progress: bool = True) -> dict:
  """Steps 1 and 2 of the module docstring; returns the training summary."""
  from ppcd_tf import flags as ppcd_flags, pipeline, train_lib, wall_log
  cfg = ppcd_flags.parse_flagfile(config, [
      f"--workdir={workdir}", "--mode=teacher",
      f"--eval_extractor=classifier:{classifier_dir}", *extra_flags])
  pipeline.ensure_classifier(cfg.data, cfg.model, classifier_dir, classifier_epochs)
  trainer = train_lib.Trainer(cfg)
  return wall_log.timed_fit(trainer, os.path.join(workdir, LOG_FILE), progress=progress,
                            time_limit_s=max_minutes * 60 if max_minutes else None)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from ppcd_tf import cli_errors, teacher_asset
  f = flags.FLAGS
  command = (f"python -m tools.train_teacher --config={f.config} --workdir={f.workdir} "
             f"--out={f.out}")
  with cli_errors.friendly_errors():
    summary = None
    if not f.package_only:
      summary = train_until_plateau(f.config, f.workdir, f.classifier_dir,
                                    f.classifier_epochs, f.max_minutes)
      finished = summary.get("stopped_early") or summary["step"] >= _max_steps(f.workdir)
      if not finished:
        print(f"stopped at step {summary['step']} (--max_minutes); rerun to resume.")
        return
    if f.package or f.package_only:
      from ppcd_tf import wall_log
      log = wall_log.read(os.path.join(f.workdir, LOG_FILE))
      total = wall_log.totals(log)
      info = teacher_asset.package_teacher(
          f.workdir, f.out, command, f.config,
          extra_info=dict(
              train_wall_seconds=total["wall_seconds"],
              # Time the process was stopped (SIGSTOP) while others used the machine,
              # where the log records it by hand.
              paused_seconds=total["paused_seconds"], invocations=log))
      print(f"teacher: best FID {info['best_fid']:.3f} at step {info['best_step']} of "
            f"{info['steps_trained']} ({'plateau' if info['stopped_early'] else 'step cap'}"
            f"); packaged in {f.out}")


def _max_steps(workdir: str) -> int:
  from ppcd_tf import checkpoints
  return checkpoints.read_config(workdir).optim.num_steps


if __name__ == "__main__":
  _define_flags()
  logging.set_verbosity(logging.WARNING)
  from ppcd_tf import cli_errors
  cli_errors.run(main)
