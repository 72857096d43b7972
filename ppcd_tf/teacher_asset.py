"""A trained teacher as a small, checksummed directory that ships with the repo.

`package_teacher(workdir, out_dir, ...)` turns a teacher run that evaluated its
FID during training (`--eval_every`, usually with `--early_stop_evals`) into

    out_dir/
      config.json           the run's config (a teacher workdir: --teacher_dir=out_dir)
      checkpoints/          one checkpoint, the best evaluation's (G, EMA G, D and
                            both Adam states, so a student can start from them)
      teacher.json          how it was made: command, flagfile, stop rule, the FID
                            curve (every evaluation), best step, wall time, load
      fid_curve.png         the curve, best step marked
      SHA256SUMS            sha256 of every file above (`sha256sum -c` format)

`verify_teacher_asset(out_dir)` checks the checksums; `tools/experiment.py` and
`make demo` call it before they use the shipped teacher.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Tuple

from ppcd_tf import checkpoints
from ppcd_tf import early_stop
from ppcd_tf import files

__all__ = ["package_teacher", "verify_teacher_asset", "check_teacher_dir", "read_teacher_info",
           "AssetError", "CHECKSUM_FILE", "INFO_FILE"]

CHECKSUM_FILE = "SHA256SUMS"
INFO_FILE = "teacher.json"
CURVE_FILE = "fid_curve.png"
_CURVE_KEYS = ("fid", "kid_mean", "intra_fid", "class_accuracy", "is_mean", "num_samples")


class AssetError(checkpoints.CheckpointError):
  """A shipped teacher is missing, incomplete, or does not match its checksums."""


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _listed_files(root: str) -> List[str]:
  out = []
  for folder, _, names in os.walk(root):
    for name in names:
      rel = os.path.relpath(os.path.join(folder, name), root)
      if rel != CHECKSUM_FILE:
        out.append(rel)
  return sorted(out)


def _write_checksums(root: str) -> None:
  lines = [f"{_sha256(os.path.join(root, rel))}  {rel}\n" for rel in _listed_files(root)]
  with open(os.path.join(root, CHECKSUM_FILE), "w") as f:
    f.writelines(lines)


def verify_teacher_asset(root: str) -> Dict:
  """Checks every file of a packaged teacher against SHA256SUMS; returns teacher.json.

  Raises:
    AssetError: a file is missing, extra, or its sha256 differs (names the file).
  """
  sums_path = os.path.join(root, CHECKSUM_FILE)
  if not os.path.exists(sums_path):
    raise AssetError(f"{root} is not a packaged teacher ({CHECKSUM_FILE} is missing); "
                     "restore it with `git checkout -- {root}` or rebuild it with "
                     "python -m tools.train_teacher.")
  expected = {}
  with open(sums_path) as f:
    for line in f:
      digest, rel = line.rstrip("\n").split("  ", 1)
      expected[rel] = digest
  found = set(_listed_files(root))
  missing = sorted(set(expected) - found)
  extra = sorted(found - set(expected))
  bad = sorted(rel for rel in set(expected) & found
               if _sha256(os.path.join(root, rel)) != expected[rel])
  if missing or extra or bad:
    parts = [f"{label}: {', '.join(v)}" for label, v in
             (("missing", missing), ("not listed", extra), ("changed", bad)) if v]
    raise AssetError(f"packaged teacher {root} does not match {CHECKSUM_FILE} ("
                     f"{'; '.join(parts)}); restore it with `git checkout -- {root}` or "
                     "rebuild it with python -m tools.train_teacher.")
  return read_teacher_info(root)


def check_teacher_dir(path: str) -> Tuple[Optional[Dict], int]:
  """(teacher.json or None, step) of a teacher directory given to a tool.

  A packaged teacher (it has SHA256SUMS) is verified first and its best step
  returned; any other teacher workdir gives its latest checkpoint's step.
  """
  if os.path.exists(os.path.join(path, CHECKSUM_FILE)):
    info = verify_teacher_asset(path)
    return info, info["best_step"]
  return None, checkpoints.restore_objects_from_workdir(path)[1]


def read_teacher_info(root: str) -> Dict:
  with open(os.path.join(root, INFO_FILE)) as f:
    return json.load(f)


def _plot_curve(curve: List[Dict], best_step: int, path: str, title: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 3.5))
  ax.plot([c["step"] for c in curve], [c["fid"] for c in curve], "o-", ms=3)
  best = next(c for c in curve if c["step"] == best_step)
  ax.plot([best_step], [best["fid"]], "r*", ms=12, label=f"shipped: step {best_step}, "
          f"FID {best['fid']:.2f}")
  ax.set_xlabel("training step")
  ax.set_ylabel(f"FID ({curve[0].get('num_samples', '?')} samples)")
  ax.set_yscale("log")
  ax.grid(True, which="both", alpha=0.3)
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  try:
    files.write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
  finally:
    plt.close(fig)


def _stop_text(info: Dict) -> str:
  rule = info["stop_rule"]
  if not info["stopped_early"]:
    return f"trained to the {rule['max_steps']:,}-step cap"
  return (f"stopped: no {rule['early_stop_min_delta']:.0%} gain in "
          f"{rule['early_stop_evals']} evaluations")


def package_teacher(workdir: str, out_dir: str, command: str, flagfile: Optional[str] = None,
                    extra_info: Optional[Dict] = None) -> Dict:
  """Writes the best evaluation of teacher run `workdir` as a shippable directory.

  Args:
    workdir: a --mode=teacher workdir trained with --eval_every (it holds
      eval/step_*.json and best/, see `ppcd_tf.train_lib`).
    out_dir: the package directory (replaced atomically).
    command: the command that produced the run, recorded in teacher.json.
    flagfile: the flagfile it used; its text is recorded too.
    extra_info: more JSON-ready facts for teacher.json (wall time, machine load).

  Returns:
    The teacher.json dict.

  Raises:
    AssetError: the workdir has no evaluations or no best checkpoint.
  """
  best_dir = os.path.join(workdir, "best")
  cfg = checkpoints.read_config(workdir)
  history = early_stop.read_eval_history(workdir)
  if not history:
    raise AssetError(f"{workdir} has no evaluations in {early_stop.eval_dir(workdir)}; "
                     "train it with --eval_every (python -m tools.train_teacher).")
  best_step, best_fid = early_stop.best_evaluation(history)
  prefix = os.path.join(checkpoints.checkpoint_dir(best_dir), f"ckpt-{best_step}")
  if not os.path.exists(prefix + ".index"):
    raise AssetError(f"{prefix} (the best evaluation's checkpoint) is missing; rerun "
                     "python -m tools.train_teacher to resume and save it.")
  summary_path = os.path.join(workdir, "train_summary.json")
  summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {}
  r = cfg.run
  info = dict(
      command=command,
      flagfile=flagfile,
      flagfile_text=open(flagfile).read() if flagfile and os.path.exists(flagfile) else None,
      stop_rule=dict(eval_every=r.eval_every, eval_num_samples=r.eval_num_samples,
                     early_stop_evals=r.early_stop_evals,
                     early_stop_min_delta=r.early_stop_min_delta,
                     max_steps=cfg.optim.num_steps),
      stopped_early=bool(summary.get("stopped_early")),
      steps_trained=int(summary.get("step", history[-1]["step"])),
      best_step=best_step, best_fid=best_fid,
      fid_curve=[dict(step=h["step"], **{k: h[k] for k in _CURVE_KEYS if k in h})
                 for h in history],
      eval_extractor=r.eval_extractor,
      precision=r.precision,
      **(extra_info or {}))
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".teacher-", dir=parent)
  try:
    shutil.copy(checkpoints.config_path(best_dir), checkpoints.config_path(tmp))
    ckpt_out = checkpoints.checkpoint_dir(tmp)
    os.makedirs(ckpt_out)
    folder, name = os.path.split(prefix)
    for part in [name + ".index"] + sorted(
        p for p in os.listdir(folder) if p.startswith(name + ".data-")):
      shutil.copy(os.path.join(folder, part), ckpt_out)
    with open(os.path.join(ckpt_out, "checkpoint"), "w") as f:  # the state file
      f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
    files.write_json_atomic(os.path.join(tmp, INFO_FILE), info)
    _plot_curve(info["fid_curve"], best_step, os.path.join(tmp, CURVE_FILE),
                f"teacher {os.path.basename(os.path.normpath(out_dir))}: FID during "
                f"training ({_stop_text(info)})")
    _write_checksums(tmp)
    checkpoints.replace_dir(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return info
