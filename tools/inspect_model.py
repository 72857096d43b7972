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


def _is_biggan128(m) -> bool:
  m = m.resolved()
  return (m.resolution, m.g_ch, m.d_ch, m.num_classes, m.z_dim, m.shared_dim) == (
      128, 96, 96, 1000, 120, 128) and m.g_channel_mults == (16, 16, 8, 4, 2, 1)


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
  paper = BIGGAN128_PAPER if _is_biggan128(m) else None
  if FLAGS.json:
    out = {name: r.to_dict() for name, r in reports.items()}
    if built:
      out["built_trainable_params"] = built
    if paper:
      out["biggan_paper_params"] = paper
    print(json.dumps(out, indent=2))
    return
  for name, report in reports.items():
    print(report.format_table(f"{name} ({m.resolution}x{m.resolution})",
                              per_layer=FLAGS.per_layer))
    if paper:
      rel = report.total_params / paper[name] - 1
      print(f"BigGAN paper: {paper[name] / 1e6:.1f}M parameters; here "
            f"{report.total_params / 1e6:.3f}M ({100 * rel:+.2f}%)")
    if built:
      ok = "OK" if built[name] == report.total_params else "MISMATCH"
      print(f"built model: {built[name]:,} trainable parameters [{ok}]")
    print()


if __name__ == "__main__":
  from ppcd_tf import cli_errors
  cli_errors.run(main)
