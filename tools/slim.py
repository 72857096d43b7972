r"""Slims a trained PP-Res generator into a dense one and writes a report.

  .venv/bin/python -m tools.slim --workdir=runs/imagenet128_ppcd
  .venv/bin/python -m tools.slim --checkpoint=runs/x/checkpoints/ckpt-12 --out_dir=/tmp/slim

Reads the run's config.json and the `ema_generator` of its latest (or the given)
checkpoint, removes pruned channels and mask layers (`ppcd_tf.slim`), checks that
the slim generator reproduces the masked one, and writes to --out_dir (default
WORKDIR/slim): config.json, weights/ (Keras, TF format), saved_model/ (serving
signature (z, y) -> images) and slim_report.json (params and MACs before/after,
channels kept per mask, max abs difference). Exits with status 1 if the difference
exceeds --tolerance. Bad flags, a missing or corrupt config.json and unreadable
checkpoints print one `error:` line and exit with status 2 (`_validate` checks
the flags and the config before anything is built).
"""

from __future__ import annotations

import math
import os
import sys

import ppcd_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Training workdir (config.json + checkpoints/).")
flags.DEFINE_string("checkpoint", None,
                    "Checkpoint prefix to slim instead of the workdir's latest.")
flags.DEFINE_string("config", None, "config.json of the run (default: from the workdir, "
                    "or two directories above --checkpoint).")
flags.DEFINE_string("generator_key", "ema_generator",
                    "Checkpoint object name of the generator to slim.")
flags.DEFINE_string("out_dir", None, "Output directory (default WORKDIR/slim).")
flags.DEFINE_integer("verify_batches", 3, "Batches of 4 compared masked vs slim.",
                     lower_bound=1)
flags.DEFINE_float("tolerance", 1e-5, "Largest accepted max abs difference.")


GENERATOR_KEYS = ("ema_generator", "generator")


def _validate() -> None:
  """Checks the flags and the run's config.json before anything is built."""
  from ppcd_tf import checkpoints, config as config_lib
  if not FLAGS.workdir and not FLAGS.checkpoint:
    raise config_lib.ConfigError("pass --workdir=DIR (a training workdir) or "
                                 "--checkpoint=PREFIX (e.g. DIR/checkpoints/ckpt-12).")
  if FLAGS.workdir and not os.path.isdir(FLAGS.workdir):
    raise config_lib.ConfigError(f"--workdir={FLAGS.workdir} does not exist or is not "
                                 "a directory.")
  if FLAGS.checkpoint and not os.path.isfile(FLAGS.checkpoint + ".index"):
    raise checkpoints.CheckpointError(
        f"--checkpoint={FLAGS.checkpoint}: {FLAGS.checkpoint}.index does not exist; pass "
        "a checkpoint prefix such as WORKDIR/checkpoints/ckpt-12 (no file extension).")
  if FLAGS.generator_key not in GENERATOR_KEYS:
    raise config_lib.ConfigError(f"--generator_key={FLAGS.generator_key!r} must be one "
                                 f"of {GENERATOR_KEYS}.")
  if not (math.isfinite(FLAGS.tolerance) and FLAGS.tolerance >= 0):
    raise config_lib.ConfigError(f"--tolerance={FLAGS.tolerance} must be a finite "
                                 "number >= 0.")
  if FLAGS.out_dir and os.path.isfile(FLAGS.out_dir):
    raise config_lib.ConfigError(f"--out_dir={FLAGS.out_dir} is a file; pass a "
                                 "directory.")
  config_path = FLAGS.config
  if config_path is None:
    run_dir = FLAGS.workdir or os.path.dirname(os.path.dirname(
        os.path.abspath(FLAGS.checkpoint)))
    config_path = checkpoints.config_path(run_dir)
  if not os.path.isfile(config_path):
    raise checkpoints.CheckpointError(
        f"{config_path} does not exist; pass --config=PATH to the run's config.json.")
  checkpoints.read_config_file(config_path)  # CheckpointError naming the file


def main(argv):
  del argv
  from ppcd_tf import cli_errors
  from ppcd_tf import slim as slim_lib
  with cli_errors.friendly_errors():
    _validate()
    try:
      generator, prefix = slim_lib.restore_trained_generator(
          workdir=FLAGS.workdir, checkpoint=FLAGS.checkpoint, config_path=FLAGS.config,
          key=FLAGS.generator_key)
    except IndexError as e:  # TF's "Read less bytes than requested": truncated data
      from ppcd_tf import checkpoints
      raise checkpoints.CheckpointError(
          f"cannot restore {FLAGS.checkpoint}: its data file is truncated ({e}).") from e
    out_dir = FLAGS.out_dir or os.path.join(
        FLAGS.workdir or os.path.dirname(os.path.dirname(os.path.abspath(prefix))), "slim")
    report = slim_lib.slim_and_report(generator, out_dir,
                                      verify_batches=FLAGS.verify_batches)
  print(f"slimmed {prefix} -> {out_dir}")
  print(f"params {report['params_before']:,} -> {report['params_after']:,} "
        f"(-{100 * report['param_reduction']:.1f}%), MACs {report['macs_before']:,} -> "
        f"{report['macs_after']:,} (-{100 * report['mac_reduction']:.1f}%)")
  for name, c in report["channels"].items():
    print(f"  {name:<12} {c['kept']:>6} / {c['total']}")
  print(f"max abs diff masked vs slim: {report['max_abs_diff']:.3g}")
  if report["max_abs_diff"] > FLAGS.tolerance:
    print(f"error: difference above --tolerance={FLAGS.tolerance}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  from ppcd_tf import cli_errors
  cli_errors.run(main)
