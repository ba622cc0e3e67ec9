#!/usr/bin/env bash
# REDUCED CIFAR-10 experiment that fits a 2-core CPU (issue 4, section 6): ResNet-20, 10 epochs,
# HALO against no penalty, one-shot global magnitude pruning of the Conv2d weights, no fine-tuning,
# seed 0. Resumable: finished runs are skipped. Writes results/cifar10-cpu/ (README.md, summary.csv,
# plots). Data: the CIFAR-10 JPEG copy (or the official archive) under $SPARSEHALO_DATA_DIR, else
# ../shared/datasets beside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
SH=${SPARSEHALO:-.venv/bin/sparsehalo}
DATA=${SPARSEHALO_DATA_DIR:-../shared/datasets}
OUT=results/cifar10-cpu
for cfg in dense halo; do
  $SH train configs/cifar10_resnet20_cpu_$cfg.toml --out $OUT/runs --data-dir "$DATA" --quiet \
    --set run.threads=${THREADS:-1} --set run.eval_pruned_every=0 --set run.progress=false
done
$SH report $OUT/runs --out $OUT --title "CIFAR-10, ResNet-20, REDUCED CPU run (10 epochs, 1 seed): HALO vs no penalty"
