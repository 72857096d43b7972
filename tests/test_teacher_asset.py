"""tools/train_teacher + ppcd_tf.teacher_asset: train to the plateau, package, verify."""
import json
import os
import shutil
import tempfile
import unittest

import numpy as np
import tensorflow as tf

from ppcd_tf import checkpoints, teacher_asset
from ppcd_tf.generator import build_generator
from tests import tiny_runs
from tools import train_teacher


def _sample(workdir: str, cfg) -> np.ndarray:
  m = cfg.model
  g = build_generator(m, masked=False)
  z = tf.random.stateless_normal([3, m.z_dim], seed=[4, 5])
  y = tf.constant([0, 4, 9])
  g((z, y), training=False)
  checkpoints.restore_objects_from_workdir(workdir, ema_generator=g)
  return g((z, y), training=False).numpy()


class TrainTeacherTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.root = tempfile.mkdtemp()
    cls.workdir, cls.out, cls.summary = tiny_runs.packaged_teacher()
    cls.flagfile = tiny_runs.teacher_flagfile()
    cls.info = teacher_asset.read_teacher_info(cls.out)

  def test_stopped_at_the_plateau_and_logged(self):
    # Patience 1 and a 99% threshold: the second evaluation cannot qualify.
    self.assertTrue(self.summary["stopped_early"])
    self.assertEqual(self.summary["step"], 2)
    self.assertEqual(self.summary["evaluations"], 2)
    fids = [json.load(open(os.path.join(self.workdir, "eval", f"step_{s:06d}.json")))["fid"]
            for s in (1, 2)]
    self.assertEqual(self.summary["best_eval_step"], 1 + int(np.argmin(fids)))
    self.assertEqual(self.summary["best_fid"], min(fids))
    self.assertEqual(checkpoints.read_config(os.path.join(self.workdir, "best")).run.mode,
                     "teacher")
    log = json.load(open(os.path.join(self.workdir, "train_teacher_log.json")))
    self.assertEqual((log[0]["from_step"], log[0]["to_step"]), (0, 2))
    self.assertEqual(len(log[0]["load_average_before"]), 3)

  def test_package_records_the_curve_and_best(self):
    info = teacher_asset.verify_teacher_asset(self.out)
    self.assertEqual(info, self.info)
    fids = [c["fid"] for c in info["fid_curve"]]
    self.assertEqual([c["step"] for c in info["fid_curve"]], [1, 2])
    self.assertEqual(info["best_fid"], min(fids))
    self.assertEqual(info["best_step"], 1 + int(np.argmin(fids)))
    self.assertEqual(info["command"], "the command")
    self.assertIn("--early_stop_evals=1", info["flagfile_text"])
    self.assertTrue(info["stopped_early"])
    self.assertEqual(info["note"], 1)
    self.assertTrue(os.path.getsize(os.path.join(self.out, "fid_curve.png")) > 1000)
    names = sorted(os.listdir(os.path.join(self.out, "checkpoints")))
    self.assertEqual(names[0], "checkpoint")
    self.assertTrue(all(n.startswith(f"ckpt-{info['best_step']}.") for n in names[1:]))

  def test_package_samples_as_the_best_checkpoint(self):
    cfg = checkpoints.read_config(self.out)
    best = _sample(os.path.join(self.workdir, "best"), cfg)
    np.testing.assert_array_equal(_sample(self.out, cfg), best)
    _, step = checkpoints.restore_objects_from_workdir(
        self.out, ema_generator=build_generator(cfg.model, masked=False))
    self.assertEqual(step, self.info["best_step"])

  def test_checksums_catch_changes(self):
    copy = os.path.join(self.root, "copy")
    shutil.copytree(self.out, copy)
    data = [n for n in os.listdir(os.path.join(copy, "checkpoints")) if ".data-" in n][0]
    path = os.path.join(copy, "checkpoints", data)
    raw = bytearray(open(path, "rb").read())
    raw[len(raw) // 2] ^= 1
    open(path, "wb").write(bytes(raw))
    with self.assertRaisesRegex(teacher_asset.AssetError, f"changed: checkpoints/{data}"):
      teacher_asset.verify_teacher_asset(copy)
    open(os.path.join(copy, "extra.txt"), "w").write("x")
    os.remove(os.path.join(copy, "fid_curve.png"))
    with self.assertRaisesRegex(teacher_asset.AssetError,
                                "missing: fid_curve.png; not listed: extra.txt"):
      teacher_asset.verify_teacher_asset(copy)
    os.remove(os.path.join(copy, teacher_asset.CHECKSUM_FILE))
    with self.assertRaisesRegex(teacher_asset.AssetError, "SHA256SUMS is missing"):
      teacher_asset.verify_teacher_asset(copy)

  def test_rerun_trains_nothing_more(self):
    again = train_teacher.train_until_plateau(
        self.flagfile, self.workdir, tiny_runs.classifier(), 1, progress=False)
    self.assertEqual(again["step"], 2)

  def test_package_needs_evaluations(self):
    with self.assertRaisesRegex(teacher_asset.AssetError, "has no evaluations"):
      teacher_asset.package_teacher(tiny_runs.teacher(), os.path.join(self.root, "x"), "c")


if __name__ == "__main__":
  unittest.main()
