#!/usr/bin/env bash
# REDUCED CIFAR-10 experiment that fits a 2-core CPU (issue 4, section 6): ResNet-20, 10 epochs,
# HALO (fixed strength, and in target mode at 95 / 90%) against no penalty, one-shot global magnitude pruning of the Conv2d weights, no fine-tuning,
# seed 0. Resumable: finished runs are skipped. Writes results/cifar10-cpu/ (README.md, summary.csv,
# plots). Data: the CIFAR-10 JPEG copy (or the official archive) under $SPARSEHALO_DATA_DIR, else
# ../shared/datasets beside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
SH=${SPARSEHALO:-.venv/bin/sparsehalo}
DATA=${SPARSEHALO_DATA_DIR:-../shared/datasets}
OUT=results/cifar10-cpu
COMMON=(--out $OUT/runs --data-dir "$DATA" --quiet --set run.threads=${THREADS:-1} --set run.eval_pruned_every=0 --set run.progress=false)
for cfg in dense halo; do
  $SH train configs/cifar10_resnet20_cpu_$cfg.toml "${COMMON[@]}"
done
# HALO in target mode (issue 12): one run per level, the same xi / psi as the starting strength, no grid.
for level in ${TARGET_LEVELS:-0.95 0.9}; do
  $SH train configs/cifar10_resnet20_cpu_halo.toml "${COMMON[@]}" --set penalty.target_sparsity=$level
done
$SH report $OUT/runs --out $OUT --force --title "CIFAR-10, ResNet-20, REDUCED CPU run (10 epochs, 1 seed): HALO vs no penalty"
{
  echo "# CIFAR-10 on a CPU: a REDUCED experiment"
  echo
  echo "Not the paper's protocol (160 epochs, batch 64): ResNet-20, 10 epochs, batch 128, cosine schedule, one seed,"
  echo "on the CIFAR-10 JPEG copy (its accuracies run 2-3 points below the official images'). HALO with"
  echo "xi = psi = 1e-4 (not tuned for CIFAR), HALO (target) (\`penalty.target_sparsity\` at 90 and 95%, one run each,"
  echo "starting from the same xi / psi) and no penalty; one global magnitude threshold over the Conv2d weights, no"
  echo "fine-tuning. A target run counts only at its own level. Regenerate: \`scripts/cifar10_cpu.sh\` (about 16 minutes"
  echo "per run on 2 cores; finished runs are skipped)."
  echo
  tail -n +2 $OUT/report.md
} > $OUT/README.md
