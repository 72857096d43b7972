"""BigGAN-PyTorch teacher import (`ppcd_tf.biggan_import`, `tools/import_biggan.py`).

State dicts with BigGAN-PyTorch's key names, layouts and seeded values come from
`tests/biggan_numpy_reference.py`, which also runs the published architecture's
eval-mode forward pass in NumPy (NCHW, on the state-dict arrays). The imported
networks must reproduce it within 1e-4.
"""
import dataclasses
import io
import json
import os
import pickle
import re
import subprocess
import sys
import types
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf import biggan_import as bi
from ppcd_tf import checkpoints
from ppcd_tf import config as config_lib
from ppcd_tf import flags as ppcd_flags
from ppcd_tf.discriminator import build_discriminator
from ppcd_tf.generator import build_generator
from tests import biggan_numpy_reference as ref

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_FLAGFILE = os.path.join(REPO, "configs", "tiny_test.cfg")
TOL = 1e-4

# configs/tiny_test.cfg: 32 px, g_ch = d_ch = 4 (width 16), 10 classes, z 32 in 4
# chunks of 8, shared 16, attention at 16 px (G block 1, D block 0).
G_IN, G_OUT = ref.biggan_g_arch(32, 4)
D_IN, D_OUT, D_DOWN = ref.biggan_d_arch(32, 4)
G_SHAPES = ref.generator_shapes(G_IN, G_OUT, attention_blocks=[1], n_classes=10,
                                dim_z=32, shared_dim=16)
D_SHAPES = ref.discriminator_shapes(D_IN, D_OUT, D_DOWN, attention_blocks=[0],
                                    n_classes=10)


def _run_cli(*args):
  env = dict(os.environ, PYTHONPATH=REPO, TF_USE_LEGACY_KERAS="1")
  return subprocess.run([sys.executable, "-m", "tools.import_biggan", *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)


def _zeros(shapes):  # zero-copy arrays: only the shapes matter
  return {k: np.broadcast_to(np.float32(0), s) for k, s in shapes.items()}


def _inputs(model_cfg, batch=4, seed=0):
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(batch, model_cfg.z_dim)).astype(np.float32)
  y = np.array([0, 3, 7, 9][:batch], np.int32)
  x = rng.uniform(-1, 1, size=(batch, 32, 32, 3)).astype(np.float32)
  return z, y, x


@pytest.fixture(scope="module")
def tiny_cfg():
  return ppcd_flags.parse_flagfile(TINY_FLAGFILE)


@pytest.fixture(scope="module")
def imported(tmp_path_factory, tiny_cfg):
  """The CLI run on .npz files: G_ema -> generator and ema_generator, plus D."""
  root = tmp_path_factory.mktemp("biggan")
  g_state, d_state = ref.random_state(G_SHAPES, 1), ref.random_state(D_SHAPES, 2)
  np.savez(root / "G_ema.npz", **g_state)
  np.savez(root / "D.npz", **d_state)
  out = str(root / "teacher")
  proc = _run_cli(f"--G={root / 'G_ema.npz'}", f"--D={root / 'D.npz'}",
                  f"--flagfile={TINY_FLAGFILE}", f"--out={out}", "--step=138000")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return dict(out=out, g=g_state, d=d_state, stdout=proc.stdout, root=root)


def test_reference_counts_equal_biggan_imagenet128():
  gi, go = ref.biggan_g_arch(128, 96)
  di, do, dd = ref.biggan_d_arch(128, 96)
  g = ref.generator_shapes(gi, go, [3], n_classes=1000, dim_z=120, shared_dim=128)
  d = ref.discriminator_shapes(di, do, dd, [0], n_classes=1000)
  assert ref.parameter_count(g) == 70_433_988   # BigGAN paper: 70.4M
  assert ref.parameter_count(d) == 87_982_370   # BigGAN paper: 88.0M


