"""Import a published BigGAN-PyTorch checkpoint as a ppcd_tf teacher workdir.

BigGAN-PyTorch (Brock, Andonian; github.com/ajbrock/BigGAN-PyTorch, `BigGAN.py`,
`layers.py`) saves `G.pth`, `G_ema.pth` and `D.pth` as PyTorch state dicts. This
package maps every tensor of those state dicts onto `ppcd_tf.generator.Generator` and
`ppcd_tf.discriminator.Discriminator` and writes a workdir that `--teacher_dir`
accepts (`config.json` + a checkpoint with `step`, `generator`, `ema_generator` and
`discriminator`, see `ppcd_tf.checkpoints`). `tools/import_biggan.py` is the command.

Inputs: `.pth` files need PyTorch (an optional dependency, imported only to read
them); `.npz` files holding the same keys -> arrays need nothing but NumPy
(`convert_to_npz` writes them on a machine that has torch).

Supported BigGAN-PyTorch settings: `G_shared` (shared class embedding), with or
without `hier`, one singular vector per SN layer (`num_G_SVs = num_D_SVs = 1`),
`D_wide`, `norm_style='bn'`; BN buffers from the plain `ccbn`/`bn` or from `--mybn`
(`X.bn.stored_mean`). Not `--cross_replica` (SyncBN, `X.bn.running_mean`): BigGAN-
PyTorch's SyncBN eval path adds the CBN gain instead of multiplying by it
(x_hat + gain + bias), which no ppcd_tf generator computes, so such state dicts are
refused; `allow_cross_replica=True` (`--allow_cross_replica`) imports them with
standard BatchNorm (x_hat * gain + bias), and the teacher's outputs then differ from
BigGAN-PyTorch's SyncBN eval outputs (the summary says so).

Key mapping (PyTorch key -> our variable; i = block index):

  G  shared.weight                     shared/embeddings          copy
     linear.{weight,bias,u0,sv0}       stem/{kernel,bias,sn_u,sn_sigma}
                                       kernel = W^T, output units permuted (below)
     blocks.i.0.conv{1,2,_sc}.*        block{i}/conv{1,2,_sc}/*   OIHW -> HWIO
     blocks.i.0.bn{1,2}.{gain,bias}.*  block{i}/bn{1,2}/{gain,bias}/*  [out,in] -> [in,out]
     blocks.i.0.bn{1,2}.stored_{mean,var}  block{i}/bn{1,2}/bn/moving_{mean,variance}
     blocks.i.1.{theta,phi,g,o}.*      block{i}/attention/{theta,phi,g,o}/*
     blocks.i.1.gamma                  block{i}/attention/gamma
     output_layer.0.{gain,bias}        final_bn/{gamma,beta}
     output_layer.0.stored_{mean,var}  final_bn/moving_{mean,variance}
     output_layer.2.*                  final_conv/*
  D  blocks.i.0.conv{1,2,_sc}.*        block{i}/conv{1,2,_sc}/*
     blocks.i.1.*                      block{i}/attention/*
     linear.*                          linear/*                   [1,C] -> [C,1]
     embed.{weight,u0,sv0}             embed/{embeddings,sn_u,sn_sigma}  copy

Every SN layer: `weight` -> kernel, `bias` -> bias, `u0` [1, N] -> `sn_u` [N],
`sv0` [1] -> `sn_sigma` []. Both codes index u by the layer's N *outputs* (PyTorch
views the weight as [out, in*kh*kw] and multiplies `u @ W`; ours is the [K, N]
transpose), so u0 is copied unpermuted except for the stem. Both run one power-
iteration step from the stored u in inference without storing it, so the imported
generator computes BigGAN-PyTorch's eval-mode function (with the supported BN styles
above); `sv0` (BigGAN-PyTorch logs it, never divides by it) becomes `sn_sigma`, used
only by `sn_mode="frozen"`.

Stem: PyTorch views the linear output as NCHW [C, 4, 4] (unit c*16 + h*4 + w), ours
as NHWC [4, 4, C] (unit (h*4 + w)*C + c); kernel columns, bias and u0 are permuted
accordingly. Hierarchical z: both split z into equal chunks in order (chunk 0 feeds the
stem) and condition block i on `concat[shared(y), z_chunk_{i+1}]`, so the CBN
projections map without permutation.

Ignored bookkeeping keys (not weights): any key ending in `num_batches_tracked`
(PyTorch BatchNorm / SyncBN counters) or `accumulation_counter` (`--mybn` standing-
statistics counter; a warning is logged if it is non-zero, because the stored
statistics are then sums that BigGAN-PyTorch divides by it only in its standing-stats
mode). Everything else must be consumed: a missing, unexpected or wrongly shaped
tensor is a `BigGANImportError` naming all of them.

Files: an unreadable input (empty, truncated, not a zip archive, not a state dict) is
a `BigGANImportError` naming the file, its size and what it looks like. The workdir
is written whole to a temporary sibling, checked, then moved onto the target
(`checkpoints.replace_dir`), so a failed import, `overwrite` or not, leaves an
earlier teacher there unchanged and no temporary directory behind.

TensorFlow is imported lazily, so reading and converting state dicts
(`load_state_dict`, `convert_to_npz`) works without it.

Parts (one concept per file):

* `common`: BigGANImportError, the StateDict / StateSource types, shared constants.
* `reading`: .pth / .npz / mapping -> canonical state dict (load_state_dict,
  canonical_state_dict, convert_to_npz, cross_replica_keys).
* `architecture`: infer_architecture (facts from tensor shapes), check_against_config.
* `mapping`: TensorMapping, generator_mapping / discriminator_mapping,
  check_state_dict, load_into.
* `writer`: import_teacher (the whole import, writing and verifying the workdir).
* `pretrained_format`, `pretrained`: huggingface's pytorch-pretrained-BigGAN releases
  (BigGAN-deep, G only; config.json + pytorch_model.bin): import_pretrained_teacher.
"""

from ppcd_tf.biggan_import.architecture import check_against_config, infer_architecture
from ppcd_tf.biggan_import.common import BigGANImportError, StateDict
from ppcd_tf.biggan_import.mapping import (TensorMapping, check_state_dict,
                                           discriminator_mapping, generator_mapping,
                                           load_into)
from ppcd_tf.biggan_import.reading import (CROSS_REPLICA_NOTE, IGNORED_KEY_SUFFIXES,
                                           TORCH_INSTALL_HINT, canonical_state_dict,
                                           convert_to_npz, cross_replica_keys,
                                           load_state_dict)
from ppcd_tf.biggan_import.pretrained import (import_pretrained_teacher,
                                              release_model_config)
from ppcd_tf.biggan_import.pretrained_format import ReleaseConfig, release_shapes
from ppcd_tf.biggan_import.writer import IMPORT_SUMMARY_FILE, MODEL_FLAGFILE, import_teacher

__all__ = [
    "BigGANImportError", "IGNORED_KEY_SUFFIXES", "TORCH_INSTALL_HINT", "StateDict",
    "TensorMapping", "load_state_dict", "canonical_state_dict", "convert_to_npz",
    "infer_architecture", "check_against_config", "generator_mapping",
    "discriminator_mapping", "check_state_dict", "load_into", "import_teacher",
    "IMPORT_SUMMARY_FILE", "CROSS_REPLICA_NOTE", "cross_replica_keys",
    "import_pretrained_teacher", "release_model_config", "ReleaseConfig", "release_shapes",
    "MODEL_FLAGFILE",
]
