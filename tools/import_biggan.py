r"""Imports a published BigGAN-PyTorch checkpoint as a ppcd_tf teacher workdir.

  python -m tools.import_biggan --G=138k/G_ema.pth --D=138k/D.pth \
      --flagfile=configs/imagenet128.cfg --step=138000 --out=runs/biggan128_teacher
  python -m ppcd_tf.train --flagfile=configs/imagenet128.cfg --mode=ppcd \
      --teacher_dir=runs/biggan128_teacher --workdir=runs/imagenet128_ppcd

Without --D the teacher is generator-only (the form most published weights take):
its PPCD student first trains a fresh discriminator for --d_warmup_steps steps against
real data and the teacher's samples, and pruning begins after that.

--G fills both `generator` and `ema_generator` (pass G_ema.pth); with --G_ema too,
--G fills `generator` and --G_ema `ema_generator`. .pth files need PyTorch; .npz
files with the same keys do not. On a machine with torch, convert once:

  python -m tools.import_biggan --to_npz --G=138k/G_ema.pth --D=138k/D.pth [--npz_dir=DIR]

The model flags (--flagfile) must describe the checkpoint: the importer infers the
architecture from the tensor shapes, compares, and names every difference. Every
tensor must be consumed and every variable filled (ppcd_tf/biggan_import/).
--cross_replica (SyncBN) checkpoints are refused: BigGAN-PyTorch's SyncBN eval path
adds the CBN gain instead of multiplying by it, so no exact import exists;
--allow_cross_replica imports them with standard BatchNorm all the same. An unreadable
file (empty, truncated, not an archive) or any mismatch is one `error:` line, exit 2.
Library: `ppcd_tf.biggan_import.import_teacher`.

huggingface's pytorch-pretrained-BigGAN releases (BigGAN-deep, generator only):

  python -m tools.import_biggan --format=pretrained_biggan --G=biggan-deep-128 \
      --flagfile=configs/imagenet128_deep.cfg --latent_truncation=1.0 \
      --out=runs/biggan_deep128_teacher

--G is the directory holding the release's config.json and pytorch_model.bin (or
pytorch_model.npz, the same keys); config.json sets every G model field (the flagfile
gives the rest: data, training, the D a PPCD run warms up). --latent_truncation
(default 1.0) is the truncation t the teacher samples z = t * truncnorm(-2, 2) with and
whose BatchNorm statistics it uses. The workdir's model.cfg holds the model flags a
PPCD run needs (pass it after the training flagfile). Without torch here, write
pytorch_model.npz beside the .bin once on a machine with torch (--to_npz with the same
--format and --G); the import prefers it. Library:
`ppcd_tf.biggan_import.import_pretrained_teacher`.
"""

from __future__ import annotations

import os

import ppcd_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

from absl import app
from absl import flags

from ppcd_tf import flags as ppcd_flags

ppcd_flags.define_flags()
ppcd_flags.declare_key_flags()
FLAGS = flags.FLAGS

flags.DEFINE_string("G", None, "BigGAN-PyTorch generator state dict (.pth or .npz); "
                    "without --G_ema it fills both generator and ema_generator, so pass "
                    "G_ema.pth here.")
flags.DEFINE_string("G_ema", None, "Optional EMA generator state dict; then --G fills "
                    "`generator` and this `ema_generator`.")
flags.DEFINE_string("D", None, "BigGAN-PyTorch discriminator state dict (.pth or .npz). "
                    "Optional: without it the teacher is generator-only, and a PPCD "
                    "student of it first trains a fresh D (--d_warmup_steps).")
flags.DEFINE_enum("format", "biggan_pytorch", ["biggan_pytorch", "pretrained_biggan"],
                  "biggan_pytorch: ajbrock/BigGAN-PyTorch state dicts (--G, --G_ema, "
                  "--D files); pretrained_biggan: a huggingface pytorch-pretrained-BigGAN "
                  "release (--G = the directory with config.json and pytorch_model.bin).")
flags.DEFINE_string("out", None, "Teacher workdir to write (use it as --teacher_dir).")
flags.DEFINE_integer("step", 0, "Step stored in the checkpoint (e.g. 138000).",
                     lower_bound=0)
flags.DEFINE_bool("overwrite", False, "Replace an earlier import in --out (once the new "
                  "workdir is written and checked; a failed import keeps the old one).")
flags.DEFINE_bool("allow_cross_replica", False, "Import a BigGAN-PyTorch "
                  "--cross_replica (SyncBN) generator with standard BatchNorm. Its "
                  "outputs will not equal BigGAN-PyTorch's: SyncBN's eval path adds the "
                  "CBN gain instead of multiplying by it.")
flags.DEFINE_bool("verify", True, "Reload --out as the PPCD trainer loads a teacher and "
                  "check it reproduces the imported networks.")
