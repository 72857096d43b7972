"""Stages shared by the end-to-end tools (`tools/demo.py`, `tools/experiment.py`).

Each stage reuses what an earlier invocation finished, so the tools that chain
them can be stopped and rerun.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict

__all__ = ["ensure_classifier", "slim_workdir", "export_and_time"]


def ensure_classifier(data_cfg, model_cfg, out_dir: str, epochs: int) -> Dict[str, Any]:
  """Trains the metrics classifier into `out_dir` unless it is there; returns its
  `classifier.json` (held-out accuracy etc.)."""
  from ppcd_tf import classifier
  info_path = os.path.join(out_dir, "classifier.json")
  if not os.path.exists(info_path):
    classifier.train_classifier(data_cfg, model_cfg, out_dir,
                                classifier.ClassifierTrainConfig(epochs=epochs), verbose=1)
  with open(info_path) as f:
    return json.load(f)


def slim_workdir(workdir: str) -> Dict[str, Any]:
  """Slims the EMA generator of a PPCD workdir into `workdir/slim`; the slim report."""
  from ppcd_tf import slim
  masked, _ = slim.restore_trained_generator(workdir=workdir)
  return slim.slim_and_report(masked, os.path.join(workdir, "slim"))


def export_and_time(generator, path: str, repeats: int,
                    quantize: str = "none") -> Dict[str, Any]:
  """Exports `generator` to the TFLite file `path` and times it at batch 1 (LiteRT,
  median of `repeats` calls); the export report plus `latency_ms_batch1`."""
  from ppcd_tf import export
  report = export.export_tflite(generator, path, quantize=quantize)
  report["latency_ms_batch1"] = export.median_latency_ms(path, repeats)
  return report
