"""Subprocess helper for tests/test_distributed.py (needs its own device set-up).

  python tests/distributed_check.py mirrored_vs_single OUTDIR
      trains the tiny teacher 3 steps on MirroredStrategy over 2 logical CPUs and on
      one device with the same global batch, writes max abs differences as JSON.
  python tests/distributed_check.py multi_worker WORKDIR  (with TF_CONFIG set)
      one worker of a MultiWorkerMirroredStrategy run of the tiny teacher.
"""
import ctypes
import json
import os
import signal
import sys


def _die_with_parent():
  """Linux: SIGKILL this process when the test process that started it dies, so an
  interrupted pytest leaves no multi-worker processes waiting on each other."""
  try:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
  except OSError:
    return
  pr_set_pdeathsig = 1
  libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


_die_with_parent()
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _cfg(workdir, strategy, steps=3):
  from ppcd_tf import config as config_lib
  return config_lib.tiny_config(
      run=dict(workdir=workdir, mode="teacher", strategy=strategy, save_every=100),
      optim=dict(batch_size=4, num_steps=steps))


def mirrored_vs_single(outdir):
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  from ppcd_tf import train_lib
  mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  single = tf.distribute.OneDeviceStrategy("/cpu:0")
  results, trainers = {}, {}
  for name, strategy in (("mirrored", mirrored), ("single", single)):
    trainers[name] = train_lib.Trainer(_cfg(os.path.join(outdir, name), "mirrored"),
                                       strategy=strategy)
    results[f"{name}_replicas"] = trainers[name].num_replicas
  # Identical starting point: copy every G/D variable (incl. SN u, BN statistics).
  m, s = trainers["mirrored"], trainers["single"]
  for a, b in zip(m.G.variables + m.D.variables + m.G_ema.variables,
                  s.G.variables + s.D.variables + s.G_ema.variables):
    b.assign(a.values[0] if hasattr(a, "values") else a)
  for name, t in trainers.items():
    results[f"{name}_losses"] = [t.train_step() for _ in range(3)]
  diffs = []
  for a, b in zip(trainers["mirrored"].G.trainable_variables
                  + trainers["mirrored"].D.trainable_variables,
                  trainers["single"].G.trainable_variables
                  + trainers["single"].D.trainable_variables):
    diffs.append(float(np.max(np.abs(a.numpy() - b.numpy()))))
  results["max_abs_diff"] = max(diffs)
  alld = np.concatenate([np.abs(a.numpy() - b.numpy()).ravel() for a, b in zip(
      trainers["mirrored"].G.trainable_variables + trainers["mirrored"].D.trainable_variables,
      trainers["single"].G.trainable_variables + trainers["single"].D.trainable_variables)])
  results["frac_over_1e-5"] = float(np.mean(alld > 1e-5))
  results["median_diff"] = float(np.median(alld))
  results["max_abs_value"] = max(float(np.max(np.abs(v.numpy())))
                                 for v in trainers["single"].G.trainable_variables)
  results["steps"] = int(trainers["mirrored"].step.numpy())
  with open(os.path.join(outdir, "result.json"), "w") as f:
    json.dump(results, f)


def multi_worker(workdir):
  from ppcd_tf import train_lib
  summary = train_lib.train(_cfg(workdir, "multi_worker", steps=2), progress=False)
  print("RESULT", json.dumps({"step": summary["step"],
                              "replicas": summary["num_replicas"]}), flush=True)


if __name__ == "__main__":
  {"mirrored_vs_single": mirrored_vs_single, "multi_worker": multi_worker}[sys.argv[1]](
      sys.argv[2])
