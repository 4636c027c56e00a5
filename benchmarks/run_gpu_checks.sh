#!/usr/bin/env bash
# The GPU checks in one go, for a machine with a CUDA GPU and PyTorch + transformers
# installed (nothing is installed here: gpt2kit runs from src/). Writes logs to $OUT
# (default /tmp/gpt2kit-gpu). Under ~6 minutes on an H100.
#   bash benchmarks/run_gpu_checks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpt2kit-gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/env.txt"
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/env.txt"
echo "== generation (bf16, eager and CUDA-graph captured, vs transformers)"
timeout "${GEN_TIMEOUT:-240}" $PY benchmarks/bench_generation.py --device cuda --repeats 3 2>&1 \
  | grep -v "Writing model shards" | tee "$OUT/bench_generation.txt"
echo "== tests/test_cuda.py"
timeout "${TEST_TIMEOUT:-150}" $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 \
  | tail -40 | tee "$OUT/test_cuda.txt"
echo "== training, 124M, 16 x 1024, bf16 autocast"
timeout "${TRAIN_TIMEOUT:-120}" $PY benchmarks/bench_training.py --preset 124m --batch 16 --seq 1024 \
  --steps 10 --rounds 1 --bf16 2>&1 | tee "$OUT/bench_training.txt"
