"""`make demo`: the whole PPCD-GAN job end to end on the embedded MNIST digits.

  python -m tools.demo --workdir=runs/demo [--config=configs/mnist32_quick.cfg] \
      [--teacher_dir=assets/teachers/mnist32]

Stages (each reuses what an earlier run already finished in the workdir, and a
training stage that was interrupted resumes from its checkpoint; the exports, their
latencies and the evaluations are reused while the student's checkpoint, the teacher
and the settings they were made with are the same, WORKDIR/demo_stages.json):
  1. teacher      BigGAN teacher            WORKDIR/teacher, or --teacher_dir as it is
                                            (a packaged teacher: checksums verified)
  2. classifier   metrics classifier        WORKDIR/classifier
  3. ppcd         pruned + distilled student WORKDIR/ppcd
  4. slim         dense slim generator      WORKDIR/ppcd/slim (slim_report.json)
  5. export       TFLite fp32, fp16, dynamic-range and int8 of the slim student,
                  fp32 of the teacher       WORKDIR/export
  6. samples      PNG grids through LiteRT  WORKDIR/samples
  7. evaluate     FID/KID/IS/accuracy of teacher and slim student, Keras and every
                  TFLite export through LiteRT (same latents), WORKDIR/eval
  8. report       table on stdout, WORKDIR/demo_report.{json,md}
"""

import json
import os
import time

from absl import app, flags, logging

from ppcd_tf import flags as ppcd_flags


def _define_flags():
  """Flags of this tool; defined only when it runs as a program, so tests can
  import it next to other tools that define the same names."""
  flags.DEFINE_string("workdir", "runs/demo",
                      "Demo directory: one sub-directory per stage; a rerun "
                      "reuses finished stages and resumes interrupted ones.")
  flags.DEFINE_string("config", "configs/mnist32_quick.cfg",
                      "Flagfile of the run (the demo preset by default).")
  flags.DEFINE_integer("num_samples", 2000,
                      "Generated images per evaluation.", lower_bound=20)
  flags.DEFINE_integer("latency_repeats", 30,
                      "Timed TFLite calls per model (median).",
                      lower_bound=3)
  flags.DEFINE_integer("classifier_epochs", 10,
                      "Epochs of the metrics classifier.", lower_bound=1)
  flags.DEFINE_string("teacher_dir", "assets/teachers/mnist32",
                      "The trained teacher to compress: a packaged teacher (the converged "
                      "one that ships by default; checksums verified first) or any "
                      "--mode=teacher workdir of the same architecture as --config. Empty "
                      "(--teacher_dir=) trains a short demo teacher in WORKDIR/teacher with "
                      "--config instead; python -m tools.train_teacher retrains the shipped "
                      "one.")

STAGES = ("teacher", "classifier", "ppcd", "slim", "export", "samples", "evaluate",
          "report")


def _stage(i: int, text: str) -> float:
  print(f"\n=== [{i}/{len(STAGES)}] {text} ===", flush=True)
  return time.time()


STAGE_CACHE = "demo_stages.json"
# (file name, whose generator, quantization) of every TFLite export.
EXPORTS = (("teacher_fp32", "teacher", "none"), ("slim_fp32", "slim", "none"),
           ("slim_fp16", "slim", "float16"), ("slim_dynamic", "slim", "dynamic"),
           ("slim_int8", "slim", "int8"))
# The report's rows: evaluation name -> (whose generator, what runs it).
REPORT_ROWS = {"teacher": ("teacher", "Keras"), "teacher_fp32": ("teacher", "TFLite fp32"),
               "slim": ("slim", "Keras"), "slim_fp32": ("slim", "TFLite fp32"),
               "slim_fp16": ("slim", "TFLite fp16"),
               "slim_dynamic": ("slim", "TFLite dynamic-range int8"),
               "slim_int8": ("slim", "TFLite int8")}


def _reused(workdir: str, stage: str, key: dict, compute, still_there: bool = True):
  """`compute()`, or what an earlier run stored for `stage` under the same `key`
  (when `still_there`: the files it made are still on disk)."""
  from ppcd_tf import files
  path = os.path.join(workdir, STAGE_CACHE)
  try:
    with open(path) as f:
      cache = json.load(f)
  except (OSError, ValueError):
    cache = {}
  hit = cache.get(stage)
  if hit and hit.get("key") == key and still_there:
    print(f"    reused from an earlier run ({STAGE_CACHE})", flush=True)
    return hit["value"]
  # As JSON reads it back (numpy scalars as numbers), so a reused value is the same.
  value = json.loads(json.dumps(compute(), default=lambda x: x.item()))
  cache[stage] = dict(key=key, value=value)
  files.write_json_atomic(path, cache)
  return value


