"""Evaluate a trained generator: FID, IS, KID, intra-class FID, class accuracy.

  python -m ppcd_tf.evaluate --workdir=runs/demo/ppcd --model=slim \
      --extractor=classifier:runs/demo/classifier --num_samples=5000

`--model` picks the generator of the workdir:
  ema      the EMA generator of the latest checkpoint (a masked student is slimmed
           first: the slim network computes exactly the same function, faster)
  slim     WORKDIR/slim from `python -m tools.slim --workdir=WORKDIR`
  teacher  the EMA generator of the run's --teacher_dir
  generator  the raw (not averaged) generator of the latest checkpoint, slimmed
           like `ema`: a diagnostic for whether the EMA helps or lags

`--exported=PATH` evaluates what ships instead: a .tflite file (fp32, fp16, dynamic or
int8), a SavedModel or a slim model dir, run by the runtime that ships it (LiteRT for
TFLite) on the same latents, features and reference statistics, so its numbers compare
with the Keras model's; --workdir is the run it was exported from (data, classes) and
the output goes to WORKDIR/eval/<tflite_int8|tflite_fp32|...>:

  python -m ppcd_tf.evaluate --workdir=runs/demo/ppcd \
      --exported=runs/demo/export/slim_int8.tflite \
      --extractor=classifier:runs/demo/classifier

Writes `WORKDIR/eval/<model>/metrics.json` (every metric, the extractor, N, seed,
truncation, params and MACs of the generator) and `classes.png` (one row per
class), and logs the metrics to TensorBoard under `WORKDIR/eval`. Reference
statistics of the real data are cached in `--stats_dir` and reused.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from absl import app, flags

__all__ = ["load_for_eval", "evaluate_workdir", "evaluate_exported", "exported_tag",
           "check_args", "MODELS"]

MODELS = ("ema", "slim", "teacher", "generator")

if __name__ == "__main__":
  flags.DEFINE_string("workdir", None, "Training workdir to evaluate.", required=True)
  flags.DEFINE_enum("model", "ema", list(MODELS),
                    "Which generator: 'ema' (latest checkpoint), 'slim' (WORKDIR/slim), "
                    "'teacher' (the run's --teacher_dir), 'generator' (the raw, "
                    "non-EMA generator of the latest checkpoint).")
  flags.DEFINE_string("extractor", None,
                      "Feature extractor: 'classifier:<dir>' (python -m "
                      "ppcd_tf.train_classifier --out=<dir>) or 'inception:<path>'.",
                      required=True)
  flags.DEFINE_integer("num_samples", 5000, "Generated images (balanced over classes).",
                       lower_bound=20)
  flags.DEFINE_integer("seed", 0, "Latent seed.", lower_bound=0)
  flags.DEFINE_float("truncation", 0.0, "Truncation threshold t (0 = none): latent "
                     "entries with |z| > t are redrawn.", lower_bound=0.0)
  flags.DEFINE_string("stats_dir", "runs/reference_stats",
                      "Cache of real-data reference statistics (.npz).")
  flags.DEFINE_string("out_dir", None, "Output directory (default WORKDIR/eval/<model>).")
  flags.DEFINE_integer("grid_per_class", 8, "Images per class row in classes.png.",
                       lower_bound=1)
  flags.DEFINE_string("exported", None,
                      "Evaluate this exported generator instead of --model: a .tflite "
                      "file, a SavedModel dir or a slim model dir (tools/export.py, "
                      "tools/slim.py); --workdir is the run it came from.")
  flags.DEFINE_integer("num_threads", None, "LiteRT interpreter threads for --exported "
                       ".tflite files (default: LiteRT's).", lower_bound=1)
  flags.DEFINE_bool("jit_compile", False,
                    "Sample with an XLA-compiled generator (same images within float "
                    "round-off; faster on GPUs).")


def load_for_eval(workdir: str, model: str):
  """Returns (generator, run Config, description) for `--model` of a workdir."""
  from ppcd_tf import checkpoints, config as config_lib, slim as slim_lib
  if model not in MODELS:
    raise config_lib.ConfigError(f"--model={model!r} must be one of {MODELS}.")
  cfg = checkpoints.read_config(workdir)
  if model == "slim":
    path = os.path.join(workdir, "slim")
    if not os.path.isdir(path):
      raise checkpoints.CheckpointError(
          f"{path} does not exist; run `python -m tools.slim --workdir={workdir}` first "
          "or evaluate --model=ema.")
    return slim_lib.load_slim_generator(path), cfg, f"slim generator {path}"
  if model == "teacher":
    tdir = cfg.distill.teacher_dir
    if not tdir:
      raise config_lib.ConfigError(
          f"{workdir} has no teacher (it is a --mode={cfg.run.mode} run); evaluate the "
          "teacher's own workdir with --model=ema.")
    g, prefix = slim_lib.restore_trained_generator(workdir=tdir)
    return g, cfg, f"teacher EMA generator {prefix}"
  key = "generator" if model == "generator" else "ema_generator"
  g, prefix = slim_lib.restore_trained_generator(workdir=workdir, key=key)
  if g.masks:
    g = slim_lib.slim_generator(g)
  return g, cfg, f"{'raw' if model == 'generator' else 'EMA'} generator {prefix}"


def evaluate_workdir(workdir: str, model: str, extractor_name: str, num_samples: int,
                     seed: int = 0, truncation: float = 0.0,
                     stats_dir: str = "runs/reference_stats",
                     out_dir: Optional[str] = None, grid_per_class: int = 8,
                     jit_compile: bool = False,
                     step: Optional[int] = None, loaded: Optional[tuple] = None
                     ) -> Dict[str, Any]:
  """Evaluates one generator of a workdir; writes metrics.json, classes.png, TB.

  `loaded` is `load_for_eval(workdir, model)` when the caller has already loaded it.
  """
  import tensorflow as tf

  from ppcd_tf import flops

  generator, cfg, what = loaded or load_for_eval(workdir, model)

  @tf.function(reduce_retracing=True, jit_compile=jit_compile)
  def generate(z, y):
    return generator((z, y), training=False)

  def generator_fn(z, y):
    return generate(tf.convert_to_tensor(z, tf.float32), tf.convert_to_tensor(y, tf.int32))

  cost = flops.count_generator(generator)
  return _evaluate(generator_fn, cfg, extractor_name, num_samples, seed, truncation,
                   stats_dir, out_dir or os.path.join(workdir, "eval", model),
                   grid_per_class, step, model,
                   dict(model=model, generator=what, extractor=extractor_name,
                        workdir=os.path.abspath(workdir), params=cost.total_params,
                        macs=cost.total_macs))


def exported_tag(path: str, runner=None, meta: Optional[Dict[str, Any]] = None) -> str:
  """A short name of an exported generator: 'tflite_int8', 'tflite_fp32',
  'saved_model', 'slim' (its format and quantization; `meta` is its export JSON when
  the caller has read it)."""
  from ppcd_tf import export
  if meta is None:
    meta = export.read_export_json(path) or {}
  kind = runner.kind if runner is not None else (
      "tflite" if path.endswith(".tflite") else meta.get("format", "saved_model"))
  if kind == "tflite":
    q = meta.get("quantization", "none")
    return "tflite_" + {"none": "fp32", "float16": "fp16"}.get(q, q)
  return "slim" if kind == "keras" else kind


def evaluate_exported(path: str, workdir: str, extractor_name: str, num_samples: int,
                      seed: int = 0, truncation: float = 0.0,
                      stats_dir: str = "runs/reference_stats",
                      out_dir: Optional[str] = None, grid_per_class: int = 8,
                      num_threads: Optional[int] = None) -> Dict[str, Any]:
  """Evaluates an exported generator (a .tflite file of any quantization, a SavedModel
  or slim model dir) through the runner that ships it (`export.open_generator`: LiteRT
  for TFLite), with the samples, features and reference statistics `evaluate_workdir`
  uses, so its metrics compare with the Keras model's. `workdir` is the training run
  it came from: it gives the data and classes. Writes metrics.json and classes.png
  (default WORKDIR/eval/<tag>, see `exported_tag`)."""
  from ppcd_tf import checkpoints, config as config_lib, export
  cfg = checkpoints.read_config(workdir)
  runner = export.open_generator(path, num_threads=num_threads)
  m, spec = cfg.model, runner.spec
  got = (spec.num_classes, spec.z_dim, spec.resolution)
  want = (m.num_classes, m.z_dim, m.resolution)
  if got != want:
    raise config_lib.ConfigError(
        f"{path} generates (classes, z_dim, resolution) = {got}, but {workdir} trains "
        f"{want}; pass the --workdir the model was exported from.")
  meta = export.read_export_json(path) or {}
  tag = exported_tag(path, runner, meta)
  return _evaluate(runner, cfg, extractor_name, num_samples, seed, truncation, stats_dir,
                   out_dir or os.path.join(workdir, "eval", tag), grid_per_class, None, tag,
                   dict(model=tag, generator=os.path.abspath(path), format=runner.kind,
                        quantization=meta.get("quantization"), extractor=extractor_name,
                        workdir=os.path.abspath(workdir), params=meta.get("params"),
                        macs=meta.get("macs_per_image"),
                        file_size_bytes=meta.get("file_size_bytes")))


def _evaluate(generator_fn, cfg, extractor_name: str, num_samples: int, seed: int,
              truncation: float, stats_dir: str, out_dir: str, grid_per_class: int,
              step: Optional[int], tag: str, extra: Dict[str, Any]) -> Dict[str, Any]:
  """Metrics and the class grid of `generator_fn(z, y) -> images`; metrics.json and
  TensorBoard scalars `<tag>/<metric>` next to `out_dir`."""
  import tensorflow as tf

  from ppcd_tf import checkpoints, evaluation, features
  extractor = features.get_extractor(extractor_name)
  ref = evaluation.reference_stats(extractor, cfg.data, cfg.model, cache_dir=stats_dir)
  m = cfg.model
  t = truncation if truncation and truncation > 0 else None
  result = evaluation.evaluate_generator(generator_fn, extractor, ref, num_samples,
                                         m.num_classes, m.z_dim, seed=seed, truncation=t)
  result.update(extra)
  grid = evaluation.class_grid(generator_fn, m.num_classes, grid_per_class, m.z_dim, seed,
                               t, os.path.join(out_dir, "classes.png"),
                               classes=None if m.num_classes <= 20 else
                               list(range(0, m.num_classes, m.num_classes // 20))[:20])
  result["grid"] = grid
  checkpoints.write_json_atomic(os.path.join(out_dir, "metrics.json"), result)
  # Next to out_dir (WORKDIR/eval by default): a read-only workdir such as a shipped
  # teacher (ppcd_tf.teacher_asset) is evaluated with an out_dir elsewhere.
  writer = tf.summary.create_file_writer(os.path.dirname(os.path.normpath(out_dir)))
  with writer.as_default(step=step or 0):
    for k in ("fid", "is_mean", "kid_mean", "intra_fid", "class_accuracy"):
      if isinstance(result.get(k), (int, float)):
        tf.summary.scalar(f"{tag}/{k}", result[k])
  writer.flush()
  return result


# Below this, truncated latents are nearly all zero (every sample alike): a typo.
MIN_TRUNCATION = 0.02


def check_args(workdir: str, model: str, extractor: str, num_samples: int, seed: int,
               truncation: float, out_dir: Optional[str] = None,
               exported: Optional[str] = None) -> None:
  """Checks the command line before anything is loaded.

  Raises:
    ConfigError: naming the first bad flag.
  """
  import math

  from ppcd_tf import config as config_lib
  if not workdir or not os.path.isdir(workdir):
    raise config_lib.ConfigError(f"--workdir={workdir} does not exist or is not a "
                                 "directory; pass a training workdir.")
  if model not in MODELS:
    raise config_lib.ConfigError(f"--model={model!r} must be one of {MODELS}.")
  if not extractor or ":" not in extractor:
    raise config_lib.ConfigError(
        f"--extractor={extractor!r} must be classifier:<dir> (python -m "
        "ppcd_tf.train_classifier --out=<dir>) or inception:<path>.")
  if int(num_samples) < 20:
    raise config_lib.ConfigError(f"--num_samples={num_samples} must be >= 20.")
  if not 0 <= int(seed) < 2 ** 31:
    raise config_lib.ConfigError(f"--seed={seed} must be in [0, 2**31).")
  t = float(truncation)
  if not (math.isfinite(t) and (t == 0 or MIN_TRUNCATION <= t <= 4.0)):
    raise config_lib.ConfigError(
        f"--truncation={truncation} must be 0 (no truncation) or in "
        f"[{MIN_TRUNCATION}, 4]; 0.5 is strong.")
  if out_dir and os.path.isfile(out_dir):
    raise config_lib.ConfigError(f"--out_dir={out_dir} is a file; pass a directory.")
  if exported is not None and not os.path.exists(exported):
    raise config_lib.ConfigError(
        f"--exported={exported} does not exist; pass a .tflite file, a SavedModel dir or "
        "a slim model dir (python -m tools.export / tools.slim).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from ppcd_tf import cli_errors
  f = flags.FLAGS
  with cli_errors.friendly_errors():
    check_args(f.workdir, f.model, f.extractor, f.num_samples, f.seed, f.truncation,
               f.out_dir, f.exported)
    if f.exported:
      r = evaluate_exported(f.exported, f.workdir, f.extractor, f.num_samples, f.seed,
                            f.truncation, f.stats_dir, f.out_dir, f.grid_per_class,
                            num_threads=f.num_threads)
    else:
      r = evaluate_workdir(f.workdir, f.model, f.extractor, f.num_samples, f.seed,
                           f.truncation, f.stats_dir, f.out_dir, f.grid_per_class,
                           jit_compile=f.jit_compile)
  keys = ("fid", "kid_mean", "intra_fid", "is_mean", "class_accuracy", "params", "macs")
  print("  ".join(f"{k}={r[k]:.4g}" if isinstance(r.get(k), float) else f"{k}={r.get(k)}"
                  for k in keys))
  default_out = os.path.join(f.workdir, "eval", r["model"])
  print(f"metrics: {os.path.join(f.out_dir or default_out, 'metrics.json')}  grid: {r['grid']}")


if __name__ == "__main__":
  from ppcd_tf import cli_errors
  cli_errors.run(main)
