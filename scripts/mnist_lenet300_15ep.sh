#!/usr/bin/env bash
# Acceptance check of the foundation: HALO LeNet-300-100, 15 epochs, seed 0, pruned to 98% with no
# fine-tuning. Writes results/mnist_lenet300_halo_15ep_prune98.json. Re-running skips the training
# if runs/ already holds the finished run.
set -euo pipefail
cd "$(dirname "$0")/.."
SH=${SPARSEHALO:-.venv/bin/sparsehalo}
run=$($SH train configs/mnist_lenet300_halo.toml --set train.epochs=15 --quiet)
mkdir -p results
$SH prune "$run" --sparsity 0.98 --json > results/mnist_lenet300_halo_15ep_prune98.json
python3 - <<'PY'
import json
s = json.load(open("results/mnist_lenet300_halo_15ep_prune98.json"))
print(f"test accuracy {s['test_accuracy_before']:.2f}% -> {s['test_accuracy_after']:.2f}% at "
      f"{100 * s['sparsity_measured']:.2f}% of {s['denominator']} (no fine-tuning)")
PY
