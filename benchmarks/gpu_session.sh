#!/usr/bin/env bash
# One short lease of a CUDA machine, end to end: CUDA tests, the GPU benchmark matrix (paper preset,
# eager vs torch.compile with CUDA graphs, FP32 vs FP16 autocast, batch 1 and 16), FP16/BF16
# accuracy against CPU FP32, and the speed of one training epoch. Steps run in order of value, each
# time-boxed, and the script ends by itself before DEADLINE seconds; everything lands in
# $OUT/session.log and $OUT/results.tar (merge the bench parts with benchmarks/merge_bench.py).
#
#   OUT=gpu-out [SCRATCH=DIR] bash benchmarks/gpu_session.sh
#
# Data, runs, caches and the carried wheels' site go under SCRATCH (default: a new temporary folder).
# Wheels missing on the machine (soundfile, cffi, pycparser) may travel in .whl/.
set -u
OUT=${OUT:-$PWD/gpu-out}
DEADLINE=${DEADLINE:-550}
SCRATCH=${SCRATCH:-$(mktemp -d)}
WORK=$OUT/work
mkdir -p "$WORK" "$SCRATCH"
exec > >(tee -a "$OUT/session.log") 2>&1
T0=$SECONDS
step() { echo; echo "== t=$(( SECONDS - T0 )) s: $*"; }
# box CAP CMD...: run CMD for at most CAP seconds, or what is left before DEADLINE
box() {
    local cap=$1 left=$(( DEADLINE - (SECONDS - T0) ))
    shift
    (( left < cap )) && cap=$left
    if (( cap < 15 )); then echo "SKIPPED (no time left): $*"; return 1; fi
    timeout "$cap" "$@"
    local rc=$?
    (( rc == 124 )) && echo "TIMED OUT after $cap s: $*"
    return $rc
}

# keep the background synth off the cores of the foreground steps (only where there are enough)
if (( $(nproc) >= 8 )); then FG=(taskset -c 0-1) BG=(taskset -c 2-15); else FG=() BG=(); fi

if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SCRATCH/site" .whl/*.whl || exit 1
    export PYTHONPATH=$SCRATCH/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
G=(python3 -m glfer_edge)

step machine
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv
python3 -c "import torch, soundfile, glfer_edge; print('torch', torch.__version__, 'CUDA', torch.cuda.is_available(), 'cores', __import__('os').cpu_count())" || exit 1

step "synth: the bundled model's training data (background, cores 2-15)"
DATA=$SCRATCH/synth
(
    "${BG[@]}" "${G[@]}" synth --out $DATA --n-scenes ${N_TRAIN:-400} --duration 30 --seed 1 --split train --workers 14 --quiet &&
    "${BG[@]}" "${G[@]}" synth --out $DATA --n-scenes ${N_VAL:-40} --duration 30 --seed 2 --split val --workers 14 --quiet
) 2>&1 | sed 's/^/[synth] /' &
SYNTH=$!

step "CUDA tests (cores 0-1)"
box 90 "${FG[@]}" python3 -m pytest -q -rs -p no:cacheprovider tests/test_cuda_buffers.py \
    "tests/test_bench.py::test_run_case_torch_on_cuda_times_gpu_compute[torch-fp16]"

step "waiting for synth (the benchmarks want the CPU quiet)"
wait $SYNTH

for backend in torch torch-compile torch-fp16 torch-compile-fp16; do
    step "bench $backend (paper preset, batch 1 and 16)"
    box 170 "${G[@]}" bench --preset paper --device cuda --backends $backend --batch 1,16 --duration 3 \
        --timeout 80 --cache-dir "$SCRATCH/bench-cache" --json "$WORK/bench-$backend.json"
done

step "FP16 / BF16 accuracy vs CPU FP32 (bundled model, 32 scenes)"
box 100 python3 benchmarks/gpu_precision.py --scenes 32 --json "$WORK/gpu-precision.json"

for preset in small paper; do
    step "one training epoch, $preset preset, CUDA, 8 loader workers"
    box 120 "${G[@]}" train --data $DATA --preset $preset --lr 2e-3 --sed-weight 0.5 --seed 0 --device cuda \
        --workers 8 --epochs 1 --quiet --out "$SCRATCH/run-$preset"
    cat "$SCRATCH/run-$preset/train.log" 2>/dev/null
    cp "$SCRATCH/run-$preset/history.json" "$WORK/train-$preset-history.json" 2>/dev/null
done

step "pack"
tar -cf "$OUT/results.tar" -C "$WORK" . && rm -rf "$WORK"
ls -la "$OUT"