def test_mapping_is_the_imagenet128_state_dict_layout():
  """Our source-key table for configs/imagenet128.cfg == BigGAN-PyTorch's state dict."""
  cfg = ppcd_flags.parse_flagfile(os.path.join(REPO, "configs", "imagenet128.cfg"))
  gi, go = ref.biggan_g_arch(128, 96)
  di, do, dd = ref.biggan_d_arch(128, 96)
  g_shapes = ref.generator_shapes(gi, go, [3], n_classes=1000, dim_z=120, shared_dim=128)
  d_shapes = ref.discriminator_shapes(di, do, dd, [0], n_classes=1000)
  g = build_generator(cfg.model, init="glorot")
  d = build_discriminator(cfg.model, init="glorot")
  g_map = {m.source: m.source_shape for m in bi.generator_mapping(g)}
  d_map = {m.source: m.source_shape for m in bi.discriminator_mapping(d)}
  assert g_map == g_shapes
  assert d_map == d_shapes
  assert len(bi.generator_mapping(g)) == len(g.variables)
  assert len(bi.discriminator_mapping(d)) == len(d.variables)
  # Architecture inferred from shapes alone (zero-copy arrays) matches the flagfile.
  facts = bi.infer_architecture(_zeros(g_shapes), _zeros(d_shapes))
  assert (facts["resolution"], facts["z_dim"], facts["num_classes"],
          facts["g_widths"][0]) == (128, 120, 1000, 1536)
  assert bi.check_against_config(facts, cfg.model) == []


def test_generator_matches_numpy_reference(imported, tiny_cfg):
  m = tiny_cfg.model
  g = build_generator(m, name="teacher_generator", init="glorot")
  d = build_discriminator(m, init="glorot")
  _, step = checkpoints.restore_objects_from_workdir(imported["out"], ema_generator=g,
                                                     discriminator=d)
  assert step == 138000
  z, y, _ = _inputs(m)
  ours = g((z, y), training=False).numpy()
  theirs = ref.generator_forward(imported["g"], z, y).transpose(0, 2, 3, 1)
  assert theirs.std() > 0.2 and np.mean(np.abs(theirs) > 0.99) < 0.5  # not saturated
  np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOL)


def test_discriminator_matches_numpy_reference(imported, tiny_cfg):
  m = tiny_cfg.model
  g = build_generator(m, init="glorot")
  d = build_discriminator(m, init="glorot")
  checkpoints.restore_objects_from_workdir(imported["out"], ema_generator=g,
                                           discriminator=d)
  _, y, x = _inputs(m)
  ours = d((x, y), training=False).numpy()
  theirs = ref.discriminator_forward(imported["d"], x.transpose(0, 3, 1, 2), y, D_DOWN)
  assert np.ptp(theirs) > 1.0
  np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOL)


def test_workdir_layout_config_and_summary(imported, tiny_cfg):
  out = imported["out"]
  written = checkpoints.read_config(out)
  assert written.run.mode == "teacher" and written.run.workdir == out
  checkpoints.check_same_architecture(tiny_cfg.model, written.model, "imported")
  reader = tf.train.load_checkpoint(checkpoints.all_checkpoints(
      checkpoints.checkpoint_dir(out))[-1])
  roots = {k.split("/")[0] for k in reader.get_variable_to_shape_map()}
  assert {"step", "generator", "ema_generator", "discriminator"} <= roots
  with open(os.path.join(out, bi.IMPORT_SUMMARY_FILE)) as f:
    summary = json.load(f)
  assert summary["step"] == 138000 and summary["verify_max_abs_diff"] == 0.0
  assert summary["generator"]["tensors"] == len(G_SHAPES)
  assert summary["discriminator"]["tensors"] == len(D_SHAPES)
  assert summary["g_params"] == ref.parameter_count(G_SHAPES)
  assert summary["d_params"] == ref.parameter_count(D_SHAPES)
  assert "ema_generator" in imported["stdout"] and "next:" in imported["stdout"]


def test_existing_checkpoints_need_overwrite(imported, tiny_cfg):
  with pytest.raises(bi.BigGANImportError, match="--overwrite"):
    bi.import_teacher(imported["out"], tiny_cfg, imported["g"], imported["d"])


def test_separate_g_and_g_ema(tmp_path, tiny_cfg):
  """--G and --G_ema: `generator` gets G, `ema_generator` gets G_ema."""
  g_state, ema_state = ref.random_state(G_SHAPES, 3), ref.random_state(G_SHAPES, 4)
  d_state = ref.random_state(D_SHAPES, 5)
  out = str(tmp_path / "teacher")
  summary = bi.import_teacher(out, tiny_cfg, g=g_state, d=d_state, g_ema=ema_state,
                              verify=False)
  assert summary["separate_ema"]
  m = tiny_cfg.model
  g, ema = build_generator(m, init="glorot"), build_generator(m, init="glorot")
  checkpoints.restore_objects_from_workdir(out, generator=g, ema_generator=ema)
  z, y, _ = _inputs(m, batch=2)
  for net, state in ((g, g_state), (ema, ema_state)):
    theirs = ref.generator_forward(state, z, y).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(net((z, y), training=False).numpy(), theirs, atol=TOL)


