r"""Prints parameters and MACs per block of the generator and discriminator.

  .venv/bin/python -m tools.inspect_model --flagfile=configs/imagenet128.cfg
  .venv/bin/python -m tools.inspect_model --flagfile=configs/imagenet128.cfg --per_layer
  .venv/bin/python -m tools.inspect_model --flagfile=configs/tiny_test.cfg --json

Counts are analytic (`ppcd_tf.flops`, conventions in its docstring) and are the
trainable parameters of the dense (teacher) networks. `--build` also builds both
networks and checks the counts against their trainable variables (the 128x128
BigGAN takes about a minute on 2 CPU cores; initialisation does not change counts,
so the check uses the fast "N02" init).
"""

from __future__ import annotations

import json

import ppcd_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

from absl import flags

from ppcd_tf import flags as ppcd_flags

FLAGS = flags.FLAGS
ppcd_flags.define_flags()
flags.DEFINE_bool("json", False, "Print JSON instead of tables.")
flags.DEFINE_bool("per_layer", False, "One row per layer instead of per block.")
flags.DEFINE_bool("build", False, "Build G and D and check the counts against them.")

# Brock et al. 2019: BigGAN at 128x128 (ch=96, 1000 classes), as quoted in METHOD.md.
BIGGAN128_PAPER = {"generator": 70.4e6, "discriminator": 88.0e6}


# huggingface/pytorch-pretrained-BigGAN README: "BigGAN-deep-128: a 50.4M parameters
# model" (generator only). Its to-RGB conv computes ch=128 channels and keeps 3, so its
# count holds (128 - 3) * (128 * 9 + 1) = 144,125 weights this generator does not have.
BIGGAN_DEEP128_RELEASE = {"generator": 50.4e6}
DEEP128_UNUSED_TO_RGB = (128 - 3) * (128 * 9 + 1)


def _is_biggan128(m) -> bool:
  m = m.resolved()
  return (m.arch, m.resolution, m.g_ch, m.d_ch, m.num_classes, m.z_dim, m.shared_dim) == (
      "biggan", 128, 96, 96, 1000, 120, 128) and m.g_channel_mults == (16, 16, 8, 4, 2, 1)


def _is_biggan_deep128(m) -> bool:
  m = m.resolved()
  return (m.arch, m.resolution, m.g_ch, m.num_classes, m.z_dim, m.shared_dim) == (
      "biggan_deep", 128, 128, 1000, 128, 128) and m.g_channel_mults == (16, 16, 8, 4, 2, 1)


def published(m):
  """{network: (published params, what this count adds to compare, source)} or {}."""
  if _is_biggan128(m):
    return {k: (v, 0, "BigGAN paper") for k, v in BIGGAN128_PAPER.items()}
  if _is_biggan_deep128(m):
    return {"generator": (BIGGAN_DEEP128_RELEASE["generator"], DEEP128_UNUSED_TO_RGB,
                          "pytorch-pretrained-BigGAN biggan-deep-128 (+144,125 unused "
                          "to-RGB weights)")}
  return {}


def _built_counts(model_cfg):
  import numpy as np
  from ppcd_tf.discriminator import build_discriminator
  from ppcd_tf.generator import build_generator
  count = lambda net: int(sum(np.prod(v.shape) for v in net.trainable_variables))  # noqa: E731
  return {"generator": count(build_generator(model_cfg, init="N02")),
          "discriminator": count(build_discriminator(model_cfg, init="N02"))}


def main(argv):
  del argv
  from ppcd_tf import cli_errors
  from ppcd_tf import flops
  with cli_errors.friendly_errors():
    cfg = ppcd_flags.config_from_flags(FLAGS)
    m = cfg.model.resolved()
    reports = {"generator": flops.generator_cost(m),
               "discriminator": flops.discriminator_cost(m)}
    built = _built_counts(m) if FLAGS.build else None
  paper = published(m)
  if FLAGS.json:
    out = {name: r.to_dict() for name, r in reports.items()}
    if built:
      out["built_trainable_params"] = built
    if paper:
      out["published_params"] = {k: {"params": v, "compare_with": reports[k].total_params
                                     + add, "source": src}
                                 for k, (v, add, src) in paper.items()}
    print(json.dumps(out, indent=2))
    return
  for name, report in reports.items():
    print(report.format_table(f"{name} ({m.resolution}x{m.resolution}, {m.arch})",
                              per_layer=FLAGS.per_layer))
    if name in paper:
      value, add, source = paper[name]
      rel = (report.total_params + add) / value - 1
      print(f"{source}: {value / 1e6:.1f}M parameters; here "
            f"{(report.total_params + add) / 1e6:.3f}M ({100 * rel:+.2f}%)")
    if built:
      ok = "OK" if built[name] == report.total_params else "MISMATCH"
      print(f"built model: {built[name]:,} trainable parameters [{ok}]")
    print()


if __name__ == "__main__":
  from ppcd_tf import cli_errors
  cli_errors.run(main)
