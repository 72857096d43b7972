"""Importing a pytorch-pretrained-BigGAN release (ppcd_tf/biggan_import/pretrained.py):
a tiny random checkpoint in that format matches an independent NumPy reference of the
release's forward pass at two truncations, bad input is refused by name (exit 2 on the
command line), and a PPCD student of the imported generator-only teacher trains and
slims exactly."""
import json
import os
import tempfile

import numpy as np
from absl.testing import absltest

from ppcd_tf import biggan_import as bi, checkpoints, config as config_lib
from ppcd_tf import flags as ppcd_flags
from ppcd_tf.biggan_import import pretrained as pre
from ppcd_tf.generator import build_generator
from ppcd_tf.layers.truncation_batchnorm import release_statistics
from tests import pretrained_biggan_numpy_reference as ref

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMPORT_T = 0.415   # t / (1/50) = 20.75: rows 20 and 21, weights 0.75 / 0.25
RUN_T = 1.0        # the PPCD run distils at another truncation (row 50)


def write_release(directory, cfg, state, weights="pytorch_model.npz"):
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(cfg, f)
  if weights:
    np.savez(os.path.join(directory, weights), **state)
  return directory


def run_cli(module, argv):
  """`python -m module argv...` in this process (tests/cli_driver.py's runner: the
  module's flags are deleted afterwards); returns its {"code", "stderr", ...}."""
  from absl import app, flags
  import absl.logging  # noqa: F401  (its flags belong to the baseline)
  from tests.cli_driver import _run_case
  app.define_help_flags()
  try:
    return _run_case(module, argv, set(flags.FLAGS))
  finally:
    flags.FLAGS.unparse_flags()


def latents(t, n=3, seed=1):
  """The release's z = t * truncnorm(-2, 2) (clipping is enough for a test input)."""
  z = np.clip(np.random.default_rng(seed).normal(size=(n, 8)), -2, 2)
  return (t * z).astype(np.float32), np.array([0, 4, 9][:n], np.int32)


class PretrainedImportTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(prefix="ppcd_pretrained_")
    cls.cfg_json, cls.state = ref.tiny_config(), ref.random_release(ref.tiny_config())
    cls.release = write_release(os.path.join(cls.root, "release"), cls.cfg_json, cls.state)
    cls.teacher = os.path.join(cls.root, "teacher")
    cls.summary = bi.import_pretrained_teacher(
        cls.teacher, cls.release, config_lib.tiny_config(), truncation=IMPORT_T, step=7)
    cls.model = checkpoints.read_config(cls.teacher).model
    cls.g = build_generator(cls.model, name="t", init="glorot", truncation_tables=True)
    checkpoints.restore_objects_from_workdir(cls.teacher, ema_generator=cls.g)

  def _reference(self, t, z, y):
    one_hot = np.eye(self.cfg_json["num_classes"])[y]
    return ref.forward(self.state, self.cfg_json, z, one_hot, t).transpose(0, 2, 3, 1)

  def test_matches_the_numpy_reference_at_two_truncations(self):
    # As written: the import truncation's statistics, without select_truncation.
    z, y = latents(IMPORT_T)
    np.testing.assert_allclose(self.g((z, y), training=False).numpy(),
                               self._reference(IMPORT_T, z, y), atol=1e-4)
    outputs = {}
    for t in (IMPORT_T, RUN_T):
      self.g.select_truncation(t)
      outputs[t] = self.g((z, y), training=False).numpy()
      np.testing.assert_allclose(outputs[t], self._reference(t, z, y), atol=1e-4)
    # The statistics matter: the same z at the other truncation's statistics differs.
    self.assertGreater(np.abs(outputs[IMPORT_T] - outputs[RUN_T]).max(), 1e-2)
    self.g.select_truncation(IMPORT_T)

  def test_the_release_statistics_rule_is_reproduced_as_is(self):
    means = np.arange(51 * 2, dtype=np.float32).reshape(51, 2)
    variances = means + 1
    mean, var = release_statistics(means, variances, IMPORT_T)
    # modf(20.75) = (0.75, 20): row 20 * 0.75 + row 21 * 0.25 (reversed weights).
    np.testing.assert_allclose(mean, means[20] * 0.75 + means[21] * 0.25, rtol=1e-6)
    np.testing.assert_allclose(var, variances[20] * 0.75 + variances[21] * 0.25, rtol=1e-6)
    for t, row in ((0.4, 20), (1.0, 50), (0.02, 1)):
      np.testing.assert_array_equal(release_statistics(means, variances, t)[0], means[row])
    for bad in (0.0, 1.01):
      with self.assertRaises(ValueError):
        release_statistics(means, variances, bad)

  def test_workdir_config_and_summary(self):
    m = self.model
    self.assertEqual((m.arch, m.resolution, m.g_ch, m.g_channel_mults, m.g_attention_res),
                     ("biggan_deep", 64, 4, (16, 8, 4, 2, 1), (16,)))
    self.assertEqual((m.z_dim, m.shared_dim, m.bn_eps, m.sn_eps, m.bn_stats),
                     (8, 8, 1e-4, 1e-4, 51))
    self.assertEqual((m.g_sn_mode, m.latent, m.latent_truncation),
                     ("frozen", "scaled_truncnorm", IMPORT_T))
    self.assertIsNone(self.summary["discriminator"])
    self.assertEqual(self.summary["ema_generator"]["tensors"], len(self.state))
    self.assertEqual(self.summary["step"], 7)
    self.assertEqual(self.summary["verify_max_abs_diff"], 0.0)
    # model.cfg gives exactly the teacher's model (what a PPCD run passes).
    flagfile = os.path.join(self.teacher, bi.MODEL_FLAGFILE)
    parsed = ppcd_flags.parse_flagfile(os.path.join(REPO, "configs", "tiny_test.cfg"),
                                       [f"--flagfile={flagfile}"])
    checkpoints.check_same_architecture(parsed.model, m, "the import")

  def test_strict_errors_name_the_tensor(self):
    rc = bi.ReleaseConfig.from_dict(self.cfg_json)
    key = "generator.layers.2.conv_1.weight_orig"
    cases = {
        "missing tensor.*" + key: {k: v for k, v in self.state.items() if k != key},
        "unexpected tensor.*generator.extra": dict(self.state, **{
            "generator.extra": np.zeros(2, np.float32)}),
        r"wrong shape.*" + key + r" \(1, 2\)": dict(self.state, **{
            key: np.zeros((1, 2), np.float32)}),
    }
    for pattern, state in cases.items():
      with self.assertRaisesRegex(bi.BigGANImportError, pattern):
        pre.check_release_state(rc, state, "w.npz")
    # Through the whole import, from files: nothing is written.
    bad = write_release(os.path.join(self.root, "bad"), self.cfg_json, cases[
        "missing tensor.*" + key])
    out = os.path.join(self.root, "bad_out")
    with self.assertRaisesRegex(bi.BigGANImportError, "1 missing tensor"):
      bi.import_pretrained_teacher(out, bad, config_lib.tiny_config())
    self.assertFalse(os.path.exists(out))
    unsupported = dict(self.cfg_json, attention_layer_position=3)  # after a non-up block
    with self.assertRaisesRegex(bi.BigGANImportError, "does not upsample"):
      bi.ReleaseConfig.from_dict(unsupported).check()

  def test_command_line_errors_exit_2(self):
    no_weights = write_release(os.path.join(self.root, "no_weights"), self.cfg_json, {},
                               weights=None)
    shape = dict(self.state, **{"embeddings.weight": np.zeros((8, 3), np.float32)})
    wrong = write_release(os.path.join(self.root, "wrong"), self.cfg_json, shape)
    out = os.path.join(self.root, "cli_out")
    cases = [(no_weights, "lacks pytorch_model.bin or pytorch_model.npz"),
             (wrong, r"embeddings.weight \(8, 3\) \(expected \(8, 10\)\)")]
    results = [run_cli("tools.import_biggan", ["--format=pretrained_biggan", f"--G={g}",
                                               f"--out={out}"]) for g, _ in cases]
    for (_, message), result in zip(cases, results):
      self.assertEqual(result["code"], 2, result)
      self.assertIsNone(result["traceback"])
      self.assertRegex(result["stderr"], "error: .*" + message)
    self.assertFalse(os.path.exists(out))

  def test_ppcd_student_trains_without_teacher_d_and_slims_exactly(self):
    from ppcd_tf import flops, slim as slim_lib, train_lib
    flagfile = os.path.join(self.teacher, bi.MODEL_FLAGFILE)
    wd = os.path.join(self.root, "ppcd")
    cfg = ppcd_flags.parse_flagfile(os.path.join(REPO, "configs", "tiny_test.cfg"), [
        f"--flagfile={flagfile}", f"--latent_truncation={RUN_T}", "--mode=ppcd",
        f"--teacher_dir={self.teacher}", f"--workdir={wd}", "--strategy=one_device",
        "--num_steps=3", "--d_warmup_steps=1", "--prune_begin_step=1",
        "--prune_end_step=2", "--noprune_slim_finetune", "--save_every=3",
        "--sample_every=1000"])
    trainer = train_lib.Trainer(cfg)
    self.assertFalse(trainer.teacher_has_d)
    # The teacher distils with the run's truncation's statistics (not the import's) ...
    bn = trainer.teacher_G.final_bn
    np.testing.assert_array_equal(bn.moving_mean.numpy(), release_statistics(
        self.state["generator.bn.running_means"], self.state["generator.bn.running_vars"],
        RUN_T)[0])
    # ... and matches the release there (the student started as this teacher: the
    # trainer checked it within 1e-5).
    z, y = latents(RUN_T)
    np.testing.assert_allclose(trainer.teacher_G((z, y), training=False).numpy(),
                               self._reference(RUN_T, z, y), atol=1e-4)
    summary = trainer.fit(progress=False)
    self.assertEqual(summary["step"], 3)
    self.assertTrue(np.isfinite(summary["losses"]["g_adv"]))
    # slim == masked: the pruned student's dense copy computes the same function.
    masked = trainer.G_ema
    slim = slim_lib.slim_generator(masked)
    self.assertLess(slim_lib.verify_slim(masked, slim), 1e-5)
    self.assertLess(flops.count_generator(masked).total_params,
                    flops.generator_cost(masked.model_cfg).total_params)


if __name__ == "__main__":
  absltest.main()