def test_non_hierarchical_generator():
  """BigGAN-PyTorch without --hier: the stem takes all of z, CBNs see shared(y) only."""
  m = dataclasses.replace(config_lib.tiny_config().model, hierarchical_z=False, z_dim=24)
  shapes = ref.generator_shapes(G_IN, G_OUT, [1], n_classes=10, dim_z=24, shared_dim=16,
                                hier=False)
  state = ref.random_state(shapes, 6)
  facts = bi.infer_architecture(g_state=state)
  assert (facts["hierarchical_z"], facts["z_dim"]) == (False, 24)
  assert bi.check_against_config(facts, m) == []
  g = build_generator(m, init="glorot")
  bi.load_into(g, bi.canonical_state_dict(state), bi.generator_mapping(g), "G")
  z, y, _ = _inputs(m, batch=2)
  theirs = ref.generator_forward(state, z, y, hier=False).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(g((z, y), training=False).numpy(), theirs, atol=TOL)


@pytest.fixture(scope="module")
def tiny_nets(tiny_cfg):
  return (build_generator(tiny_cfg.model, init="glorot"),
          build_discriminator(tiny_cfg.model, init="glorot"))


def test_missing_extra_and_wrong_shape_are_all_named(tiny_nets):
  g, d = tiny_nets
  state = ref.random_state(G_SHAPES, 7)
  del state["blocks.1.1.gamma"]
  state["blocks.0.0.conv1.u1"] = np.zeros((1, 16), np.float32)
  state["blocks.2.0.conv2.weight"] = np.zeros((16, 16, 1, 1), np.float32)
  with pytest.raises(bi.BigGANImportError) as err:
    bi.check_state_dict(state, bi.generator_mapping(g), g, "G_ema.npz")
  msg = str(err.value)
  assert "G_ema.npz" in msg
  assert "1 missing tensor(s): blocks.1.1.gamma" in msg
  assert "1 unexpected tensor(s): blocks.0.0.conv1.u1" in msg
  assert "blocks.2.0.conv2.weight (16, 16, 1, 1) (expected (16, 16, 3, 3))" in msg
  # The discriminator table is strict too.
  d_state = ref.random_state(D_SHAPES, 8)
  d_state.pop("embed.u0")
  with pytest.raises(bi.BigGANImportError, match="missing tensor.*embed.u0"):
    bi.check_state_dict(d_state, bi.discriminator_mapping(d), d, "D.npz")


def test_unfilled_target_variable_is_named(tiny_nets):
  g, _ = tiny_nets
  mapping = [m for m in bi.generator_mapping(g) if m.source != "output_layer.0.stored_var"]
  state = ref.random_state(G_SHAPES, 9)
  with pytest.raises(bi.BigGANImportError) as err:
    bi.check_state_dict(state, mapping, g, "G")
  assert "no source" in str(err.value) and "final_bn/moving_variance" in str(err.value)
  assert "unexpected tensor(s): output_layer.0.stored_var" in str(err.value)


def test_bookkeeping_keys_and_bn_variants(tiny_nets):
  """--mybn BN buffers, DataParallel prefix, ignored counters."""
  g, _ = tiny_nets
  state = ref.random_state(G_SHAPES, 10)
  raw = {}
  for key, value in state.items():
    key = key.replace("bn1.stored_mean", "bn1.bn.stored_mean")       # --mybn
    key = key.replace("bn2.stored_var", "bn2.bn.stored_var")          # --mybn
    raw["module." + key] = value
  raw["module.blocks.0.0.bn1.bn.accumulation_counter"] = np.zeros(1, np.float32)
  raw["module.blocks.0.0.bn2.bn.num_batches_tracked"] = np.array(5, np.int64)
  canon = bi.canonical_state_dict(raw)
  assert "blocks.0.0.bn1.stored_mean" in canon and "blocks.1.0.bn2.stored_var" in canon
  ignored = bi.check_state_dict(canon, bi.generator_mapping(g), g, "G")
  assert ignored == ["blocks.0.0.bn1.bn.accumulation_counter",
                     "blocks.0.0.bn2.bn.num_batches_tracked"]


