"""Tiny trained artefacts for smoke runs: a 4-step teacher and a 1-epoch classifier.

The test suite (tests/tiny_runs.py) and the fault-injection soak (tools/soak.py) both
need a teacher to distil from and a metrics classifier, trained in seconds on the
tiny config. Both are built here, once per directory: a directory that already holds
a finished one is reused.
"""
import os

from ppcd_tf import config as config_lib


def teacher_config(workdir: str, num_steps: int = 4) -> config_lib.Config:
  """The tiny teacher: batch 4, one device, `num_steps` steps into `workdir`."""
  return config_lib.tiny_config(
      run=dict(workdir=workdir, mode="teacher", strategy="one_device"),
      optim=dict(batch_size=4, num_steps=num_steps))


def teacher(workdir: str) -> str:
  """Trains the tiny teacher into `workdir` unless it finished there; returns it."""
  if not os.path.exists(os.path.join(workdir, "train_summary.json")):
    from ppcd_tf import train_lib
    train_lib.train(teacher_config(workdir), progress=False)
  return workdir


def classifier(out: str) -> str:
  """Trains a 1-epoch, width-8 mnist5k classifier on 1,000 examples into `out` unless
  one is there; returns `out`. Good enough for features, not for accuracy claims."""
  if not os.path.exists(os.path.join(out, "classifier.json")):
    from ppcd_tf import classifier as classifier_lib
    cfg = config_lib.tiny_config()
    classifier_lib.train_classifier(
        cfg.data, cfg.model, out,
        classifier_lib.ClassifierTrainConfig(epochs=1, max_train_examples=1000), width=8)
  return out
