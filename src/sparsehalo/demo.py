"""The demo: LeNet-300-100 on the bundled MNIST, HALO (fixed strength, and in target mode asked for 99%)
against no penalty, pruned with no fine-tuning.

Both runs use the configs of ``configs/mnist_lenet300_halo.toml`` and
``configs/mnist_lenet300_dense.toml`` (defined here too, so the demo works from an installed package;
a test keeps the two in sync), with fewer epochs.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from . import config as config_mod
from .io import atomic_write_text
from .training import train

DEMO_EPOCHS = 20
LEVELS = [0.9, 0.95, 0.98, 0.985, 0.99, 0.995, 0.996]

# The settings of configs/mnist_lenet300_{halo,dense}.toml beyond the defaults of config.py.
HALO_SETTINGS = [
    'name="mnist_lenet300_halo"',
    'penalty.name="halo"',
    "penalty.xi=1e-4",
    "penalty.psi=1e-4",
    'penalty.types=["Linear"]',
    "train.epochs=30",
]
DENSE_SETTINGS = ['name="mnist_lenet300_dense"', 'penalty.name="none"', "train.epochs=30"]
# Target mode (sparsehalo.penalties.target): ask for 99% once, from the same xi / psi.
TARGET = 0.99
TARGET_SETTINGS = [*HALO_SETTINGS, 'name="mnist_lenet300_halo_target"', f"penalty.target_sparsity={TARGET}"]


def demo_configs(epochs: int = DEMO_EPOCHS, extra: list[str] = ()) -> dict[str, config_mod.Config]:
    common = [f"train.epochs={epochs}", f"prune.levels={LEVELS}", *extra]
    return {
        "HALO": config_mod.load(None, HALO_SETTINGS + common),
        f"HALO, target {100 * TARGET:g}%": config_mod.load(None, TARGET_SETTINGS + common),
        "no penalty": config_mod.load(None, DENSE_SETTINGS + common),
    }


def format_table(summaries: dict[str, dict]) -> str:
    """Markdown table: accuracy after pruning at each level, one column per method."""
    first = next(iter(summaries.values()))
    denom = first["sparsity"]["denominator"]
    epochs = first["epochs"]
    names = list(summaries)
    lines = [
        f"LeNet-300-100 on MNIST, {epochs} epochs, seed {first['seed']}, one run per method.",
        "Test accuracy (%) after one global magnitude threshold, no fine-tuning.",
        f"Sparsity = pruned weights / {denom}.",
        "",
        "| sparsity | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---:" for _ in names) + " |",
        "| 0 (trained) | " + " | ".join(f"{summaries[n]['test_accuracy']:.2f}" for n in names) + " |",
    ]
    for level in LEVELS:
        key = f"{level:g}"
        cells = [f"{summaries[n]['pruned_test_accuracy'][key]:.2f}" for n in names]
        lines.append(f"| {100 * level:g}% | " + " | ".join(cells) + " |")
    nat = " | ".join(f"{100 * summaries[n]['sparsity']['natural_sparsity']:.1f}%" for n in names)
    lines.append(f"| natural, \\|w\\| <= {first['sparsity']['eps']:g} (no pruning) | {nat} |")
    return "\n".join(lines)


def build_kernel_meanwhile() -> threading.Thread | None:
    """Start the native HALO kernel's one-time build (:mod:`.penalties.kernels.native`: a compiler process,
    about 30 s on a fresh machine here) in a thread, so that it overlaps the run without a penalty, which
    does not need it; None where nothing is to be built (already built, or compilation disabled)."""
    from .penalties.kernels import native

    if not native.needs_build():
        return None
    thread = threading.Thread(target=native.halo_cpu, name="sparsehalo-kernel-build", daemon=True)
    thread.start()
    return thread


def run_demo(out: str | Path = "runs/demo", epochs: int = DEMO_EPOCHS, extra: list[str] = (), echo: Callable[[str], None] = print) -> str:
    """Train the demo runs (resuming or skipping finished ones) and return the result table."""
    out = Path(out)
    summaries = {}
    # Accuracy after pruning only at the end (the table's): evaluating the 7 levels after every epoch
    # took a third of the demo's training time and changes no number (scripts/time_demo.sh).
    configs = demo_configs(epochs, ["run.eval_pruned_every=0", *extra])
    build = build_kernel_meanwhile()
    for label in ("no penalty", *(k for k in configs if k != "no penalty")):  # the run that needs no kernel first
        if label != "no penalty" and build is not None:
            build.join()
        echo(f"== {label} ==")
        summaries[label] = train(configs[label], configs[label].run_dir(out), echo=echo)
    table = format_table({label: summaries[label] for label in configs})
    atomic_write_text(out / "results.md", table + "\n")
    return table
