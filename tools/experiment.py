"""PPCD against its baselines at the same parameter budget; results for docs/RESULTS.md.

  python -m tools.experiment --workdir=runs/experiment [--config=configs/mnist32.cfg] \
      [--only=teacher,ppcd_t81] [--results=docs/results]

Runs (a registry, in dependency order; each reuses a finished run and resumes an
interrupted one, so the whole experiment can be stopped and restarted freely):

  teacher        the shipped converged teacher (--teacher_dir, assets/teachers/mnist32 by
                 default; evaluated and exported into WORKDIR/teacher_outputs), or with
                 --teacher_dir= a BigGAN teacher trained here (--mode=teacher)
  classifier     metrics classifier on the same data
  ppcd_t50 ... ppcd_t90   PPCD at 50/70/81/90% of G parameters removed
  no_distill     PP-Res pruning without distillation (all lambdas 0), 81%
  no_att / no_cam / no_pix   PPCD with one distillation term removed, 81%
  magnitude      tfmot prune_low_magnitude on the teacher, GAN-loss fine-tuning, 81%
  scratch        the slim architecture PPCD found at 81%, trained from scratch (no teacher)
  distill_slim   distillation without pruning: that slim architecture trained from
                 scratch with all distillation terms from the teacher (no masks)

Every PPCD run keeps at least (1 - target) of each mask's channels
(--prune_min_channel_fraction), so no layer is cut far below the uniform width.

Each finished run is slimmed (PPCD runs) or stripped (magnitude), evaluated
(FID, KID, intra-FID, IS, class accuracy with `--num_samples` samples and the
classifier's features), exported to TFLite fp32 and timed at batch 1 (LiteRT,
median of `--latency_repeats`). The small results are written to `--results`
(one JSON per run, `results.json`, sample grids, `fid_vs_params.png`,
`RESULTS_table.md`) as each run finishes, so they can be committed as they come.

On a machine with cores to spare, two processes can share one root when their
`--only` lists are disjoint and the runs they depend on have finished, e.g.
`--only=magnitude,no_distill,scratch,distill_slim` next to
`--only=no_att,no_cam,no_pix,ppcd_t50,ppcd_t70,ppcd_t90`; finish with
`--report_only`.

`--seed=N` (N > 0) repeats runs with another training seed against the same teacher,
classifier and evaluation samples, under WORKDIR/seed<N>/ and RESULTS/seed<N>/;
RESULTS.md then shows each repeated run's FID by seed, mean and standard deviation.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from typing import Callable, Dict, List, Optional

from absl import app, flags, logging

def _define_flags():
  """Flags of this tool; defined only when it runs as a program, so tests can
  import it next to other tools that define the same names."""
  flags.DEFINE_string("workdir", "runs/experiment", "Root of every run's workdir.")
  flags.DEFINE_string("config", "configs/mnist32.cfg", "Base flagfile of all runs.")
  flags.DEFINE_string("results", "docs/results", "Where the small result files go (committed).")
  flags.DEFINE_list("only", [], "Run only these runs (and what they need).")
  flags.DEFINE_integer("num_samples", 5000, "Samples per evaluation.", lower_bound=20)
  flags.DEFINE_integer("latency_repeats", 50, "Timed batch-1 TFLite calls (median).",
                       lower_bound=3)
  flags.DEFINE_integer("classifier_epochs", 10, "Epochs of the metrics classifier.",
                       lower_bound=1)
  flags.DEFINE_bool("report_only", False,
                    "Only rebuild the table, plot and RESULTS.md from the result files "
                    "already in --results (runs nothing).")
  flags.DEFINE_string("results_md", "docs/RESULTS.md",
                      "The results document written from the result files.")
  flags.DEFINE_integer(
      "student_steps", 0, "Training steps of every student run (PPCD variants, magnitude); "
      "the pruning schedule is scaled to it (begin 5%, end 60%, 20 events). The two "
      "slim-architecture-from-scratch baselines get teacher + student steps. 0 = the "
      "flagfile's --num_steps.", lower_bound=0)
  flags.DEFINE_string(
      "teacher_dir", "assets/teachers/mnist32",
      "The teacher every student distils from: a packaged teacher (the converged one that "
      "ships, checksums verified first) or any --mode=teacher workdir of --config's "
      "architecture. Empty (--teacher_dir=) trains WORKDIR/teacher with --config; "
      "python -m tools.train_teacher retrains the shipped one.")
  flags.DEFINE_integer(
      "seed", 0, "Training seed of every run except the teacher and the classifier, "
      "which all seeds share. 0 is the main experiment (WORKDIR/<run>, "
      "RESULTS/<run>.json); another seed repeats runs under WORKDIR/seed<N>/ and "
      "RESULTS/seed<N>/, and RESULTS.md gains a table of FID by seed (use --only to pick "
      "the runs to repeat).", lower_bound=0)


TARGETS = (0.5, 0.7, 0.81, 0.9)
MAIN_TARGET = 0.81
MAIN_RUN = f"ppcd_t{int(round(MAIN_TARGET * 100))}"
# The runs PPCD at MAIN_TARGET must beat (the goal in docs/RESULTS.md).
BASELINES = ("magnitude", "no_distill", "scratch", "distill_slim")


@dataclasses.dataclass(frozen=True)
class Run:
  name: str
  kind: str                      # teacher | ppcd | magnitude | scratch | distill_slim
  label: str                     # row label in the results table
  needs: tuple = ()
  target: float = MAIN_TARGET
  distill: Optional[dict] = None  # DistillConfig overrides


def _registry() -> List[Run]:
  # Order = run order: the main comparison at 81% first, then the term ablations,
  # then the other budgets, so an interrupted experiment has the key rows.
  ppcd = {t: Run(f"ppcd_t{int(round(t * 100))}", "ppcd", f"PPCD ({t:.0%} removed)",
                 needs=("teacher",), target=t) for t in TARGETS}
  return [
      Run("teacher", "teacher", "Teacher (BigGAN)"),
      ppcd[MAIN_TARGET],
      Run("magnitude", "magnitude", "tfmot magnitude pruning (unstructured)",
          needs=("teacher",)),
      Run("no_distill", "ppcd", "PP-Res pruning, no distillation", needs=("teacher",),
          distill=dict(lambda_att=0.0, lambda_cam=0.0, lambda_pix=0.0)),
      Run("scratch", "scratch", "PPCD's slim architecture from scratch",
          needs=(MAIN_RUN,)),
      Run("distill_slim", "distill_slim",
          "Distillation without pruning (PPCD's slim architecture)",
          needs=(MAIN_RUN,)),
      Run("no_att", "ppcd", "PPCD without attention term", needs=("teacher",),
          distill=dict(lambda_att=0.0)),
      Run("no_cam", "ppcd", "PPCD without CAM term", needs=("teacher",),
          distill=dict(lambda_cam=0.0)),
      Run("no_pix", "ppcd", "PPCD without pixel term", needs=("teacher",),
          distill=dict(lambda_pix=0.0)),
  ] + [ppcd[t] for t in TARGETS if t != MAIN_TARGET]


RUNS = {r.name: r for r in _registry()}


class Experiment:
  """Runs and evaluates the registry's runs under one root directory."""

  def __init__(self, root: str, config_path: str, results_dir: str, num_samples: int,
               latency_repeats: int, classifier_epochs: int = 10, student_steps: int = 0,
               seed: int = 0, teacher_dir: str = ""):
    from ppcd_tf import flags as ppcd_flags
    self.root, self.seed, self.main_results_dir = root, seed, results_dir
    # Seed 0 is the main experiment; other seeds repeat runs in their own folders.
    self.results_dir = results_dir if seed == 0 else os.path.join(results_dir, f"seed{seed}")
    self.config_path = config_path
    self.base = ppcd_flags.parse_flagfile(config_path)
    self.num_samples, self.latency_repeats = num_samples, latency_repeats
    self.classifier_epochs = classifier_epochs
    self.student_steps = student_steps or self.base.optim.num_steps
    # A given teacher is used as it is (nothing is written into it); "" trains one.
    self.teacher_dir = teacher_dir
    os.makedirs(self.results_dir, exist_ok=True)

  def _student_schedule(self) -> Dict:
    n = self.student_steps
    end = max(2, int(0.6 * n))
    begin = min(int(0.05 * n), end - 1)
    return dict(begin_step=begin, end_step=end, frequency=max(1, (end - begin) // 20))

  @staticmethod
  def min_channel_fraction(run: Run) -> float:
    """Each mask keeps at least (1 - target) of its channels (see the module doc)."""
    return round(1.0 - run.target, 4)

  def slim_channels(self, name: str) -> tuple:
    """The slim generator widths (stem, mids, outs) PPCD found in run `name`."""
    report = json.load(open(os.path.join(self.workdir(name), "slim", "slim_report.json")))
    c = report["slim_channels"]
    return (c["stem"],) + tuple(c["mid"]) + tuple(c["out"])

  def _shared(self, name: str) -> bool:
    """The teacher is trained once (seed 0) and shared by every seed's students."""
    return self.seed == 0 or name == "teacher"

  def workdir(self, name: str) -> str:
    if name == "teacher" and self.teacher_dir:
      return self.teacher_dir
    if self._shared(name):
      return os.path.join(self.root, name)
    return os.path.join(self.root, f"seed{self.seed}", name)

  @property
  def extractor(self) -> str:
    return "classifier:" + os.path.join(self.root, "classifier")

  def _result_path(self, name: str) -> str:
    folder = self.main_results_dir if self._shared(name) else self.results_dir
    return os.path.join(folder, f"{name}.json")

  # -------------------------------------------------------------- stages
  def classifier(self) -> None:
    from ppcd_tf import pipeline
    pipeline.ensure_classifier(self.base.data, self.base.model,
                               os.path.join(self.root, "classifier"), self.classifier_epochs)

  def config_for(self, run: Run):
    cfg = self._config_for(run)
    if not self._shared(run.name):
      cfg = cfg.replace(run=dict(seed=self.seed))
    return cfg

  def _config_for(self, run: Run):
    wd = self.workdir(run.name)
    if run.kind == "teacher":
      return self.base.replace(run=dict(workdir=wd, mode="teacher"))
    if run.kind in ("scratch", "distill_slim"):
      # PPCD's slim architecture, trained as long as teacher + student together.
      slim_arch = dict(model=dict(g_channels=self.slim_channels(MAIN_RUN)),
                       optim=dict(num_steps=self.base.optim.num_steps + self.student_steps))
      if run.kind == "scratch":
        return self.base.replace(run=dict(workdir=wd, mode="teacher"), **slim_arch)
      return self.base.replace(
          run=dict(workdir=wd, mode="ppcd"), **slim_arch,
          distill=dict(teacher_dir=self.workdir("teacher"), use_masks=False,
                       init_from_teacher=False)).validate()
    distill = dict(teacher_dir=self.workdir("teacher"))
    distill.update(run.distill or {})
    cfg = self.base.replace(run=dict(workdir=wd, mode="ppcd"), distill=distill,
                            optim=dict(num_steps=self.student_steps),
                            pruning=dict(target_fraction=run.target,
                                         min_channel_fraction=self.min_channel_fraction(run),
                                         **self._student_schedule()))
    if run.kind == "magnitude":
      from ppcd_tf import baselines
      return baselines.magnitude_config(cfg, self.workdir("teacher"))
    return cfg.validate()

  def _given_teacher_summary(self) -> Dict:
    """The training summary of a teacher given by --teacher_dir (verified if packaged)."""
    from ppcd_tf import teacher_asset
    info, step = teacher_asset.check_teacher_dir(self.teacher_dir)
    return dict(step=step, wall_seconds=(info or {}).get("train_wall_seconds"),
                teacher_package=self.teacher_dir if info else None)

  def _outputs(self, name: str) -> str:
    """Where a run's evaluation and export go: its workdir, or, for a given teacher,
    ROOT/teacher_outputs (the teacher's own directory stays untouched)."""
    if name == "teacher" and self.teacher_dir:
      return os.path.join(self.root, "teacher_outputs")
    return self.workdir(name)

  def train(self, run: Run) -> Dict:
    from ppcd_tf import baselines, train_lib
    if run.kind == "teacher" and self.teacher_dir:
      return self._given_teacher_summary()
    cfg = self.config_for(run)
    trainer_cls = (baselines.MagnitudePruningTrainer if run.kind == "magnitude"
                   else train_lib.Trainer)
    trainer = trainer_cls(cfg)
    start = time.time()
    summary = trainer.fit()
    summary["train_wall_seconds_this_invocation"] = round(time.time() - start, 1)
    if run.kind == "magnitude":
      # Strip the tfmot wrappers from the EMA generator and keep it as a plain
      # (sparse) generator directory that evaluation and export read.
      from ppcd_tf import slim
      baselines.strip_magnitude_pruning(trainer.G_ema)
      slim.save_slim_generator(trainer.G_ema, os.path.join(cfg.run.workdir, "slim"))
    return summary

  def finish(self, run: Run, summary: Dict) -> Dict:
    """Slim (PPCD), evaluate, export TFLite fp32, time it; write the result JSON."""
    from ppcd_tf import baselines, checkpoints, evaluate, flops, pipeline
    wd = self.workdir(run.name)
    model = "ema"
    extra = {}
    if run.kind == "ppcd":
      report = pipeline.slim_workdir(wd)
      extra["slim_report"] = {k: report[k] for k in (
          "params_before", "params_after", "param_reduction", "macs_before",
          "macs_after", "max_abs_diff", "slim_channels")}
      model = "slim"
    elif run.kind == "magnitude":
      model = "slim"
    elif run.kind == "teacher" and summary.get("teacher_package"):
      extra["teacher_package"] = summary["teacher_package"]
    loaded = evaluate.load_for_eval(wd, model)
    generator = loaded[0]
    out = self._outputs(run.name)
    ev = evaluate.evaluate_workdir(wd, model, self.extractor, self.num_samples,
                                   stats_dir=os.path.join(self.root, "reference_stats"),
                                   out_dir=os.path.join(out, "eval", model), loaded=loaded)
    exp = pipeline.export_and_time(generator, os.path.join(out, "export", "g_fp32.tflite"),
                                   self.latency_repeats)
    params = flops.count_generator(generator).total_params
    if run.kind == "magnitude":
      params = baselines.nonzero_params(generator)  # unstructured: non-zero weights
    result = dict(
        name=run.name, label=run.label, kind=run.kind, target=run.target,
        params=params, macs=flops.count_generator(generator).total_macs,
        fid=ev["fid"], kid_mean=ev["kid_mean"], kid_std=ev["kid_std"],
        intra_fid=ev.get("intra_fid"), is_mean=ev["is_mean"],
        class_accuracy=ev.get("class_accuracy"), num_samples=ev["num_samples"],
        seed=ev["seed"], train_seed=self.seed, tflite_fp32_kib=exp["file_size_bytes"] / 1024,
        tflite_latency_ms=exp["latency_ms_batch1"],
        train_steps=summary.get("step"), train_wall_seconds=summary.get("wall_seconds"),
        live_fraction=summary.get("live_fraction"),
        prune_min_channel_fraction=(self.min_channel_fraction(run) if run.kind == "ppcd"
                                    else None),
        config=self.config_path, **extra)
    checkpoints.write_json_atomic(self._result_path(run.name), result)
    grid_dst = os.path.join(self.results_dir, "grids", f"{run.name}.png")
    os.makedirs(os.path.dirname(grid_dst), exist_ok=True)
    shutil.copyfile(ev["grid"], grid_dst)
    return result

  def run(self, names: Optional[List[str]] = None) -> List[Dict]:
    wanted = self._closure(names or list(RUNS))
    self.classifier()
    for name in [n for n in RUNS if n in wanted]:
      run = RUNS[name]
      if os.path.exists(self._result_path(name)):
        print(f"[{name}] done earlier: {self._result_path(name)}", flush=True)
        continue
      print(f"\n=== [{name}] {run.label} ===", flush=True)
      summary = self.train(run)
      result = self.finish(run, summary)
      print(f"[{name}] FID {result['fid']:.2f}, params {result['params']:,}", flush=True)
      self.write_summary()
    return self.write_summary()

  def _closure(self, names: List[str]) -> set:
    out, stack = set(), list(names)
    while stack:
      n = stack.pop()
      if n not in RUNS:
        from ppcd_tf.config import ConfigError
        raise ConfigError(f"--only={n!r} is not a run; known: {', '.join(RUNS)}")
      if n not in out:
        out.add(n)
        stack.extend(RUNS[n].needs)
    return out

  # -------------------------------------------------------------- outputs
  def write_summary(self) -> List[Dict]:
    from ppcd_tf import checkpoints, files
    results = []
    for name in RUNS:
      path = self._result_path(name)
      if os.path.exists(path):
        results.append(json.load(open(path)))
    checkpoints.write_json_atomic(os.path.join(self.results_dir, "results.json"), results)
    lines = ["| run | params | MACs/image | FID | KID | intra-FID | class acc | "
             "TFLite ms (b=1) |", "|" + "---|" * 8]
    for r in results:
      lines.append(
          f"| {r['label']} | {r['params']:,} | {r['macs']:,} | {r['fid']:.2f} | "
          f"{r['kid_mean']:.3f} ± {r['kid_std']:.3f} | "
          f"{r['intra_fid']:.2f} | {r['class_accuracy']:.3f} | "
          f"{r['tflite_latency_ms']:.2f} |")
    files.write_text_atomic(os.path.join(self.results_dir, "RESULTS_table.md"),
                                  "\n".join(lines) + "\n")
    self._plot(results)
    self._side_by_side(results)
    return results

  def _side_by_side(self, results: List[Dict]) -> None:
    """grids_side_by_side.png: the teacher, PPCD at the main target and the baselines."""
    from ppcd_tf import images
    order = ["teacher", MAIN_RUN, *BASELINES]
    by = {r["name"]: r for r in results}
    grid = lambda n: os.path.join(self.results_dir, "grids", f"{n}.png")
    panels = [(grid(n), f"{by[n]['label']}\nFID {by[n]['fid']:.1f}, {by[n]['params']:,} params")
              for n in order if n in by and os.path.exists(grid(n))]
    if panels:
      images.save_side_by_side(panels, os.path.join(self.results_dir, "grids_side_by_side.png"))

  def write_results_md(self, path: str, command: str) -> str:
    """docs/RESULTS.md from the result files: every number comes from a run's JSON."""
    from ppcd_tf import files
    results = self.write_summary()
    by = {r["name"]: r for r in results}
    rel = os.path.relpath(self.results_dir, os.path.dirname(os.path.abspath(path)))
    lines = [
        "# PPCD-GAN against its baselines (mnist5k, 32x32, 2 CPU cores)", "",
        "Generated by `tools/experiment.py` from the result files in "
        f"`{rel}/` (one JSON per run); rerun the command to reproduce or extend:", "",
        f"```\n{command}\n```", "",
        f"Base flagfile `{self.config_path}`; students train {self.student_steps} steps "
        "from the teacher (pruning schedule scaled to them; every mask keeps at least "
        "(1 - target) of its channels), the two baselines that train PPCD's slim "
        "architecture from scratch (with and without distillation) train teacher + "
        "student steps. Metrics: "
        f"{next(iter(by.values()))['num_samples'] if by else '?'} samples (latent seed 0), training seed 0, "
        "features of the mnist5k classifier (`ppcd_tf.train_classifier`), so FID/KID "
        "are not comparable with Inception-based numbers. TFLite latency: fp32, batch 1, "
        "LiteRT, median on the same shared 2-core machine (noisy; see "
        "`docs/bench/bench_infer.md` for a side-by-side benchmark). How the settings "
        f"were reached (and the earlier attempts' numbers): `{rel}/HISTORY.md`.", "",
        open(os.path.join(self.results_dir, "RESULTS_table.md")).read(), "",
        "Params of the magnitude baseline count non-zero weights (unstructured sparsity: "
        "its MACs and latency stay the teacher's).", "",
    ]
    pending = [r.label for n, r in RUNS.items() if n not in by]
    if pending:
      lines += ["**Not yet run:** " + "; ".join(pending) + ".", ""]
    lines += ["## The goal", ""]
    teacher, main = by.get("teacher"), by.get(MAIN_RUN)
    baselines_done = [by[n] for n in BASELINES if n in by]
    if teacher and main:
      within = main["fid"] <= 1.10 * teacher["fid"]
      beats = [b for b in baselines_done if main["fid"] < b["fid"]]
      lines.append(
          f"At {1 - main['params'] / teacher['params']:.1%} fewer generator parameters, "
          f"PPCD's FID is {main['fid']:.2f} vs the teacher's {teacher['fid']:.2f} "
          f"({'within' if within else 'not within'} 10%), and it beats "
          f"{len(beats)} of the {len(baselines_done)} baselines run so far "
          f"(beats: {', '.join(b['label'] for b in beats) or 'none'}; loses to: "
          f"{', '.join(b['label'] for b in baselines_done if b not in beats) or 'none'}).")
      met = within and len(beats) == len(baselines_done) == len(BASELINES)
      if met:
        verdict = "**met**."
      elif within and len(beats) == len(baselines_done):
        verdict = "**not decided yet**: baselines are still to run."
      else:
        verdict = "**not met**."
      lines += ["", "Goal (FID within 10% of the teacher and better than every baseline): "
                + verdict]
      lines += ["", f"{main['label']} against every other run at the same budget "
                "(baselines first, then PPCD with one distillation term removed):", "",
                "| run | params | FID | PPCD FID minus this | PPCD is |", "|---|---|---|---|---|"]
      others = [by[n] for n in RUNS if n in by and n not in ("teacher", MAIN_RUN)
                and RUNS[n].target == MAIN_TARGET]
      for r in others:
        delta = main["fid"] - r["fid"]
        lines.append(f"| {r['label']} | {r['params']:,} | {r['fid']:.2f} | {delta:+.2f} | "
                     f"{'better' if delta < 0 else 'worse'} |")
    else:
      lines.append("Pending: the teacher and PPCD at 81% have not both finished.")
    lines += ["", "## FID against parameters kept", "",
              f"![FID vs parameters]({rel}/fid_vs_params.png)", "",
              "## Samples (one row per class, one latent per column)", "",
              f"Side by side at the main budget: ![side by side]({rel}/grids_side_by_side.png)",
              ""]
    for r in results:
      lines.append(f"**{r['label']}**  \n![{r['name']}]({rel}/grids/{r['name']}.png)")
      lines.append("")
    lines += ["## Wall times", "", "| run | steps | training wall s |", "|---|---|---|"]
    for r in results:
      lines.append(f"| {r['label']} | {r.get('train_steps')} | {r.get('train_wall_seconds')} |")
    lines += self._seed_table(by)
    files.write_text_atomic(path, "\n".join(lines) + "\n")
    return path

  def _seed_results(self) -> Dict[int, Dict[str, Dict]]:
    """{seed: {run name: result}} of the repeats under RESULTS/seed<N>/."""
    out = {}
    folder = self.main_results_dir
    for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
      if entry.startswith("seed") and entry[4:].isdigit():
        runs = {n: json.load(open(os.path.join(folder, entry, f"{n}.json")))
                for n in RUNS if os.path.exists(os.path.join(folder, entry, f"{n}.json"))}
        if runs:
          out[int(entry[4:])] = runs
    return out

  def _seed_table(self, by: Dict[str, Dict]) -> List[str]:
    """RESULTS.md section: FID of every repeated run at each training seed."""
    import numpy as np
    repeats = self._seed_results()
    names = [n for n in RUNS if n in by and any(n in runs for runs in repeats.values())]
    if not names:
      return []
    seeds = sorted(repeats)
    lines = ["", "## Training seed", "",
             "The runs above use training seed 0. Runs repeated with other seeds "
             "(`--seed=N`; same teacher, classifier and evaluation samples), FID:", "",
             "| run | " + " | ".join(f"seed {s}" for s in [0] + seeds) + " | mean ± sd |",
             "|---|" + "---|" * (len(seeds) + 2)]
    for n in names:
      fids = [by[n]["fid"]] + [repeats[s][n]["fid"] if n in repeats[s] else None
                               for s in seeds]
      have = [f for f in fids if f is not None]
      cells = " | ".join("" if f is None else f"{f:.2f}" for f in fids)
      lines.append(f"| {by[n]['label']} | {cells} | "
                   f"{np.mean(have):.2f} ± {np.std(have, ddof=1):.2f} |")
    lines += ["", "Repeats: the command above plus `--seed=N --only=<runs>`; their result "
              f"files are in `{os.path.basename(self.main_results_dir)}/seed<N>/`."]
    return lines

  def _plot(self, results: List[Dict]) -> None:
    from ppcd_tf import checkpoints
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    teacher = next((r for r in results if r["kind"] == "teacher"), None)
    if teacher is None:
      return
    fig, ax = plt.subplots(figsize=(9, 4))
    ppcd = sorted((r for r in results if r["name"].startswith("ppcd_t")),
                  key=lambda r: r["params"])
    if ppcd:
      ax.plot([r["params"] / teacher["params"] for r in ppcd], [r["fid"] for r in ppcd],
              "o-", label="PPCD" + (" (seed 0)" if self.seed == 0 else ""))
    repeats = [r for runs in self._seed_results().values() for r in runs.values()
               if r["name"].startswith("ppcd_t")] if self.seed == 0 else []
    if repeats:
      ax.plot([r["params"] / teacher["params"] for r in repeats],
              [r["fid"] for r in repeats], "o", mfc="none", color="C0",
              label="PPCD, other training seeds")
    for r in results:
      if r["name"] in BASELINES:
        ax.plot(r["params"] / teacher["params"], r["fid"], "s", label=r["label"])
    ax.axhline(teacher["fid"], color="gray", ls="--", label="teacher")
    ax.set_xlabel("generator parameters kept (fraction of teacher)")
    ax.set_ylabel(f"FID ({teacher['num_samples']} samples, classifier features)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the points
    fig.tight_layout()
    checkpoints.write_atomically(os.path.join(self.results_dir, "fid_vs_params.png"),
                      lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from ppcd_tf import cli_errors
  f = flags.FLAGS
  with cli_errors.friendly_errors():
    args = (f.workdir, f.config, f.results, f.num_samples, f.latency_repeats,
            f.classifier_epochs, f.student_steps)
    exp = Experiment(*args, seed=f.seed, teacher_dir=f.teacher_dir)
    if not f.report_only:
      exp.run(f.only or None)
    command = (f"python -m tools.experiment --workdir={f.workdir} --config={f.config} "
               f"--teacher_dir={f.teacher_dir} --student_steps={f.student_steps} "
               f"--num_samples={f.num_samples}")
    # RESULTS.md is always the main (seed 0) report, with the other seeds' table.
    main_exp = exp if f.seed == 0 else Experiment(*args, teacher_dir=f.teacher_dir)
    main_exp.write_results_md(f.results_md, command)
    results = json.load(open(os.path.join(exp.results_dir, "results.json")))
  print(open(os.path.join(exp.results_dir, "RESULTS_table.md")).read())
  print(f"{len(results)} runs; results in {exp.results_dir}")


if __name__ == "__main__":
  _define_flags()
  logging.set_verbosity(logging.WARNING)
  app.run(main)
