#!/usr/bin/env bash
# Issue 6's GPU timings, as one prepared run for a lent GPU machine (budget: ~10 minutes):
# slices/s and peak memory of ICONet (default config and the three shipped models) next to
# EDSR-baseline and the T2Net-style peer, 256² and 512² HR slices, 2x and 4x, fp32/bf16/fp16,
# eager and torch.compile'd (inference_speed.py --compile).
#   OUT=gpu_out bash benchmarks/gpu_speed.sh
# Writes $OUT/inference_speed_gpu.md and .json (copy them to benchmarks/results/).
set -u
mkdir -p "${OUT:-gpu_out}"
OUT=$(cd "${OUT:-gpu_out}" && pwd)  # absolute: the benchmark runs from benchmarks/
export PYTHONPATH=${ICONET_SRC:-$PWD/src}
cd benchmarks
{
  nvidia-smi -L
  python3 inference_speed.py --device cuda --threads 16 --batch 16 --compile --repeats 10 \
    --models iconet edsr t2net iconet-t1-x2 iconet-t1-x2-fast iconet-t1-x4 --json "$OUT/inference_speed_gpu.json" \
    > "$OUT/inference_speed_gpu.md"
} 2>&1 | tee "$OUT/speed.log"
cat "$OUT/inference_speed_gpu.md"
