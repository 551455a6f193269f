#!/usr/bin/env bash
# One prepared GPU session for molgen (issue: "GPU-ready, and bf16 on CPU"), under 10 minutes of device time:
#   1. the speed benchmark on CUDA (training steps/s fp32 / AMP / compile, sampling molecules/s fp32 / bf16);
#   2. a warm-started training run of the v2 recipe with AMP for TRAIN_S seconds (default 420), checkpointed;
#   3. the checkpoint and the results are copied to $OUT (the device tool brings that folder back).
# Resume the same run later with the same command: the trainer resumes from run/checkpoints.
#
#   OUT=/tmp/out QM9=~/.cache/scoregen/qm9/qm9_v1_all.pt INIT=molgen/pretrained/generator.pt \
#       bash benchmarks/molgen_gpu_session.sh
set -euo pipefail
OUT=${OUT:-runs/gpu_session}
QM9=${QM9:-$HOME/.cache/scoregen/qm9/qm9_v1_all.pt}
INIT=${INIT:-molgen/pretrained/generator.pt}
TRAIN_S=${TRAIN_S:-420}
RUN=${RUN:-$OUT/run}
PY=${PY:-python}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt" || true

# 1. network cost on the GPU (about 2 minutes)
timeout 240 "$PY" -m benchmarks.molgen_speed --device cuda --train-steps 40 --warmup 5 --sample-n 256 \
    --sample-steps 50 --data "$QM9" --name molgen_speed_cuda | tee "$OUT/speed.txt" || echo "speed benchmark failed"
cp benchmarks/results/molgen_speed_cuda.* "$OUT"/ 2>/dev/null || true

# 2. training: batch 256 (the GPU's sweet spot for QM9-sized graphs), AMP; the lr follows the batch (sqrt rule)
"$PY" -m molgen.cli train qm9_cpu_v2 init_from="$INIT" --qm9 "$QM9" --run-dir "$RUN" --device cuda --no-progress \
    batch_size=256 trainer.lr=1.0e-3 trainer.amp=true trainer.checkpoint_every=200 max_time_s="$TRAIN_S" \
    num_workers=4 | tee "$OUT/train.txt"

# 3. what comes back: the exported model, the config, the logs
cp "$RUN/model.pt" "$RUN/config.yaml" "$RUN/log.jsonl" "$OUT"/
echo "done: $OUT/model.pt"
