#!/usr/bin/env bash
# GPU training benchmark on a bare Linux GPU machine, one command from a clone:
#   bash tools/gpu_bench.sh
# creates .venv-gpu from requirements-gpu.txt (TensorFlow with its CUDA libraries;
# needs the NVIDIA driver and network access to PyPI), checks that TensorFlow sees
# a GPU, then times the imagenet128 (BigGAN 128x128) teacher and PPCD steps at
# mixed_bfloat16 + XLA with tools/bench_train.py and writes
# docs/bench/bench_train_gpu.json. Sized for <= 8 minutes on one modern GPU,
# set-up included (about 3 of them pip, 2-3 XLA compilation of the two steps).
#
# Environment (defaults in brackets):
#   CONFIG [configs/imagenet128.cfg]  BATCH [32]  STEPS [10]  REPEATS [3]  WARMUP [2]
#   JIT [true]  PRECISIONS [mixed_bfloat16]  OUT [docs/bench/bench_train_gpu.json]
#   VENV [.venv-gpu]  SKIP_SETUP [0]: 1 uses $PY as it is (no venv, no install)
#   PY [$VENV/bin/python]  REQUIRE_GPU [1]: 0 lets it run on CPU (the test does)
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-configs/imagenet128.cfg}
BATCH=${BATCH:-32}
STEPS=${STEPS:-10}
REPEATS=${REPEATS:-3}
WARMUP=${WARMUP:-2}
JIT=${JIT:-true}
PRECISIONS=${PRECISIONS:-mixed_bfloat16}
OUT=${OUT:-docs/bench/bench_train_gpu.json}
VENV=${VENV:-.venv-gpu}
REQUIRE_GPU=${REQUIRE_GPU:-1}
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)
if [[ "${SKIP_SETUP:-0}" != 1 ]]; then
  VENV="$VENV" REQUIREMENTS=requirements-gpu.txt bash tools/bootstrap_venv.sh
fi
PY=${PY:-$VENV/bin/python}
setup_done=$(date +%s)
gpus=$("$PY" -c 'import tensorflow as tf; print(len(tf.config.list_physical_devices("GPU")))')
echo "gpu_bench: $gpus GPU(s) visible, set-up took $((setup_done - start)) s" >&2
if [[ "$REQUIRE_GPU" == 1 && "$gpus" == 0 ]]; then
  echo "gpu_bench: TensorFlow sees no GPU (driver missing, or not an NVIDIA machine);" \
       "run 'nvidia-smi' to check, or set REQUIRE_GPU=0 to time the CPU." >&2
  exit 2
fi
"$PY" -m tools.bench_train --flagfile="$CONFIG" --batch_size="$BATCH" \
  --bench_modes=teacher,ppcd --bench_jit="$JIT" --bench_precisions="$PRECISIONS" \
  --steps="$STEPS" --repeats="$REPEATS" --warmup="$WARMUP" --out="$OUT"
echo "gpu_bench: done in $(( $(date +%s) - start )) s -> $OUT" >&2
