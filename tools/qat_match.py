r"""How closely an int8 TFLite file computes its quantisation-aware (QAT) Keras model.

  .venv/bin/python -m tools.qat_match --config=configs/mnist32.cfg
  .venv/bin/python -m tools.qat_match --workdir=runs/experiment/seed4/ppcd_t81_qat

With `--config`, a generator of that architecture with random weights (seeded) is
calibrated and quantised three ways: the QAT recipe (`ppcd_tf.qat`: one shared grid
for z, the class embedding and every dense input), the same with a grid each for
them (`tie_condition=False`, what the shared grid fixes), and post-training int8 of
the float generator (`tools.export --quantize=int8`). With `--workdir`, the
workdir's trained EMA generator: fake-quant if the run has a QAT phase
(WORKDIR/qat.json), else calibrated here; post-training int8 of the same weights
run in float is the contrast.

Each is exported to a temporary .tflite and run through LiteRT on --num_images
fixed latents next to its own Keras model. Reported per case, in units of the
output grid (1/128, LiteRT's int8 tanh step): mean and max |TFLite - Keras|, and
the share of pixels more than one step apart. Writes --out (JSON, the command in
it; default docs/bench/qat_match.json).
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np
from absl import app, flags

flags.DEFINE_string("config", None, "A flagfile whose architecture is built with random "
                    "weights.")
flags.DEFINE_string("workdir", None, "A training workdir: its trained EMA generator.")
flags.DEFINE_integer("num_images", 64, "Latents compared per case.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the random weights and of the latents.")
flags.DEFINE_string("out", "docs/bench/qat_match.json", "Where the JSON goes.")

STEP = 1.0 / 128


def _stats(a: np.ndarray, b: np.ndarray) -> dict:
  d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)) / STEP
  return dict(mean_steps=float(d.mean()), max_steps=float(d.max()),
              share_over_one_step=float(np.mean(d > 1.0 + 1e-4)))


def _case(name: str, generator, z, y, tmp: str) -> dict:
  from ppcd_tf.export import export_tflite
  from ppcd_tf.export.runners import TFLiteRunner
  path = os.path.join(tmp, f"{name}.tflite")
  export_tflite(generator, path, quantize="int8")
  keras = np.asarray(generator((z, y), training=False))
  got = TFLiteRunner(path)(z, y)
  out = dict(_stats(got, keras), file_kib=os.path.getsize(path) / 1024)
  print(f"{name:28s} mean {out['mean_steps']:.4f} steps, max {out['max_steps']:.1f}, "
        f"{out['share_over_one_step']:.3%} of pixels > 1 step", flush=True)
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from ppcd_tf import checkpoints, config as config_lib, qat
  from ppcd_tf import flags as ppcd_flags
  from ppcd_tf import slim as slim_lib
  from ppcd_tf.export.common import _versions
  import tf_keras
  f = flags.FLAGS
  flagfile = f.config
  if bool(f.workdir) == bool(flagfile):
    raise config_lib.ConfigError("pass exactly one of --config=FLAGFILE (random weights) "
                                 "and --workdir=DIR (a trained generator).")
  tf_keras.utils.set_random_seed(f.seed)
  if f.workdir:
    g, prefix = slim_lib.restore_trained_generator(workdir=f.workdir)
    source = dict(workdir=f.workdir, checkpoint=prefix, qat_phase=qat.is_quantized(g))
    ranges = qat.ranges_of(g)
    qat.disable(g)
  else:
    from ppcd_tf.generator import build_generator
    cfg = ppcd_flags.parse_flagfile(flagfile)
    g = build_generator(cfg.model)
    source = dict(flagfile=flagfile, weights=f"random (seed {f.seed})")
    ranges = None
  g = slim_lib.slim_generator(g, name="generator")  # frozen spectral norm, no masks
  mc = g.model_cfg
  batches = qat.calibration_batches(mc.z_dim, mc.num_classes)
  rng = np.random.default_rng(f.seed + 1)
  z = rng.standard_normal((f.num_images, mc.z_dim)).astype(np.float32)
  y = (np.arange(f.num_images) % mc.num_classes).astype(np.int32)
  cases = {}
  with tempfile.TemporaryDirectory() as tmp:
    cases["post_training_int8"] = _case("post_training_int8", g, z, y, tmp)
    float_images = np.asarray(g((z, y), training=False))
    if ranges is None:
      ranges = qat.calibrate(g, batches)
      qat.enable(g, qat.calibrate(g, batches, tie_condition=False))
      cases["qat_grid_per_input"] = _case("qat_grid_per_input", g, z, y, tmp)
      qat.disable(g)
    qat.enable(g, ranges)
    cases["qat"] = _case("qat", g, z, y, tmp)
    cases["qat"]["fake_quant_vs_float"] = _stats(
        np.asarray(g((z, y), training=False)), float_images)
  report = dict(command="python -m tools.qat_match " + " ".join(sys.argv[1:]),
                source=source, num_images=f.num_images, output_step=STEP,
                cases=cases, versions=_versions())
  checkpoints.write_json_atomic(f.out, report)
  print(f"wrote {f.out}")


if __name__ == "__main__":
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  from ppcd_tf import cli_errors
  cli_errors.run(main)
