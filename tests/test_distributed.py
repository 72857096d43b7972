"""tf.distribute: MirroredStrategy == one device; MultiWorkerMirroredStrategy runs.

Both need a process of their own (logical devices / TF_CONFIG must be set before
TensorFlow initialises), so they run `tests/distributed_check.py` as subprocesses.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile

import pytest
from absl.testing import absltest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "distributed_check.py")


def _env(**extra):
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_ENABLE_ONEDNN_OPTS="0",
             TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
  env.pop("TF_CONFIG", None)
  env.update(extra)
  return env


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
class DistributedTest(absltest.TestCase):

  def test_mirrored_equals_one_device(self):
    out = tempfile.mkdtemp(prefix="ppcd_mirrored_")
    proc = subprocess.run([sys.executable, SCRIPT, "mirrored_vs_single", out], env=_env(),
                          capture_output=True, text=True, timeout=600)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    r = json.load(open(os.path.join(out, "result.json")))
    self.assertEqual((r["mirrored_replicas"], r["single_replicas"]), (2, 1))
    # Same global batch: the losses of every step agree to float32 rounding ...
    for lm, ls in zip(r["mirrored_losses"], r["single_losses"]):
      for k in lm:
        self.assertAlmostEqual(lm[k], ls[k], delta=1e-5 * max(1.0, abs(ls[k])), msg=k)
    # ... and so do the weights after 3 Adam steps (Adam normalises gradients, so
    # rounding noise on near-zero gradients can move a weight by up to ~lr; bound it
    # well below that and require almost all weights to agree to 1e-5).
    self.assertLess(r["max_abs_diff"], 1e-4)
    self.assertLess(r["frac_over_1e-5"], 0.01)

  def test_multi_worker_runs(self):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workdir = tempfile.mkdtemp(prefix="ppcd_multiworker_")
    procs = []
    for i in range(2):
      tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
      procs.append(subprocess.Popen(
          [sys.executable, SCRIPT, "multi_worker", workdir],
          env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
          text=True))
    outs = []
    try:
      for p in procs:
        outs.append(p.communicate(timeout=600))
    finally:
      for p in procs:
        if p.poll() is None:
          p.kill()
    for p, (out, err) in zip(procs, outs):
      self.assertEqual(p.returncode, 0, err[-3000:])
      result = json.loads(out.split("RESULT", 1)[1])
      self.assertEqual(result, {"step": 2, "replicas": 2})
    # Only the chief (worker 0) wrote the workdir's checkpoints and summary.
    self.assertTrue(os.path.exists(os.path.join(workdir, "train_summary.json")))
    self.assertTrue(os.path.exists(os.path.join(workdir, "checkpoints", "ckpt-2.index")))


if __name__ == "__main__":
  absltest.main()
