#!/usr/bin/env bash
# Where `make demo` spends its time on a fresh clone (issue 12, part 5):
#     scripts/time_demo.sh [OUT.md]      # e.g. results/demo/timing.md, which the README quotes
# Clones this checkout's HEAD into a temporary directory, with an empty TORCH_EXTENSIONS_DIR (as on a fresh
# machine: the native HALO kernel is built during the demo, in a thread, while the run without a penalty
# trains), and times `make venv` (the venv, the CPU torch wheel and the package) and `make demo`; the
# trainings report their own time. pip's download cache is whatever this machine has.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:+$(realpath -m "$1")}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone -q "$src" "$work/repo"
cd "$work/repo"
export TORCH_EXTENSIONS_DIR="$work/torch_extensions"
now() { date +%s.%N; }
t0=$(now); make venv > "$work/venv.log" 2>&1; t1=$(now)
make demo > "$work/demo.log" 2>&1; t2=$(now)
train=$(.venv/bin/python - "$work/repo/runs/demo" <<'PY'
import json, pathlib, sys
runs = [json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("*/summary.json"))]
print(", ".join(f"{r['name']} {r['train_time_s']:.0f} s" for r in runs))
PY
)
{
  echo "From a fresh clone of $(git -C "$src" rev-parse --short HEAD) ($(nproc) CPU cores, $(date -u +%Y-%m-%d)), scripts/time_demo.sh:"
  echo
  echo '```text'
  printf 'make venv   %4.0f s  (venv, CPU torch wheel, the package)\n' "$(echo "$t1 - $t0" | bc)"
  printf 'make demo   %4.0f s  (the native kernel built meanwhile; trainings: %s)\n' "$(echo "$t2 - $t1" | bc)" "$train"
  printf 'total       %4.0f s\n' "$(echo "$t2 - $t0" | bc)"
  echo '```'
  echo
  echo '```text'
  cat runs/demo/results.md
  echo '```'
} > "$work/timing.md"
cat "$work/timing.md"
if [ -n "$out" ]; then mkdir -p "$(dirname "$out")"; cp "$work/timing.md" "$out"; fi
