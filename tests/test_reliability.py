"""Reliability: checkpoint fallback, bad input at every entry point, determinism.

Crash safety with real SIGKILLed training processes is tests/test_crash_resume.py;
fuzzing of the data and sampling entry points is tests/test_fuzz.py.

Bad input is checked two ways: in-process (the library call an entry point makes,
under `friendly_errors`, catching SystemExit) and through the real command lines,
all run by one helper process (tests/cli_driver.py) so TensorFlow is imported once.
Every case must exit non-zero with one `error: ...` message (no traceback) and
leave the files already in the workdir untouched.
"""
import contextlib
import glob
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types

import numpy as np
import tensorflow as tf
from absl import flags
from absl.testing import absltest
from PIL import Image

from ppcd_tf import checkpoints
from ppcd_tf import cli_errors
from ppcd_tf import config as config_lib
from ppcd_tf import evaluate
from ppcd_tf import export
from ppcd_tf import flags as ppcd_flags
from ppcd_tf import slim
from ppcd_tf import train_lib
from ppcd_tf.generator import build_generator
from tests import tiny_runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TMP = None


def setUpModule():
  global _TMP
  _TMP = tempfile.mkdtemp(prefix="ppcd_reliability_")


def tearDownModule():
  shutil.rmtree(_TMP, ignore_errors=True)


def scratch(prefix):
  """A fresh directory under this module's temporary root (removed at the end)."""
  return tempfile.mkdtemp(prefix=prefix, dir=_TMP)


# ----------------------------------------------------------------------------- helpers
def user_error(fn, *args, **kwargs):
  """Runs fn under friendly_errors; returns (exit code, stderr). Fails if it returns."""
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    try:
      with cli_errors.friendly_errors():
        fn(*args, **kwargs)
    except SystemExit as e:
      return e.code, err.getvalue()
  raise AssertionError(f"{fn} did not fail")


def snapshot(root):
  """{relative path: sha256} of every file under root."""
  out = {}
  for d, _, files in os.walk(root):
    for f in files:
      path = os.path.join(d, f)
      with open(path, "rb") as fh:
        out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
  return out


def copy_of(src, name):
  dst = os.path.join(scratch("copy_"), name)
  shutil.copytree(src, dst)
  return dst


def truncate(path, size=None):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2 if size is None else size)


@contextlib.contextmanager
def file_size_limit(nbytes):
  """Writing past `nbytes` of any one file fails ("File too large"), as a full disk
  fails a write: RLIMIT_FSIZE for this process, with SIGXFSZ ignored so that the
  write returns the error instead of killing the process."""
  import resource
  import signal
  limit = resource.getrlimit(resource.RLIMIT_FSIZE)
  handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  hard = limit[1]
  resource.setrlimit(resource.RLIMIT_FSIZE,
                     (nbytes if hard == resource.RLIM_INFINITY else min(nbytes, hard), hard))
  try:
    yield
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, limit)
    signal.signal(signal.SIGXFSZ, handler)


class ReliabilityCase(absltest.TestCase):

  def assertUserError(self, result, code, *fragments):
    got, err = result
    self.assertEqual(got, code, err)
    # Warnings logged on the way (absl lines such as "W1203 16:16:50 ... trying an older
    # one") may precede the message; absl writes them to this stderr only once some
    # earlier test in the process has initialised absl logging. Nothing else may.
    lines = err.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("error: ")), None)
    self.assertIsNotNone(first, err)
    for line in lines[:first]:
      self.assertRegex(line, r"^[IWE]\d{4} \d\d:\d\d:\d\d", err)
    self.assertNotIn("Traceback", err)
    for fragment in fragments:
      self.assertIn(fragment, err)

  def assertIntact(self, root, before, new_files_under=()):
    """Every file in `before` is unchanged; new files only under `new_files_under`."""
    after = snapshot(root)
    for path, digest in before.items():
      self.assertEqual(after.get(path), digest, f"{path} was changed or removed")
    new = [p for p in after if p not in before and not p.startswith(new_files_under)]
    self.assertEqual(new, [], "unexpected new files")


