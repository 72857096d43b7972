"""Hyper-parameter search for PPCD with keras-tuner: distillation/sparsity weights, schedule.

  python -m tools.tune --flagfile=configs/mnist32_quick.cfg --teacher_dir=runs/demo/teacher \
      --extractor=classifier:runs/demo/classifier --workdir=runs/tune --max_trials=6

Each trial trains a PPCD student (`ppcd_tf.train_lib`) with the trial's
hyper-parameters at the configured target budget, slims it and scores the slim
student's FID (`ppcd_tf.evaluation`, `--num_samples` images). The objective is
that FID, minimised. keras-tuner's built-in tuners refuse tf_keras models
(TOOLCHAIN.md), so `PPCDTuner` subclasses `keras_tuner.engine.base_tuner.BaseTuner`
and overrides `run_trial` with our own loop; the oracle (random search or
Bayesian optimisation) only proposes values.

Search space (log-uniform where marked):
  lambda_att       [0.1, 10]  log     class-aware attention distillation
  lambda_cam       [0.1, 10]  log     teacher-D CAM distillation
  lambda_pix       [0.01, 10] log     pixel L1
  sparsity_weight  [1e-5, 1e-2] log   mask sparsity
  prune_power      {1, 2, 3}          polynomial schedule exponent
  prune_end_frac   {0.4, 0.6, 0.8}    prune_end_step as a fraction of num_steps
  min_channel_share {0.25, 0.5, 1}    --prune_min_channel_fraction as a share of
                                      (1 - target): how far below the uniform
                                      width a layer may be cut
  prune_cost_exponent {0, 0.5, 1}     ranking: importance / relative cost ** e

The last two decide the slim architecture; in docs/RESULTS.md a floor of
(1 - target) turned FID 183 into 41 at 81% removed on mnist32.

Writes WORKDIR/trials/<id>/ (each trial's run), WORKDIR/trials.json (every trial's
values and FID) and WORKDIR/best.cfg: a flagfile with the best values that
`python -m ppcd_tf.train --flagfile=configs/X.cfg --flagfile=WORKDIR/best.cfg ...`
uses. A rerun with the same --workdir resumes the search (keras-tuner reloads its
oracle) and reuses finished trial runs.
"""

import json
import os
import sys

from absl import app, flags, logging

from ppcd_tf import flags as ppcd_flags


def _define_flags():
  """Flags of this tool; defined only when it runs as a program, so tests can
  import it next to other tools that define the same names."""
  ppcd_flags.define_flags()
  ppcd_flags.declare_key_flags()
  flags.DEFINE_string("extractor", None,
                      "Feature extractor for the FID objective "
                      "(classifier:<dir> or inception:<path>).")
  flags.DEFINE_integer("max_trials", 6, "Trials to run.", lower_bound=1)
  flags.DEFINE_integer("num_samples", 1000, "Samples per FID.",
                      lower_bound=20)
  flags.DEFINE_enum("oracle", "random", ["random", "bayesian"],
                      "keras-tuner oracle proposing the values.")


FLAGS = flags.FLAGS

# name -> ("log", low, high) for a log-uniform float or ("choice", values).
SEARCH_SPACE = {
    # Around the defaults (chosen by gradient share, BUILD.md "Distillation weights").
    "lambda_att": ("log", 100.0, 10000.0), "lambda_cam": ("log", 3.0, 300.0),
    "lambda_pix": ("log", 0.5, 50.0), "sparsity_weight": ("log", 1e-5, 1e-2),
    "prune_power": ("choice", (1, 2, 3)), "prune_end_frac": ("choice", (0.4, 0.6, 0.8)),
    "min_channel_share": ("choice", (0.25, 0.5, 1.0)),
    "prune_cost_exponent": ("choice", (0.0, 0.5, 1.0)),
}


def trial_config(base, values, workdir):
  """The PPCD Config of one trial: `base` with the trial's hyper-parameters."""
  end = max(base.pruning.begin_step + 1,
            int(values["prune_end_frac"] * base.optim.num_steps))
  end = min(end, base.optim.num_steps - 1)
  return base.replace(
      run=dict(workdir=workdir, mode="ppcd"),
      distill=dict(lambda_att=values["lambda_att"], lambda_cam=values["lambda_cam"],
                   lambda_pix=values["lambda_pix"]),
      pruning=dict(sparsity_weight=values["sparsity_weight"],
                   power=float(values["prune_power"]), end_step=end,
                   min_channel_fraction=round(
                       values["min_channel_share"] * (1 - base.pruning.target_fraction), 4),
                   cost_exponent=float(values["prune_cost_exponent"]))).validate()


def best_flagfile_text(values, base) -> str:
  cfg = trial_config(base, values, "unused")
  return "\n".join([
      "# Best PPCD hyper-parameters found by tools/tune.py; use after the base flagfile:",
      "# python -m ppcd_tf.train --flagfile=<base.cfg> --flagfile=<this file> --mode=ppcd ...",
      f"--lambda_att={cfg.distill.lambda_att:.10g}",
      f"--lambda_cam={cfg.distill.lambda_cam:.10g}",
      f"--lambda_pix={cfg.distill.lambda_pix:.10g}",
      f"--sparsity_weight={cfg.pruning.sparsity_weight:.6g}",
      f"--prune_power={cfg.pruning.power:g}",
      f"--prune_end_step={cfg.pruning.end_step}",
      f"--prune_min_channel_fraction={cfg.pruning.min_channel_fraction:.6g}",
      f"--prune_cost_exponent={cfg.pruning.cost_exponent:g}",
  ]) + "\n"