def test_config_mismatch_names_fields(tmp_path, tiny_cfg):
  cfg = tiny_cfg.replace(model=dict(g_ch=8, z_dim=40, d_attention_res=(8,)))
  with pytest.raises(bi.BigGANImportError) as err:
    bi.import_teacher(str(tmp_path / "t"), cfg, ref.random_state(G_SHAPES, 1),
                      ref.random_state(D_SHAPES, 2))
  msg = str(err.value)
  assert "z_dim: 32 in the checkpoint vs 40" in msg
  assert "the stem suggests g_ch=4" in msg
  assert "D attention after blocks (0,)" in msg
  assert not os.path.exists(tmp_path / "t" / "checkpoints")


def test_pth_without_torch_says_how_to_install(tmp_path, monkeypatch):
  path = tmp_path / "G_ema.pth"
  path.write_bytes(b"not really a checkpoint")
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
  with pytest.raises(bi.BigGANImportError, match=r"pip install torch==2\.13\.0.*npz"):
    bi.load_state_dict(str(path))
  with pytest.raises(bi.BigGANImportError, match="unknown file type"):
    (tmp_path / "G.ckpt").write_bytes(b"")  # (.bin is torch.save's pytorch_model.bin)
    bi.load_state_dict(str(tmp_path / "G.ckpt"))


def test_pth_reading_and_npz_conversion(tmp_path, monkeypatch):
  """.pth goes through torch.load (stubbed here: torch is not installed) -> .npz."""
  state = ref.random_state(D_SHAPES, 11)
  calls = []

  def fake_load(path, map_location=None, weights_only=None):
    calls.append((path, map_location, weights_only))
    return dict(state)

  monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(load=fake_load))
  pth = tmp_path / "D.pth"
  pth.write_bytes(b"stub")
  npz = bi.convert_to_npz(str(pth), str(tmp_path / "npz"))
  assert npz == str(tmp_path / "npz" / "D.npz")
  assert calls == [(str(pth), "cpu", True)]
  monkeypatch.delitem(sys.modules, "torch")
  back = bi.load_state_dict(npz)
  assert sorted(back) == sorted(state)
  for key in state:
    np.testing.assert_array_equal(back[key], state[key])


def test_cli_reports_mismatch_as_one_line_error(tmp_path):
  np.savez(tmp_path / "G.npz", **ref.random_state(G_SHAPES, 1))
  np.savez(tmp_path / "D.npz", **ref.random_state(D_SHAPES, 2))
  proc = _run_cli(f"--G={tmp_path / 'G.npz'}", f"--D={tmp_path / 'D.npz'}",
                  f"--flagfile={TINY_FLAGFILE}", "--shared_dim=32",
                  f"--out={tmp_path / 'out'}")
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "error: the checkpoint's architecture does not match" in proc.stderr
  assert "shared_dim: 16 in the checkpoint vs 32" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_ppcd_trainer_accepts_imported_teacher(imported, tmp_path):
  from ppcd_tf import train_lib
  from tests import tiny_runs
  trainer = train_lib.Trainer(tiny_runs.ppcd_cfg(str(tmp_path / "ppcd"), imported["out"]))
  assert trainer.teacher_step == 138000
  m = trainer.model_cfg
  z, y, _ = _inputs(m, batch=2)
  theirs = ref.generator_forward(imported["g"], z, y).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(trainer.teacher_G((z, y), training=False).numpy(), theirs,
                             atol=TOL)
  # The student starts as the teacher (the trainer checks this itself, to 1e-5).
  np.testing.assert_allclose(trainer.G((z, y), training=False).numpy(), theirs, atol=TOL)


# ------------------------------------------------------------- overwrite and out_dir
def _tree_bytes(root):
  return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
          for d, _, names in os.walk(root) for f in names}


