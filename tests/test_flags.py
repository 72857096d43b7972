"""Flag / config validation: every flagfile in configs/ parses and validates."""
import dataclasses
import glob
import json
import os
import tempfile

from absl import flags
from absl.testing import absltest, parameterized

from ppcd_tf import config as config_lib
from ppcd_tf import flags as ppcd_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGFILES = sorted(glob.glob(os.path.join(ROOT, "configs", "*.cfg")))


class FlagfileTest(parameterized.TestCase):

  def test_there_are_flagfiles(self):
    names = {os.path.basename(p) for p in FLAGFILES}
    self.assertContainsSubset({"imagenet128.cfg", "cifar10_32.cfg", "mnist32.cfg",
                               "mnist32_quick.cfg", "tiny_test.cfg"}, names)

  @parameterized.parameters(*FLAGFILES)
  def test_flagfile_validates(self, path):
    with open(path) as f:
      first = f.readline()
    self.assertTrue(first.startswith("# python -m ppcd_tf."),
                    f"{path}: first line must be the command that runs it")
    self.assertIn(f"--flagfile=configs/{os.path.basename(path)}", first)
    cfg = ppcd_flags.parse_flagfile(path)
    self.assertIsInstance(cfg, config_lib.Config)
    # The flagfile's command (first line) also validates with its extra flags.
    extra = [a for a in first.split()[3:] if a.startswith("--") and "flagfile" not in a]
    ppcd_flags.parse_flagfile(path, extra)

  def test_imagenet128_is_biggan(self):
    cfg = ppcd_flags.parse_flagfile(os.path.join(ROOT, "configs", "imagenet128.cfg"))
    m = cfg.model
    self.assertEqual((m.resolution, m.g_ch, m.z_dim, m.shared_dim, m.num_classes),
                     (128, 96, 120, 128, 1000))
    self.assertEqual(m.g_channel_mults, (16, 16, 8, 4, 2, 1))
    self.assertEqual(m.z_chunk_size, 20)
    self.assertEqual(m.g_attention_res, (64,))

  def test_defaults_are_embedded_mnist(self):
    fv = ppcd_flags.define_flags(flags.FlagValues())
    fv(["prog"])
    cfg = ppcd_flags.config_from_flags(fv)
    self.assertEqual(cfg.data.dataset, "mnist5k")
    self.assertEqual(cfg.model.resolution, 32)

  def test_round_trip_dict(self):
    cfg = config_lib.tiny_config()
    self.assertEqual(config_lib.Config.from_dict(cfg.to_dict()), cfg)

  def test_g_attention_widths_flag(self):
    fv = ppcd_flags.define_flags(flags.FlagValues())
    fv(["prog", "--g_channels=8,6,8,6,8,6,8", "--g_attention_widths=4,16"])
    model = ppcd_flags.config_from_flags(fv).model
    self.assertEqual(model.g_attention_widths, (4, 16))
    self.assertEqual(model.g_channels, (8, 6, 8, 6, 8, 6, 8))
    fv = ppcd_flags.define_flags(flags.FlagValues())
    fv(["prog"])
    self.assertEqual(ppcd_flags.config_from_flags(fv).model.g_attention_widths, ())

  def test_config_json_round_trip_of_g_attention_widths(self):
    from ppcd_tf import checkpoints
    cfg = config_lib.tiny_config(model=dict(g_channels=(3, 2, 5, 1, 4, 2, 6),
                                            g_attention_widths=(2, 8))).validate()
    with tempfile.TemporaryDirectory() as workdir:
      checkpoints.write_config(workdir, cfg)
      with open(checkpoints.config_path(workdir)) as f:
        self.assertEqual(json.load(f)["model"]["g_attention_widths"], [2, 8])
      self.assertEqual(checkpoints.read_config(workdir), cfg)
      # A config.json written before the field existed reads as () (C/8, C/2).
      old = cfg.to_dict()
      del old["model"]["g_attention_widths"]
      checkpoints.write_json_atomic(checkpoints.config_path(workdir), old)
      self.assertEqual(checkpoints.read_config(workdir).model.g_attention_widths, ())

  def test_g_attention_widths_is_an_architecture_field(self):
    from ppcd_tf import checkpoints
    teacher = config_lib.tiny_config().model
    slim = dataclasses.replace(teacher, g_channels=(3, 2, 5, 1, 4, 2, 6),
                               g_attention_widths=(2, 8))
    with self.assertRaisesRegex(config_lib.ConfigError,
                                r"g_attention_widths: \(\) in teacher vs \(2, 8\) here"):
      checkpoints.check_same_architecture(slim, teacher, "teacher")
    checkpoints.check_same_architecture(slim, teacher, "teacher",
                                        ignore=checkpoints.GENERATOR_WIDTH_FIELDS)

  def test_config_is_frozen(self):
    cfg = config_lib.tiny_config()
    with self.assertRaises(dataclasses.FrozenInstanceError):
      cfg.model.g_ch = 3  # type: ignore[misc]


class BadValueTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("target_zero", ["--target_fraction=0"], "target_fraction=0.0"),
      ("target_one", ["--target_fraction=1.5"], "target_fraction=1.5"),
      ("resolution_unknown", ["--resolution=256"], "resolution=256"),
      ("resolution_not_pow2", ["--resolution=48"], "resolution=48"),
      ("z_not_divisible", ["--z_dim=30"], "z_dim=30"),
      ("attention_res", ["--g_attention_res=7"], "g_attention_res=7"),
      ("channels", ["--image_channels=2"], "image_channels=2"),
      ("mults_len", ["--g_channel_mults=4,4"], "g_channel_mults=(4, 4)"),
      ("mults_not_int", ["--g_channel_mults=4,a,4,4"], "g_channel_mults=4,a,4,4"),
      ("downsample_bool", ["--d_downsample=1,x,0,0"], "'x' is not a bool"),
      ("ppcd_no_teacher", ["--mode=ppcd"], "--teacher_dir"),
      ("prune_after_end", ["--prune_end_step=10", "--prune_begin_step=20"], "begin_step=20"),
      ("lambda_negative", ["--lambda_att=-1"], "lambda_att=-1.0"),
      ("truncation", ["--truncation=-1"], "truncation=-1.0"),
      ("g_lr_inf", ["--g_lr=inf"], "g_lr=inf"),
      ("d_lr_nan", ["--d_lr=nan"], "d_lr=nan"),
      ("power_inf", ["--prune_power=inf"], "power=inf"),
      ("sparsity_inf", ["--sparsity_weight=inf"], "sparsity_weight=inf"),
      ("mask_lr_inf", ["--mask_lr_scale=inf"], "mask_lr_scale=inf"),
      ("cost_exponent_inf", ["--prune_cost_exponent=inf"], "cost_exponent=inf"),
      ("attention_widths_one", ["--g_attention_widths=2"], "g_attention_widths=(2,)"),
      ("attention_widths_zero", ["--g_attention_widths=0,8"], "g_attention_widths=(0, 8)"),
      ("attention_widths_not_int", ["--g_attention_widths=2,x"], "g_attention_widths=2,x"),
      ("attention_widths_no_attention", ["--g_attention_widths=2,8", "--g_attention_res="],
       "has no effect"),
  )
  def test_bad_value_names_it(self, argv, expected):
    fv = ppcd_flags.define_flags(flags.FlagValues())
    fv(["prog"] + argv)
    with self.assertRaisesRegex(config_lib.ConfigError, expected.replace("(", r"\(")
                                .replace(")", r"\)")):
      ppcd_flags.config_from_flags(fv)

  def test_absl_bound_names_flag(self):
    fv = ppcd_flags.define_flags(flags.FlagValues())
    with self.assertRaisesRegex(flags.IllegalFlagValueError, "batch_size"):
      fv(["prog", "--batch_size=0"])


if __name__ == "__main__":
  absltest.main()
