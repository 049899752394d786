#!/usr/bin/env bash
# Issue 19, item 3, on one lent GPU: retrain the shipped ICONet recipes (configs/zoo_t1_x2.yaml,
# zoo_t1_x4.yaml, normalisation statistic on the LR) and their trained peers (EDSR-baseline,
# T2Net-style) with two training seeds, each run given the same wall-clock (--equal-time: a peer
# faster than ICONet gets more steps, never fewer); then export the best EMA checkpoints, score
# every model on Colin27 over 8 seeded mask draws with `iconet eval` (its paired-difference rule),
# and write one results folder per seed.
#   OUT=gpu_out BUDGET=330 bash benchmarks/gpu_reship.sh
# Needs data/ (iconet data fetch-samples --dest data && python scripts/make_s1_holdout.py).
# Fits the 15-minute device allowance: start ~2 min, train BUDGET s (both seeds at once),
# export + score ~3 min. Issue 21's distillation lever on the same plan (the fast ICONet with and
# without the shipped model as teacher, and EDSR-baseline; the lean block, kspace_x2/iconet_lean_kd,
# was settled on the CPU with two seeds and is left out):
#   RUNS="kspace_x2/iconet_fast kspace_x2/iconet_fast_kd kspace_x2/edsr kspace_x4/iconet_fast \
#         kspace_x4/iconet_fast_kd kspace_x4/edsr" OUT=gpu_kd BUDGET=330 bash benchmarks/gpu_reship.sh
# RUNS and DEVICE may be overridden (a CPU dry run: DEVICE=cpu
# BUDGET=60 RUNS=kspace_x2/edsr TRAIN_ARGS="--probe-steps 4" DRAWS=1).
set -u
OUT=${OUT:-gpu_out}
BUDGET=${BUDGET:-330}
DEVICE=${DEVICE:-cuda}
DRAWS=${DRAWS:-8}
RUNS=${RUNS:-"kspace_x2/iconet kspace_x2/edsr kspace_x2/t2net kspace_x4/iconet kspace_x4/edsr kspace_x4/t2net"}
GROUPS_=$(for r in $RUNS; do echo "${r%%/*}"; done | sort -u | tr '\n' ' ')
export PYTHONPATH=${ICONET_SRC:-src}
mkdir -p "$OUT"
{
  nvidia-smi -L 2>/dev/null; nproc
  for seed in 0 1; do
    python3 benchmarks/quality.py train --groups $GROUPS_ --only $RUNS --budget "$BUDGET" --equal-time \
      --device "$DEVICE" --threads 1 --probe-timeout 100 --reserve 40 --grace 25 \
      --set run.seed=$seed --root runs/reship_s$seed ${TRAIN_ARGS:-} &
  done
  wait
  for seed in 0 1; do
    python3 benchmarks/quality.py export --groups $GROUPS_ --only $RUNS --root runs/reship_s$seed
  done
  for seed in 0 1; do
    python3 benchmarks/quality.py score --groups $GROUPS_ --only $RUNS --root runs/reship_s$seed --draws "$DRAWS" &
  done
  wait
  for seed in 0 1; do
    python3 benchmarks/quality.py table --groups $GROUPS_ --root runs/reship_s$seed --results "$OUT/reship_s$seed"
    cp runs/reship_s$seed/plan.json "$OUT/reship_s$seed/plan.json"
  done
} 2>&1 | tee "$OUT/reship.log"
# the ICONet weights first: a part past the transfer limit loses only the peers
order=""
for seed in 0 1; do for r in $(printf '%s\n' $RUNS | grep "/iconet"; printf '%s\n' $RUNS | grep -v "/iconet"); do
  m=${r/\//_}
  [ -d runs/reship_s$seed/exports/$m ] && order="$order runs/reship_s$seed/exports/$m"
done; done
[ -n "$order" ] && tar -cf /tmp/reship_exports.tar $order && split -b 15m -d /tmp/reship_exports.tar "$OUT/reship_exports.tar.part"
ls -la "$OUT"