def test_failed_overwrite_keeps_the_old_teacher(tmp_path, tiny_cfg, monkeypatch):
  """--overwrite swaps the new workdir in only once it is complete and checked."""
  m = tiny_cfg.model
  out = str(tmp_path / "teacher")
  g_state, d_state = ref.random_state(G_SHAPES, 12), ref.random_state(D_SHAPES, 13)
  bi.import_teacher(out, tiny_cfg, g_state, d_state, step=5, verify=False)
  z, y, _ = _inputs(m, batch=2)

  def teacher():
    g = build_generator(m, init="glorot")
    _, step = checkpoints.restore_objects_from_workdir(out, ema_generator=g)
    return step, g((z, y), training=False).numpy()

  before, (step0, images0) = _tree_bytes(out), teacher()
  new_g = ref.random_state(G_SHAPES, 14)
  broken_d = {k: v for k, v in d_state.items() if k != "embed.u0"}
  with pytest.raises(bi.BigGANImportError, match=r"1 missing tensor\(s\): embed\.u0"):
    bi.import_teacher(out, tiny_cfg, new_g, broken_d, step=6, overwrite=True)
  # A failure once the new workdir is written (its check, here) keeps the old one too.
  def failed_check(*args):
    raise bi.BigGANImportError("check failed (test)")
  monkeypatch.setattr(bi.writer, "_verify_workdir", failed_check)
  with pytest.raises(bi.BigGANImportError, match=r"check failed \(test\)"):
    bi.import_teacher(out, tiny_cfg, new_g, d_state, step=6, overwrite=True)
  monkeypatch.undo()
  assert _tree_bytes(out) == before
  assert os.listdir(tmp_path) == ["teacher"]  # no temporary directory left
  step, images = teacher()
  assert step == step0 == 5
  np.testing.assert_array_equal(images, images0)

  summary = bi.import_teacher(out, tiny_cfg, new_g, d_state, step=6, overwrite=True)
  assert os.listdir(tmp_path) == ["teacher"]
  assert summary["checkpoint"] == os.path.join(out, "checkpoints", "ckpt-6")
  assert ".import-" not in open(os.path.join(out, "checkpoints", "checkpoint")).read()
  step, images = teacher()
  assert step == 6
  theirs = ref.generator_forward(new_g, z, y).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(images, theirs, rtol=0, atol=TOL)


def test_out_dir_with_other_files_is_refused(tmp_path, tiny_cfg):
  """--overwrite replaces --out whole, so a directory with other files is refused."""
  (tmp_path / "G_ema.npz").write_bytes(b"")
  with pytest.raises(bi.BigGANImportError) as err:
    bi.import_teacher(str(tmp_path), tiny_cfg, ref.random_state(G_SHAPES, 1),
                      ref.random_state(D_SHAPES, 2), overwrite=True)
  assert f"{tmp_path} holds 1 entry(ies) the importer does not write: G_ema.npz" in str(
      err.value)
  assert os.listdir(tmp_path) == ["G_ema.npz"]


# -------------------------------------------------------------------- unreadable files
def _npz_bytes(**arrays):
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  return buf.getvalue()


def _torch_zip_bytes():
  """The layout of torch.save's zip format (>= 1.6): archive/data.pkl + tensor files."""
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w") as archive:
    archive.writestr("archive/data.pkl", pickle.dumps({"linear.weight": 0}))
    archive.writestr("archive/data/0", bytes(range(256)) * 8)
  return buf.getvalue()


def _npy_bytes():
  buf = io.BytesIO()
  np.save(buf, np.ones(3, np.float32))
  return buf.getvalue()


def _damaged_npz_bytes():
  """A complete archive whose array bytes were altered (its CRC no longer matches)."""
  data = _npz_bytes(w=np.full(8, 1.0, np.float32))
  at = data.index(np.float32(1.0).tobytes() * 8)
  return data[:at] + b"\x00" * 4 + data[at + 4:]