# -------------------------------------------------------------- checkpoint fallback
class CheckpointFallbackTest(ReliabilityCase):
  """restore_latest / save_checkpoint / forget_unreadable on a 3-variable checkpoint."""

  def setUp(self):
    super().setUp()
    self.dir = os.path.join(scratch("ppcd_ckpt_"), "checkpoints")
    self.v = tf.Variable(np.zeros([64], np.float32))
    self.step = tf.Variable(0, dtype=tf.int64)
    self.ckpt = tf.train.Checkpoint(v=self.v, step=self.step)
    manager = tf.train.CheckpointManager(self.ckpt, self.dir, max_to_keep=3)
    for n in (1, 2, 3):
      self.v.assign(np.full([64], n, np.float32))
      self.step.assign(n)
      checkpoints.save_checkpoint(manager, n)
    self.prefix = {n: os.path.join(self.dir, f"ckpt-{n}") for n in (1, 2, 3)}

  def restore(self, expect_step, skipped_expected=()):
    self.v.assign(np.zeros([64], np.float32))
    skipped = []
    with self.assertLogs(level="WARNING") if skipped_expected else contextlib.nullcontext():
      prefix = checkpoints.restore_latest(self.ckpt, self.dir, skipped=skipped)
    self.assertEqual(prefix, self.prefix[expect_step])
    self.assertEqual(int(self.step.numpy()), expect_step)
    np.testing.assert_array_equal(self.v.numpy(), np.full([64], expect_step, np.float32))
    self.assertEqual(skipped, [self.prefix[n] for n in skipped_expected])
    return skipped

  def test_intact_restores_latest(self):
    self.restore(3)

  def test_truncated_data_falls_back_with_warning(self):
    truncate(self.prefix[3] + ".data-00000-of-00001")
    self.restore(2, skipped_expected=[3])

  def test_data_cut_by_a_few_bytes_falls_back(self):
    path = self.prefix[3] + ".data-00000-of-00001"
    truncate(path, os.path.getsize(path) - 4)
    self.restore(2, skipped_expected=[3])

  def test_deleted_index_falls_back(self):
    os.remove(self.prefix[3] + ".index")
    self.restore(2, skipped_expected=[3])

  def test_corrupt_index_and_data_fall_back_two_steps(self):
    with open(self.prefix[3] + ".index", "wb") as f:
      f.write(os.urandom(300))
    path = self.prefix[2] + ".data-00000-of-00001"
    with open(path, "r+b") as f:  # same size, wrong bytes: checksum mismatch
      f.write(os.urandom(os.path.getsize(path)))
    self.restore(1, skipped_expected=[3, 2])

  def test_nothing_readable_names_every_checkpoint(self):
    for n in (1, 2, 3):
      os.remove(self.prefix[n] + ".index")
    with self.assertRaises(checkpoints.CheckpointError) as cm:
      checkpoints.restore_latest(self.ckpt, self.dir)
    for n in (1, 2, 3):
      self.assertIn(self.prefix[n], str(cm.exception))
    self.assertUserError(user_error(checkpoints.restore_latest, self.ckpt, self.dir), 2,
                         f"no checkpoint in {self.dir} can be restored")

  def test_missing_or_damaged_state_file_uses_the_files_on_disk(self):
    state = os.path.join(self.dir, "checkpoint")
    for damage in (lambda: os.remove(state),
                   lambda: open(state, "w").write("garbage {{{"),
                   lambda: open(state, "w").close()):
      damage()
      self.assertEqual(checkpoints.all_checkpoints(self.dir),
                       [self.prefix[1], self.prefix[2], self.prefix[3]])
      self.restore(3)

  def test_forget_unreadable_moves_files_aside_and_repairs_state(self):
    truncate(self.prefix[3] + ".data-00000-of-00001")
    skipped = self.restore(2, skipped_expected=[3])
    moved = checkpoints.forget_unreadable(self.dir, skipped)
    self.assertEqual(sorted(os.path.basename(p) for p in moved),
                     ["ckpt-3.data-00000-of-00001", "ckpt-3.index"])
    self.assertEqual(sorted(os.listdir(os.path.join(self.dir, "unreadable"))),
                     ["ckpt-3.data-00000-of-00001", "ckpt-3.index"])
    self.assertEqual(checkpoints.all_checkpoints(self.dir), [self.prefix[1], self.prefix[2]])
    # A manager built now tracks (and sweeps) exactly the good checkpoints.
    manager = tf.train.CheckpointManager(self.ckpt, self.dir, max_to_keep=2)
    self.assertEqual(manager.latest_checkpoint, self.prefix[2])
    checkpoints.save_checkpoint(manager, 3)
    self.assertEqual(checkpoints.all_checkpoints(self.dir), [self.prefix[2], self.prefix[3]])
    self.assertFalse(os.path.exists(self.prefix[1] + ".index"))
    # Nothing to repair: no write at all.
    before = snapshot(self.dir)
    self.assertEqual(checkpoints.forget_unreadable(self.dir, []), [])
    self.assertEqual(snapshot(self.dir), before)

  def test_state_rebuilt_from_disk(self):
    os.remove(os.path.join(self.dir, "checkpoint"))
    checkpoints.forget_unreadable(self.dir, [])
    manager = tf.train.CheckpointManager(self.ckpt, self.dir, max_to_keep=3)
    self.assertEqual(manager.latest_checkpoint, self.prefix[3])
    self.assertEqual(manager.checkpoints, [self.prefix[1], self.prefix[2], self.prefix[3]])

  def test_checkpoint_that_does_not_read_back_is_not_published(self):
    manager = tf.train.CheckpointManager(self.ckpt, self.dir, max_to_keep=3)
    real = checkpoints._check_readable

    def failing(prefix):
      raise tf.errors.DataLossError(None, None, f"simulated bad disk under {prefix}")
    checkpoints._check_readable = failing
    try:
      with self.assertRaisesRegex(checkpoints.CheckpointError,
                                  "ckpt-4 was written but does not read back.*not made "
                                  "the latest"):
        checkpoints.save_checkpoint(manager, 4)
    finally:
      checkpoints._check_readable = real
    self.assertEqual(checkpoints.all_checkpoints(self.dir)[-1], self.prefix[3])
    self.restore(3)

  def test_what_a_kill_mid_save_leaves_is_ignored_and_cleaned(self):
    """Every intermediate state of a save of ckpt-4 killed part-way."""
    # 1. shards still in the temp dir; 2. an index being written; 3. a state file
    # being written; 4. a complete ckpt-4 whose state update never happened.
    os.makedirs(os.path.join(self.dir, "ckpt-4_temp"))
    with open(os.path.join(self.dir, "ckpt-4_temp", "part-00000-of-00001.data-00000-of-00001"),
              "wb") as f:
      f.write(b"\0" * 100)
    with open(os.path.join(self.dir, "ckpt-4.index.tempstate123"), "wb") as f:
      f.write(b"partial")
    with open(os.path.join(self.dir, "checkpoint.tmp0123abcd"), "w") as f:
      f.write('model_checkpoint_path: "ckpt-')
    for suffix in (".index", ".data-00000-of-00001"):
      shutil.copy(self.prefix[3] + suffix, os.path.join(self.dir, "ckpt-4" + suffix))
    self.restore(3)  # the published latest, not the unpublished ckpt-4
    removed = checkpoints.remove_stale_temp_files(self.dir)
    self.assertEqual(sorted(os.path.basename(p) for p in removed),
                     ["checkpoint.tmp0123abcd", "ckpt-4.index.tempstate123", "ckpt-4_temp"])
    self.assertTrue(os.path.exists(self.prefix[3] + ".index"))
    self.restore(3)

  def test_workdir_restore_wraps_truncation(self):
    """restore_objects_from_workdir (teachers, export, slim) also falls back."""
    wd = os.path.dirname(self.dir)
    truncate(self.prefix[3] + ".data-00000-of-00001")
    v = tf.Variable(np.zeros([64], np.float32))
    prefix, step = checkpoints.restore_objects_from_workdir(wd, v=v)
    self.assertEqual((prefix, step), (self.prefix[2], 2))


