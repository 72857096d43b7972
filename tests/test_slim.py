"""Slimming: masked PP-Res generator -> dense generator with the same function."""
import dataclasses
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import absltest, parameterized

from ppcd_tf import config as config_lib
from ppcd_tf import flops
from ppcd_tf import slim as slim_lib
from ppcd_tf.generator import build_generator, slim_architecture
from ppcd_tf.layers import spectral_norm_layers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def model_at(resolution):
  if resolution == 32:
    return config_lib.tiny_config().model
  return config_lib.ModelConfig(resolution=64, num_classes=5, g_ch=2, d_ch=2, z_dim=20,
                                shared_dim=8, g_attention_res=(32,), d_attention_res=(32,))


def trained_masked_generator(cfg, seed=0, prune=True):
  """A masked G with non-trivial BN statistics, SN vectors, attention and masks.

  The random pruning pattern prunes the stem mask, and the out mask of the block
  that carries self-attention keeps exactly one channel.
  """
  g = build_generator(cfg, masked=True)
  rng = np.random.RandomState(seed)
  z = rng.standard_normal((8, cfg.z_dim)).astype(np.float32)
  y = rng.randint(0, cfg.num_classes, 8).astype(np.int32)
  for _ in range(3):
    g((z, y), training=True)
  for block in g.blocks:
    if block.attention is not None:
      block.attention.gamma.assign(0.7)
  if prune:
    attention_block = next(i for i, b in enumerate(g.blocks) if b.attention is not None)
    for name, mask in g.masks:
      n = mask.num_channels
      keep = 1 if name == f"block{attention_block}/out" else rng.randint(1, n)
      mask.prune(rng.choice(n, n - keep, replace=False))
    assert g.stem_mask.num_alive() < g.channels.stem
  return g


