r"""Slims a trained PP-Res generator into a dense one and writes a report.

  .venv/bin/python -m tools.slim --workdir=runs/imagenet128_ppcd
  .venv/bin/python -m tools.slim --checkpoint=runs/x/checkpoints/ckpt-12 --out_dir=/tmp/slim

Reads the run's config.json and the `ema_generator` of its latest (or the given)
checkpoint, removes pruned channels and mask layers (`ppcd_tf.slim`), checks that
the slim generator reproduces the masked one, and writes to --out_dir (default
WORKDIR/slim): config.json, weights/ (Keras, TF format), saved_model/ (serving
signature (z, y) -> images) and slim_report.json (params and MACs before/after,
channels kept per mask, max abs difference). Exits with status 1 if the difference
exceeds --tolerance.
"""

from __future__ import annotations

import os
import sys

import ppcd_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

from absl import app
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


def main(argv):
  del argv
  from ppcd_tf import cli_errors
  from ppcd_tf import slim as slim_lib
  with cli_errors.friendly_errors():
    generator, prefix = slim_lib.restore_trained_generator(
        workdir=FLAGS.workdir, checkpoint=FLAGS.checkpoint, config_path=FLAGS.config,
        key=FLAGS.generator_key)
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
  app.run(main)