flags.DEFINE_bool("to_npz", False, "Only convert the given .pth files to .npz (needs "
                  "torch, not TensorFlow) and exit.")
flags.DEFINE_string("npz_dir", None, "Where --to_npz writes (default: beside each .pth).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from ppcd_tf import biggan_import, cli_errors
  with cli_errors.friendly_errors():
    given = [p for p in (FLAGS.G, FLAGS.G_ema, FLAGS.D) if p]
    if FLAGS.to_npz:
      if not given:
        raise biggan_import.BigGANImportError("--to_npz needs --G, --G_ema and/or --D.")
      for path in given:
        print(f"wrote {biggan_import.convert_to_npz(path, FLAGS.npz_dir)}")
      return
    if FLAGS.format == "pretrained_biggan":
      return _import_pretrained(biggan_import)
    for name in ("G", "out"):
      if not getattr(FLAGS, name):
        raise biggan_import.BigGANImportError(
            f"--{name} is required: python -m tools.import_biggan --G=G_ema.pth "
            "--D=D.pth --flagfile=configs/imagenet128.cfg --out=DIR")
    cfg = ppcd_flags.config_from_flags(FLAGS)
    summary = biggan_import.import_teacher(
        FLAGS.out, cfg, g=FLAGS.G, d=FLAGS.D, g_ema=FLAGS.G_ema, step=FLAGS.step,
        overwrite=FLAGS.overwrite, verify=FLAGS.verify,
        allow_cross_replica=FLAGS.allow_cross_replica)
  for name in ("generator", "ema_generator", "discriminator"):
    part = summary[name]
    if part is None:
      print(f"{name:<14} none (generator-only teacher)")
      continue
    ignored = f", ignored {len(part['ignored'])} bookkeeping" if part["ignored"] else ""
    print(f"{name:<14} {part['tensors']:>4} tensors -> {part['params']:,} parameters"
          f"{ignored}  ({part['source'] or 'in memory'})")
  print(f"wrote {summary['checkpoint']} and {FLAGS.out}/config.json (step "
        f"{summary['step']})")
  if "warning" in summary:
    print(f"warning: {summary['warning']}")
  warmup = "" if FLAGS.D else " --d_warmup_steps=N --prune_begin_step=N"
  print(f"next: python -m ppcd_tf.train --flagfile=... --mode=ppcd "
        f"--teacher_dir={FLAGS.out}{warmup} --workdir=...")


def _import_pretrained(biggan_import) -> None:
  """--format=pretrained_biggan (called inside `friendly_errors`)."""
  for name in ("G", "out"):
    if not getattr(FLAGS, name):
      raise biggan_import.BigGANImportError(
          f"--{name} is required: python -m tools.import_biggan --format=pretrained_biggan "
          "--G=DIR_WITH_config.json_AND_pytorch_model.bin --out=DIR")
  extra = [n for n in ("G_ema", "D") if getattr(FLAGS, n)] + (
      ["allow_cross_replica"] if FLAGS.allow_cross_replica else [])
  if extra:
    raise biggan_import.BigGANImportError(
        f"--{', --'.join(extra)} do(es) not apply to --format=pretrained_biggan (a "
        "release holds one generator, its EMA weights, and no discriminator).")
  if FLAGS.to_npz:  # <G>/pytorch_model.bin -> <G>/pytorch_model.npz (needs torch)
    from ppcd_tf.biggan_import.pretrained_format import WEIGHT_NAMES
    print(f"wrote {biggan_import.convert_to_npz(os.path.join(FLAGS.G, WEIGHT_NAMES[0]))}")
    return
  # The release's sampling (its G fields come from config.json), so that
  # --latent_truncation alone validates.
  FLAGS.latent = "scaled_truncnorm"
  FLAGS.latent_truncation = FLAGS.latent_truncation or 1.0
  cfg = ppcd_flags.config_from_flags(FLAGS)
  summary = biggan_import.import_pretrained_teacher(
      FLAGS.out, FLAGS.G, cfg, step=FLAGS.step, overwrite=FLAGS.overwrite,
      verify=FLAGS.verify)
  part = summary["ema_generator"]
  print(f"generator      {part['tensors']:>4} tensors -> {part['params']:,} parameters  "
        f"({part['source']})")
  print(f"wrote {summary['checkpoint']}, {FLAGS.out}/config.json and "
        f"{FLAGS.out}/model.cfg (truncation {summary['truncation']:g})")
  print(f"next: python -m ppcd_tf.train --flagfile=... --flagfile={FLAGS.out}/model.cfg "
        f"--mode=ppcd --teacher_dir={FLAGS.out} --d_warmup_steps=N --prune_begin_step=N "
        "--workdir=...")


if __name__ == "__main__":
  from ppcd_tf import cli_errors
  cli_errors.run(main)
