#!/usr/bin/env bash
# The one GPU session that trained the quality benchmark's runs (and so the shipped weights):
# every run of benchmarks/quality.py at once on one GPU, steps set from a measured rate so that
# all finish inside BUDGET seconds; then the best EMA checkpoints are exported and packed.
#   OUT=gpu_out BUDGET=500 bash benchmarks/gpu_quality.sh
# Needs data/s1_holdout (python scripts/make_s1_holdout.py). Optional: wheels in .whl/ (installed
# to /tmp/site for a machine without nibabel) and ICONET_SRC (a source tree to run instead of src).
set -u
OUT=${OUT:-gpu_out}
BUDGET=${BUDGET:-500}
mkdir -p "$OUT"
export PYTHONPATH=${ICONET_SRC:-src}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
{
  nvidia-smi -L; nproc
  python3 -c "import torch, nibabel, iconet; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0), 'nibabel', nibabel.__version__)"
  python3 benchmarks/quality.py train --budget "$BUDGET" --device "${DEVICE:-cuda}" --threads 1 \
    --probe-steps "${PROBE_STEPS:-40}" --probe-timeout 100 --reserve 40 --grace 25 ${TRAIN_ARGS:-}
  python3 benchmarks/quality.py export --jobs 12
} 2>&1 | tee "$OUT/train.log"
Q=runs/quality
tar -czf "$OUT/logs.tar.gz" $Q/plan.json $Q/logs $Q/recipes \
  $(find $Q -mindepth 3 -maxdepth 3 \( -name metrics.jsonl -o -name train.jsonl -o -name config.yaml -o -name command.txt \) -not -path "$Q/probe/*")
# weights in order of importance: a part past the transfer limit loses only the last ones
order=""
for m in kspace_x2_iconet kspace_x4_iconet kspace_x2_edsr kspace_x4_edsr kspace_x2_t2net kspace_x4_t2net \
         bicubic_x2_iconet bicubic_x2_edsr bicubic_x4_iconet bicubic_x4_edsr kspace_x2_iconet_small kspace_x4_iconet_small; do
  [ -d $Q/exports/$m ] && order="$order $Q/exports/$m"
done
tar -cf /tmp/exports.tar $order && split -b 15m -d /tmp/exports.tar "$OUT/exports.tar.part"
ls -la "$OUT"