_NPZ = _npz_bytes(**{"linear.weight": np.ones((4, 8), np.float32)})
UNREADABLE_NPZ = {
    "empty": (b"", "is empty (0 bytes)"),
    "truncated": (_NPZ[:len(_NPZ) // 2], f"is truncated ({len(_NPZ) // 2:,} bytes: a "
                  "zip archive without its end record"),
    "not_zip": (b"G_ema weights\n", "is not a zip archive, so not an .npz file (14 bytes "
                "starting with b'G_ema we')"),
    "npy": (_npy_bytes(), "is a single .npy array"),
    "torch_zip": (_torch_zip_bytes(), "is a PyTorch checkpoint (torch.save's zip "
                  "format), not an .npz file; pass it under a .pth name"),
    "damaged": (_damaged_npz_bytes(), "is a truncated or damaged zip archive"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE_NPZ))
def test_unreadable_npz_is_named(tmp_path, case):
  content, looks = UNREADABLE_NPZ[case]
  path = tmp_path / "G_ema.npz"
  path.write_bytes(content)
  with pytest.raises(bi.BigGANImportError) as err:
    bi.load_state_dict(str(path))
  msg = str(err.value)
  assert msg.startswith(f"{path} {looks}"), msg
  assert "\n" not in msg


def test_npz_without_arrays_is_named(tmp_path):
  path = tmp_path / "D.npz"
  path.write_bytes(_npz_bytes())
  with pytest.raises(bi.BigGANImportError, match=re.escape(f"{path} holds no tensors.")):
    bi.load_state_dict(str(path))


class _WeightsOnlyUnpickler(pickle.Unpickler):
  """Like torch.load(weights_only=True): plain containers load, other classes fail."""

  def find_class(self, module, name):
    raise pickle.UnpicklingError(
        "Weights only load failed. This file can still be loaded, to do so you have two "
        f"options.\n\nWeightsUnpickler error: Unsupported global: GLOBAL {module}.{name}")


def _stub_torch_load(path, map_location=None, weights_only=None):
  with open(path, "rb") as f:
    return _WeightsOnlyUnpickler(f).load()


UNREADABLE_PTH = {
    "empty": (b"", "{path} is empty (0 bytes)"),
    "truncated": (_torch_zip_bytes()[:-40], "{path} is truncated ("),
    "list": (pickle.dumps(["G", "D"]), "{path} holds a list, not a state dict"),
    "pickled_object": (pickle.dumps(types.SimpleNamespace(G_ch=96)),
                       "{path} is not a PyTorch checkpoint ({size} bytes; torch.load: "
                       "UnpicklingError: Weights only load failed."),
    "training_state": (pickle.dumps({"itr": 138000, "config": {"G_ch": 96}}),
                       "{path}: entry 'config' is a dict, not a tensor"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE_PTH))
def test_unreadable_pth_is_named(tmp_path, monkeypatch, case):
  """Empty and truncated files are named without torch; the rest go through torch.load
  (stubbed: torch is an optional dependency)."""
  content, looks = UNREADABLE_PTH[case]
  path = tmp_path / "G_ema.pth"
  path.write_bytes(content)
  torch = None if case in ("empty", "truncated") else types.SimpleNamespace(
      load=_stub_torch_load)
  monkeypatch.setitem(sys.modules, "torch", torch)
  with pytest.raises(bi.BigGANImportError) as err:
    bi.load_state_dict(str(path))
  msg = str(err.value)
  assert msg.startswith(looks.format(path=path, size=len(content))), msg
  assert "\n" not in msg


def test_cli_truncated_npz_is_one_line_error(tmp_path):
  g = tmp_path / "G_ema.npz"
  g.write_bytes(_NPZ[:100])
  proc = _run_cli(f"--G={g}", f"--D={g}", f"--flagfile={TINY_FLAGFILE}",
                  f"--out={tmp_path / 'out'}")
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert f"error: {g} is truncated (100 bytes: a zip archive without" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert sorted(os.listdir(tmp_path)) == ["G_ema.npz"]


# ----------------------------------------------------------------------- D width hint
def test_d_width_hint_uses_the_checkpoint_layout(tiny_cfg):
  """D block 0 outputs d_ch * d_channel_mults[0] of the checkpoint's own layout."""
  di, do, dd = ref.biggan_d_arch(128, 8)
  facts = bi.infer_architecture(d_state=_zeros(ref.discriminator_shapes(
      di, do, dd, [0], n_classes=10)))
  diffs = "; ".join(bi.check_against_config(facts, tiny_cfg.model))
  assert ("D widths: (8, 16, 32, 64, 128, 128) in the checkpoint vs (16, 16, 16, 16) in "
          "the config (d_ch=4, d_channel_mults=4,4,4,4); the first block suggests d_ch=8 "
          "(6 D blocks: BigGAN's 128 px layout, d_channel_mults=1,2,4,8,16,16)") in diffs
  # Same number of blocks: the config's multipliers.
  di, do, dd = ref.biggan_d_arch(32, 8)
  facts = bi.infer_architecture(d_state=_zeros(ref.discriminator_shapes(
      di, do, dd, [0], n_classes=10)))
  diffs = "; ".join(bi.check_against_config(facts, tiny_cfg.model))
  assert diffs.endswith("the first block suggests d_ch=8"), diffs


# ------------------------------------------------------------------ --cross_replica BN
def _cross_replica(state):
  """BigGAN-PyTorch --cross_replica keys: SyncBN2d buffers `X.bn.running_{mean,var}`."""
  return {re.sub(r"\.stored_(mean|var)$", r".bn.running_\1", k): v
          for k, v in state.items()}


def test_cross_replica_bn_is_refused(tmp_path, monkeypatch):
  state = _cross_replica(ref.random_state(G_SHAPES, 15))
  with pytest.raises(bi.BigGANImportError) as err:
    bi.canonical_state_dict(state, "G_ema.pth")
  msg = str(err.value)
  assert msg.startswith("G_ema.pth comes from BigGAN-PyTorch --cross_replica (14 SyncBN "
                        "buffer(s): blocks.0.0.bn1.bn.running_mean, ")
  assert ("No exact import exists: BigGAN-PyTorch's SyncBN eval path adds the CBN gain "
          "instead of multiplying by it") in msg
  assert "Pass --allow_cross_replica" in msg
  canon = bi.canonical_state_dict(state, "G_ema.pth", allow_cross_replica=True)
  assert "blocks.0.0.bn1.stored_mean" in canon and "output_layer.0.stored_var" in canon
  # --to_npz keeps the keys as saved, so the .npz is refused the same way.
  monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(
      load=lambda *args, **kwargs: state))
  (tmp_path / "G_ema.pth").write_bytes(b"stub")
  npz = bi.convert_to_npz(str(tmp_path / "G_ema.pth"))
  with pytest.raises(bi.BigGANImportError, match="--cross_replica"):
    bi.load_state_dict(npz)


