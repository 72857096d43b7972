"""Train a teacher or a PPCD student.

  python -m ppcd_tf.train --flagfile=configs/mnist32_quick.cfg --mode=teacher \
      --workdir=runs/demo/teacher
  python -m ppcd_tf.train --flagfile=configs/mnist32_quick.cfg --mode=ppcd \
      --teacher_dir=runs/demo/teacher --workdir=runs/demo/ppcd

A rerun with the same --workdir resumes from the latest checkpoint. SIGTERM stops
after saving a checkpoint of the current step (exit status 143; ppcd_tf/stop_signal.py).
TensorBoard:
`tensorboard --logdir=<workdir>`. `--help` lists every flag by group.
"""

from absl import app, flags, logging

from ppcd_tf import flags as ppcd_flags

ppcd_flags.define_flags()
ppcd_flags.declare_key_flags()
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from ppcd_tf import cli_errors, train_lib
  with cli_errors.friendly_errors():
    cfg = ppcd_flags.config_from_flags(FLAGS)
    summary = train_lib.train(cfg)
    logging.info("done: %s", summary)
    print(f"\nFinished {cfg.run.mode} run at step {summary['step']} in "
          f"{summary['wall_seconds']:.0f}s; live G params {summary['live_params']:,}. "
          f"Workdir: {cfg.run.workdir} (tensorboard --logdir={cfg.run.workdir})")


if __name__ == "__main__":
  from ppcd_tf import cli_errors
  cli_errors.run(main)
