#!/bin/bash
# The adapter benchmark's seed/budget/size sweep, as run on one lent NVIDIA H200 (2026-11-26).
# Each invocation is benchmarks/adapters/run.py with overrides; --jobs N runs N jobs at once
# (16 CPU cores, one GPU). Results files land in OUT; table: see README.md here.
#   usage: benchmarks/adapters/gpu_sweep/sweep.sh OUT [MODEL]   (MODEL: hub id or folder;
#   the embedded MiniLM by default -- the H200 run used an fp16-stored copy, loaded as fp32)
set -e
OUT=${1:?usage: sweep.sh OUT [MODEL]}
cd "$(dirname "$0")/../../.."
mkdir -p "$OUT"
M=${2:+--model $2}
B="python3 benchmarks/adapters/run.py $M --seeds 13 14 15"
# A: the benchmark's budget (configs/), every method, 3 seeds
$B --only full houlsby pfeiffer lora ia3 --jobs 8 --out "$OUT/budget_a_all_methods.json" &
# B: twice the epochs, full fine-tuning and Houlsby
$B --only full houlsby --epochs sst2=6 trec=8 rte=10 --jobs 4 --out "$OUT/budget_b_full_houlsby.json" &
wait
# Houlsby variants at budget A: bottleneck 48 and 96 (reduction 8, 4), learning rate 2e-3
$B --only sst2/houlsby trec/houlsby --set adapter.reduction_factor=8 --jobs 6 --out "$OUT/houlsby_rf8.json" &
$B --only sst2/houlsby trec/houlsby --set adapter.reduction_factor=4 --jobs 6 --out "$OUT/houlsby_rf4.json" &
$B --only sst2/houlsby --set optim.lr=2e-3 --jobs 6 --out "$OUT/houlsby_lr2e-3.json" &
wait