def test_cli_cross_replica_needs_the_flag(tmp_path, tiny_cfg):
  g_state = ref.random_state(G_SHAPES, 16)
  np.savez(tmp_path / "G_ema.npz", **_cross_replica(g_state))
  np.savez(tmp_path / "D.npz", **ref.random_state(D_SHAPES, 17))
  out = tmp_path / "out"
  args = [f"--G={tmp_path / 'G_ema.npz'}", f"--D={tmp_path / 'D.npz'}",
          f"--flagfile={TINY_FLAGFILE}", f"--out={out}"]
  proc = _run_cli(*args)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "--cross_replica (14 SyncBN buffer(s)" in proc.stderr
  assert "Pass --allow_cross_replica" in proc.stderr and "Traceback" not in proc.stderr
  assert not out.exists()

  proc = _run_cli(*args, "--allow_cross_replica")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert ("warning: imported BigGAN-PyTorch --cross_replica weights with standard "
          "BatchNorm") in proc.stdout
  assert "will not equal BigGAN-PyTorch's SyncBN eval outputs" in proc.stdout
  with open(out / bi.IMPORT_SUMMARY_FILE) as f:
    summary = json.load(f)
  assert summary["cross_replica_bn"] == {"generator": 14}
  assert "SyncBN eval outputs" in summary["warning"]
  # Standard BN semantics: the output of the plain (stored_mean) state dict.
  m = tiny_cfg.model
  g = build_generator(m, init="glorot")
  checkpoints.restore_objects_from_workdir(str(out), ema_generator=g)
  z, y, _ = _inputs(m, batch=2)
  theirs = ref.generator_forward(g_state, z, y).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(g((z, y), training=False).numpy(), theirs, rtol=0, atol=TOL)


def test_cli_without_d_writes_a_generator_only_teacher(tmp_path, imported):
  out = str(tmp_path / "g_only")
  proc = _run_cli(f"--G={imported['root'] / 'G_ema.npz'}", f"--flagfile={TINY_FLAGFILE}",
                  f"--out={out}", "--step=7")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "discriminator  none (generator-only teacher)" in proc.stdout
  assert "--d_warmup_steps=N" in proc.stdout
  prefix = checkpoints.newest_readable(checkpoints.checkpoint_dir(out))
  assert not checkpoints.holds_object(prefix, "discriminator")
  summary = json.load(open(os.path.join(out, bi.IMPORT_SUMMARY_FILE)))
  assert summary["discriminator"] is None and summary["d_params"] is None
  assert summary["verify_max_abs_diff"] <= 1e-6
