#!/usr/bin/env bash
# Where `make demo` spends its time on a fresh clone (issue 12, part 5):
#     scripts/time_demo.sh
# Clones this checkout's HEAD into a temporary directory and times, one after the other: `make venv`
# (the venv, the CPU torch wheel and the package), the native HALO kernel's build (an empty
# TORCH_EXTENSIONS_DIR, as on a fresh machine, timed on its own), and the demo itself (whose two trainings report their
# own time). pip's download cache is whatever this machine has.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone -q "$src" "$work/repo"
cd "$work/repo"
export TORCH_EXTENSIONS_DIR="$work/torch_extensions"
now() { date +%s.%N; }
t0=$(now); make venv > "$work/venv.log" 2>&1; t1=$(now)
.venv/bin/python -c "from sparsehalo.penalties.kernels import native; assert native.halo_cpu() is not None" 2> /dev/null; tb=$(now)
make demo > "$work/demo.log" 2>&1; t2=$(now)
train=$(.venv/bin/python - "$work/repo/runs/demo" <<'PY'
import json, pathlib, sys
runs = sorted(pathlib.Path(sys.argv[1]).glob("*/summary.json"))
print(" ".join(f"{json.loads(p.read_text())['name']}={json.loads(p.read_text())['train_time_s']:.0f}s" for p in runs))
PY
)
printf 'make venv            %6.0f s\n' "$(echo "$t1 - $t0" | bc)"
printf 'native kernel build  %6.0f s  (the first HALO run on a machine does it)\n' "$(echo "$tb - $t1" | bc)"
printf 'demo (kernel built)  %6.0f s  (trainings: %s)\n' "$(echo "$t2 - $tb" | bc)" "$train"
printf 'total                %6.0f s\n' "$(echo "$t2 - $t0" | bc)"
tail -n 14 "$work/demo.log"