def make_tuner(base, extractor: str, workdir: str, max_trials: int, num_samples: int,
               oracle: str = "random", seed: int = 0):
  """A keras-tuner tuner whose trials are PPCD runs scored by slim-student FID."""
  import keras_tuner
  from keras_tuner.engine import base_tuner

  from ppcd_tf import checkpoints, evaluate

  class PPCDTuner(base_tuner.BaseTuner):
    """Runs our own training loop per trial; no Keras model passes through keras-tuner."""

    def run_trial(self, trial, *args, **kwargs):
      from ppcd_tf import train_lib
      hp = trial.hyperparameters
      values = {}
      for name, (kind, *space) in SEARCH_SPACE.items():
        if kind == "log":
          values[name] = hp.Float(name, space[0], space[1], sampling="log")
        else:
          values[name] = hp.Choice(name, list(space[0]))
      run_dir = os.path.join(workdir, "trials", trial.trial_id)
      cfg = trial_config(base, values, run_dir)
      print(f"trial {trial.trial_id}: {values}", file=sys.stderr, flush=True)
      summary = train_lib.train(cfg, progress=False)
      result = evaluate.evaluate_workdir(run_dir, "ema", extractor, num_samples,
                                         seed=seed, stats_dir=os.path.join(workdir, "stats"))
      record = dict(trial_id=trial.trial_id, values=values, fid=result["fid"],
                    class_accuracy=result.get("class_accuracy"),
                    live_params=summary["live_params"],
                    live_fraction=summary.get("live_fraction"))
      checkpoints.write_json_atomic(os.path.join(run_dir, "trial.json"), record)
      return {"fid": float(result["fid"])}

    def save_model(self, trial_id, model, step=0):  # nothing to save: runs live in trials/
      pass

    def load_model(self, trial):
      raise NotImplementedError("PPCD trials are workdirs under trials/<id>, not models.")

  objective = keras_tuner.Objective("fid", direction="min")
  if oracle == "bayesian":
    orc = keras_tuner.oracles.BayesianOptimizationOracle(
        objective=objective, max_trials=max_trials, seed=seed)
  else:
    orc = keras_tuner.oracles.RandomSearchOracle(objective=objective,
                                                 max_trials=max_trials, seed=seed)
  return PPCDTuner(orc, directory=workdir, project_name="keras_tuner")


def run_search(base, extractor: str, workdir: str, max_trials: int, num_samples: int,
               oracle: str = "random", seed: int = 0):
  """Runs (or resumes) the search; writes trials.json and best.cfg. Returns the best record."""
  from ppcd_tf import checkpoints
  if not base.distill.teacher_dir:
    from ppcd_tf.config import ConfigError
    raise ConfigError("tools.tune needs --teacher_dir (a trained teacher workdir).")
  tuner = make_tuner(base, extractor, workdir, max_trials, num_samples, oracle, seed)
  tuner.search()
  records = []
  for trial_dir in sorted(os.listdir(os.path.join(workdir, "trials"))):
    path = os.path.join(workdir, "trials", trial_dir, "trial.json")
    if os.path.exists(path):
      records.append(json.load(open(path)))
  records.sort(key=lambda r: r["fid"])
  checkpoints.write_json_atomic(os.path.join(workdir, "trials.json"), records)
  best = records[0]
  with open(os.path.join(workdir, "best.cfg"), "w") as f:
    f.write(best_flagfile_text(best["values"], base))
  return best


def check_tuning_seed(seed: int) -> None:
  """Tuning never trains at a seed the experiment reports (tools/experiment.py)."""
  from ppcd_tf.config import ConfigError
  from tools.experiment import REPORT_SEEDS
  if seed in REPORT_SEEDS:
    raise ConfigError(f"--seed={seed} is one of the training seeds docs/RESULTS.md "
                      f"reports ({', '.join(map(str, REPORT_SEEDS))}); tune on others, "
                      "e.g. --seed=100, so the reported runs were never tuned on.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from ppcd_tf import cli_errors
  from ppcd_tf.config import ConfigError
  with cli_errors.friendly_errors():
    if not FLAGS.extractor:
      raise ConfigError("--extractor is required (classifier:<dir> from "
                        "python -m ppcd_tf.train_classifier, or inception:<path>).")
    base = ppcd_flags.config_from_flags(FLAGS).replace(run=dict(mode="ppcd"))
    check_tuning_seed(base.run.seed)
    best = run_search(base, FLAGS.extractor, FLAGS.workdir, FLAGS.max_trials,
                      FLAGS.num_samples, FLAGS.oracle, FLAGS.seed)
  print(f"best trial {best['trial_id']}: FID {best['fid']:.3f} with {best['values']}")
  print(f"flagfile: {os.path.join(FLAGS.workdir, 'best.cfg')}")


if __name__ == "__main__":
  _define_flags()
  logging.set_verbosity(logging.WARNING)
  from ppcd_tf import cli_errors
  cli_errors.run(main)