class SlimTest(parameterized.TestCase):

  @parameterized.parameters((32, 0), (32, 1), (64, 0))
  def test_slim_equals_masked(self, resolution, seed):
    g = trained_masked_generator(model_at(resolution), seed=seed)
    slim = slim_lib.slim_generator(g)
    self.assertFalse(slim.masked)
    self.assertEqual(slim.sn_mode, "frozen")
    self.assertEqual(slim.channels, g.live_channels())
    self.assertLessEqual(slim_lib.verify_slim(g, slim, num_batches=3, batch=4), 1e-5)
    # Parameters: the analytic live count is exactly the slim model's trainable count.
    trainable = int(sum(np.prod(v.shape) for v in slim.trainable_variables))
    self.assertEqual(flops.count_generator(g).total_params, trainable)
    self.assertEqual(flops.count_generator(slim), flops.count_generator(g))
    self.assertLess(trainable, flops.generator_cost(g.model_cfg).total_params)

  @parameterized.parameters(32, 64)
  def test_slim_architecture_builds_the_slim_generator_from_scratch(self, resolution):
    # The block carrying attention keeps 1 output channel, so C/8, C/2 of the slim
    # width (1, 1) differ from the kept teacher widths: g_attention_widths matters.
    g = trained_masked_generator(model_at(resolution))
    slim = slim_lib.slim_generator(g, name="generator")
    arch = slim_architecture(g.model_cfg, g.live_channels())
    arch.validate()
    scratch = build_generator(arch, init="N02")
    self.assertEqual(scratch.channels, slim.channels)
    trainable = int(sum(np.prod(v.shape) for v in scratch.trainable_variables))
    self.assertEqual(trainable, flops.count_generator(slim).total_params)
    self.assertEqual(flops.count_generator(scratch), flops.count_generator(slim))
    self.assertEqual([(v.name, v.shape) for v in scratch.variables],
                     [(v.name, v.shape) for v in slim.variables])
    scratch.set_weights(slim.get_weights())  # same structure, weight for weight
    # Without the attention widths the from-scratch model is another architecture.
    derived = build_generator(dataclasses.replace(arch, g_attention_widths=()), init="N02")
    self.assertNotEqual(flops.count_generator(derived).total_params, trainable)

  def test_renormalising_the_sliced_kernels_would_not_match(self):
    # Why the slim model freezes sigma: with fresh power iteration on the sliced
    # kernels the function changes.
    g = trained_masked_generator(model_at(32))
    slim = slim_lib.slim_generator(g)
    renormalised = build_generator(g.model_cfg, channels=slim.channels)
    renormalised.set_weights(slim.get_weights())
    for _ in range(20):  # let u converge to the sliced kernels' singular vectors
      for layer in spectral_norm_layers(renormalised):
        layer.spectral_sigma(training=True)
    self.assertGreater(slim_lib.verify_slim(g, renormalised), 1e-3)

  def test_unmasked_generator_slims_to_itself(self):
    cfg = model_at(32)
    g = build_generator(cfg)
    slim = slim_lib.slim_generator(g)
    self.assertEqual(slim.channels, g.channels)
    self.assertLessEqual(slim_lib.verify_slim(g, slim), 1e-6)

  def test_save_load_keras_and_saved_model(self):
    g = trained_masked_generator(model_at(32), seed=2)
    slim = slim_lib.slim_generator(g)
    z = tf.random.normal([3, g.model_cfg.z_dim])
    y = tf.constant([0, 4, 9], tf.int32)
    want = slim((z, y), training=False).numpy()
    with tempfile.TemporaryDirectory() as d:
      slim_lib.save_slim_generator(slim, d)
      loaded = slim_lib.load_slim_generator(d)
      self.assertEqual(loaded.get_config(), slim.get_config())
      np.testing.assert_array_equal(loaded((z, y), training=False).numpy(), want)
      serving = tf.saved_model.load(os.path.join(d, "saved_model"))
      got = serving.signatures["serving_default"](z=z, y=y)["images"].numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    self.assertLessEqual(slim_lib.verify_slim(g, loaded), 1e-5)

  def test_slim_and_report(self):
    g = trained_masked_generator(model_at(32), seed=3)
    with tempfile.TemporaryDirectory() as d:
      report = slim_lib.slim_and_report(g, d)
      with open(os.path.join(d, "slim_report.json")) as f:
        on_disk = json.load(f)
      self.assertTrue(os.path.isdir(os.path.join(d, "saved_model")))
    self.assertEqual(on_disk["params_after"], report["params_after"])
    self.assertEqual(report["params_before"], 22596)
    self.assertEqual(report["params_after"], flops.live_params(g))
    self.assertEqual(report["macs_after"], flops.live_macs(g))
    self.assertLessEqual(report["max_abs_diff"], 1e-5)
    self.assertEqual(report["channels"]["stem"],
                     {"kept": g.stem_mask.num_alive(), "total": 16})
    self.assertEqual(report["channels"]["block1/out"]["kept"], 1)

  def test_failed_rewrite_keeps_the_previous_slim_dir(self):
    g = trained_masked_generator(model_at(32), seed=4)
    root = tempfile.mkdtemp()
    out = os.path.join(root, "slim")
    first = slim_lib.slim_and_report(g, out)
    z = tf.random.normal([2, g.model_cfg.z_dim])
    y = tf.constant([1, 2], tf.int32)
    want = slim_lib.load_slim_generator(out)((z, y), training=False).numpy()

    def broken(*args, **kwargs):
      raise OSError("disk full")
    real, slim_lib.export_saved_model = slim_lib.export_saved_model, broken
    try:
      with self.assertRaisesRegex(OSError, "disk full"):
        slim_lib.slim_and_report(trained_masked_generator(model_at(32), seed=5), out)
    finally:
      slim_lib.export_saved_model = real
    self.assertEqual(sorted(os.listdir(root)), ["slim"])  # no temporary left behind
    np.testing.assert_array_equal(
        slim_lib.load_slim_generator(out)((z, y), training=False).numpy(), want)
    with open(os.path.join(out, "slim_report.json")) as f:
      self.assertEqual(json.load(f)["params_after"], first["params_after"])

  def test_damaged_slim_dir_is_a_clear_error(self):
    from ppcd_tf import checkpoints
    g = slim_lib.slim_generator(trained_masked_generator(model_at(32), seed=7))
    for damage in ("truncate_weights", "config_not_json", "config_wrong_width"):
      d = os.path.join(tempfile.mkdtemp(), "slim")
      slim_lib.save_slim_generator(g, d)
      if damage == "truncate_weights":
        data = [p for p in os.listdir(os.path.join(d, "weights")) if ".data-" in p][0]
        path = os.path.join(d, "weights", data)
        with open(path, "r+b") as f:
          f.truncate(os.path.getsize(path) // 3)
      else:
        with open(os.path.join(d, "config.json")) as f:
          text = f.read()
        if damage == "config_not_json":
          text = text[:len(text) // 2]
        else:
          config = json.loads(text)
          config["generator"]["channels"]["stem"] += 1
          text = json.dumps(config)
        with open(os.path.join(d, "config.json"), "w") as f:
          f.write(text)
      with self.assertRaisesRegex(checkpoints.CheckpointError,
                                  "cannot be loaded.*tools.slim"):
        slim_lib.load_slim_generator(d)

  def test_refuses_to_replace_a_directory_that_is_not_a_slim_generator(self):
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "notes.txt"), "w") as f:
      f.write("keep me")
    g = trained_masked_generator(model_at(32), seed=6)
    with self.assertRaisesRegex(config_lib.ConfigError, "not a slim generator"):
      slim_lib.slim_and_report(g, d)
    self.assertEqual(os.listdir(d), ["notes.txt"])

  @pytest.mark.slow
  def test_slim_tool_on_a_training_workdir(self):
    cfg = config_lib.tiny_config(run=dict(mode="ppcd"), distill=dict(teacher_dir="t"))
    g = trained_masked_generator(cfg.model, seed=4)
    with tempfile.TemporaryDirectory() as workdir:
      with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(cfg.to_dict(), f)
      manager = tf.train.CheckpointManager(
          tf.train.Checkpoint(step=tf.Variable(7, dtype=tf.int64), ema_generator=g),
          os.path.join(workdir, "checkpoints"), 2)
      manager.save()
      restored, prefix = slim_lib.restore_trained_generator(workdir=workdir)
      self.assertEqual(prefix, manager.latest_checkpoint)
      self.assertEqual(restored.live_channels(), g.live_channels())
      env = dict(os.environ, PYTHONPATH=ROOT)
      proc = subprocess.run(
          [sys.executable, "-m", "tools.slim", f"--workdir={workdir}"], cwd=ROOT,
          env=env, capture_output=True, text=True, timeout=300)
      self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
      self.assertIn("max abs diff", proc.stdout)
      with open(os.path.join(workdir, "slim", "slim_report.json")) as f:
        report = json.load(f)
    self.assertEqual(report["params_after"], flops.live_params(g))
    self.assertLessEqual(report["max_abs_diff"], 1e-5)


if __name__ == "__main__":
  absltest.main()
