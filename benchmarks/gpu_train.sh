#!/usr/bin/env bash
# Continue training on a lent GPU with a warm restart sized to the lease: generate the training scenes
# (synth seed 1, or TRAIN_SEEDS) and the validation scenes (seed 2), time two epochs and a validation
# (the probe), then either resume RUN on the longest cosine curve whose remaining epochs end before
# DEADLINE seconds, or (INIT=weights) fine-tune those weights on a fresh cosine of that length
# (`train --init-weights`); the run lands in $OUT/results.tar.
# The bundled model's GPU training stages (the model card's training table) came from this script.
#
#   OUT=gpu-out RUN=runs/small-v7 [PRESET=small] [RECIPE="--lr 2e-3 --sed-weight 0.5 --seed 0"] \
#       bash benchmarks/gpu_train.sh        # carry RUN (and .whl/ with wheels the machine lacks)
#   OUT=gpu-out INIT=glfer_edge/assets/glfer_small_synth.safetensors RECIPE="--lr 3e-4 --sed-weight 0.5 --seed 2" \
#       bash benchmarks/gpu_train.sh
# TRAIN_SEEDS="4 5" trains on 400 fresh scenes per seed instead of seed 1's (unseen scenes gained more
# than longer curves on the old ones); EPOCHS=N skips the probe and runs an N-epoch curve (on an H100,
# 800 scenes take about 25 s per epoch with validation, 400 about 15 s).
set -u
OUT=${OUT:-$PWD/gpu-out}
DEADLINE=${DEADLINE:-555}
PRESET=${PRESET:-small}
RECIPE=${RECIPE:---lr 2e-3 --sed-weight 0.5 --seed 0}
MAX_EPOCHS=${MAX_EPOCHS:-150}  # new epochs at most
DEVICE=${DEVICE:-cuda}  # cpu: a smoke test of the script (with small N_TRAIN / N_VAL)
T0=$SECONDS
S=$(mktemp -d)
WORK=$OUT/work
mkdir -p "$WORK"
exec > >(tee -a "$OUT/session.log") 2>&1
step() { echo; echo "== t=$(( SECONDS - T0 )) s: $*"; }
INIT=${INIT:-}
if [[ -n $INIT ]]; then
    [[ -f $INIT ]] || { echo "INIT=$INIT is no weights file"; exit 2; }
else
    [[ -f ${RUN:-}/last_state.safetensors ]] || { echo "RUN=${RUN:-} holds no run to resume (last_state.safetensors); or set INIT=weights to fine-tune"; exit 2; }
fi
if ! python3 -c "import soundfile" 2>/dev/null && compgen -G ".whl/*.whl" > /dev/null; then  # wheels the machine lacks
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$S/site" .whl/*.whl || exit 1
    export PYTHONPATH=$S/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
G=(python3 -m glfer_edge)
W=$(( $(nproc) > 1 ? $(nproc) - 1 : 1 ))

step machine
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null
python3 -c "import torch, soundfile, glfer_edge; print('torch', torch.__version__, 'CUDA', torch.cuda.is_available())" || exit 1

step "synth (training scenes of seeds ${TRAIN_SEEDS:-1}, validation scenes of seed 2)"
DATA=$S/synth
for SEED in ${TRAIN_SEEDS:-1}; do
    "${G[@]}" synth --out $DATA --n-scenes ${N_TRAIN:-400} --duration 30 --seed $SEED --split train --workers $W --quiet || exit 1
done
"${G[@]}" synth --out $DATA --n-scenes ${N_VAL:-40} --duration 30 --seed 2 --split val --workers $W --quiet || exit 1
sha256sum $DATA/metadata_dev/train/synth_s*_00000.csv $DATA/metadata_dev/val/synth_s2_00000.csv  # compare with your local copy

if [[ -z ${EPOCHS:-} ]]; then
    step "probe: two training epochs and one validation ($PRESET on $DEVICE, in memory, 4 workers)"
    python3 - "$DATA" "$S/probe" "$PRESET" "$DEVICE" > "$WORK/probe.json" <<'PY' || exit 1
import json, sys, time
import torch
from glfer_edge.config import get_preset
from glfer_edge.training import TrainConfig, Trainer

t0 = time.monotonic()
cfg = TrainConfig(epochs=2, device=sys.argv[4], workers=4, in_memory=True)
trainer = Trainer(get_preset(sys.argv[3]), sys.argv[1], sys.argv[2], cfg, progress=False)
sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
t1 = time.monotonic(); trainer.train_epoch(1); sync()
t2 = time.monotonic(); trainer.validate()
t3 = time.monotonic(); trainer.train_epoch(2); sync()
t4 = time.monotonic()
print(json.dumps({"load_s": t1 - t0, "epoch1_s": t2 - t1, "val_s": t3 - t2, "epoch2_s": t4 - t3}))
PY
    cat "$WORK/probe.json"
fi
if [[ -n $INIT ]]; then DONE=0; else
    DONE=$(python3 -c "import json; print(max(h['epoch'] for h in json.load(open('$RUN/history.json'))))")
fi
LEFT=$(( DEADLINE - (SECONDS - T0) - 30 ))
# 1.3: inside the run an epoch (checkpoints and both averagings included) took 15 s on an H100 where the
# probe's epoch and validation took 11.8 s; with 1.08 the twelfth run stopped 6 epochs short of its curve.
M=${EPOCHS:-$(python3 -c "import json; p = json.load(open('$WORK/probe.json')); \
print(max(1, min($MAX_EPOCHS, int(($LEFT - p['load_s'] - 5) / (1.3 * (p['epoch2_s'] + p['val_s']))))))")}
E=$(( DONE + M ))

if [[ -n $INIT ]]; then
    step "fine-tune $INIT on a $E-epoch curve ($LEFT s left)"
    START=(--init-weights "$INIT")
else
    step "resume $RUN after epoch $DONE on a $E-epoch curve ($M epochs, $LEFT s left)"
    cp -r "$RUN" "$S/run"
    START=(--resume)
fi
timeout $LEFT "${G[@]}" train --data $DATA --preset $PRESET $RECIPE --device $DEVICE --in-memory --workers 4 \
    --epochs $E "${START[@]}" --quiet --max-minutes "$(python3 -c "print(($LEFT - 10) / 60)")" --out "$S/run"
echo "train rc=$?"
tail -n $(( M + 2 )) "$S/run/train.log"

step pack
cp "$S"/run/{best,last,last_state}.safetensors "$S"/run/{history.json,train.log} "$WORK"/
tar -cf "$OUT/results.tar" -C "$WORK" . && rm -rf "$WORK"
ls -la "$OUT"
