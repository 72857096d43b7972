"""docs/RESULTS.md from the experiment's result files (tools/experiment.py).

Every number comes from a result JSON (RESULTS/teacher.json, RESULTS/seed<N>/<run>.json)
or from the shipped teacher's teacher.json; nothing is typed in. Per row: the seeds
it has, mean ± sd over them, and PPCD's verdict against it by a two-sided Welch
t-test (`ppcd_tf.stats.compare`, "better"/"worse" only at p < 0.05, else "tie";
"untested" with fewer than 2 seeds on either side).
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional

import numpy as np

from ppcd_tf import stats
from tools.experiment import (MAIN_RUN, MAIN_TARGET, QAT_RUN, RUNS, STRUCTURED,
                              VARIANT_RUNS, VARIANTS, budget_family)

__all__ = ["Report", "GOAL_FRACTION"]

GOAL_FRACTION = 0.10  # PPCD's FID within 10% of the teacher's


def _fmt(values: List[float], digits: int = 2, scale: float = 1.0) -> str:
  s = stats.summarize([v * scale for v in values])
  if s["n"] < 2:
    return f"{s['mean']:.{digits}f}"
  return f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f}"


def _fmt_count(values: List[int]) -> str:
  """A count over seeds: the value when every seed has it, else the mean and the range."""
  lo, hi = min(values), max(values)
  if lo == hi:
    return f"{lo:,}"
  return f"{round(float(np.mean(values))):,} ({lo:,}..{hi:,})"


class Report:
  """Reads the result files of an `Experiment` and writes RESULTS.md and its plots."""

  def __init__(self, experiment):
    self.exp = experiment
    self.dir = experiment.results_dir
    path = os.path.join(self.dir, "teacher.json")
    self.teacher = json.load(open(path)) if os.path.exists(path) else None
    self.runs: Dict[str, Dict[int, Dict]] = {}
    for entry in sorted(os.listdir(self.dir)):
      if entry.startswith("seed") and entry[4:].isdigit():
        for name in RUNS:
          p = os.path.join(self.dir, entry, f"{name}.json")
          if os.path.exists(p):
            self.runs.setdefault(name, {})[int(entry[4:])] = json.load(open(p))

  # -------------------------------------------------------------- numbers
  def values(self, name: str, key: str = "fid") -> List[float]:
    return [r[key] for _, r in sorted(self.runs.get(name, {}).items())
            if r.get(key) is not None]

  def seeds(self, name: str) -> List[int]:
    return sorted(self.runs.get(name, {}))

  def one(self, name: str) -> Optional[Dict]:
    by_seed = self.runs.get(name)
    return by_seed[min(by_seed)] if by_seed else None

  def versus(self, name: str) -> Dict:
    """PPCD at the main budget against run `name` (lower FID is better)."""
    return stats.compare(self.values(MAIN_RUN), self.values(name))

  def goal(self) -> Dict:
    """The goal verdict from the means (see `lines_goal`)."""
    ppcd = self.values(MAIN_RUN)
    if not self.teacher or not ppcd:
      return dict(verdict="pending", reason="the teacher and PPCD at 81% are not both run")
    mean = float(np.mean(ppcd))
    within = stats.within(mean, self.teacher["fid"], GOAL_FRACTION)
    tests = {n: self.versus(n) for n in STRUCTURED}
    missing = [n for n, t in tests.items() if t["verdict"] == "untested"]
    not_beaten = [n for n, t in tests.items() if t["verdict"] in ("tie", "worse")]
    if not within or not_beaten:
      verdict = "not met"
    elif missing:
      verdict = "not decided yet"
    else:
      verdict = "met"
    return dict(verdict=verdict, ppcd_mean=mean, teacher_fid=self.teacher["fid"],
                within=within, excess=mean / self.teacher["fid"] - 1.0, tests=tests,
                missing=missing, not_beaten=not_beaten)

  # -------------------------------------------------------------- text
  def _row(self, name: str, compare: bool = True) -> str:
    n = len(self.seeds(name))
    cells = [RUNS[name].label, str(n), _fmt_count(self.values(name, "params")),
             _fmt_count(self.values(name, "macs")),
             _fmt(self.values(name)), _fmt(self.values(name, "kid_mean"), 2, 1e3),
             _fmt(self.values(name, "intra_fid")), _fmt(self.values(name, "class_accuracy"), 3),
             _fmt(self.values(name, "tflite_latency_ms"))]
    if compare:
      if name == MAIN_RUN:
        cells.append("")
      else:
        t = self.versus(name)
        p = "" if t["p"] is None else f", p = {t['p']:.3g}"
        d = "" if t["diff"] is None else f"{t['diff']:+.2f}"
        cells.append(f"**{t['verdict']}** ({d}{p})")
    return "| " + " | ".join(cells) + " |"

  def _table(self, names: List[str], compare: bool = True) -> List[str]:
    head = ("| run | seeds | params | MACs/image | FID | KID x1e3 | intra-FID | class acc | "
            "TFLite ms (b=1) |" + (" PPCD is (FID diff, Welch p) |" if compare else ""))
    rows = [self._row(n, compare) for n in names if n in self.runs]
    return [head, "|" + "---|" * (head.count("|") - 1)] + rows

  def _teacher_lines(self) -> List[str]:
    t = self.teacher
    lines = [f"**Teacher:** FID {t['fid']:.2f} ({t['num_samples']:,} samples), "
             f"{t['params']:,} params, {t['macs']:,} MACs/image, the checkpoint of step "
             f"{t['train_steps']:,}."]
    pkg = t.get("teacher_package")
    info_path = os.path.join(pkg, "teacher.json") if pkg else None
    if info_path and os.path.exists(info_path):
      info = json.load(open(info_path))
      curve = ", ".join(f"{c['fid']:.2f}" for c in info["fid_curve"])
      lines += ["", f"It is the shipped teacher `{pkg}` (`{info['command']}`): FID of the EMA "
                f"generator every evaluation ({curve}; steps "
                f"{info['fid_curve'][0]['step']:,}..{info['fid_curve'][-1]['step']:,}); "
                f"the best, step {info['best_step']:,} of {info['steps_trained']:,} trained, ships. "
                + ("The stop rule found its plateau." if info.get("stopped_early")
                   else "It stopped at its step cap, not at a plateau."),
                "", f"![teacher FID curve]({self._rel(os.path.join(pkg, 'fid_curve.png'))})"]
    return lines

  def _rel(self, path: str) -> str:
    return os.path.relpath(os.path.abspath(path), os.path.dirname(os.path.abspath(self.md)))

  def lines_goal(self) -> List[str]:
    g = self.goal()
    if g["verdict"] == "pending":
      return [f"Pending: {g['reason']}."]
    lines = [f"At {MAIN_TARGET:.0%} fewer generator parameters, PPCD's mean FID over "
             f"{len(self.values(MAIN_RUN))} seed{'s' if len(self.values(MAIN_RUN)) != 1 else ''} "
             f"is {g['ppcd_mean']:.2f} against the "
             f"teacher's {g['teacher_fid']:.2f}: {g['excess']:+.1%} "
             f"({'within' if g['within'] else 'not within'} {GOAL_FRACTION:.0%})."]
    for n, t in g["tests"].items():
      label = RUNS[n].label
      if t["verdict"] == "untested":
        lines.append(f"- {label}: untested ({t['reason']})")
      else:
        lines.append(f"- {label}: PPCD is **{t['verdict']}** (mean FID difference "
                     f"{t['diff']:+.2f}, 95% CI [{t['ci95'][0]:+.2f}, {t['ci95'][1]:+.2f}], "
                     f"p = {t['p']:.3g})")
    lines += ["", f"**Goal** (mean FID within {GOAL_FRACTION:.0%} of the teacher and "
              f"significantly better than every structured baseline): **{g['verdict']}**."]
    if g["verdict"] == "not met":
      why = []
      if not g["within"]:
        why.append(f"PPCD is {g['excess']:.1%} above the teacher (allowed: "
                   f"{GOAL_FRACTION:.0%})")
      if g["not_beaten"]:
        best = min(g["not_beaten"], key=lambda n: np.mean(self.values(n)))
        why.append("PPCD does not beat " + ", ".join(RUNS[n].label for n in g["not_beaten"])
                   + f"; the best of them is {RUNS[best].label} (mean FID "
                   f"{np.mean(self.values(best)):.2f})")
      lines.append("Why: " + "; ".join(why) + ".")
    return lines

  def write(self, md: str, command: str) -> str:
    from ppcd_tf import files
    self.md = md
    exp = self.exp
    os.makedirs(self.dir, exist_ok=True)
    everything = ([self.teacher] if self.teacher else []) + [
        r for n in RUNS for _, r in sorted(self.runs.get(n, {}).items())]
    files.write_json_atomic(os.path.join(self.dir, "results.json"), everything)
    seeds = sorted({s for by in self.runs.values() for s in by})
    sched = exp.schedule()
    lines = [
        "# PPCD-GAN against its baselines (mnist5k, 32x32, 2 CPU cores)", "",
        "Generated by `tools/experiment.py` (`tools/experiment_report.py`) from the result "
        f"files in `{self._rel(self.dir)}/`; `--report_only` rebuilds this page, and the "
        "command reruns or extends the runs (each `--only` run at each `--seeds` seed):", "",
        f"```\n{command}\n```", "",
        "## Protocol", "",
        f"- Base flagfile `{exp.config_path}`. Every student trains {exp.student_steps:,} "
        f"steps from the teacher; progressive pruning from step {sched['begin_step']:,} to "
        f"{sched['end_step']:,} (20 events), one-shot baselines prune at step 0. Every "
        f"run's EMA starts {exp.student_steps - sched['end_step']:,} steps before its end, "
        "so each averages the same final stretch on its final architecture.",
        "- From-scratch rows train PPCD's slim widths exactly (attention included, from "
        "the same seed's PPCD run), for the student steps and, in the second view, for "
        "teacher + student steps.",
        f"- Metrics: {exp.num_samples:,} samples per run (latent seed 0), features of the "
        "mnist5k classifier (`ppcd_tf.train_classifier`), so FID/KID are not comparable "
        "with Inception-based numbers. TFLite latency: fp32, batch 1, LiteRT, median on "
        "the shared 2-core machine (see `docs/bench/` for side-by-side benchmarks).",
        f"- Training seeds reported here: {', '.join(map(str, seeds)) or 'none yet'} "
        "(reserved: tools/experiment.py REPORT_SEEDS). Tuning, by tools/tune.py or by hand, "
        "used seed 0 and seeds from 100 (tools/tune.py refuses the reserved ones); "
        f"`{self._rel(os.path.join(self.dir, 'history'))}/` keeps earlier protocols.",
        "- Mean ± sd over seeds; PPCD against each row by a two-sided Welch t-test, "
        "\"better\"/\"worse\" only at p < 0.05, else \"tie\" (`ppcd_tf.stats`).", ""]
    if self.teacher:
      lines += self._teacher_lines() + [""]
    lines += ["## The goal", ""] + self.lines_goal() + [""]
    student = [n for n, r in RUNS.items() if r.view == "student" and r.target == MAIN_TARGET]
    lines += [f"## Equal student steps ({MAIN_TARGET:.0%} removed)", "",
              "A user who already has the teacher: every row trains the same student "
              "steps from it (teacher + N more is the uncompressed control).", ""]
    lines += self._table(student) + [
        "", "Params of the magnitude row count non-zero weights (unstructured: its MACs "
        "and latency stay the teacher's).", ""]
    total = [n for n, r in RUNS.items() if r.view == "total"]
    if any(n in self.runs for n in total):
      lines += ["## Equal total steps", "",
                "From scratch for as many steps as teacher + student together "
                "(PPCD's total is the teacher's steps plus its own).", ""]
      lines += self._table([MAIN_RUN] + total) + [""]
    budgets = [n for n, r in RUNS.items() if r.target != MAIN_TARGET]
    if any(n in self.runs for n in budgets):
      lines += ["## Other budgets", ""] + self._table(budgets, compare=False) + [""]
    lines += self._variant_lines()
    lines += self._qat_lines()
    if self.runs:
      self._plots()
      lines += self._curve_lines()
    lines += self._wall_lines()
    pending = [RUNS[n].label for n in RUNS if n != "teacher" and n not in self.runs]
    if pending:
      lines += ["", "**Not yet run:** " + "; ".join(pending) + "."]
    lines += ["", "## Samples (one row per class; the lowest seed of each run)", ""]
    for n in RUNS:
      r = self.teacher if n == "teacher" else self.one(n)
      if r is None:
        continue
      folder = self.dir if n == "teacher" else os.path.join(self.dir, f"seed{r['train_seed']}")
      lines += [f"**{r['label']}**  ", f"![{n}]({self._rel(os.path.join(folder, 'grids', n + '.png'))})", ""]
    files.write_text_atomic(md, "\n".join(lines) + "\n")
    return md

  def _variant_lines(self) -> List[str]:
    """Every TFLite variant of the runs that have them (`VARIANT_RUNS`), evaluated
    through LiteRT; the FID change is against the same seeds' Keras model."""
    by_run = {}
    for name in VARIANT_RUNS:
      results = ([self.teacher] if name == "teacher" and self.teacher else
                 [r for _, r in sorted(self.runs.get(name, {}).items())])
      with_variants = [r for r in results if r and r.get("variants")]
      if with_variants:
        by_run[name] = with_variants
    if not by_run:
      return []
    lines = [f"## Exported variants ({MAIN_TARGET:.0%} removed)", "",
             "What ships: each run's final generator exported as TFLite fp32, fp16, "
             "dynamic-range int8 and full int8 (`ppcd_tf.export`), every file evaluated "
             "through LiteRT (`python -m ppcd_tf.evaluate --exported=FILE`) on the same "
             "latents and features as the Keras model, and timed at batch 1. \"FID change\" "
             "is against the Keras model of the same seeds.", "",
             "| run | variant | seeds | FID | FID change | KID x1e3 | class acc | "
             "TFLite ms (b=1) | KiB |", "|---|---|---|---|---|---|---|---|---|"]
    for name, results in by_run.items():
      for variant, _ in VARIANTS:
        rows = [r for r in results if variant in r["variants"]]
        if not rows:
          continue
        v = [r["variants"][variant] for r in rows]
        change = [x["fid"] - r["fid"] for x, r in zip(v, rows)]
        lines.append(
            f"| {RUNS[name].label} | {variant} | {len(rows)} | {_fmt([x['fid'] for x in v])} "
            f"| {_fmt(change, 2)} | {_fmt([x['kid_mean'] for x in v], 2, 1e3)} "
            f"| {_fmt([x['class_accuracy'] for x in v], 3)} "
            f"| {_fmt([x['latency_ms'] for x in v])} | {_fmt([x['kib'] for x in v], 0)} |")
    return lines + [""]

  def _qat_lines(self) -> List[str]:
    """int8 after post-training quantisation vs after QAT, at the seeds that have PPCD's
    variants and the QAT run."""
    main, q = self.runs.get(MAIN_RUN, {}), self.runs.get(QAT_RUN, {})
    seeds = [s for s in sorted(q) if s in main and "fp32" in main[s].get("variants", {})
             and "int8" in q[s].get("variants", {})]
    if not seeds:
      return []
    fp32 = [main[s]["variants"]["fp32"]["fid"] for s in seeds]
    ptq = [main[s]["variants"]["int8"]["fid"] for s in seeds]
    qat = [q[s]["variants"]["int8"]["fid"] for s in seeds]
    steps = sorted({q[s]["qat_steps"] for s in seeds})
    steps = f"{steps[0]:,}" if len(steps) == 1 else "/".join(f"{x:,}" for x in steps)
    lines = [f"## int8: post-training quantisation vs quantisation-aware fine-tuning "
             f"({MAIN_TARGET:.0%} removed)", "",
             f"PPCD's final generator as TFLite fp32 and as post-training int8 (calibrated "
             f"on 16 batches), against the same run continued for {steps} steps through "
             "int8 fake quant (`--qat_steps`, `ppcd_tf.qat`) and exported int8 with the "
             "ranges it trained with. All through LiteRT, same latents and features. The "
             f"QAT model has trained {steps} steps more than the other two.", "",
             "| seed | TFLite fp32 FID | int8 PTQ FID | int8 QAT FID | QAT vs fp32 | "
             "int8 PTQ ms | int8 QAT ms |", "|---|---|---|---|---|---|---|"]
    for s, a, b, c in zip(seeds, fp32, ptq, qat):
      lines.append(f"| {s} | {a:.2f} | {b:.2f} | {c:.2f} | {c / a - 1:+.1%} "
                   f"| {main[s]['variants']['int8']['latency_ms']:.2f} "
                   f"| {q[s]['variants']['int8']['latency_ms']:.2f} |")
    change = float(np.mean(qat)) / float(np.mean(fp32)) - 1.0
    t = stats.compare(qat, ptq)
    p = "" if t["p"] is None else f", Welch p = {t['p']:.3g}"
    lines += ["", f"Over {len(seeds)} seed(s): fp32 {_fmt(fp32)}, int8 PTQ {_fmt(ptq)}, "
              f"int8 QAT {_fmt(qat)}. QAT's int8 FID is {change:+.1%} from fp32's: the "
              f"target (within 5%) is **{'met' if abs(change) <= 0.05 else 'not met'}**"
              f"{'' if abs(change) <= 0.05 else f' (by {abs(change) - 0.05:.1%})'}. "
              f"QAT against PTQ: **{t['verdict']}** ({t['diff']:+.2f}{p}). "
              + ("**QAT is worth its steps here**: its int8 FID is significantly lower "
                 "than post-training int8's." if t["verdict"] == "better" else
                 "**QAT is not worth its steps here**: its int8 FID is not significantly "
                 "lower than post-training int8's, which needs no training."), ""]
    keras = [q[s]["fid"] for s in seeds]  # the QAT run's fake-quant Keras model
    ptq_change = float(np.mean(ptq)) / float(np.mean(fp32)) - 1.0
    lines += [f"Why: the QAT int8 file scores as its own fake-quant Keras model (FID "
              f"{_fmt(qat)} vs {_fmt(keras)}), so the conversion loses nothing and any "
              "gap to fp32 comes from the QAT steps themselves (fixed ranges, training "
              f"through the rounding). Post-training int8 changes FID by {ptq_change:+.1%} "
              "here, so at this scale there is little for QAT to recover."]
    ms_ptq = float(np.mean([main[s]["variants"]["int8"]["latency_ms"] for s in seeds]))
    ms_qat = float(np.mean([q[s]["variants"]["int8"]["latency_ms"] for s in seeds]))
    if ms_qat > ms_ptq:
      lines[-1] += (f" The QAT file also timed slower ({ms_qat:.2f} vs {ms_ptq:.2f} ms, "
                    "timed in separate runs on the shared machine, not side by side). "
                    "Its conditional-BN arithmetic and residual adds run in float between "
                    "DEQUANTIZE and QUANTIZE ops, where post-training int8 keeps them "
                    "int8, which would explain it.")
    return lines + [""]

  def _curve_lines(self) -> List[str]:
    rel = lambda name: self._rel(os.path.join(self.dir, name))  # noqa: E731
    return ["## Curves", "",
            f"FID during training ({self.exp.curve_samples:,} samples per point; mean over "
            "seeds, band = min..max):", "", f"![FID vs steps]({rel('fid_vs_steps.png')})", "",
            "FID against parameters and MACs kept:", "",
            f"![FID vs params]({rel('fid_vs_params.png')}) "
            f"![FID vs MACs]({rel('fid_vs_macs.png')})", ""]

  def _wall_lines(self) -> List[str]:
    lines = ["## Wall time", "",
             "Training wall time of every invocation of every run (`ppcd_tf.wall_log`); "
             "\"shared\" when a load average above the core count was seen at a start or "
             "end, or a note says another job ran.", "",
             "| run | seeds | steps | mean training wall s | peak load | shared |",
             "|---|---|---|---|---|---|"]
    for n in RUNS:
      if n not in self.runs:
        continue
      walls = [r["wall"] for r in self.runs[n].values() if r.get("wall")]
      if not walls:
        continue
      lines.append(f"| {RUNS[n].label} | {len(self.runs[n])} | {self.one(n)['train_steps']:,} "
                   f"| {np.mean([w['wall_seconds'] for w in walls]):,.0f} | "
                   f"{max(w['peak_load'] or 0 for w in walls):.2f} | "
                   f"{'yes' if any(w['shared'] for w in walls) else 'no'} |")
    return lines + [""]

  # -------------------------------------------------------------- plots
  def _plots(self) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ppcd_tf import checkpoints

    def save(fig, name):
      fig.tight_layout()
      checkpoints.write_atomically(os.path.join(self.dir, name),
                                   lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
      plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for n, r in RUNS.items():
      if r.view != "student" or r.target != MAIN_TARGET or n not in self.runs:
        continue
      curves = [res["curve"] for res in self.runs[n].values() if res.get("curve")]
      if not curves:
        continue
      steps = sorted(set.intersection(*[{c[0] for c in cv} for cv in curves]))
      if not steps:
        continue
      ys = np.array([[dict(map(tuple, cv))[s] for s in steps] for cv in curves])
      line, = ax.plot(steps, ys.mean(axis=0), "o-" if n == MAIN_RUN else ".-", ms=3,
                      lw=2.5 if n == MAIN_RUN else 1.2, label=r.label)
      ax.fill_between(steps, ys.min(axis=0), ys.max(axis=0), alpha=0.15,
                      color=line.get_color())
    if self.teacher:
      ax.axhline(self.teacher["fid"], color="gray", ls="--", label="teacher")
    ax.set_xlabel("student step")
    ax.set_ylabel("FID (classifier features)")
    ax.set_yscale("log")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save(fig, "fid_vs_steps.png")

    best = None
    done = [n for n in STRUCTURED if len(self.values(n)) >= 1]
    if done:
      best = min(done, key=lambda n: np.mean(self.values(n)))
    for key, name in (("params", "fid_vs_params.png"), ("macs", "fid_vs_macs.png")):
      fig, ax = plt.subplots(figsize=(7, 4))
      ref = self.teacher[key] if self.teacher else 1
      for family, label in (("ppcd_t", "PPCD"), ("oneshot_l1", "One-shot L1 + distillation"),
                            (best, f"{RUNS[best].label} (best structured)" if best else "")):
        if not family or (family == best and best.startswith("oneshot_l1")):
          continue
        names = [n for n in budget_family(family) if n in self.runs]
        pts = sorted((self.one(n)[key] / ref, np.mean(self.values(n)),
                      np.std(self.values(n), ddof=1) if len(self.values(n)) > 1 else 0.0)
                     for n in names)
        if pts:
          x, y, e = zip(*pts)
          ax.errorbar(x, y, yerr=e, fmt="o-", ms=4, capsize=3, label=label)
      if self.teacher:
        ax.axhline(self.teacher["fid"], color="gray", ls="--", label="teacher")
      ax.set_xlabel(f"generator {key} kept (fraction of teacher)")
      ax.set_ylabel("FID (mean ± sd over seeds)")
      ax.legend(fontsize=7)
      save(fig, name)


