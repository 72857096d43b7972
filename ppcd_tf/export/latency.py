"""A quick latency figure: the median wall time of one call of a model.
"""

from __future__ import annotations

import numpy as np

from ppcd_tf.export.runners import open_generator


def median_latency_ms(path: str, repeats: int = 30, batch: int = 1, warmup: int = 3) -> float:
  """Median wall milliseconds of one `batch`-sized call of a model (LiteRT for .tflite).

  A quick single-model figure for reports; `tools/bench_infer.py` is the benchmark
  that compares models side by side.
  """
  import time
  runner = open_generator(path)
  rng = np.random.default_rng(0)
  z = rng.standard_normal((batch, runner.spec.z_dim)).astype(np.float32)
  y = (np.arange(batch) % runner.spec.num_classes).astype(np.int32)
  for _ in range(warmup):
    runner(z, y)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    runner(z, y)
    times.append((time.perf_counter() - start) * 1000.0)
  return float(np.median(times))
