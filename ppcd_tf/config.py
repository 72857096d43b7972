"""Frozen, validated configuration objects.

The library never reads absl FLAGS. Entry points turn flags into one `Config`
(see `ppcd_tf.flags.config_from_flags`) and pass it down; tests build a `Config`
directly, usually from `tiny_config()`.

Every `validate()` raises `ConfigError` (a `ValueError`) whose message names the
field, the bad value and what to do instead.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Optional, Tuple

__all__ = [
    "ConfigError", "Architecture", "ARCHITECTURES", "DataConfig", "ModelConfig",
    "PruningConfig", "DistillConfig", "OptimConfig", "RunConfig", "Config",
    "default_architecture", "tiny_config", "MODES", "STRATEGIES", "ARCHS",
    "DEEP_D_ARCHITECTURES", "LATENTS", "G_SN_MODES",
]

MODES = ("teacher", "ppcd")
STRATEGIES = ("mirrored", "multi_worker", "one_device", "tpu")
SCHEDULES = ("polynomial", "constant")
IMPORTANCES = ("learned", "taylor", "cost", "l1", "uniform_l1")  # ppcd_tf.importance
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")  # ppcd_tf.precision
# ppcd_tf.generator / ppcd_tf.discriminator: BigGAN, or BigGAN-deep (Brock et al. 2019,
# appendix B.5, Table 8): bottleneck blocks, two per resolution.
ARCHS = ("biggan", "biggan_deep")
# How training draws z (`ModelConfig.latent`): "normal" is N(0, I); "scaled_truncnorm" is
# pytorch-pretrained-BigGAN's `truncation * truncnorm(-2, 2)` (ppcd_tf/biggan_import/
# pretrained.py), t = `ModelConfig.latent_truncation`.
LATENTS = ("normal", "scaled_truncnorm")
G_SN_MODES = ("power_iteration", "frozen")  # ppcd_tf.layers.spectral_norm.SN_MODES


class ConfigError(ValueError):
  """A configuration value is out of range or inconsistent with another one."""


def _check(cond: bool, message: str) -> None:
  if not cond:
    raise ConfigError(message)


@dataclasses.dataclass(frozen=True)
class Architecture:
  """BigGAN channel layout for one resolution (BigGAN-PyTorch `G_arch`/`D_arch`).

  g_channel_mults[0] is the stem width (times g_ch); G block i maps
  g_channel_mults[i] -> g_channel_mults[i+1] and doubles the resolution, so there
  are log2(resolution / 4) G blocks. D block i outputs d_channel_mults[i] * d_ch and
  halves the resolution where d_downsample[i] is true.
  """
  g_channel_mults: Tuple[int, ...]
  d_channel_mults: Tuple[int, ...]
  d_downsample: Tuple[bool, ...]
  attention_res: Tuple[int, ...]


# Brock et al., "Large Scale GAN Training for High Fidelity Natural Image Synthesis"
# (ICLR 2019), Table 4-6 / BigGAN-PyTorch architecture tables.
ARCHITECTURES: Dict[int, Architecture] = {
    32: Architecture((4, 4, 4, 4), (4, 4, 4, 4), (True, True, False, False), (16,)),
    64: Architecture((16, 16, 8, 4, 2), (1, 2, 4, 8, 16),
                     (True, True, True, True, False), (32,)),
    128: Architecture((16, 16, 8, 4, 2, 1), (1, 2, 4, 8, 16, 16),
                      (True, True, True, True, True, False), (64,)),
}


# BigGAN-deep's discriminator (Brock et al. 2019, Table 8; the widths of BigGAN-PyTorch's
# BigGANdeep.py D_arch): an input 3x3 conv to d_ch * d_channel_mults[0], then one pair of
# blocks per later entry; pair j widens to d_channel_mults[j + 1] in its first block,
# which also halves the resolution where d_downsample[j] is true. The generator uses
# the table above (two blocks per resolution, the first keeps the width).
DEEP_D_ARCHITECTURES: Dict[int, Tuple[Tuple[int, ...], Tuple[bool, ...]]] = {
    32: ((4, 4, 4, 4), (True, True, False)),
    64: ((1, 2, 4, 8, 16), (True, True, True, True)),
    128: ((1, 2, 4, 8, 16, 16), (True, True, True, True, True)),
}


def default_architecture(resolution: int, arch: str = "biggan") -> Architecture:
  if arch == "biggan_deep" and resolution in ARCHITECTURES:
    base = ARCHITECTURES[resolution]
    d_mults, d_down = DEEP_D_ARCHITECTURES[resolution]
    return Architecture(base.g_channel_mults, d_mults, d_down, base.attention_res)
  if resolution not in ARCHITECTURES:
    raise ConfigError(
        f"resolution={resolution} has no built-in architecture (known: "
        f"{sorted(ARCHITECTURES)}); pass --g_channel_mults, --d_channel_mults and "
        "--d_downsample explicitly or pick a known resolution.")
  return ARCHITECTURES[resolution]


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Input pipeline settings (`ppcd_tf.data`)."""
  dataset: str = "mnist5k"          # registry name: mnist5k | tfds:<name>[/<cfg>] | folder:<path>
  data_dir: Optional[str] = None    # tfds data_dir
  manual_dir: Optional[str] = None  # tfds manual_dir (imagenet2012)
  split: str = "train"
  cache: bool = True
  shuffle_buffer: int = 10_000
  eval_fraction: float = 0.1        # held-out share for sources without a test split

  def validate(self) -> None:
    _check(bool(self.dataset), "dataset is empty; use mnist5k, tfds:<name> or folder:<path>.")
    _check(self.shuffle_buffer >= 1,
           f"shuffle_buffer={self.shuffle_buffer} must be >= 1.")
    _check(0.0 <= self.eval_fraction < 1.0,
           f"eval_fraction={self.eval_fraction} must be in [0, 1).")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Generator / discriminator shape (`ppcd_tf.generator`, `ppcd_tf.discriminator`)."""
  resolution: int = 32
  num_classes: int = 10
  image_channels: int = 3
  z_dim: int = 128
  shared_dim: int = 128
  g_ch: int = 32
  d_ch: int = 32
  g_channel_mults: Tuple[int, ...] = ()   # () -> ARCHITECTURES[resolution]
  d_channel_mults: Tuple[int, ...] = ()
  d_downsample: Tuple[bool, ...] = ()
  g_attention_res: Tuple[int, ...] = (16,)
  d_attention_res: Tuple[int, ...] = (16,)
  hierarchical_z: bool = True
  # Explicit generator widths (stem, mid_0..mid_{n-1}, out_0..out_{n-1}), e.g. the
  # architecture a PPCD run found (slim_report.json "slim_channels"); () = BigGAN widths.
  g_channels: Tuple[int, ...] = ()
  # (key, value) widths of every G self-attention layer; () = C/8, C/2 of the block's
  # width. A slimmed generator keeps its teacher's attention widths (attention is not
  # pruned), so a slim architecture trained from scratch sets these to match it
  # (`ppcd_tf.generator.slim_architecture`).
  g_attention_widths: Tuple[int, ...] = ()
  sn_eps: float = 1e-6
  bn_eps: float = 1e-5
  # "biggan" or "biggan_deep" (ARCHS): the block design of G and D.
  arch: str = "biggan"
  # Spectral norm of every G layer: "power_iteration" (BigGAN) or "frozen" (divide by the
  # stored sn_sigma; imported pytorch-pretrained-BigGAN weights, whose eval-mode sigma
  # u^T W v comes from stored u and v, which one power-iteration step does not give).
  g_sn_mode: str = "power_iteration"
  # n > 0: a teacher G's BatchNorms also hold n [n, C] statistics, one per truncation
  # 0, 1/(n-1), ..., 1 (pytorch-pretrained-BigGAN's n_stats); the teacher uses those of
  # `latent_truncation` (ppcd_tf.layers.truncation_batchnorm). 0: ordinary statistics.
  bn_stats: int = 0
  # z of training and distillation (LATENTS); latent_truncation is t of
  # "scaled_truncnorm" (0 < t <= 1; 0 with "normal"). A PPCD run may pick another t than
  # its teacher's import: the teacher then selects that t's statistics.
  latent: str = "normal"
  latent_truncation: float = 0.0

  @property
  def deep(self) -> bool:
    return self.arch == "biggan_deep"

  def resolved(self) -> "ModelConfig":
    """Returns a copy with empty architecture fields filled from ARCHITECTURES
    (DEEP_D_ARCHITECTURES for BigGAN-deep's discriminator)."""
    if self.g_channel_mults and self.d_channel_mults and self.d_downsample:
      return self
    arch = default_architecture(self.resolution, self.arch)
    return dataclasses.replace(
        self,
        g_channel_mults=self.g_channel_mults or arch.g_channel_mults,
        d_channel_mults=self.d_channel_mults or arch.d_channel_mults,
        d_downsample=self.d_downsample or arch.d_downsample)

  @property
  def num_g_blocks(self) -> int:
    """G blocks: one per 2x upsampling, two per resolution for BigGAN-deep."""
    return (len(self.resolved().g_channel_mults) - 1) * (2 if self.deep else 1)

  @property
  def g_mids_per_block(self) -> int:
    """Hidden widths (masks) per G block: 1 (BigGAN), 3 (BigGAN-deep's bottleneck)."""
    return 3 if self.deep else 1

  @property
  def z_chunk_size(self) -> int:
    """Size of each z chunk with a hierarchical latent (one for the stem + one per block)."""
    if not self.hierarchical_z:
      return self.z_dim
    return self.z_dim // (self.num_g_blocks + 1)

  def validate(self) -> None:
    r = self.resolution
    _check(self.arch in ARCHS, f"arch={self.arch!r} must be one of {ARCHS}.")
    _check(r >= 8 and (r & (r - 1)) == 0,
           f"resolution={r} must be a power of two >= 8 (e.g. 32, 64, 128).")
    m = self.resolved()
    n_blocks = int(math.log2(r // 4))
    _check(len(m.g_channel_mults) == n_blocks + 1,
           f"g_channel_mults={m.g_channel_mults} has {len(m.g_channel_mults)} entries; "
           f"resolution {r} needs {n_blocks + 1} (stem + one per 2x upsampling block).")
    _check(all(c >= 1 for c in m.g_channel_mults),
           f"g_channel_mults={m.g_channel_mults} must be positive integers.")
    _check(all(c >= 1 for c in m.d_channel_mults) and m.d_channel_mults,
           f"d_channel_mults={m.d_channel_mults} must be non-empty positive integers.")
    if self.deep:
      _check(len(m.d_downsample) == len(m.d_channel_mults) - 1,
             f"d_downsample has {len(m.d_downsample)} entries but d_channel_mults has "
             f"{len(m.d_channel_mults)}; BigGAN-deep's D needs one bool per block pair, "
             "one fewer than the widths (the first is the input conv's).")
      _check(not self.hierarchical_z,
             "hierarchical_z does not apply to BigGAN-deep (every block and the stem see "
             "all of z with the class embedding); pass --nohierarchical_z.")
    else:
      _check(len(m.d_downsample) == len(m.d_channel_mults),
             f"d_downsample has {len(m.d_downsample)} entries but d_channel_mults has "
             f"{len(m.d_channel_mults)}; give one bool per D block.")
    _check(r // (2 ** sum(m.d_downsample)) >= 1,
           f"d_downsample={m.d_downsample} downsamples {r}px below 1 pixel.")
    _check(self.num_classes >= 1, f"num_classes={self.num_classes} must be >= 1.")
    _check(self.image_channels in (1, 3),
           f"image_channels={self.image_channels} must be 1 or 3.")
    _check(self.g_ch >= 1 and self.d_ch >= 1,
           f"g_ch={self.g_ch}, d_ch={self.d_ch} must be >= 1.")
    _check(self.shared_dim >= 1, f"shared_dim={self.shared_dim} must be >= 1.")
    if self.hierarchical_z:
      _check(self.z_dim % (n_blocks + 1) == 0,
             f"z_dim={self.z_dim} must be divisible by {n_blocks + 1} (stem + {n_blocks} "
             f"blocks) with hierarchical_z; e.g. {(n_blocks + 1) * 20}.")
    else:
      _check(self.z_dim >= 1, f"z_dim={self.z_dim} must be >= 1.")
    g_res = {4 * 2 ** (i + 1) for i in range(n_blocks)}  # BigGAN-deep: the up-blocks
    for a in self.g_attention_res:
      _check(a in g_res, f"g_attention_res={a} is not a G block output resolution "
             f"{sorted(g_res)}; pick one of those or none.")
    d_res, size = set(), r
    for down in m.d_downsample:
      size = size // 2 if down else size
      d_res.add(size)
    for a in self.d_attention_res:
      _check(a in d_res or a == r, f"d_attention_res={a} is not a D feature resolution "
             f"{sorted(d_res | {r})}; pick one of those or none.")
    _check(self.sn_eps > 0 and self.bn_eps > 0, "sn_eps and bn_eps must be > 0.")
    _check(self.g_sn_mode in G_SN_MODES,
           f"g_sn_mode={self.g_sn_mode!r} must be one of {G_SN_MODES}.")
    _check(self.latent in LATENTS, f"latent={self.latent!r} must be one of {LATENTS}.")
    if self.latent == "scaled_truncnorm":
      _check(0 < self.latent_truncation <= 1,
             f"latent_truncation={self.latent_truncation} must be in (0, 1] with "
             "latent=scaled_truncnorm (z = t * truncnorm(-2, 2)).")
    else:
      _check(self.latent_truncation == 0,
             f"latent_truncation={self.latent_truncation} applies only to "
             "latent=scaled_truncnorm; pass 0 with latent=normal (sampling grids use "
             "--truncation).")
    _check(self.bn_stats == 0 or self.bn_stats >= 2,
           f"bn_stats={self.bn_stats} must be 0 (off) or >= 2 (statistics per truncation).")
    _check(self.bn_stats == 0 or self.latent == "scaled_truncnorm",
           f"bn_stats={self.bn_stats} needs latent=scaled_truncnorm: the statistics are "
           "chosen by its latent_truncation.")
    if self.g_channels:
      nb, k = self.num_g_blocks, self.g_mids_per_block
      _check(len(self.g_channels) == 1 + (k + 1) * nb and min(self.g_channels) >= 1,
             f"g_channels={self.g_channels} must hold {1 + (k + 1) * nb} positive widths "
             f"for {r}px ({self.arch}): stem, {k * nb} hidden widths ({k} per block), "
             f"{nb} output widths.")
    if self.g_attention_widths:
      _check(len(self.g_attention_widths) == 2 and min(self.g_attention_widths) >= 1,
             f"g_attention_widths={self.g_attention_widths} must be two positive widths "
             "(key, value), e.g. 2,8, or empty for C/8, C/2 of the block's width.")
      _check(bool(self.g_attention_res),
             f"g_attention_widths={self.g_attention_widths} has no effect: "
             "g_attention_res is empty (no G self-attention); drop g_attention_widths "
             "or set g_attention_res.")


@dataclasses.dataclass(frozen=True)
class PruningConfig:
  """Progressive channel pruning (`ppcd_tf.pruning`), METHOD.md "Progressive pruning"."""
  target_fraction: float = 0.81     # fraction of G parameters to remove
  budget_params: int = 0            # >0: absolute live-parameter budget (overrides fraction)
  budget_macs: int = 0              # >0: MAC budget instead of parameters
  schedule: str = "polynomial"      # polynomial | constant (tfmot schedule objects)
  begin_step: int = 0
  end_step: int = 1000
  frequency: int = 50
  power: float = 3.0
  sparsity_weight: float = 1e-4     # L1 on mask scores, weighted by channel cost
  mask_lr_scale: float = 10.0       # mask score learning rate = g_lr * scale
  cost_exponent: float = 1.0        # rank by sigmoid(score) / relative_cost ** exponent
  min_channel_fraction: float = 0.05  # every mask keeps at least this share (and >= 1)
  importance: str = "taylor"        # one of IMPORTANCES (ppcd_tf.importance)
  slim_finetune: bool = True        # after end_step, train the dense slim G (slim_finetune.py)
  qat_steps: int = 0                # the last N steps train with int8 fake quant (ppcd_tf.qat)

  def validate(self) -> None:
    _check(0.0 < self.target_fraction < 1.0,
           f"target_fraction={self.target_fraction} must be in (0, 1): it is the "
           "fraction of generator parameters to remove (0.81 removes 81%).")
    _check(self.budget_params >= 0 and self.budget_macs >= 0,
           "budget_params and budget_macs must be >= 0 (0 = use target_fraction).")
    _check(not (self.budget_params and self.budget_macs),
           "set at most one of budget_params and budget_macs.")
    _check(self.schedule in SCHEDULES,
           f"schedule={self.schedule!r} must be one of {SCHEDULES}.")
    _check(0 <= self.begin_step < self.end_step,
           f"begin_step={self.begin_step} must be >= 0 and < end_step={self.end_step}.")
    _check(self.frequency >= 1, f"frequency={self.frequency} must be >= 1.")
    _check(0 < self.power < math.inf, f"power={self.power} must be a finite number > 0.")
    _check(0 <= self.sparsity_weight < math.inf,
           f"sparsity_weight={self.sparsity_weight} must be a finite number >= 0.")
    _check(0 < self.mask_lr_scale < math.inf,
           f"mask_lr_scale={self.mask_lr_scale} must be a finite number > 0.")
    _check(0 <= self.cost_exponent < math.inf,
           f"cost_exponent={self.cost_exponent} must be a finite number >= 0.")
    _check(0.0 <= self.min_channel_fraction < 1.0,
           f"min_channel_fraction={self.min_channel_fraction} must be in [0, 1).")
    _check(self.importance in IMPORTANCES,
           f"importance={self.importance!r} must be one of {IMPORTANCES}.")
    _check(self.qat_steps >= 0, f"qat_steps={self.qat_steps} must be >= 0 (0 = no QAT).")


@dataclasses.dataclass(frozen=True)
class DistillConfig:
  """Class-aware distillation (`ppcd_tf.distill`), METHOD.md "Class-aware distillation"."""
  teacher_dir: Optional[str] = None
  init_from_teacher: bool = True
  init_optimizer_from_teacher: bool = True  # with init_from_teacher: Adam states too
  # Weights chosen so that each term's gradient on G is a meaningful share of the
  # adversarial term's (BUILD.md "Distillation weights"; tools/grad_shares.py): with
  # weight 1 the shares were about 4e-4 (att), 0.01 (cam) and 0.08 (pix).
  lambda_att: float = 1000.0
  lambda_cam: float = 30.0
  lambda_pix: float = 5.0
  use_masks: bool = True            # False: distillation without PP-Res (ablation)
  # A teacher without a discriminator (a generator-only checkpoint): the first N steps
  # train a fresh D against real data and the frozen student (= teacher) samples;
  # the teacher-side D of the CAM term is that D as it is at step N.
  d_warmup_steps: int = 0

  def validate(self) -> None:
    for name in ("lambda_att", "lambda_cam", "lambda_pix"):
      v = getattr(self, name)
      _check(v >= 0 and math.isfinite(v), f"{name}={v} must be a finite number >= 0.")
    _check(self.d_warmup_steps >= 0,
           f"d_warmup_steps={self.d_warmup_steps} must be >= 0 (0 = the teacher has a D).")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """Optimisation (`ppcd_tf.train_lib`)."""
  batch_size: int = 64
  num_steps: int = 2000
  g_lr: float = 2e-4
  d_lr: float = 2e-4
  beta1: float = 0.0
  beta2: float = 0.999
  d_steps: int = 1
  ema_decay: float = 0.999
  ema_start: int = 0

  def validate(self) -> None:
    _check(self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1.")
    _check(self.num_steps >= 1, f"num_steps={self.num_steps} must be >= 1.")
    _check(0 < self.g_lr < math.inf and 0 < self.d_lr < math.inf,
           f"g_lr={self.g_lr}, d_lr={self.d_lr} must be finite numbers > 0.")
    _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1,
           f"beta1={self.beta1}, beta2={self.beta2} must be in [0, 1).")
    _check(self.d_steps >= 1, f"d_steps={self.d_steps} must be >= 1.")
    _check(0 <= self.ema_decay < 1, f"ema_decay={self.ema_decay} must be in [0, 1).")
    _check(self.ema_start >= 0, f"ema_start={self.ema_start} must be >= 0.")


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Where and how a run executes."""
  workdir: str = "runs/default"
  mode: str = "teacher"
  seed: int = 0
  strategy: str = "mirrored"
  log_every: int = 50
  save_every: int = 500
  sample_every: int = 500
  eval_every: int = 0               # 0: no evaluation during training
  grad_norm_every: int = 500        # PPCD: per-term gradient norms to TensorBoard (0: off)
  eval_extractor: str = ""          # classifier:<dir> | inception:<path>, for eval_every
  eval_num_samples: int = 1000
  early_stop_evals: int = 0         # stop after this many evaluations without a real gain (0 = off)
  early_stop_min_delta: float = 0.02  # relative FID gain that counts (ppcd_tf.early_stop)
  stats_dir: str = "runs/reference_stats"
  keep_checkpoints: int = 3
  truncation: float = 0.0           # 0 = none; t > 0 redraws latent entries with |z| > t
  precision: str = "float32"        # float32 | mixed_bfloat16 | mixed_float16 (ppcd_tf.precision)
  jit_compile: bool = False         # XLA for the train steps and evaluation sampling

  def validate(self) -> None:
    _check(bool(self.workdir), "workdir is empty; pass --workdir=DIR.")
    _check(self.precision in PRECISIONS,
           f"precision={self.precision!r} must be one of {PRECISIONS}.")
    _check(self.mode in MODES, f"mode={self.mode!r} must be one of {MODES}.")
    _check(self.strategy in STRATEGIES,
           f"strategy={self.strategy!r} must be one of {STRATEGIES}.")
    _check(0 <= self.seed < 2 ** 31, f"seed={self.seed} must be in [0, 2**31).")
    for name in ("log_every", "save_every", "sample_every"):
      _check(getattr(self, name) >= 1, f"{name}={getattr(self, name)} must be >= 1.")
    _check(self.eval_every >= 0, f"eval_every={self.eval_every} must be >= 0.")
    _check(self.grad_norm_every >= 0,
           f"grad_norm_every={self.grad_norm_every} must be >= 0 (0 = off).")
    _check(not self.eval_every or bool(self.eval_extractor),
           f"eval_every={self.eval_every} needs --eval_extractor (e.g. classifier:<dir> "
           "from python -m ppcd_tf.train_classifier).")
    _check(self.eval_num_samples >= 20,
           f"eval_num_samples={self.eval_num_samples} must be >= 20.")
    _check(self.early_stop_evals >= 0,
           f"early_stop_evals={self.early_stop_evals} must be >= 0 (0 = off).")
    _check(not self.early_stop_evals or self.eval_every > 0,
           f"early_stop_evals={self.early_stop_evals} needs --eval_every > 0 (the FIDs "
           "it watches).")
    _check(0.0 <= self.early_stop_min_delta < 1.0,
           f"early_stop_min_delta={self.early_stop_min_delta} must be in [0, 1) "
           "(a relative FID improvement, 0.02 = 2%).")
    _check(self.keep_checkpoints >= 1,
           f"keep_checkpoints={self.keep_checkpoints} must be >= 1.")
    _check(0 <= self.truncation <= 4.0 and math.isfinite(self.truncation),
           f"truncation={self.truncation} must be in [0, 4] (0 = no truncation).")


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything one run needs. Build with `Config(...)`, then `validate()`."""
  data: DataConfig = DataConfig()
  model: ModelConfig = ModelConfig()
  pruning: PruningConfig = PruningConfig()
  distill: DistillConfig = DistillConfig()
  optim: OptimConfig = OptimConfig()
  run: RunConfig = RunConfig()

  def validate(self) -> "Config":
    for part in (self.data, self.model, self.pruning, self.distill, self.optim, self.run):
      part.validate()
    if self.run.mode == "ppcd":
      _check(bool(self.distill.teacher_dir) or not self.distill.init_from_teacher,
             "mode=ppcd needs --teacher_dir=DIR (a teacher workdir from --mode=teacher); "
             "pass --noinit_from_teacher with all lambdas 0 to train a student from scratch.")
      uses_teacher = (self.distill.lambda_att or self.distill.lambda_cam
                      or self.distill.lambda_pix)
      _check(bool(self.distill.teacher_dir) or not uses_teacher,
             "distillation weights are > 0 but no --teacher_dir is given; pass the "
             "teacher workdir or set --lambda_att=0 --lambda_cam=0 --lambda_pix=0.")
      _check(self.pruning.end_step < self.optim.num_steps,
             f"prune_end_step={self.pruning.end_step} must be < num_steps="
             f"{self.optim.num_steps}: the last pruning event runs at prune_end_step "
             "and the survivors are fine-tuned after it.")
    w = self.distill.d_warmup_steps
    if self.run.mode == "ppcd" and w:
      _check(w < self.optim.num_steps,
             f"d_warmup_steps={w} must be < num_steps={self.optim.num_steps}.")
      _check(not self.distill.use_masks or self.pruning.begin_step >= w,
             f"prune_begin_step={self.pruning.begin_step} is inside the discriminator "
             f"warm-up (d_warmup_steps={w}); pruning starts after it: pass "
             f"--prune_begin_step={w} or more.")
    q = self.pruning.qat_steps
    if q:
      _check(q < self.optim.num_steps,
             f"qat_steps={q} must be < num_steps={self.optim.num_steps}: QAT is the "
             "last qat_steps steps of the run.")
      _check(self.run.precision == "float32",
             f"qat_steps={q} needs --precision=float32 (the fake-quant ops are float32), "
             f"not {self.run.precision}.")
      if self.run.mode == "ppcd" and self.distill.use_masks:
        _check(self.pruning.slim_finetune,
               f"qat_steps={q} quantises the dense slim generator; it needs "
               "--prune_slim_finetune.")
        _check(self.pruning.end_step < self.optim.num_steps - q,
               f"qat_steps={q} starts QAT at step {self.optim.num_steps - q}, at or "
               f"before prune_end_step={self.pruning.end_step}; QAT follows the last "
               "pruning event: lower --qat_steps or raise --num_steps.")
    return self

  def replace(self, **parts: Any) -> "Config":
    """`cfg.replace(optim=dict(batch_size=8))` returns a copy with fields changed."""
    new = {}
    for name, value in parts.items():
      current = getattr(self, name)
      new[name] = dataclasses.replace(current, **value) if isinstance(value, dict) else value
    return dataclasses.replace(self, **new)

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Dict[str, Any]) -> "Config":
    parts = {}
    for f in dataclasses.fields(cls):
      sub_cls = type(getattr(cls(), f.name))
      values = dict(d.get(f.name, {}))
      for sf in dataclasses.fields(sub_cls):
        if sf.name in values and isinstance(values[sf.name], list):
          values[sf.name] = tuple(values[sf.name])
      parts[f.name] = sub_cls(**values)
    return cls(**parts)


def tiny_config(**overrides: Any) -> Config:
  """A seconds-per-step config for tests: 32 px, width 8, batch 4, 10 classes."""
  cfg = Config(
      model=ModelConfig(resolution=32, num_classes=10, g_ch=4, d_ch=4, z_dim=32,
                        shared_dim=16, g_attention_res=(16,), d_attention_res=(16,)),
      optim=OptimConfig(batch_size=4, num_steps=4),
      pruning=PruningConfig(begin_step=0, end_step=2, frequency=1),
      run=RunConfig(log_every=1, save_every=2, sample_every=2),
      data=DataConfig(shuffle_buffer=64))
  return cfg.replace(**overrides) if overrides else cfg
