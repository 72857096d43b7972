"""Crash safety: a PPCD run SIGKILLed at several points resumes to the same state.

Real `python -m ppcd_tf.train` processes on the tiny config (6 steps, a checkpoint
every step, pruning events at steps 0-3, the switch to the slim generator at step 4,
keep 3 checkpoints):

  reference  one uninterrupted run (runs alongside the others).
  crashed    1. killed inside the save of ckpt-2, after its files are written and
                verified, before it is published (the PPCD_TF_TEST_PUBLISH_DELAY
                hook of train_lib holds the process in that window);
             2. rerun, killed at a seeded-random moment just after ckpt-3 is
                published (during step 4 or 5 or a save; the hook holds the
                process at ckpt-5 so the kill always lands before the run ends);
             3. the newest published checkpoint is then truncated (disk trouble)
                and leftovers of a killed save are planted; the rerun must skip the
                damaged checkpoint with a warning, resume from the one before and
                finish.

The final checkpoints of both runs must hold exactly the same values: step,
weights, masks (pruning state), EMA weights and optimiser slots. The latents are
stateless in (seed, step) and the data stream is replayed, so nothing else is
needed for that.
"""
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import absltest

from ppcd_tf import checkpoints
from ppcd_tf import train_lib
from tests import tiny_runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 6
_TMP = None


def setUpModule():
  global _TMP
  _TMP = tempfile.mkdtemp(prefix="ppcd_crash_")


def tearDownModule():
  shutil.rmtree(_TMP, ignore_errors=True)


def _start(workdir, teacher, **env):
  argv = [sys.executable, "-m", "ppcd_tf.train",
          "--flagfile=" + os.path.join(ROOT, "configs", "tiny_test.cfg"),
          "--mode=ppcd", f"--teacher_dir={teacher}", f"--workdir={workdir}",
          "--strategy=one_device", f"--num_steps={NUM_STEPS}", "--save_every=1",
          "--keep_checkpoints=3", "--prune_end_step=3", "--prune_frequency=1",
          "--sample_every=100", "--log_every=100", "--seed=7"]
  full_env = dict(os.environ, PYTHONPATH=ROOT, TF_USE_LEGACY_KERAS="1",
                  TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="3")
  full_env.pop(train_lib.TEST_PUBLISH_DELAY_ENV, None)
  full_env.update(env)
  log_path = os.path.join(_TMP, f"{os.path.basename(workdir)}_{time.time_ns()}.log")
  with open(log_path, "w") as log:
    proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=log,
                            stderr=subprocess.STDOUT, text=True)
  proc.log_path = log_path
  return proc


def _latest(workdir):
  state = tf.train.get_checkpoint_state(os.path.join(workdir, "checkpoints"))
  return os.path.basename(state.model_checkpoint_path) if state else None


def _wait_for(proc, condition, what, timeout=240.0):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if condition():
      return
    if proc.poll() is not None:
      raise AssertionError(f"training exited ({proc.returncode}) before {what}:\n"
                           + open(proc.log_path).read()[-3000:])
    time.sleep(0.02)
  proc.kill()
  raise AssertionError(f"timed out waiting for {what}")


def _kill(proc):
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=60)
  assert proc.returncode == -signal.SIGKILL, proc.returncode


def _finish(proc):
  proc.wait(timeout=300)
  log = open(proc.log_path).read()
  assert proc.returncode == 0, log[-3000:]
  return log


def _values(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


@pytest.mark.slow
class CrashResumeTest(absltest.TestCase):

  def test_killed_runs_resume_to_the_uninterrupted_state(self):
    teacher = tiny_runs.teacher()
    ref_dir = os.path.join(_TMP, "reference")
    crash_dir = os.path.join(_TMP, "crashed")
    ckpt_dir = os.path.join(crash_dir, "checkpoints")
    reference = _start(ref_dir, teacher)

    # 1. Killed between writing ckpt-2 and publishing it.
    proc = _start(crash_dir, teacher, PPCD_TF_TEST_PUBLISH_DELAY="2:120")
    _wait_for(proc, lambda: os.path.exists(os.path.join(ckpt_dir, "ckpt-2.index")),
              "ckpt-2 was written")
    time.sleep(0.3)
    _kill(proc)
    self.assertEqual(_latest(crash_dir), "ckpt-1")  # ckpt-2 was never published
    self.assertTrue(os.path.exists(os.path.join(ckpt_dir, "ckpt-2.index")))

    # 2. Killed at a seeded-random moment after ckpt-3 is published.
    proc = _start(crash_dir, teacher, PPCD_TF_TEST_PUBLISH_DELAY="5:120")
    _wait_for(proc, lambda: _latest(crash_dir) in ("ckpt-3", "ckpt-4"),
              "ckpt-3 was published")
    time.sleep(random.Random(0).uniform(0.0, 0.3))
    _kill(proc)
    latest = _latest(crash_dir)
    self.assertIn(latest, ("ckpt-3", "ckpt-4"))
    published = [os.path.basename(p) for p in checkpoints.all_checkpoints(ckpt_dir)]

    # 3. Disk trouble on the newest checkpoint + leftovers of a killed save.
    data = os.path.join(ckpt_dir, latest + ".data-00000-of-00001")
    with open(data, "r+b") as f:
      f.truncate(os.path.getsize(data) // 3)
    os.makedirs(os.path.join(ckpt_dir, "ckpt-9_temp"))
    log = _finish(_start(crash_dir, teacher))
    self.assertIn(f"{latest} cannot be restored", log)
    previous = published[published.index(latest) - 1]
    self.assertIn(f"Resumed from {os.path.join(ckpt_dir, previous)}", log)
    self.assertNotEmpty(glob.glob(os.path.join(ckpt_dir, "unreadable", latest + ".*")))
    self.assertFalse(os.path.exists(os.path.join(ckpt_dir, "ckpt-9_temp")))

    _finish(reference)
    final = f"ckpt-{NUM_STEPS}"
    self.assertEqual(_latest(ref_dir), final)
    self.assertEqual(_latest(crash_dir), final)
    want = _values(os.path.join(ref_dir, "checkpoints", final))
    got = _values(os.path.join(ckpt_dir, final))
    self.assertEqual(sorted(got), sorted(want))
    names = " ".join(want)
    # The run switched to the slim generator after its last pruning event (step 3):
    # its last checkpoint holds the slim G, EMA and G optimizer.
    for part in ("step", "ema_generator", "g_optimizer", "d_optimizer"):
      self.assertIn(part, names)
    self.assertNotIn("alive", names)
    switch = [open(os.path.join(d, "slim_switch.json")).read() for d in (ref_dir, crash_dir)]
    self.assertEqual(switch[0], switch[1])
    self.assertEqual(json.loads(switch[0])["step"], 4)
    for name in want:
      np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    self.assertEqual(int(got["step/.ATTRIBUTES/VARIABLE_VALUE"]), NUM_STEPS)


if __name__ == "__main__":
  absltest.main()
