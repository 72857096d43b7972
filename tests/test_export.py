"""Export: SavedModel / TFLite (fp32, float16, dynamic, int8) match Keras, no training state.

One tiny generator (32 px, width 4 -> 16 channels, 10 classes) with non-trivial
BatchNorm statistics, spectral-norm `u` vectors and attention gamma is exported
once per format in `setUpClass`; the tests then check the files.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf
import tf_keras
from absl.testing import absltest

from ppcd_tf import checkpoints
from ppcd_tf import config as config_lib
from ppcd_tf import export
from ppcd_tf import slim
from ppcd_tf.generator import build_generator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINING_STATE = ("mask", "score", "alive", "optimizer", "adam", "sn_u")


def tiny_model_config():
  return config_lib.tiny_config().model


def trained_like(generator, seed=0):
  """Gives BN statistics, biases, attention gamma and SN `u` non-default values.

  A freshly built generator has zero BN means, unit variances, zero biases and
  gamma = 0 (attention off), which would hide export bugs in those paths.
  """
  rng = np.random.default_rng(seed)
  cfg = generator.model_cfg
  for _ in range(2):  # training-mode calls update BN statistics and SN u / sigma
    z = rng.standard_normal((4, cfg.z_dim)).astype(np.float32)
    y = rng.integers(0, cfg.num_classes, 4).astype(np.int32)
    generator((z, y), training=True)
  for v in generator.variables:
    name, shape = v.name, v.shape
    if "moving_mean" in name:
      v.assign(rng.normal(0, 0.1, shape).astype(np.float32))
    elif "moving_variance" in name:
      v.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))
    elif "attention/gamma" in name:
      v.assign(0.5)
    elif name.endswith("bias:0") and "/gain/" not in name and "/bias/" not in name:
      v.assign(rng.normal(0, 0.05, shape).astype(np.float32))
  return generator


def random_prune(generator, seed=0, keep=0.5):
  """Prunes a random ~half of every mask's channels (at least one stays)."""
  rng = np.random.default_rng(seed)
  for _, mask in generator.masks:
    n = mask.num_channels
    alive = (rng.uniform(size=n) < keep).astype(np.float32)
    alive[rng.integers(n)] = 1.0
    mask.set_alive(alive)


def fixed_batch(spec, batch, seed=1):
  rng = np.random.default_rng(seed)
  z = rng.standard_normal((batch, spec.z_dim)).astype(np.float32)
  y = rng.integers(0, spec.num_classes, batch).astype(np.int32)
  return z, y


def tflite_tensor_names(path):
  from ai_edge_litert.interpreter import Interpreter
  return [t["name"] for t in Interpreter(model_path=path).get_tensor_details()]


def forbidden(names):
  return [n for n in names if any(s in n.lower() for s in TRAINING_STATE)
          or n.lower().startswith("ema") or "/ema" in n.lower()]


class ExportTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    tf.random.set_seed(0)
    cls.tmp = tempfile.mkdtemp(prefix="test_export_")
    # Named like the training EMA model on purpose: the export must not carry it.
    cls.G = trained_like(build_generator(tiny_model_config(), name="ema_generator"))
    cls.spec = export.GeneratorSpec.from_model_config(cls.G.model_cfg)
    cls.sm_dir = os.path.join(cls.tmp, "sm")
    cls.sm_report = export.export_saved_model(cls.G, cls.sm_dir)
    cls.tfl, cls.tfl_reports = {}, {}
    for q in export.QUANTIZATIONS:
      path = os.path.join(cls.tmp, f"g_{q}.tflite")
      cls.tfl_reports[q] = export.export_tflite(cls.G, path, quantize=q,
                                                representative_batches=8)
      cls.tfl[q] = path

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)
    super().tearDownClass()

  def keras(self, z, y):
    return self.G((z, y), training=False).numpy()

  # ---- SavedModel ----
  def test_saved_model_reload_matches_keras(self):
    loaded = tf.saved_model.load(self.sm_dir)
    fn = loaded.signatures["serving_default"]
    self.assertEqual(set(fn.structured_input_signature[1]), {"z", "class_id"})
    for batch in (1, 5):  # dynamic batch
      z, y = fixed_batch(self.spec, batch)
      got = fn(z=tf.constant(z), class_id=tf.constant(y))["image"].numpy()
      self.assertEqual(got.shape, (batch, 32, 32, 3))
      self.assertLessEqual(np.abs(got - self.keras(z, y)).max(), 1e-5)
    info = {k: int(v.numpy()) for k, v in loaded.model_info().items()}
    self.assertEqual(info, self.spec.to_dict())

  def test_saved_model_has_no_training_state(self):
    names = [v.name for v in tf.saved_model.load(self.sm_dir).variables]
    self.assertNotEmpty(names)
    self.assertEqual(forbidden(names), [])
    self.assertEqual(export.training_state_names(names), [])
    self.assertTrue(all(n.startswith("generator/") for n in names), names[:3])
    self.assertTrue(any("sn_sigma" in n for n in names))  # frozen spectral norm
    self.assertTrue(any("moving_variance" in n for n in names))  # BN statistics

  def test_saved_model_json(self):
    with open(os.path.join(self.sm_dir, "export.json")) as f:
      meta = json.load(f)
    self.assertEqual(meta, json.loads(json.dumps(self.sm_report)))
    self.assertEqual(meta["format"], "saved_model")
    self.assertEqual(meta["params"], 22596)  # test_models' hand count
    self.assertLessEqual(meta["max_abs_diff"], 1e-5)
    self.assertIn("mean_abs_diff", meta)
    self.assertGreater(meta["file_size_bytes"], 0)
    self.assertEqual(meta["signature"]["inputs"][0], {"name": "z", "dtype": "float32",
                                                      "shape": [-1, 32]})
    self.assertEqual(meta["signature"]["outputs"][0]["shape"], [-1, 32, 32, 3])
    self.assertEqual(meta["versions"]["tensorflow"], tf.__version__)

  # ---- TFLite ----
  def run_tflite(self, q, batch):
    z, y = fixed_batch(self.spec, batch)
    got = export.TFLiteRunner(self.tfl[q])(z, y)
    return got, self.keras(z, y)

  def test_tflite_fp32_matches(self):
    got, ref = self.run_tflite("none", 4)
    self.assertLessEqual(np.abs(got - ref).max(), 1e-4)

  def test_tflite_float16_matches(self):
    got, ref = self.run_tflite("float16", 4)
    self.assertLessEqual(np.abs(got - ref).max(), 5e-3)
    self.assertGreater(self.tfl_reports["float16"]["quantization_details"]
                       ["tensor_dtypes"].get("float16", 0), 0)

  def test_tflite_dynamic_range_matches_on_average(self):
    got, ref = self.run_tflite("dynamic", 4)
    self.assertLessEqual(np.abs(got - ref).mean(), 5e-2)

  def test_tflite_int8_is_quantized_and_in_range(self):
    got, ref = self.run_tflite("int8", 4)
    self.assertTrue(np.isfinite(got).all())
    self.assertLessEqual(np.abs(got).max(), 1.0)
    self.assertLess(np.abs(got - ref).mean(), 0.25)  # loose: a sanity bound only
    details = self.tfl_reports["int8"]["quantization_details"]
    for op in ("CONV_2D", "FULLY_CONNECTED"):
      self.assertEqual(list(details["ops"][op]), ["int8"], op)
    # The attention core stays float32 (export.INT8_FLOAT_OPS), nothing else does.
    self.assertEqual(details["keep_float_ops"], ["BATCH_MATMUL", "SOFTMAX"])
    self.assertEqual(details["ops"]["BATCH_MATMUL"], {"float32": 2})
    self.assertEqual(details["ops"]["SOFTMAX"], {"float32": 1})
    self.assertEqual(details["float_compute_ops"], ["BATCH_MATMUL", "SOFTMAX"])
    # DEQUANTIZE: theta, phi, g into the float core and the image out; QUANTIZE: z
    # and the attended values back to int8 (plus int8 -> int8 rescales).
    self.assertEqual(details["ops"]["DEQUANTIZE"], {"int8->float32": 4})
    self.assertEqual(details["ops"]["QUANTIZE"]["float32->int8"], 2)
    # The interface stays float32 z / int32 class_id / float32 image.
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=self.tfl["int8"])
    dtypes = {d["name"]: np.dtype(d["dtype"]).name for d in interp.get_input_details()}
    self.assertEqual(sorted(dtypes.values()), ["float32", "int32"])
    self.assertEqual(np.dtype(interp.get_output_details()[0]["dtype"]).name, "float32")
    self.assertLess(self.tfl_reports["int8"]["file_size_bytes"],
                    self.tfl_reports["none"]["file_size_bytes"])

  def test_tflite_int8_fully_integer_on_request(self):
    """keep_float_ops=() quantises the attention core too (integer-only hardware)."""
    path = os.path.join(self.tmp, "g_int8_full.tflite")
    report = export.export_tflite(self.G, path, quantize="int8", representative_batches=8,
                                  keep_float_ops=())
    details = report["quantization_details"]
    self.assertEqual(details["keep_float_ops"], [])
    for op in ("CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX"):
      self.assertEqual(list(details["ops"][op]), ["int8"], op)
    self.assertEqual(details["float_compute_ops"], [])
    self.assertEqual(details["ops"]["DEQUANTIZE"], {"int8->float32": 1})
    got, ref = export.TFLiteRunner(path)(*fixed_batch(self.spec, 4)), self.keras(
        *fixed_batch(self.spec, 4))
    self.assertLess(np.abs(got - ref).mean(), 0.25)  # loose: a sanity bound only
    with self.assertRaisesRegex(export.ExportError, "not TFLite op names"):
      export.export_tflite(self.G, path, quantize="int8", keep_float_ops=("matmul",))

  def test_tflite_dynamic_batch_1_and_3(self):
    runner = export.TFLiteRunner(self.tfl["none"])
    self.assertIsNone(runner.fixed_batch)
    for batch in (1, 3, 1):
      z, y = fixed_batch(self.spec, batch, seed=batch)
      got = runner(z, y)
      self.assertEqual(got.shape, (batch, 32, 32, 3))
      self.assertLessEqual(np.abs(got - self.keras(z, y)).max(), 1e-4)

  def test_tflite_fixed_batch_runs_in_chunks(self):
    path = os.path.join(self.tmp, "g_fixed2.tflite")
    report = export.export_tflite(self.G, path, fixed_batch=2)
    self.assertEqual(report["fixed_batch"], 2)
    self.assertEqual(report["signature"]["inputs"][0]["shape"], [2, 32])
    runner = export.TFLiteRunner(path)
    self.assertEqual(runner.fixed_batch, 2)
    z, y = fixed_batch(self.spec, 5)  # 2 + 2 + 1 (padded)
    self.assertLessEqual(np.abs(runner(z, y) - self.keras(z, y)).max(), 1e-4)

  def test_tflite_files_have_no_training_state_and_json(self):
    for q, path in self.tfl.items():
      names = tflite_tensor_names(path)
      self.assertEqual(forbidden(names), [], q)
      meta = export.read_export_json(path)
      self.assertEqual(meta["quantization"], q)
      self.assertEqual(meta["file_size_bytes"], os.path.getsize(path))
      self.assertEqual(meta["spec"], self.spec.to_dict())
      for key in ("max_abs_diff", "mean_abs_diff", "params", "signature", "versions",
                  "converter"):
        self.assertIn(key, meta)
    self.assertTrue(os.path.isfile(self.tfl["none"] + ".json"))

  def test_spec_read_from_model_when_json_is_missing(self):
    path = os.path.join(self.tmp, "nojson.tflite")
    shutil.copy(self.tfl["int8"], path)
    self.assertEqual(export.TFLiteRunner(path).spec, self.spec)

  def test_resaving_from_saved_model(self):
    loaded = export.load_generator(self.sm_dir)
    self.assertEqual(loaded.kind, "saved_model")
    self.assertEqual(loaded.spec, self.spec)
    path = os.path.join(self.tmp, "from_sm.tflite")
    report = export.export_tflite(loaded.generator, path)
    self.assertLessEqual(report["max_abs_diff"], 1e-4)

  # ---- masked / slim / workdir sources ----
  def test_masked_generator_exports_slim_and_matches_masked_outputs(self):
    masked = trained_like(build_generator(tiny_model_config(), masked=True,
                                          name="ema_generator"), seed=3)
    random_prune(masked, seed=3)
    live = masked.live_channels()
    self.assertLess(live.stem, masked.channels.stem)
    sm = os.path.join(self.tmp, "masked_sm")
    report = export.export_saved_model(masked, sm)
    self.assertLessEqual(report["max_abs_diff"], 1e-5)
    self.assertLess(report["params"], 22596)
    names = [v.name for v in tf.saved_model.load(sm).variables]
    self.assertEqual(forbidden(names), [])
    path = os.path.join(self.tmp, "masked.tflite")
    report = export.export_tflite(masked, path)
    self.assertEqual(forbidden(tflite_tensor_names(path)), [])
    z, y = fixed_batch(self.spec, 3)
    got = export.TFLiteRunner(path)(z, y)
    self.assertLessEqual(np.abs(got - masked((z, y), training=False).numpy()).max(), 1e-4)

  def test_load_generator_from_masked_workdir_and_slim_dir(self):
    cfg = config_lib.tiny_config().replace(run=dict(mode="ppcd"),
                                           distill=dict(use_masks=True))
    workdir = os.path.join(self.tmp, "run")
    masked = trained_like(build_generator(cfg.model, masked=True, name="ema_generator"),
                          seed=5)
    random_prune(masked, seed=5)
    checkpoints.write_config(workdir, cfg)
    # A training checkpoint also holds the raw generator and Adam slots.
    optimizer = tf_keras.optimizers.Adam(1e-3)
    optimizer.apply_gradients([(tf.ones_like(v), v) for v in masked.trainable_variables])
    ckpt = tf.train.Checkpoint(step=tf.Variable(7, dtype=tf.int64), ema_generator=masked,
                               generator=masked, g_optimizer=optimizer)
    tf.train.CheckpointManager(ckpt, checkpoints.checkpoint_dir(workdir), 1).save()
    loaded = export.load_generator(workdir)
    self.assertEqual((loaded.kind, loaded.step, loaded.slimmed_from_masked),
                     ("workdir", 7, True))
    self.assertEqual(loaded.generator.masks, [])
    z, y = fixed_batch(self.spec, 3)
    want = masked((z, y), training=False).numpy()
    self.assertLessEqual(np.abs(loaded.generator((z, y), training=False).numpy()
                                - want).max(), 1e-5)
    path = os.path.join(self.tmp, "from_workdir.tflite")
    export.export_tflite(loaded.generator, path, quantize="dynamic")
    self.assertEqual(forbidden(tflite_tensor_names(path)), [])
    slim_dir = os.path.join(self.tmp, "slim")
    slim.save_slim_generator(loaded.generator, slim_dir)
    from_slim = export.load_generator(slim_dir)
    self.assertEqual(from_slim.kind, "slim")
    self.assertLessEqual(np.abs(from_slim.generator((z, y), training=False).numpy()
                                - want).max(), 1e-5)

  # ---- errors ----
  def test_errors_name_the_path_and_the_fix(self):
    with self.assertRaisesRegex(export.ExportError, "does not exist.*slim model dir"):
      export.load_generator(os.path.join(self.tmp, "missing"))
    with self.assertRaisesRegex(export.ExportError, "TFLite file"):
      export.load_generator(self.tfl["none"])
    with self.assertRaisesRegex(export.ExportError, "quantize='int4'"):
      export.export_tflite(self.G, os.path.join(self.tmp, "x.tflite"), quantize="int4")
    with self.assertRaisesRegex(export.ExportError, "is a directory"):
      export.export_tflite(self.G, self.tmp)
    not_sm = os.path.join(self.tmp, "not_sm")
    os.makedirs(not_sm)
    open(os.path.join(not_sm, "notes.txt"), "w").close()
    with self.assertRaisesRegex(export.ExportError, "not a SavedModel directory"):
      export.export_saved_model(self.G, not_sm)

  def test_training_state_names(self):
    self.assertEqual(
        export.training_state_names([
            "ema_generator/stem/kernel:0", "generator/block0/mask_mid/score:0",
            "generator/block0/conv1/sn_u:0", "Adam/m/x", "generator/final_bn/gamma:0",
            "generator/shared/embeddings:0", "optimizer/iter"]),
        ["ema_generator/stem/kernel:0", "generator/block0/mask_mid/score:0",
         "generator/block0/conv1/sn_u:0", "Adam/m/x", "optimizer/iter"])

  def test_export_tool_cli(self):
    env = dict(os.environ, PYTHONPATH=REPO, TF_USE_LEGACY_KERAS="1",
               TF_CPP_MIN_LOG_LEVEL="3")
    out = os.path.join(self.tmp, "cli.tflite")
    # Bad flag combinations are in tests/test_reliability.py's CLI table.
    ok = subprocess.run(
        [sys.executable, "-m", "tools.export", f"--model={self.sm_dir}", "--format=tflite",
         "--quantize=float16", f"--out={out}"], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=300)
    self.assertEqual(ok.returncode, 0, ok.stderr[-2000:])
    self.assertIn("exported saved_model", ok.stdout)
    self.assertEqual(export.read_export_json(out)["quantization"], "float16")

if __name__ == "__main__":
  absltest.main()