def _finished_run(workdir: str, num_steps: int):
  """The training summary of a run in `workdir` that reached `num_steps`, else None."""
  from ppcd_tf import checkpoints
  try:
    with open(os.path.join(workdir, "train_summary.json")) as f:
      summary = json.load(f)
  except (OSError, ValueError):
    return None
  ckpts = checkpoints.all_checkpoints(checkpoints.checkpoint_dir(workdir))
  if (summary.get("step", -1) < num_steps or summary.get("stopped_by_signal") or not ckpts
      or not ckpts[-1].endswith(f"ckpt-{summary['step']}")):
    return None
  return summary


def _done(start: float, what: str) -> None:
  print(f"    {what} ({time.time() - start:.0f}s)", flush=True)


def run_demo(workdir: str, config_path: str, num_samples: int = 2000,
             latency_repeats: int = 30, classifier_epochs: int = 10, extra_flags=(),
             teacher_dir: str = ""):
  """Runs every stage (see the module docstring); returns the report dict.

  With `teacher_dir` the teacher stage uses that trained teacher (a packaged one is
  checked against its SHA256SUMS first) instead of training WORKDIR/teacher.
  """
  from ppcd_tf import (checkpoints, evaluate, export, files, images, pipeline, slim,
                       teacher_asset, train_lib)

  t0 = time.time()
  base = ppcd_flags.parse_flagfile(config_path, list(extra_flags))
  tdir, pdir = os.path.join(workdir, "teacher"), os.path.join(workdir, "ppcd")
  cdir, edir = os.path.join(workdir, "classifier"), os.path.join(workdir, "export")
  sdir = os.path.join(workdir, "samples")

  teacher_info = None
  if teacher_dir:
    tdir = teacher_dir
    s = _stage(1, f"teacher: the trained teacher in {tdir}")
    teacher_info, teacher_step = teacher_asset.check_teacher_dir(tdir)
    if teacher_info:
      _done(s, f"checksums verified; best FID {teacher_info['best_fid']:.2f} at step "
               f"{teacher_step} of {teacher_info['steps_trained']} "
               f"({'stopped at its plateau' if teacher_info['stopped_early'] else 'step cap'})")
    else:
      _done(s, f"teacher at step {teacher_step}")
  else:
    s = _stage(1, f"teacher: {base.optim.num_steps} steps of BigGAN training -> {tdir}")
    teacher_summary = train_lib.train(base.replace(run=dict(workdir=tdir, mode="teacher")))
    _done(s, f"teacher at step {teacher_summary['step']}")

  s = _stage(2, f"classifier for the metrics -> {cdir}")
  acc = pipeline.ensure_classifier(base.data, base.model, cdir,
                                  classifier_epochs).get("test_accuracy")
  _done(s, f"held-out accuracy {acc}")

  s = _stage(3, f"PPCD: prune to {1 - base.pruning.target_fraction:.0%} of the teacher's "
                f"parameters while distilling -> {pdir}")
  ppcd_cfg = base.replace(run=dict(workdir=pdir, mode="ppcd"),
                          distill=dict(teacher_dir=tdir)).validate()
  ppcd_summary = _finished_run(pdir, ppcd_cfg.optim.num_steps)
  if ppcd_summary is None:
    ppcd_summary = train_lib.train(ppcd_cfg)
  else:
    print(f"    finished earlier at step {ppcd_summary['step']}", flush=True)
  _done(s, f"student live parameters {ppcd_summary['live_params']:,} "
           f"({ppcd_summary['live_fraction']:.1%} of the teacher)")

  s = _stage(4, "slim: rebuild the student as a dense network without masks")
  report = pipeline.slim_workdir(pdir)
  _done(s, f"{report['params_before']:,} -> {report['params_after']:,} params, "
           f"max |slim - masked| = {report['max_abs_diff']:.2e}")

  s = _stage(5, f"export TFLite -> {edir}")
  # What the exports and evaluations depend on: the student's last checkpoint, the
  # teacher's, the classifier and the settings.
  made_from = dict(
      student=checkpoints.all_checkpoints(checkpoints.checkpoint_dir(pdir))[-1],
      teacher=teacher_asset.check_teacher_dir(tdir)[1], teacher_dir=os.path.abspath(tdir),
      classifier_accuracy=acc, num_samples=num_samples, latency_repeats=latency_repeats)
  names = [name for name, _, _ in EXPORTS]

  def export_all():
    gens = dict(slim=slim.load_slim_generator(os.path.join(pdir, "slim")),
                teacher=slim.restore_trained_generator(workdir=tdir)[0])
    return {name: pipeline.export_and_time(gens[who], os.path.join(edir, f"{name}.tflite"),
                                           latency_repeats, quantize)
            for name, who, quantize in EXPORTS}

  exports = _reused(workdir, "export", made_from, export_all, still_there=all(
      os.path.exists(os.path.join(edir, f"{n}.tflite")) for n in names))
  _done(s, ", ".join(f"{k} {v['file_size_bytes'] / 1024:.0f} KiB" for k, v in exports.items()))

  s = _stage(6, f"sample grids through the LiteRT interpreter -> {sdir}")
  classes = list(range(base.model.num_classes))[:10]
  grids = {}
  for name in ("teacher_fp32", "slim_fp32", "slim_int8"):
    path = os.path.join(edir, f"{name}.tflite")
    grid = export.sample_class_grid(export.open_generator(path), classes, 8, seed=0)
    grids[name] = images.save_grid(grid, os.path.join(sdir, f"{name}.png"), rows=len(classes))
  titles = {"teacher_fp32": "teacher (TFLite fp32)", "slim_fp32": "PPCD slim (TFLite fp32)",
            "slim_int8": "PPCD slim (TFLite int8)"}
  grids["side_by_side"] = images.save_side_by_side(
      [(grids[n], titles[n]) for n in titles], os.path.join(sdir, "side_by_side.png"))
  _done(s, " ".join(grids.values()))

  s = _stage(7, f"evaluate the teacher, the slim student and every TFLite export "
                f"({num_samples} samples each, the same latents)")
  extractor = f"classifier:{cdir}"
  stats_dir = os.path.join(workdir, "reference_stats")

  def evaluate_all():
    out = {"teacher": evaluate.evaluate_workdir(
               tdir, "ema", extractor, num_samples, stats_dir=stats_dir,
               out_dir=os.path.join(workdir, "eval", "teacher")),
           "slim": evaluate.evaluate_workdir(pdir, "slim", extractor, num_samples,
                                             stats_dir=stats_dir)}
    for name, who, _ in EXPORTS:
      out[name] = evaluate.evaluate_exported(
          os.path.join(edir, f"{name}.tflite"), tdir if who == "teacher" else pdir,
          extractor, num_samples, stats_dir=stats_dir,
          out_dir=os.path.join(workdir, "eval", name))
    return out

  evals = _reused(workdir, "evaluate", dict(made_from, exports=names), evaluate_all)
  ev_teacher, ev_student = evals["teacher"], evals["slim"]
  _done(s, ", ".join(f"{k} FID {v['fid']:.2f}" for k, v in evals.items()))

  s = _stage(8, "report")
  lat = {k: v["latency_ms_batch1"] for k, v in exports.items()}
  header = ("| model | runs as | params | MACs/image | FID | KID | class acc "
            "| TFLite ms (batch 1) | TFLite KiB |")
  lines = [header, "|" + "---|" * 9]
  for name, (who, runs_as) in REPORT_ROWS.items():
    ev, ex = evals[name], exports.get(name)
    ref = exports["teacher_fp32" if who == "teacher" else "slim_fp32"]
    macs = ref.get("macs_per_image", "")
    macs = f"{macs:,}" if isinstance(macs, int) else macs
    speed = (f"{lat[name]:.2f} | {ex['file_size_bytes'] / 1024:.0f}" if ex else "| ")
    lines.append(f"| {'teacher' if who == 'teacher' else 'PPCD slim'} | {runs_as} "
                 f"| {ref['params']:,} | {macs} | {ev['fid']:.2f} | {ev['kid_mean']:.3f} "
                 f"| {ev['class_accuracy']:.3f} | {speed} |")
  table = "\n".join(lines)
  result = {
      "config": config_path, "workdir": os.path.abspath(workdir),
      "teacher_dir": os.path.abspath(tdir), "teacher_package": teacher_info and {
          k: teacher_info[k] for k in ("command", "best_step", "best_fid", "steps_trained",
                                       "stopped_early")},
      "wall_seconds": round(time.time() - t0, 1),
      "teacher": ev_teacher, "student_slim": ev_student, "exports": exports,
      "evaluations": evals,
      "tflite_latency_ms_batch1": lat, "slim_report": {
          k: report[k] for k in ("params_before", "params_after", "param_reduction",
                                 "macs_before", "macs_after", "max_abs_diff")},
      "classifier_test_accuracy": acc, "grids": grids, "table": table,
  }
  checkpoints.write_json_atomic(os.path.join(workdir, "demo_report.json"), result)
  files.write_text_atomic(os.path.join(workdir, "demo_report.md"),
                                f"# PPCD demo ({config_path})\n\n{table}\n")
  print(table)
  print(f"\nParameters removed: {report['param_reduction']:.1%}; "
        f"FID teacher {ev_teacher['fid']:.2f} vs slim student {ev_student['fid']:.2f} "
        f"({num_samples} samples, classifier features).")
  print(f"Sample grids: {', '.join(grids.values())}")
  print(f"Class grids:  {ev_teacher['grid']}, {ev_student['grid']}")
  print(f"TensorBoard:  tensorboard --logdir={workdir}")
  print(f"Report:       {os.path.join(workdir, 'demo_report.md')} "
        f"(total {time.time() - t0:.0f}s)")
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from ppcd_tf import cli_errors
  with cli_errors.friendly_errors():
    f = flags.FLAGS
    run_demo(f.workdir, f.config, f.num_samples, f.latency_repeats, f.classifier_epochs,
             teacher_dir=f.teacher_dir)


if __name__ == "__main__":
  _define_flags()
  logging.set_verbosity(logging.WARNING)
  from ppcd_tf import cli_errors
  cli_errors.run(main)
