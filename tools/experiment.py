"""PPCD against its baselines at equal budgets over training seeds; docs/RESULTS.md.

  python -m tools.experiment --workdir=runs/experiment [--seeds=1,2,3] \
      [--only=ppcd_t81,oneshot_l1] [--student_steps=6000] [--report_only]

The protocol (docs/RESULTS.md states it with the numbers):

* One teacher, the converged one that ships (`--teacher_dir`, assets/teachers/mnist32;
  `--teacher_dir=` trains WORKDIR/teacher instead), evaluated once.
* PPCD ranks channels by the Taylor importance of its mask gates
  (`--prune_importance=taylor`, BUILD.md "Which channels go"), with a per-mask floor of
  5% as a safety net only.
* Every student trains `--student_steps` steps from that teacher (its weights and D),
  at every training seed of `--seeds`. Progressive pruning runs from 5% to 60% of
  them (20 events); the one-shot baselines prune at step 0. Every run's EMA starts
  at 60% of the student steps, so each method's EMA averages the same final stretch
  of training on its final architecture (PPCD's EMA restarts at each pruning event
  anyway, and its last event is at 60%).
* The from-scratch rows train PPCD's slim widths exactly (attention included, from
  the same seed's PPCD run): once for the student steps (the "equal student steps"
  view: a user who already has a teacher) and once for teacher + student steps
  (the "equal total steps" view).
* Every run is evaluated on `--num_samples` samples (FID, KID, intra-FID, IS, class
  accuracy; latent seed 0, features of the metrics classifier), exported to TFLite
  fp32 and timed at batch 1. The teacher, PPCD at the main budget and the structured
  baselines are also exported as every TFLite variant (fp32, fp16, dynamic-range,
  int8), each evaluated through LiteRT on the same latents and timed. Students also evaluate every 1/`--curve_evals` of their
  steps on `--curve_samples` samples, for the FID-against-steps curves.
* The metrics classifier is trained in WORKDIR/classifier (the default recipe). A
  fresh workdir's classifier must give the teacher the FID of the committed
  RESULTS/teacher.json within 0.1% before anything runs (`check_metrics`), so results
  from different checkouts are comparable.
* `tools/experiment_report.py` turns the result files into RESULTS.md: mean ± sd
  over seeds and a two-sided Welch t-test against PPCD for every row
  (`ppcd_tf.stats`); "better"/"worse" only at p < 0.05.
* Seeds: `REPORT_SEEDS` (1-5) are for reporting only; tuning (tools/tune.py, which
  refuses them, or by hand) uses seed 0 or 100 and up.

Runs (a registry; each reuses a finished result and resumes an interrupted run, so
the experiment can be stopped and restarted freely, e.g. in session-sized chunks):

  teacher               the teacher (evaluation and export in WORKDIR/teacher_outputs)
  ppcd_t81              PPCD: learned masks, progressive, distillation, 81% removed
  oneshot_l1            structured: one-shot global L1-filter pruning + distillation
                        (one threshold on layer-normalised norms, no cost weighting)
  uniform_l1_distill    structured: uniform-width L1 slimming + distillation
  uniform_l1            structured: uniform-width L1 slimming, GAN loss only
  no_distill            PP-Res pruning without distillation
  ppcd_cost             PPCD's pipeline with cost-only ranking (what the importance adds)
  magnitude             unstructured: tfmot magnitude pruning (teacher's widths and MACs)
  teacher_more          control: the teacher trained student-steps more (not compressed)
  distill_slim          PPCD's slim widths from scratch with distillation
  scratch_student       PPCD's slim widths from scratch, student steps
  scratch               PPCD's slim widths from scratch, teacher + student steps
  no_att/no_cam/no_pix  PPCD with one distillation term removed
  ppcd_t50/t70/t90      PPCD at the other budgets
  oneshot_l1_t50/...    the one-shot baseline at the other budgets
  oneshot_l1_cost       the one-shot baseline ranked per unit of cost (degenerate)

Results go to `--results` as they finish (RESULTS/teacher.json,
RESULTS/seed<N>/<run>.json, sample grids), so they can be committed one by one.
Training wall time sums every invocation (`ppcd_tf.wall_log`, WORKDIR/.../wall_log.json)
with the machine's load average at each start and end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from typing import Dict, List, Optional, Sequence

from absl import app, flags, logging

TARGETS = (0.5, 0.7, 0.81, 0.9)
MAIN_TARGET = 0.81
MAIN_RUN = "ppcd_t81"
# Training seeds reserved for reporting; tuning must use others (tools/tune.py checks).
REPORT_SEEDS = (1, 2, 3, 4, 5)
DEFAULT_SEEDS = (1, 2, 3)
WALL_LOG = "wall_log.json"
SAFETY_FLOOR = 0.05  # --prune_min_channel_fraction of every ranking but 'learned'
# The structured baselines PPCD must beat significantly (the goal in RESULTS.md).
STRUCTURED = ("oneshot_l1", "uniform_l1_distill", "uniform_l1")
# A metrics classifier trained anew (a fresh --workdir) must score the teacher as the
# committed teacher result says, within this relative FID difference, or new FIDs could
# not be compared with the committed ones. Measured: retrained with oneDNN on, the
# teacher's FID moved 1.2e-6 (1.1241195 vs 1.1241181).
METRICS_CHECK_TOLERANCE = 1e-3
# Runs whose every TFLite variant is exported, evaluated through LiteRT and timed
# (RESULTS.md "Exported variants"): what a user would ship at the main budget.
VARIANT_RUNS = ("teacher", MAIN_RUN) + STRUCTURED
VARIANTS = (("fp32", "none"), ("fp16", "float16"), ("dynamic", "dynamic"), ("int8", "int8"))
VARIANT_NAMES = tuple(n for n, _ in VARIANTS)
METRICS_CHECK_FILE = "teacher_check.json"
QAT_FRACTION = 12  # QAT steps after PPCD's last step: student steps / 12 (500 of 6,000)
QAT_RUN = "ppcd_t81_qat"
QAT_VARIANTS = (("int8", "int8"),)
_NO_DISTILL = dict(lambda_att=0.0, lambda_cam=0.0, lambda_pix=0.0)


def _define_flags():
  """Flags of this tool; defined only when it runs as a program, so tests can
  import it next to other tools that define the same names."""
  flags.DEFINE_string("workdir", "runs/experiment", "Root of every run's workdir.")
  flags.DEFINE_string("config", "configs/mnist32.cfg", "Base flagfile of all runs.")
  flags.DEFINE_string("results", "docs/results", "Where the small result files go (committed).")
  flags.DEFINE_list("only", [], "Run only these runs (and what they need); default all.")
  flags.DEFINE_list("seeds", list(map(str, DEFAULT_SEEDS)),
                    f"Training seeds of every student run (from {REPORT_SEEDS}, the "
                    "seeds reserved for reporting).")
  flags.DEFINE_integer("num_samples", 10000, "Samples per final evaluation.",
                       lower_bound=20)
  flags.DEFINE_integer("curve_evals", 10, "Evaluations during each student run (0 = none).",
                       lower_bound=0)
  flags.DEFINE_integer("curve_samples", 2000, "Samples per evaluation during training.",
                       lower_bound=20)
  flags.DEFINE_integer("latency_repeats", 50, "Timed batch-1 TFLite calls (median).",
                       lower_bound=3)
  flags.DEFINE_integer("classifier_epochs", 10, "Epochs of the metrics classifier.",
                       lower_bound=1)
  flags.DEFINE_bool("report_only", False,
                    "Only rebuild RESULTS.md, tables and plots from the result files "
                    "already in --results (runs nothing).")
  flags.DEFINE_string("results_md", "docs/RESULTS.md",
                      "The results document written from the result files.")
  flags.DEFINE_integer(
      "student_steps", 0, "Training steps of every student run; the pruning schedule "
      "and EMA start are scaled to it. 0 = the flagfile's --num_steps.", lower_bound=0)
  flags.DEFINE_string(
      "teacher_dir", "assets/teachers/mnist32",
      "The teacher every student distils from: a packaged teacher (the converged one that "
      "ships, checksums verified first) or any --mode=teacher workdir of --config's "
      "architecture. Empty (--teacher_dir=) trains WORKDIR/teacher with --config; "
      "python -m tools.train_teacher retrains the shipped one.")
  flags.DEFINE_list(
      "tflite_variants", list(VARIANT_NAMES),
      "TFLite variants exported, timed and evaluated for the teacher, PPCD's main run and "
      "the structured baselines (RESULTS.md \"Exported variants\"); fp32 is required.")


@dataclasses.dataclass(frozen=True)
class Run:
  name: str
  kind: str        # teacher | ppcd | magnitude | teacher_more | scratch | distill_slim | qat
  label: str
  view: str        # reference | student (equal student steps) | total (equal total steps)
                   # | edge (the int8 comparison only)
  needs: tuple = ()
  target: float = MAIN_TARGET
  distill: Optional[dict] = None   # DistillConfig overrides
  importance: str = "taylor"       # PruningConfig.importance (ppcd kind): PPCD's ranking
  one_shot: bool = False           # prune to the target at step 0
  total_steps: bool = False        # scratch: teacher + student steps
  cost_exponent: float = 1.0       # PruningConfig.cost_exponent (global rankings)


def _registry() -> List[Run]:
  # Order = run order: the main comparison at 81% first, then the controls and
  # ablations, then the other budgets, so an interrupted experiment has the key rows.
  def pct(t):
    return int(round(t * 100))

  ppcd = {t: Run(f"ppcd_t{pct(t)}", "ppcd", f"PPCD ({t:.0%} removed)", "student",
                 target=t) for t in TARGETS}
  # One global threshold on the layer-normalised L1 norms, no cost weighting (as
  # network slimming's global threshold, Liu et al. 2017). Ranked per unit of cost
  # instead, the cheap-per-channel masks keep everything and the residual stream is
  # cut to its floor (2 channels: oneshot_l1_cost, kept as the record of that).
  oneshot = {t: Run("oneshot_l1" + ("" if t == MAIN_TARGET else f"_t{pct(t)}"), "ppcd",
                    "One-shot L1 pruning + distillation"
                    + ("" if t == MAIN_TARGET else f" ({t:.0%} removed)"), "student",
                    target=t, importance="l1", one_shot=True, cost_exponent=0.0)
             for t in TARGETS}
  slim = (MAIN_RUN,)
  return [
      Run("teacher", "teacher", "Teacher (BigGAN)", "reference"),
      ppcd[MAIN_TARGET],
      oneshot[MAIN_TARGET],
      Run("uniform_l1_distill", "ppcd", "Uniform L1 slimming + distillation", "student",
          importance="uniform_l1", one_shot=True),
      Run("uniform_l1", "ppcd", "Uniform L1 slimming, GAN loss only", "student",
          importance="uniform_l1", one_shot=True, distill=_NO_DISTILL),
      Run("no_distill", "ppcd", "PP-Res pruning, no distillation", "student",
          distill=_NO_DISTILL),
      Run("ppcd_cost", "ppcd", "PPCD with cost-only ranking", "student", importance="cost"),
      Run("magnitude", "magnitude", "tfmot magnitude pruning (unstructured)", "student"),
      Run("teacher_more", "teacher_more", "Teacher + student steps more (not compressed)",
          "student"),
      Run("distill_slim", "distill_slim", "PPCD's slim widths from scratch + distillation",
          "student", needs=slim),
      Run("scratch_student", "scratch", "PPCD's slim widths from scratch", "student",
          needs=slim),
      Run("scratch", "scratch", "PPCD's slim widths from scratch, teacher + student steps",
          "total", needs=slim, total_steps=True),
      Run("no_att", "ppcd", "PPCD without attention term", "student",
          distill=dict(lambda_att=0.0)),
      Run("no_cam", "ppcd", "PPCD without CAM term", "student", distill=dict(lambda_cam=0.0)),
      Run("no_pix", "ppcd", "PPCD without pixel term", "student", distill=dict(lambda_pix=0.0)),
      # PPCD's finished run at the same seed, continued for `qat_steps` steps through
      # int8 fake quant, exported int8 with its own ranges.
      Run(QAT_RUN, "qat", "PPCD (81% removed) + quantisation-aware steps, int8", "edge",
          needs=(MAIN_RUN,)),
  ] + [ppcd[t] for t in TARGETS if t != MAIN_TARGET] + [
      oneshot[t] for t in TARGETS if t != MAIN_TARGET] + [
      Run("oneshot_l1_cost", "ppcd", "One-shot L1 per unit of cost + distillation "
          "(degenerate: residual stream at its floor)", "student", importance="l1",
          one_shot=True, cost_exponent=1.0)]


RUNS = {r.name: r for r in _registry()}


def budget_family(family: str) -> List[str]:
  """The runs of one method at every budget: 'ppcd_t' -> ppcd_t50 ... ppcd_t90,
  'oneshot_l1' -> oneshot_l1 and oneshot_l1_t50 ...; any other run name -> itself."""
  pattern = re.compile(re.escape(family) + (r"\d+" if family.endswith("_t") else r"(_t\d+)?"))
  return [n for n in RUNS if pattern.fullmatch(n)]


class Experiment:
  """Runs and evaluates the registry's runs under one root directory."""

  def __init__(self, root: str, config_path: str, results_dir: str, num_samples: int,
               latency_repeats: int, classifier_epochs: int = 10, student_steps: int = 0,
               seeds: Sequence[int] = DEFAULT_SEEDS, teacher_dir: str = "",
               curve_evals: int = 10, curve_samples: int = 2000,
               tflite_variants: Sequence[str] = VARIANT_NAMES):
    from ppcd_tf import flags as ppcd_flags
    from ppcd_tf.config import ConfigError
    bad = [s for s in seeds if s not in REPORT_SEEDS]
    if bad or not seeds:
      raise ConfigError(f"--seeds={','.join(map(str, seeds))}: report seeds must be from "
                        f"{REPORT_SEEDS} (tuning uses the others).")
    if not set(tflite_variants) <= set(VARIANT_NAMES) or "fp32" not in tflite_variants:
      raise ConfigError(f"--tflite_variants={','.join(tflite_variants)}: choose from "
                        f"{','.join(VARIANT_NAMES)}, with fp32 (the variant every run is timed as).")
    # In VARIANTS order, so fp32 is first (finish's export, reused by variants).
    self.tflite_variants = tuple(v for v in VARIANTS if v[0] in tflite_variants)
    self.root, self.results_dir, self.seeds = root, results_dir, tuple(seeds)
    self.config_path = config_path
    self.base = ppcd_flags.parse_flagfile(config_path)
    self.num_samples, self.latency_repeats = num_samples, latency_repeats
    self.classifier_epochs = classifier_epochs
    self.student_steps = student_steps or self.base.optim.num_steps
    self.curve_evals, self.curve_samples = curve_evals, curve_samples
    # A given teacher is used as it is (nothing is written into it); "" trains one.
    self.teacher_dir = teacher_dir
    os.makedirs(self.results_dir, exist_ok=True)

  # -------------------------------------------------------------- layout
  def workdir(self, name: str, seed: int = 0) -> str:
    if name == "teacher":
      return self.teacher_dir or os.path.join(self.root, "teacher")
    return os.path.join(self.root, f"seed{seed}", name)

  def result_path(self, name: str, seed: int = 0) -> str:
    if name == "teacher":
      return os.path.join(self.results_dir, "teacher.json")
    return os.path.join(self.results_dir, f"seed{seed}", f"{name}.json")

  @property
  def extractor(self) -> str:
    return "classifier:" + os.path.join(self.root, "classifier")

  def _outputs(self, name: str, seed: int) -> str:
    """Where a run's evaluation and export go: its workdir, or, for the teacher,
    ROOT/teacher_outputs (a given teacher's directory stays untouched)."""
    if name == "teacher":
      return os.path.join(self.root, "teacher_outputs")
    return self.workdir(name, seed)

  # -------------------------------------------------------------- budgets
  def schedule(self) -> Dict:
    """Progressive pruning over the student steps: events from 5% to 60%."""
    n = self.student_steps
    end = max(2, int(0.6 * n))
    begin = min(int(0.05 * n), end - 1)
    return dict(begin_step=begin, end_step=end, frequency=max(1, (end - begin) // 20))

  def teacher_step(self) -> int:
    """Steps the teacher trained (its checkpoint's, or a package's best step)."""
    from ppcd_tf import teacher_asset
    return teacher_asset.check_teacher_dir(self.workdir("teacher"))[1]

  @property
  def qat_steps(self) -> int:
    """Steps of the QAT run after PPCD's last: a twelfth of the student steps."""
    return max(1, self.student_steps // QAT_FRACTION)

  def steps_of(self, run: Run) -> tuple:
    """(first step, last step) of a run's step counter."""
    if run.kind == "qat":
      return 0, self.student_steps + self.qat_steps
    if run.kind == "teacher_more":
      t = self.teacher_step()
      return t, t + self.student_steps
    if run.total_steps:
      return 0, self.teacher_step() + self.student_steps
    return 0, self.student_steps

  @staticmethod
  def min_channel_fraction(run: Run) -> float:
    """The per-mask floor: a safety net of 5% (at least 1 channel) for a ranking that
    sees the loss or the weights; the mask scores ('learned') got 1 - target, since
    their ranking was decided by cost and cut the residual stream to 2 channels."""
    return round(1.0 - run.target, 4) if run.importance == "learned" else SAFETY_FLOOR

  def slim_channels(self, seed: int) -> tuple:
    """The slim widths (stem, mids, outs) PPCD found at the main budget at `seed`."""
    path = os.path.join(self.workdir(MAIN_RUN, seed), "slim", "slim_report.json")
    c = json.load(open(path))["slim_channels"]
    return (c["stem"],) + tuple(c["mid"]) + tuple(c["out"])

  # -------------------------------------------------------------- configs
  def config_for(self, run: Run, seed: int = 0):
    wd = self.workdir(run.name, seed)
    if run.kind == "teacher":
      return self.base.replace(run=dict(workdir=wd, mode="teacher"))
    if run.kind == "qat":
      main = self.config_for(RUNS[MAIN_RUN], seed)
      # float32: the fake quant is float32 (checkpoints hold float32 weights under
      # every policy, so the mixed-precision run's checkpoint restores as it is).
      return main.replace(run=dict(workdir=wd, eval_every=0, precision="float32"), optim=dict(
          num_steps=main.optim.num_steps + self.qat_steps), pruning=dict(
              qat_steps=self.qat_steps)).validate()
    first, last = self.steps_of(run)
    end = self.schedule()["end_step"]
    every = (self.student_steps // self.curve_evals) if self.curve_evals else 0
    common = dict(
        run=dict(workdir=wd, seed=seed, eval_every=every,
                 eval_num_samples=self.curve_samples, eval_extractor=self.extractor,
                 stats_dir=os.path.join(self.root, "reference_stats"), early_stop_evals=0),
        optim=dict(num_steps=last, ema_start=last - (self.student_steps - end)))
    teacher = self.workdir("teacher")
    if run.kind == "teacher_more":
      cfg = self.base.replace(**common)
      return cfg.replace(run=dict(mode="teacher")).validate()
    if run.kind in ("scratch", "distill_slim"):
      from ppcd_tf.generator import GeneratorChannels, slim_architecture
      c = self.slim_channels(seed)
      n = (len(c) - 1) // 2
      model = slim_architecture(self.base.model, GeneratorChannels(
          stem=c[0], mid=tuple(c[1:1 + n]), out=tuple(c[1 + n:])))
      cfg = self.base.replace(model=dataclasses.asdict(model), **common)
      if run.kind == "scratch":
        return cfg.replace(run=dict(mode="teacher")).validate()
      return cfg.replace(run=dict(mode="ppcd"), distill=dict(
          teacher_dir=teacher, use_masks=False, init_from_teacher=False)).validate()
    distill = dict(teacher_dir=teacher, **(run.distill or {}))
    sched = (dict(schedule="constant", begin_step=0, end_step=1, frequency=1)
             if run.one_shot else self.schedule())
    cfg = self.base.replace(**common).replace(
        run=dict(mode="ppcd"), distill=distill,
        pruning=dict(target_fraction=run.target, importance=run.importance,
                     min_channel_fraction=self.min_channel_fraction(run),
                     cost_exponent=run.cost_exponent, **sched))
    if run.kind == "magnitude":
      from ppcd_tf import baselines
      return baselines.magnitude_config(cfg, teacher)
    return cfg.validate()

  # -------------------------------------------------------------- stages
  def classifier(self) -> None:
    from ppcd_tf import pipeline
    pipeline.ensure_classifier(self.base.data, self.base.model,
                               os.path.join(self.root, "classifier"), self.classifier_epochs)

  def check_metrics(self) -> None:
    """Scores the teacher with this workdir's metrics classifier, once, and refuses to go
    on when the FID differs from the committed teacher result's (a classifier that is
    not the one the results in `--results` were measured with)."""
    from ppcd_tf import evaluate
    from ppcd_tf.config import ConfigError
    committed_path = self.result_path("teacher")
    marker = os.path.join(self.root, "classifier", METRICS_CHECK_FILE)
    if not os.path.exists(committed_path) or os.path.exists(marker):
      return
    with open(committed_path) as f:
      committed = json.load(f)
    print(f"checking the metrics classifier: the teacher's FID against {committed_path}",
          flush=True)
    ev = evaluate.evaluate_workdir(
        self.workdir("teacher"), "ema", self.extractor, committed["num_samples"],
        seed=committed["eval_seed"], stats_dir=os.path.join(self.root, "reference_stats"),
        out_dir=os.path.join(self.root, "teacher_outputs", "metrics_check"))
    diff = abs(ev["fid"] / committed["fid"] - 1.0)
    if diff > METRICS_CHECK_TOLERANCE:
      raise ConfigError(
          f"the metrics classifier in {os.path.join(self.root, 'classifier')} gives the "
          f"teacher FID {ev['fid']:.6g}, but {committed_path} says {committed['fid']:.6g} "
          f"({diff:.2%} apart, allowed {METRICS_CHECK_TOLERANCE:.1%}): results measured "
          "with it could not be compared with the committed ones. Train it as the "
          "committed results were (--classifier_epochs, the same --config), or pass a new "
          "--results folder.")
    self._record_metrics_check(committed["fid"], ev["fid"], committed_path)

  def _record_metrics_check(self, committed_fid: float, fid: float, source: str) -> None:
    from ppcd_tf import checkpoints
    checkpoints.write_json_atomic(
        os.path.join(self.root, "classifier", METRICS_CHECK_FILE),
        dict(teacher_fid_committed=committed_fid, teacher_fid_here=fid, source=source,
             tolerance=METRICS_CHECK_TOLERANCE))

  def _seed_from_teacher(self, workdir: str) -> None:
    """teacher_more starts as a copy of the teacher's checkpoint (optimizer state too)."""
    from ppcd_tf import checkpoints
    dst = checkpoints.checkpoint_dir(workdir)
    if not os.path.isdir(dst):
      tmp = dst + ".tmp"
      shutil.rmtree(tmp, ignore_errors=True)
      shutil.copytree(checkpoints.checkpoint_dir(self.workdir("teacher")), tmp)
      os.replace(tmp, dst)

  def _seed_from_main_run(self, seed: int, workdir: str) -> None:
    """The QAT run starts as a copy of PPCD's finished workdir at the same seed (its
    checkpoints, config and slim switch record)."""
    from ppcd_tf import checkpoints, slim_finetune
    from ppcd_tf.config import ConfigError
    src = self.workdir(MAIN_RUN, seed)
    if os.path.isdir(checkpoints.checkpoint_dir(workdir)):
      return
    if not checkpoints.all_checkpoints(checkpoints.checkpoint_dir(src)):
      raise ConfigError(
          f"{QAT_RUN} continues {src}, which has no checkpoints here (a fresh checkout "
          f"has only the result files); rerun {MAIN_RUN} at seed {seed} on this machine "
          f"(delete {self.result_path(MAIN_RUN, seed)} first) or pick another seed.")
    tmp = workdir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(checkpoints.checkpoint_dir(src), checkpoints.checkpoint_dir(tmp))
    for name in ("config.json", slim_finetune.SWITCH_FILE):
      if os.path.exists(os.path.join(src, name)):
        shutil.copyfile(os.path.join(src, name), os.path.join(tmp, name))
    os.makedirs(os.path.dirname(workdir), exist_ok=True)
    os.replace(tmp, workdir)

  def train(self, run: Run, seed: int) -> Dict:
    from ppcd_tf import baselines, teacher_asset, train_lib, wall_log
    if run.kind == "teacher" and self.teacher_dir:
      info, step = teacher_asset.check_teacher_dir(self.teacher_dir)
      return dict(step=step, teacher_package=self.teacher_dir if info else None,
                  wall=dict(wall_seconds=(info or {}).get("train_wall_seconds"),
                            paused_seconds=(info or {}).get("paused_seconds")))
    cfg = self.config_for(run, seed)
    if run.kind == "teacher_more":
      self._seed_from_teacher(cfg.run.workdir)
    if run.kind == "qat":
      self._seed_from_main_run(seed, cfg.run.workdir)
    trainer_cls = (baselines.MagnitudePruningTrainer if run.kind == "magnitude"
                   else train_lib.Trainer)
    trainer = trainer_cls(cfg)
    log_path = os.path.join(cfg.run.workdir, WALL_LOG)
    summary = wall_log.timed_fit(trainer, log_path)
    summary["wall"] = wall_log.totals(wall_log.read(log_path))
    if run.kind == "magnitude":
      # Strip the tfmot wrappers from the EMA generator and keep it as a plain
      # (sparse) generator directory that evaluation and export read.
      from ppcd_tf import slim
      baselines.strip_magnitude_pruning(trainer.G_ema)
      slim.save_slim_generator(trainer.G_ema, os.path.join(cfg.run.workdir, "slim"))
    return summary

  def _curve(self, run: Run, seed: int) -> List[List[float]]:
    """[[student step, FID], ...] of the evaluations during training."""
    from ppcd_tf import early_stop
    if run.kind == "teacher":
      return []
    first, _ = self.steps_of(run)
    history = early_stop.read_eval_history(self.workdir(run.name, seed))
    return [[h["step"] - first, h["fid"]] for h in history if h["step"] > first]

  def finish(self, run: Run, seed: int, summary: Dict) -> Dict:
    """Slim (PPCD kinds), evaluate, export TFLite fp32, time it; write the result JSON."""
    from ppcd_tf import baselines, checkpoints, evaluate, flops, pipeline
    wd = self.workdir(run.name, seed)
    model, extra = "ema", {}
    if run.kind == "ppcd":
      report = pipeline.slim_workdir(wd)
      extra["slim_report"] = {k: report[k] for k in (
          "params_before", "params_after", "param_reduction", "macs_before",
          "macs_after", "max_abs_diff", "slim_channels")}
      model = "slim"
    elif run.kind == "magnitude":
      model = "slim"
    if summary.get("teacher_package"):
      extra["teacher_package"] = summary["teacher_package"]
    loaded = evaluate.load_for_eval(wd, model)
    generator = loaded[0]
    out = self._outputs(run.name, seed)
    ev = evaluate.evaluate_workdir(wd, model, self.extractor, self.num_samples,
                                   stats_dir=os.path.join(self.root, "reference_stats"),
                                   out_dir=os.path.join(out, "eval", model), loaded=loaded)
    # The QAT generator ships as int8 (its own ranges); everything else is timed as fp32.
    primary = QAT_VARIANTS[0] if run.kind == "qat" else VARIANTS[0]
    exp = pipeline.export_and_time(generator, os.path.join(out, "export", f"g_{primary[0]}.tflite"),
                                   self.latency_repeats, primary[1])
    cost = flops.count_generator(generator)
    params = cost.total_params
    if run.kind == "magnitude":
      params = baselines.nonzero_params(generator)  # unstructured: non-zero weights
    first, last = (0, summary.get("step")) if run.kind == "teacher" else self.steps_of(run)
    result = dict(
        name=run.name, label=run.label, kind=run.kind, view=run.view, target=run.target,
        importance=run.importance if run.kind == "ppcd" else None, one_shot=run.one_shot,
        cost_exponent=run.cost_exponent if run.kind == "ppcd" else None,
        params=params, macs=cost.total_macs,
        fid=ev["fid"], kid_mean=ev["kid_mean"], kid_std=ev["kid_std"],
        intra_fid=ev.get("intra_fid"), is_mean=ev["is_mean"],
        class_accuracy=ev.get("class_accuracy"), num_samples=ev["num_samples"],
        eval_seed=ev["seed"], train_seed=seed if run.kind != "teacher" else None,
        tflite_fp32_kib=exp["file_size_bytes"] / 1024,
        tflite_latency_ms=exp["latency_ms_batch1"], tflite_variant=primary[0],
        qat_steps=self.qat_steps if run.kind == "qat" else None,
        student_steps=last - first if run.kind != "teacher" else None,
        train_steps=summary.get("step"), wall=summary.get("wall"),
        curve=self._curve(run, seed), curve_samples=self.curve_samples,
        live_fraction=summary.get("live_fraction"),
        prune_min_channel_fraction=(self.min_channel_fraction(run) if run.kind == "ppcd"
                                    else None),
        config=self.config_path, **extra)
    if run.name in VARIANT_RUNS or run.kind == "qat":
      result["variants"] = self.variants(run, seed, generator, first_export=exp)
    path = self.result_path(run.name, seed)
    checkpoints.write_json_atomic(path, result)
    if run.kind == "teacher":  # this classifier measured the teacher result itself
      self._record_metrics_check(result["fid"], result["fid"], path)
    grid_dst = os.path.join(os.path.dirname(path), "grids", f"{run.name}.png")
    os.makedirs(os.path.dirname(grid_dst), exist_ok=True)
    shutil.copyfile(ev["grid"], grid_dst)
    return result

  def variants(self, run: Run, seed: int, generator=None,
               first_export: Optional[Dict] = None) -> Dict[str, Dict]:
    """Exports the run's final generator as every TFLite variant (`VARIANTS`, or the
    ones `tflite_variants` chose; the QAT run: `QAT_VARIANTS`), times each at batch 1 and evaluates each through LiteRT on
    the run's latents and features: {variant: {fid, kid_mean, intra_fid,
    class_accuracy, latency_ms, kib, max_abs_diff}}. `first_export` is `finish`'s
    export and timing of the first variant, reused instead of exporting and timing
    it again."""
    from ppcd_tf import evaluate, pipeline
    wd, out = self.workdir(run.name, seed), self._outputs(run.name, seed)
    if generator is None:
      model = "slim" if run.kind in ("ppcd", "magnitude") else "ema"
      generator = evaluate.load_for_eval(wd, model)[0]
    found = {}
    variants = QAT_VARIANTS if run.kind == "qat" else self.tflite_variants
    for i, (name, quantize) in enumerate(variants):
      path = os.path.join(out, "export", f"g_{name}.tflite")
      exp = (first_export if i == 0 and first_export is not None else
             pipeline.export_and_time(generator, path, self.latency_repeats, quantize))
      ev = evaluate.evaluate_exported(
          path, wd, self.extractor, self.num_samples,
          stats_dir=os.path.join(self.root, "reference_stats"),
          out_dir=os.path.join(out, "eval", f"tflite_{name}"))
      found[name] = dict(fid=ev["fid"], kid_mean=ev["kid_mean"], intra_fid=ev.get("intra_fid"),
                         class_accuracy=ev.get("class_accuracy"),
                         latency_ms=exp["latency_ms_batch1"],
                         kib=exp["file_size_bytes"] / 1024, max_abs_diff=exp["max_abs_diff"])
      print(f"[{run.name} seed {seed}] TFLite {name}: FID {ev['fid']:.2f}, "
            f"{exp['latency_ms_batch1']:.2f} ms", flush=True)
    return found

  def _add_variants(self, run: Run, seed: int, result: Dict) -> Dict:
    """A finished result of a `VARIANT_RUNS` run without variants gets them, where its
    workdir is still here (a fresh checkout has only the result files)."""
    from ppcd_tf import checkpoints
    if run.name not in VARIANT_RUNS or "variants" in result:
      return result
    wd = self.workdir(run.name, seed)
    if not checkpoints.all_checkpoints(checkpoints.checkpoint_dir(wd)):
      return result
    result = dict(result, variants=self.variants(run, seed))
    checkpoints.write_json_atomic(self.result_path(run.name, seed), result)
    return result

  def run(self, names: Optional[List[str]] = None) -> List[Dict]:
    """Runs what is missing of `names` (default: all) at every seed; returns the
    results of those runs."""
    wanted = self._closure(names or list(RUNS))
    self.classifier()
    self.check_metrics()
    done = []
    for name in [n for n in RUNS if n in wanted]:
      run = RUNS[name]
      for seed in ((0,) if name == "teacher" else self.seeds):
        path = self.result_path(name, seed)
        if os.path.exists(path):
          print(f"[{name} seed {seed}] done earlier: {path}", flush=True)
          done.append(self._add_variants(run, seed, json.load(open(path))))
          continue
        print(f"\n=== [{name}] {run.label}, training seed {seed} ===", flush=True)
        result = self.finish(run, seed, self.train(run, seed))
        print(f"[{name} seed {seed}] FID {result['fid']:.2f}, params {result['params']:,}",
              flush=True)
        done.append(result)
    return done

  def _closure(self, names: List[str]) -> set:
    out, stack = set(), ["teacher"] + list(names)
    while stack:
      n = stack.pop()
      if n not in RUNS:
        from ppcd_tf.config import ConfigError
        raise ConfigError(f"--only={n!r} is not a run; known: {', '.join(RUNS)}")
      if n not in out:
        out.add(n)
        stack.extend(RUNS[n].needs)
    return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from ppcd_tf import cli_errors
  from ppcd_tf import flags as ppcd_flags
  from tools import experiment_report
  f = flags.FLAGS
  with cli_errors.friendly_errors():
    seeds = ppcd_flags.int_list("seeds", f.seeds)
    exp = Experiment(f.workdir, f.config, f.results, f.num_samples, f.latency_repeats,
                     f.classifier_epochs, f.student_steps, seeds=seeds,
                     teacher_dir=f.teacher_dir, curve_evals=f.curve_evals,
                     curve_samples=f.curve_samples, tflite_variants=f.tflite_variants)
    if not f.report_only:
      exp.run(f.only or None)
    command = (f"python -m tools.experiment --workdir={f.workdir} --config={f.config} "
               f"--teacher_dir={f.teacher_dir} --student_steps={exp.student_steps} "
               f"--num_samples={f.num_samples} --seeds=<N,...> --only=<runs>")
    path = experiment_report.Report(exp).write(f.results_md, command)
  print(f"report: {path}")


if __name__ == "__main__":
  _define_flags()
  logging.set_verbosity(logging.WARNING)
  from ppcd_tf import cli_errors
  cli_errors.run(main)
