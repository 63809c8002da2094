#!/usr/bin/env bash
# The CPU benchmark matrix behind benchmarks/RESULTS.md (performance targets of the bench issue).
#
#   benchmarks/run_matrix.sh [OUT_DIR]        default OUT_DIR: benchmarks/results/cpu
#   DURATION=20 THREADS=2 ROUNDS=10 benchmarks/run_matrix.sh
#
# Run it on a quiet machine: other processes on the same cores slow PyTorch's OpenMP pool far more
# than onnxruntime's (measured: 10x vs 4.5x at load average 5 on 2 cores), which skews every ratio.
# ONNX artifacts and random preset weights are cached in ~/.cache/glfer_edge/bench (--cache-dir).
set -euo pipefail

OUT=${1:-benchmarks/results/cpu}
THREADS=${THREADS:-2}
DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-10}
mkdir -p "$OUT"
common=(--threads "$THREADS" --duration "$DURATION" --warmup 3 --segment-seconds 8 --force)

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/conditions.txt"

# 1. The targets: paper preset, batch 1, 8-s segments, features included, every CPU backend in one run; then the
#    same backends side by side in interleaved rounds (per-round medians and ratios against ORT int8-cpu).
cpu_backends=ort-int8-cpu,ort-int8-cpu-nospin,torch,torch-compile,ort-fp32,ort-fp32-nospin,ort-fp16,ort-int8
cpu_backends+=,openvino-fp32,openvino-bf16,openvino-int8,openvino-int8-cpu
glfer-edge bench --preset paper --backends "$cpu_backends" --batch 1 "${common[@]}" --rounds "$ROUNDS" \
    --reference ort-int8-cpu --json "$OUT/paper-b1.json" --markdown "$OUT/paper-b1.md"

# 2. Batch sweep of the paper preset (latency vs throughput).
glfer-edge bench --preset paper --backends torch,ort-fp32,ort-int8,ort-int8-cpu,openvino-int8-cpu --batch 1,4,16 "${common[@]}" \
    --json "$OUT/paper-batch.json" --markdown "$OUT/paper-batch.md" --plot "$OUT/paper-batch.png"

# 3. Tiny preset: real-time factor target (RTF <= 0.01).
glfer-edge bench --preset tiny --backends torch,torch-compile,ort-fp32,ort-int8,ort-int8-cpu --batch 1,4,16 "${common[@]}" \
    --json "$OUT/tiny-batch.json" --markdown "$OUT/tiny-batch.md" --plot "$OUT/tiny-batch.png"

# 4. Levers, interleaved so that load hits every variant alike.
python "$(dirname "$0")/levers.py" --preset paper --rounds "$ROUNDS" --threads "$THREADS" --json "$OUT/levers-paper.json"
glfer-edge bench --preset paper --backends torch,ort-fp32,ort-int8-cpu --batch 1 --threads 1 --duration "$DURATION" \
    --warmup 3 --segment-seconds 8 --no-profile --force --json "$OUT/paper-b1-1thread.json" --markdown "$OUT/paper-b1-1thread.md"

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/conditions.txt"
