"""Test environment: tf_keras, deterministic CPU numerics, fixed seeds."""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One TensorFlow thread per pool in every test process (and the training processes
# the tests start, which inherit this environment): `make test` runs two worker
# processes on two cores, and each one's own pools of two would spin against the
# other's. Measured: tools-free A/B of tests/test_slim.py + test_dead_weights.py
# under two workers, medians of 3 interleaved runs, 59 s vs 63 s (BUILD.md "Tests").
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import random  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


# The longest test classes (seconds on 2 cores with two pytest-xdist workers, from
# `pytest --durations=0` alone on the machine, 2026-12-02), run first (the Makefile's
# --no-loadscope-reorder keeps this order): `make test` hands out one class or module at a
# time (--dist loadscope), so starting the long ones early keeps both workers busy to
# the end instead of leaving one alone with a long class. Order only; nothing skips.
HEAVY_FIRST = (
    "tests/test_bench_train.py::BenchTrainTest",            # ~300 before its trim
    "tests/test_crash_resume.py::CrashResumeTest",          # ~265 (then eight processes, now seven)
    "tests/test_classifier.py::ClassifierAcceptanceTest",   # ~225
    "tests/test_experiment.py::EndToEndTest",               # ~210
    "tests/test_demo.py::DemoTest",                         # ~200
    "tests/test_slim_finetune.py::SwitchTest",              # ~190
    "tests/test_evaluate.py::EvaluateTest",                 # ~140
    "tests/test_tune.py::TuneTest",                         # ~125
    "tests/test_distributed.py::DistributedTest",           # ~125
    "tests/test_baselines.py::MagnitudeBaselineTest",       # ~100
    "tests/test_precision.py::MixedPrecisionTrainingTest",  # ~95
    "tests/test_importance.py::TaylorImportanceTest",       # ~90
    "tests/test_import_biggan.py",                          # ~85 (35 plain functions)
    "tests/test_qat.py::QatPhaseTest",                      # ~85
    "tests/test_bench_train.py::GpuRecipeTest",             # ~80
    "tests/test_train.py::XlaTest",                         # ~75
    "tests/test_train.py::PpcdTest",                        # ~75
    "tests/test_biggan_deep.py::DeepTrainingTest",          # ~70
    "tests/test_biggan_deep.py::Imagenet128DeepStepTest",   # ~90 (CPU-s, 2026-12-03)
)


def pytest_collection_modifyitems(session, config, items):
  def rank(item):
    scope = item.nodeid.rsplit("::", 1)[0]
    return HEAVY_FIRST.index(scope) if scope in HEAVY_FIRST else len(HEAVY_FIRST)
  items.sort(key=rank)  # stable: everything else keeps its collection order


@pytest.fixture(autouse=True)
def _seed_everything():
  import tensorflow as tf
  random.seed(0)
  np.random.seed(0)
  tf.random.set_seed(0)
  yield
