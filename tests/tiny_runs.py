"""Tiny trained artefacts shared by the test modules of one pytest process.

Training even the tiny config costs a TensorFlow trace (tens of seconds on 2
cores), so the teacher, PPCD student and metrics classifier are trained once per
process, on first use, into one temporary directory.
"""
import os
import tempfile

from ppcd_tf import config as config_lib
from ppcd_tf import tiny

_ROOT = None
_PACKAGED = None


def root() -> str:
  global _ROOT
  if _ROOT is None:
    _ROOT = tempfile.mkdtemp(prefix="ppcd_tiny_runs_")
  return _ROOT


teacher_cfg = tiny.teacher_config


def ppcd_cfg(workdir: str, teacher_dir: str, **overrides) -> config_lib.Config:
  """A 6-step PPCD student. It keeps the masked G to the end (--noprune_slim_finetune):
  the switch to the slim G retraces the step, about 15 s a run; the tests of the
  switch (test_slim_finetune, test_precision, test_crash_resume, the demo and
  experiment end-to-end tests) turn it on."""
  parts = dict(run=dict(workdir=workdir, mode="ppcd", strategy="one_device"),
               distill=dict(teacher_dir=teacher_dir),
               optim=dict(batch_size=4, num_steps=6),
               pruning=dict(begin_step=0, end_step=3, frequency=1, target_fraction=0.81,
                            slim_finetune=False))
  for k, v in overrides.items():
    parts[k] = {**parts.get(k, {}), **v}
  return config_lib.tiny_config(**parts)


def teacher() -> str:
  """Workdir of a 4-step tiny teacher."""
  return tiny.teacher(os.path.join(root(), "teacher"))


def student() -> str:
  """Workdir of a 6-step tiny PPCD student of `teacher()` (pixel term off)."""
  from ppcd_tf import train_lib
  wd = os.path.join(root(), "ppcd")
  if not os.path.exists(os.path.join(wd, "train_summary.json")):
    train_lib.train(ppcd_cfg(wd, teacher(), distill=dict(lambda_pix=0.0)), progress=False)
  return wd


def classifier() -> str:
  """Directory of a 1-epoch mnist5k classifier (features for metrics tests)."""
  return tiny.classifier(os.path.join(root(), "classifier"))


def teacher_flagfile() -> str:
  """A tiny teacher flagfile evaluated every step that stops at its second evaluation
  (patience 1 and a 99% threshold: the second evaluation cannot qualify)."""
  path = os.path.join(root(), "plateau_teacher.cfg")
  if not os.path.exists(path):
    with open(path, "w") as f:
      f.write("--flagfile=configs/tiny_test.cfg\n--strategy=one_device\n--num_steps=6\n"
              "--eval_every=1\n--eval_num_samples=20\n--early_stop_evals=1\n"
              "--early_stop_min_delta=0.99\n--save_every=1\n"
              f"--stats_dir={os.path.join(root(), 'stats')}\n")
  return path


def packaged_teacher():
  """(workdir, package dir, training summary) of a tiny teacher trained to its
  plateau by tools/train_teacher and packaged by ppcd_tf.teacher_asset."""
  global _PACKAGED
  if _PACKAGED is None:
    from ppcd_tf import teacher_asset
    from tools import train_teacher
    workdir = os.path.join(root(), "plateau_teacher")
    out = os.path.join(root(), "assets", "teacher")
    summary = train_teacher.train_until_plateau(teacher_flagfile(), workdir, classifier(), 1,
                                                progress=False)
    teacher_asset.package_teacher(workdir, out, "the command", teacher_flagfile(),
                                  extra_info=dict(note=1))
    _PACKAGED = (workdir, out, summary)
  return _PACKAGED