class DiskFullTest(ReliabilityCase):
  """A checkpoint write that fails (disk full) loses nothing already saved."""

  def test_failed_write_keeps_the_previous_checkpoint_and_leaves_nothing(self):
    d = scratch("ppcd_full_")
    v = tf.Variable(np.arange(200_000, dtype=np.float32))  # 800 kB of data
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=v), d, max_to_keep=3)
    checkpoints.save_checkpoint(manager, 1)
    v.assign_add(tf.ones_like(v))
    with file_size_limit(100_000):
      with self.assertRaisesRegex(checkpoints.CheckpointError,
                                  r"could not write checkpoint ckpt-2 in .*\(File too large\);"
                                  r" ckpt-1 is still the latest\. Free disk space"):
        checkpoints.save_checkpoint(manager, 2)
    self.assertEqual(os.path.basename(manager.latest_checkpoint), "ckpt-1")
    self.assertEqual(sorted(os.listdir(d)),
                     ["checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index"])
    fresh = tf.Variable(np.zeros(200_000, np.float32))
    tf.train.Checkpoint(v=fresh).restore(manager.latest_checkpoint).assert_consumed()
    np.testing.assert_array_equal(fresh.numpy(), np.arange(200_000, dtype=np.float32))
    # With room again, the same save succeeds.
    self.assertTrue(checkpoints.save_checkpoint(manager, 2).endswith("ckpt-2"))

  def test_training_stops_with_one_line_and_resumes_from_the_last_good_step(self):
    wd = copy_of(tiny_runs.teacher(), "disk_full")
    ckpt_dir = os.path.join(wd, "checkpoints")
    before = snapshot(ckpt_dir)
    trainer = train_lib.Trainer(tiny_runs.teacher_cfg(wd, num_steps=6))
    size = os.path.getsize(os.path.join(ckpt_dir, "ckpt-4.data-00000-of-00001"))
    with file_size_limit(size // 2):
      result = user_error(trainer.save, 6)  # what fit() calls at its next save
    self.assertUserError(result, 2, "could not write checkpoint ckpt-6", "File too large",
                         "ckpt-4 is still the latest", "rerun the same command to resume")
    self.assertEqual(snapshot(ckpt_dir), before)  # nothing saved was touched
    resumed = train_lib.Trainer(tiny_runs.teacher_cfg(wd, num_steps=6))
    self.assertEqual(resumed.resumed_from, os.path.join(ckpt_dir, "ckpt-4"))


class AtomicJsonTest(ReliabilityCase):

  def test_failed_write_keeps_the_old_file_and_leaves_no_temp(self):
    path = os.path.join(scratch("ppcd_json_"), "metrics.json")
    checkpoints.write_json_atomic(path, {"fid": 1.0})

    class Unprintable:
      def __str__(self):
        raise RuntimeError("disk full while writing")
    with self.assertRaisesRegex(RuntimeError, "disk full"):
      checkpoints.write_json_atomic(path, {"fid": 2.0, "z": Unprintable()})
    self.assertEqual(json.load(open(path)), {"fid": 1.0})
    self.assertEqual(os.listdir(os.path.dirname(path)), ["metrics.json"])


# ----------------------------------------------------------------- trainer recovery
class TrainerResumeFallbackTest(ReliabilityCase):

  def test_resume_skips_unreadable_checkpoints(self):
    for damage in ("truncate_data", "delete_index"):
      wd = copy_of(tiny_runs.teacher(), damage)
      ckpt4 = os.path.join(wd, "checkpoints", "ckpt-4")
      if damage == "truncate_data":
        truncate(ckpt4 + ".data-00000-of-00001")
      else:
        os.remove(ckpt4 + ".index")
      os.makedirs(os.path.join(wd, "checkpoints", "ckpt-5_temp"))  # a killed save
      with self.assertLogs(level="WARNING") as logs:
        trainer = train_lib.Trainer(tiny_runs.teacher_cfg(wd))
      self.assertEqual(int(trainer.step.numpy()), 2, damage)
      self.assertEqual(trainer.resumed_from, os.path.join(wd, "checkpoints", "ckpt-2"))
      self.assertTrue(any("ckpt-4 cannot be restored" in m for m in logs.output), logs.output)
      self.assertEqual(trainer.manager.latest_checkpoint,
                       os.path.join(wd, "checkpoints", "ckpt-2"))
      self.assertEqual([os.path.basename(p) for p in trainer.manager.checkpoints],
                       ["ckpt-2"])
      self.assertNotEmpty(glob.glob(os.path.join(wd, "checkpoints", "unreadable", "ckpt-4*")))
      self.assertFalse(os.path.exists(os.path.join(wd, "checkpoints", "ckpt-5_temp")))


# ------------------------------------------------------------------------ bad input
def _stub_strategy(replicas):
  """What Trainer reads before it refuses a batch: the replica count."""
  return types.SimpleNamespace(num_replicas_in_sync=replicas)


def _class_folder(root, classes, per_class=3, bad=None):
  for c in range(classes):
    os.makedirs(os.path.join(root, f"class{c}"))
    for i in range(per_class):
      Image.fromarray(np.full((8, 8, 3), (25 * c + i) % 256, np.uint8)).save(
          os.path.join(root, f"class{c}", f"{i}.png"))
  for path in bad or ():
    with open(os.path.join(root, path), "wb") as f:
      f.write(b"not an image")
  return root


class BadInputTest(ReliabilityCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.teacher = tiny_runs.teacher()

  def test_flag_values_exit_2_with_one_message(self):
    for argv, fragment in (
        (["--target_fraction=0"], "target_fraction=0.0 must be in (0, 1)"),
        (["--target_fraction=1.5"], "target_fraction=1.5 must be in (0, 1)"),
        (["--resolution=256"], "resolution=256 has no built-in architecture"),
        (["--mode=ppcd"], "mode=ppcd needs --teacher_dir"),
        (["--g_lr=nan"], "g_lr=nan"),
        (["--truncation=inf"], "truncation=inf"),
        (["--seed=4294967296"], "seed=4294967296 must be in [0, 2**31)"),
    ):
      fv = ppcd_flags.define_flags(flags.FlagValues())
      fv(["prog"] + argv)
      self.assertUserError(user_error(ppcd_flags.config_from_flags, fv), 2, fragment)

  def test_bad_reruns_leave_the_workdir_intact(self):
    wd = copy_of(self.teacher, "rerun")
    before = snapshot(wd)
    cfg = tiny_runs.teacher_cfg(wd)
    folder = _class_folder(scratch("ppcd_folder_"), classes=3)
    cases = (
        (lambda: cfg.replace(model=dict(g_ch=8)), {},
         ["the model in workdir", "g_ch: 4 in workdir", "vs 8 here"]),
        (lambda: tiny_runs.ppcd_cfg(wd, self.teacher), {},
         [f"workdir {wd} holds a --mode=teacher run; this is --mode=ppcd"]),
        (lambda: cfg.replace(model=dict(num_classes=7)), {},
         ["has 10 classes but --num_classes=7", "--num_classes=10"]),
        (lambda: cfg.replace(data=dict(dataset="folder:" + folder)), {},
         ["has 3 classes but --num_classes=10"]),
        (lambda: cfg, dict(strategy=_stub_strategy(3)),
         ["batch_size=4 is not divisible by the 3 replicas"]),
        (lambda: cfg.replace(pruning=dict(target_fraction=1.0)), {},
         ["target_fraction=1.0 must be in (0, 1)"]),
        (lambda: cfg.replace(model=dict(resolution=256)), {},
         ["resolution=256 has no built-in architecture"]),
        (lambda: cfg.replace(run=dict(workdir=os.path.join(wd, "config.json"))), {},
         ["config.json is a file, not a directory"]),
    )
    for make_cfg, kwargs, fragments in cases:
      self.assertUserError(user_error(lambda: train_lib.Trainer(make_cfg(), **kwargs)), 2,
                           *fragments)
      self.assertIntact(wd, before)

  def test_teacher_problems_are_caught_before_anything_is_written(self):
    root = scratch("ppcd_teacher_")
    masked = copy_of(self.teacher, "masked_student")
    cfg = json.load(open(os.path.join(masked, "config.json")))
    cfg["run"]["mode"] = "ppcd"
    json.dump(cfg, open(os.path.join(masked, "config.json"), "w"))
    empty = os.path.join(root, "no_checkpoints")
    os.makedirs(empty)
    shutil.copy(os.path.join(self.teacher, "config.json"), empty)
    student = os.path.join(root, "student")
    missing = os.path.join(root, "missing")
    for teacher_dir, overrides, fragments in (
        (missing, {}, [f"--teacher_dir={missing} does not exist"]),
        (self.teacher, dict(model=dict(g_ch=8)),
         [f"the model in teacher {self.teacher} does not match", "g_ch: 4 in teacher"]),
        (self.teacher, dict(model=dict(z_dim=40)), ["z_dim: 32 in teacher"]),
        (masked, {}, [f"--teacher_dir={masked} is a --mode=ppcd run"]),
        (empty, {}, [f"teacher {empty} holds no checkpoint"]),
        (root, {}, [f"{root}/config.json does not exist"]),
    ):
      cfg = tiny_runs.ppcd_cfg(student, teacher_dir, **overrides)
      self.assertUserError(user_error(lambda: train_lib.Trainer(cfg)), 2, *fragments)
      self.assertFalse(os.path.exists(student), "the student workdir was created")
    # --workdir = --teacher_dir: the teacher's workdir is not overwritten.
    same = tiny_runs.ppcd_cfg(self.teacher, self.teacher)
    before = snapshot(self.teacher)
    self.assertUserError(user_error(lambda: train_lib.Trainer(same)), 2,
                         "holds a --mode=teacher run; this is --mode=ppcd")
    self.assertIntact(self.teacher, before)

  def test_nan_loss_exits_1_and_keeps_the_checkpoints_and_config(self):
    wd = copy_of(self.teacher, "nan")
    before = snapshot(wd)
    # A rerun with an absurd learning rate (this run's flags win over the rates
    # stored in the checkpoint) diverges at its first step.
    cfg = tiny_runs.teacher_cfg(wd, num_steps=8).replace(optim=dict(g_lr=1e30, d_lr=1e30))
    trainer = train_lib.Trainer(cfg)
    self.assertEqual(int(trainer.step.numpy()), 4)
    self.assertEqual(float(trainer.g_opt.learning_rate.numpy()), np.float32(1e30))
    self.assertUserError(user_error(trainer.fit, progress=False), 1,
                         "at step 5: training diverged and was stopped without saving",
                         os.path.join(wd, "checkpoints", "ckpt-4"))
    self.assertIntact(wd, before, new_files_under=("train",))

  def test_unreadable_image_during_training_names_the_file(self):
    folder = _class_folder(scratch("ppcd_folder_"), classes=10,
                           per_class=2, bad=[f"class{c}/zz_bad.png" for c in range(10)])
    wd = os.path.join(scratch("ppcd_baddata_"), "run")
    cfg = tiny_runs.teacher_cfg(wd, num_steps=6).replace(
        data=dict(dataset="folder:" + folder, eval_fraction=0.0), run=dict(save_every=100))
    trainer = train_lib.Trainer(cfg)
    code, err = user_error(trainer.fit, progress=False)
    self.assertUserError((code, err), 2, "unreadable image file", "zz_bad.png",
                         "delete or replace it")
    self.assertEqual(checkpoints.all_checkpoints(os.path.join(wd, "checkpoints")), [])

  def test_evaluate_arguments(self):
    wd = self.teacher
    good = dict(workdir=wd, model="ema", extractor="classifier:x", num_samples=20, seed=0,
                truncation=0.0, out_dir=None)
    evaluate.check_args(**good)
    evaluate.check_args(**dict(good, truncation=0.5))
    for change, fragment in ((dict(workdir=wd + "_missing"), "does not exist"),
                             (dict(model="slim2"), "--model='slim2'"),
                             (dict(extractor="inception"), "--extractor='inception'"),
                             (dict(num_samples=5), "--num_samples=5"),
                             (dict(seed=-1), "--seed=-1"),
                             (dict(truncation=float("nan")), "--truncation=nan"),
                             (dict(truncation=1e-6), "--truncation=1e-06"),
                             (dict(truncation=5.0), "--truncation=5.0"),
                             (dict(out_dir=os.path.join(wd, "config.json")), "is a file")):
      self.assertUserError(user_error(evaluate.check_args, **dict(good, **change)), 2,
                           fragment)


# ------------------------------------------------------------------- command lines
class CommandLineTest(ReliabilityCase):
  """The real entry points (`python -m ...`), many cases in one helper process."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = scratch("ppcd_cli_")
    cls.teacher = tiny_runs.teacher()
    cls.workdir = copy_of(cls.teacher, "workdir")
    # SavedModels: a good one (an earlier export at --out) and damaged copies.
    g = build_generator(config_lib.tiny_config().model, name="generator")
    cls.good_sm = os.path.join(cls.tmp, "good_sm")
    export.export_saved_model(g, cls.good_sm)
    data = glob.glob(os.path.join(cls.good_sm, "variables", "variables.data-*"))[0]
    cls.damaged = {}
    for name, damage in (
        ("truncated_data", lambda d: truncate(data.replace(cls.good_sm, d))),
        ("missing_index", lambda d: os.remove(os.path.join(d, "variables",
                                                           "variables.index"))),
        ("garbage_pb", lambda d: open(os.path.join(d, "saved_model.pb"), "wb").write(
            os.urandom(2000))),
        ("empty_pb", lambda d: truncate(os.path.join(d, "saved_model.pb"), 0))):
      path = os.path.join(cls.tmp, name)
      shutil.copytree(cls.good_sm, path)
      damage(path)
      cls.damaged[name] = path
    # Slim model dirs (config.json + weights/ + saved_model/) with damaged weights.
    good_slim = os.path.join(cls.tmp, "good_slim")
    slim.save_slim_generator(g, good_slim)
    for name, pattern, damage in (("slim_no_index", "*.index", os.remove),
                                  ("slim_truncated", "*.data-*", truncate)):
      path = os.path.join(cls.tmp, name)
      shutil.copytree(good_slim, path)
      for f in glob.glob(os.path.join(path, "weights", pattern)):
        damage(f)
      cls.damaged[name] = path
    # Workdirs: one with a damaged config.json, one whose checkpoints are all truncated.
    cls.bad_config = copy_of(cls.teacher, "bad_config")
    with open(os.path.join(cls.bad_config, "config.json"), "w") as f:
      f.write('{"model": {"resolution": 32,')
    cls.all_truncated = copy_of(cls.teacher, "all_truncated")
    for path in glob.glob(os.path.join(cls.all_truncated, "checkpoints", "*.data-*")):
      truncate(path)
    # A workdir whose newest checkpoint (ckpt-9) holds a NaN in the EMA generator.
    cls.nan_workdir = copy_of(cls.teacher, "nan_checkpoint")
    g_nan, _ = slim.restore_trained_generator(workdir=cls.nan_workdir)
    kernel = g_nan.trainable_variables[0]
    values = kernel.numpy()
    values.flat[0] = np.nan
    kernel.assign(values)
    tf.train.CheckpointManager(tf.train.Checkpoint(
        ema_generator=g_nan, step=tf.Variable(9, dtype=tf.int64)), os.path.join(
        cls.nan_workdir, "checkpoints"), max_to_keep=5).save(checkpoint_number=9)
    cls.out_dir = os.path.join(cls.tmp, "out_dir")
    os.makedirs(cls.out_dir)
    cls.cases = cls._cases()
    cls.before = {name: snapshot(path) for name, path in (
        ("workdir", cls.workdir), ("good_sm", cls.good_sm), ("teacher", cls.teacher),
        ("nan_workdir", cls.nan_workdir))}
    cases_path = os.path.join(cls.tmp, "cases.json")
    results_path = os.path.join(cls.tmp, "results.json")
    with open(cases_path, "w") as f:
      json.dump([dict(module=m, argv=a) for _, m, a, _, _ in cls.cases], f)
    env = dict(os.environ, PYTHONPATH=ROOT, TF_USE_LEGACY_KERAS="1",
               TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")
    proc = subprocess.run([sys.executable, "-m", "tests.cli_driver", cases_path,
                           results_path], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
      raise AssertionError(f"cli_driver failed: {proc.stderr[-3000:]}")
    with open(results_path) as f:
      cls.results = {c[0]: r for c, r in zip(cls.cases, json.load(f))}

  @classmethod
  def _cases(cls):
    """(name, module, argv, exit code, fragments of stderr)."""
    tiny = ["--flagfile=" + os.path.join(ROOT, "configs", "tiny_test.cfg"),
            "--strategy=one_device"]
    wd, d, nan = cls.workdir, cls.damaged, cls.nan_workdir
    png = os.path.join(cls.tmp, "grid.png")
    out_tfl = os.path.join(cls.tmp, "x.tflite")
    missing = os.path.join(cls.tmp, "missing")
    return [
        ("train_target_fraction", "ppcd_tf.train",
         tiny + [f"--workdir={wd}", "--target_fraction=1.5"], 2,
         ["target_fraction=1.5 must be in (0, 1)"]),
        ("train_resolution", "ppcd_tf.train",
         tiny + [f"--workdir={wd}", "--resolution=512"], 2,
         ["resolution=512 has no built-in architecture"]),
        ("train_architecture_mismatch", "ppcd_tf.train",
         tiny + [f"--workdir={wd}", "--g_ch=8"], 2, ["g_ch: 4 in workdir", "vs 8 here"]),
        ("train_ppcd_without_teacher", "ppcd_tf.train",
         tiny + [f"--workdir={missing}", "--mode=ppcd"], 2, ["--teacher_dir=DIR"]),
        ("train_missing_teacher_dir", "ppcd_tf.train",
         tiny + [f"--workdir={missing}", "--mode=ppcd", f"--teacher_dir={missing}_t"], 2,
         [f"--teacher_dir={missing}_t does not exist"]),
        ("train_teacher_mismatch", "ppcd_tf.train",
         tiny + [f"--workdir={missing}", "--mode=ppcd", f"--teacher_dir={cls.teacher}",
                 "--shared_dim=8"], 2, ["shared_dim: 16 in teacher"]),
        ("train_class_count", "ppcd_tf.train",
         tiny + [f"--workdir={wd}", "--num_classes=5"], 2,
         ["has 10 classes but --num_classes=5"]),
        ("train_absl_bound", "ppcd_tf.train", tiny + [f"--workdir={wd}", "--batch_size=0"],
         2, ["flag --batch_size=0", "Pass --help"]),
        ("train_unknown_flag", "ppcd_tf.train", tiny + [f"--workdir={wd}", "--no_such=1"],
         2, ["Unknown command line flag 'no_such'"]),
        ("train_unknown_value", "ppcd_tf.train", tiny + [f"--workdir={wd}", "--mode=bogus"],
         2, ["--mode=bogus"]),
        ("train_missing_flagfile", "ppcd_tf.train", [f"--flagfile={missing}.cfg",
                                                     f"--workdir={wd}"], 2,
         ["Unable to open flagfile", f"{missing}.cfg"]),
        ("sample_nan_checkpoint", "tools.sample", [f"--model={nan}", f"--out={png}"], 2,
         ["ckpt-9 holds non-finite values", "--checkpoint="]),
        ("export_nan_checkpoint", "tools.export", [f"--model={nan}", f"--out={out_tfl}"], 2,
         ["ckpt-9 holds non-finite values"]),
        ("slim_nan_checkpoint", "tools.slim", [f"--workdir={nan}"], 2,
         ["ckpt-9 holds non-finite values"]),
        ("evaluate_nan_checkpoint", "ppcd_tf.evaluate",
         [f"--workdir={nan}", f"--extractor=classifier:{tiny_runs.classifier()}"], 2,
         ["ckpt-9 holds non-finite values"]),
        ("experiment_missing_config", "tools.experiment",
         [f"--workdir={missing}", f"--config={missing}.cfg"], 2,
         ["Unable to open flagfile", f"{missing}.cfg"]),
        ("experiment_unknown_run", "tools.experiment", [f"--workdir={missing}", "--only=x"],
         2, ["--only='x' is not a run"]),
        ("experiment_bad_seeds", "tools.experiment", [f"--workdir={missing}", "--seeds=a"],
         2, ["--seeds=a must be"]),
        ("tune_out_of_range", "tools.tune", [f"--workdir={missing}", "--max_trials=0"], 2,
         ["flag --max_trials=0"]),
        ("demo_missing_config", "tools.demo",
         [f"--workdir={missing}", f"--config={missing}.cfg"], 2,
         ["Unable to open flagfile", f"{missing}.cfg"]),
        ("demo_out_of_range", "tools.demo", [f"--workdir={missing}", "--num_samples=0"], 2,
         ["flag --num_samples=0"]),
        ("import_no_generator", "tools.import_biggan", [f"--out={missing}"], 2,
         ["--G is required"]),
        ("import_missing_file", "tools.import_biggan",
         [f"--G={missing}.pth", f"--D={missing}_D.pth", f"--out={missing}",
          "--flagfile=" + os.path.join(ROOT, "configs", "tiny_test.cfg")], 2,
         [f"{missing}.pth"]),
        ("sample_class_out_of_range", "tools.sample",
         [f"--model={wd}", "--classes=3,10", f"--out={png}"], 2,
         ["class id 10 is outside the valid range [0, 10)"]),
        ("sample_class_not_int", "tools.sample",
         [f"--model={wd}", "--classes=3,x", f"--out={png}"], 2, ["'x' is not an integer"]),
        ("sample_n", "tools.sample", [f"--model={wd}", "--n=0", f"--out={png}"], 2,
         ["n=0 must be >= 1"]),
        ("sample_out_is_dir", "tools.sample", [f"--model={wd}", f"--out={cls.out_dir}"], 2,
         [f"--out={cls.out_dir} is a directory"]),
        ("sample_missing_model", "tools.sample", [f"--model={missing}", f"--out={png}"], 2,
         [f"{missing}' does not exist"]),
        ("sample_truncated_data", "tools.sample",
         [f"--model={d['truncated_data']}", f"--out={png}"], 2,
         [d["truncated_data"], "truncated"]),
        ("sample_missing_index", "tools.sample",
         [f"--model={d['missing_index']}", f"--out={png}"], 2,
         [d["missing_index"], "not a readable SavedModel"]),
        ("sample_garbage_pb", "tools.sample", [f"--model={d['garbage_pb']}", f"--out={png}"],
         2, [d["garbage_pb"], "not a readable SavedModel"]),
        ("sample_empty_pb", "tools.sample", [f"--model={d['empty_pb']}", f"--out={png}"],
         2, [d["empty_pb"], "not a readable SavedModel"]),
        ("sample_slim_missing_weights", "tools.sample",
         [f"--model={d['slim_no_index']}", f"--out={png}"], 2,
         [d["slim_no_index"], "cannot be loaded"]),
        ("export_slim_truncated_weights", "tools.export",
         [f"--model={d['slim_truncated']}", f"--out={out_tfl}"], 2,
         [d["slim_truncated"], "cannot be loaded"]),
        ("export_truncated_data", "tools.export",
         [f"--model={d['truncated_data']}", "--format=saved_model", f"--out={cls.good_sm}"],
         2, [d["truncated_data"], "truncated"]),
        ("export_garbage_pb", "tools.export",
         [f"--model={d['garbage_pb']}", "--format=saved_model", f"--out={cls.good_sm}"],
         2, [d["garbage_pb"], "not a readable SavedModel"]),
        ("export_missing_index", "tools.export",
         [f"--model={d['missing_index']}", f"--out={out_tfl}"], 2,
         [d["missing_index"], "not a readable SavedModel"]),
        ("export_out_is_model", "tools.export",
         [f"--model={cls.good_sm}", "--format=saved_model", f"--out={cls.good_sm}"], 2,
         ["is the --model being exported"]),
        ("export_int8_no_batches", "tools.export",
         [f"--model={wd}", "--quantize=int8", "--representative_batches=0",
          f"--out={out_tfl}"], 2, ["--representative_batches=0 must be >= 1"]),
        ("export_int8_saved_model", "tools.export",
         [f"--model={cls.good_sm}", "--format=saved_model", "--quantize=int8",
          f"--out={cls.tmp}/x"], 2, ["--quantize=int8 applies to --format=tflite only"]),
        ("slim_no_flags", "tools.slim", [], 2, ["pass --workdir=DIR"]),
        ("slim_missing_workdir", "tools.slim", [f"--workdir={missing}"], 2,
         [f"--workdir={missing} does not exist"]),
        ("slim_bad_config", "tools.slim", [f"--workdir={cls.bad_config}"], 2,
         [os.path.join(cls.bad_config, "config.json"), "is not a valid ppcd_tf config"]),
        ("slim_bad_key", "tools.slim", [f"--workdir={wd}", "--generator_key=G"], 2,
         ["--generator_key='G' must be one of"]),
        ("slim_missing_checkpoint", "tools.slim",
         [f"--checkpoint={wd}/checkpoints/ckpt-99"], 2, ["ckpt-99.index does not exist"]),
        ("slim_all_checkpoints_truncated", "tools.slim", [f"--workdir={cls.all_truncated}"],
         2, ["can be restored", "ckpt-4", "ckpt-2"]),
        ("evaluate_truncation", "ppcd_tf.evaluate",
         [f"--workdir={wd}", "--extractor=classifier:x", "--truncation=nan"], 2,
         ["--truncation=nan must be 0"]),
        ("evaluate_missing_workdir", "ppcd_tf.evaluate",
         [f"--workdir={missing}", "--extractor=classifier:x"], 2,
         [f"--workdir={missing} does not exist"]),
        ("evaluate_missing_exported", "ppcd_tf.evaluate",
         [f"--workdir={wd}", "--extractor=classifier:x", f"--exported={missing}.tflite"], 2,
         [f"--exported={missing}.tflite does not exist"]),
        ("evaluate_no_teacher", "ppcd_tf.evaluate",
         [f"--workdir={wd}", "--model=teacher", "--extractor=classifier:x"], 2,
         ["has no teacher"]),
    ]

  def test_every_case_is_one_clear_error(self):
    for name, module, argv, code, fragments in self.cases:
      with self.subTest(name):
        r = self.results[name]
        self.assertIsNone(r["traceback"], f"{name}: {r['traceback']}")
        self.assertEqual(r["code"], code, f"{name}: {r['stderr'][-1500:]}")
        self.assertNotIn("Traceback", r["stderr"])
        if code == 2:
          self.assertTrue(r["stderr"].startswith("error: "), f"{name}: {r['stderr']}")
          self.assertEqual(r["stderr"].count("error: "), 1, r["stderr"])
        for fragment in fragments:
          self.assertIn(fragment, r["stderr"], name)

  def test_failed_commands_leave_artefacts_intact(self):
    for name, path in (("workdir", self.workdir), ("good_sm", self.good_sm),
                       ("teacher", self.teacher), ("nan_workdir", self.nan_workdir)):
      self.assertIntact(path, self.before[name])
    self.assertFalse(os.path.exists(os.path.join(self.tmp, "missing")))
    self.assertFalse(os.path.exists(os.path.join(self.tmp, "grid.png")))
    self.assertFalse(os.path.exists(os.path.join(self.tmp, "x.tflite")))


# ---------------------------------------------------------------------- determinism
class DeterminismTest(ReliabilityCase):

  def test_initial_weights_follow_the_seed(self):
    root = scratch("ppcd_seed_")
    weights = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
      cfg = tiny_runs.teacher_cfg(os.path.join(root, name)).replace(run=dict(seed=seed))
      t = train_lib.Trainer(cfg)
      weights.append([v.numpy() for v in t.G.variables + t.D.variables])
    for x, y in zip(weights[0], weights[1]):
      np.testing.assert_array_equal(x, y)
    self.assertFalse(all(np.array_equal(x, y) for x, y in zip(weights[0], weights[2])))

  # Two fresh PPCD runs in one process are bit-identical: the uninterrupted and the
  # resumed runs of tests/test_slim_finetune.py (every weight and Adam slot).

if __name__ == "__main__":
  absltest.main()
