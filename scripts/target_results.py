#!/usr/bin/env python3
"""Issue 12's evaluation of target-mode HALO, from one command (resumable; finished runs are skipped):

    .venv/bin/python scripts/target_results.py [--threads 2] [--no-nncf] [--report]

1. trains the "HALO (target)" runs of the MNIST and Fashion-MNIST campaigns (``scripts/campaign.py``:
   one run per level and seed with ``penalty.target_sparsity``, no grid) into ``results/<campaign>/runs/``;
2. trains NNCF's regularization-based sparsity side by side (``benchmarks/nncf_rb.py``, the ``bench`` extra),
   with our optimizer settings and with NNCF's own recipe, into ``results/target/nncf/``;
3. writes ``results/target/README.md``, ``summary.csv`` and one figure per (dataset, model).

Order: LeNet-300-100 on MNIST (HALO (target), then NNCF seed 0), Fashion-MNIST, LeNet-5, LeNet-5-Caffe,
then NNCF's other seeds.  Fashion-MNIST is not bundled (``--data-dir`` or ``$SPARSEHALO_DATA_DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import campaign as pages  # noqa: E402  (scripts/campaign.py: the campaigns and their settings)

from sparsehalo import paths  # noqa: E402
from sparsehalo.experiments import work  # noqa: E402
from sparsehalo.experiments.campaign import add_arguments, configure  # noqa: E402
from sparsehalo.io import atomic_write_text, read_json, write_csv  # noqa: E402
from sparsehalo.results import (  # noqa: E402
    MISSING, accuracy_by_seed, aggregate, find_runs, load_summaries, markdown_table, mean_std, values_cell,
)
from sparsehalo.results.plots import plot_accuracy  # noqa: E402

OUT = ROOT / "results" / "target"
RECIPES = ("ours", "nncf")
#: seeds per NNCF recipe: ours (SGD on the logits, RBLoss's default p) is a one-seed check of what the issue
#: measured (it prunes little or nothing); NNCF's own recipe is the comparison and gets every seed.
RECIPE_SEEDS = {"ours": 1, "nncf": 3}
#: (campaign, model) in the order they are trained; the levels are the campaigns' ``target_levels``.
ORDER = (("mnist", "lenet300"), ("fashion-mnist", "lenet300"), ("mnist", "lenet5"), ("mnist", "lenet5_caffe"))
DATASET = {"mnist": "mnist", "fashion-mnist": "fashion-mnist"}
#: issue 12's absolute targets: (campaign, model, level) -> test accuracy (mean of the seeds)
ABSOLUTE = {("mnist", "lenet300", 0.985): 98.2, ("mnist", "lenet5", 0.995): 94.8}
CIFAR = ROOT / "results" / "cifar10-cpu"
CIFAR_LEVELS = (0.9, 0.95)


def nncf_file(campaign: str, model: str, recipe: str, level: float, seed: int) -> Path:
    return OUT / "nncf" / f"{DATASET[campaign]}_{model}_{recipe}_{level:g}_seed{seed}.json"


def run_nncf(c, model: str, seeds, threads: int, data_dir: str | None) -> None:
    for seed in seeds:
        for level in c.target_levels:
            for recipe in RECIPES:
                if seed not in c.seeds[:RECIPE_SEEDS[recipe]] or nncf_file(c.name, model, recipe, level, seed).exists():
                    continue
                cmd = [sys.executable, str(ROOT / "benchmarks" / "nncf_rb.py"), "--dataset", DATASET[c.name], "--model", model,
                       "--level", f"{level:g}", "--seed", str(seed), "--recipe", recipe, "--threads", str(threads),
                       "--out", str(OUT / "nncf"), *(["--data-dir", data_dir] if data_dir else [])]
                print("== nncf:", " ".join(cmd[1:]), flush=True)
                subprocess.run(cmd, check=True)


def target_runs(c, model: str) -> dict[float, list[dict]]:
    """Finished HALO (target) summaries of ``model`` by target level."""
    out: dict[float, list[dict]] = {}
    for item in c.target_runs(model):
        if paths.summary(item.run_dir).exists():
            out.setdefault(item.setting["target"], []).append(read_json(paths.summary(item.run_dir), "summary"))
    return out


def at(summary: dict, level: float) -> float | None:
    return next((p["test_accuracy"] for p in summary["points"] if abs(p["sparsity_requested"] - level) < 1e-9), None)


def mean(values) -> float | None:
    """The mean of the values that are there (None when there are none)."""
    values = [v for v in values if v is not None]
    return mean_std(values)[0] if values else None


def grid_runs(c, model: str) -> int:
    """Validation runs of the grid that chose HALO's xi / psi for ``model`` (another model's, if it reuses it)."""
    return len(c.sweep(c.sweep_of[model], c.focus))


def nncf_results(c, model: str, recipe: str, level: float) -> list[dict]:
    return [json.loads(p.read_text()) for seed in c.seeds if (p := nncf_file(c.name, model, recipe, level, seed)).exists()]


def section(c, model: str, csv_rows: list[dict], misses: list[str]) -> list[str]:
    targeted, grid = target_runs(c, model), grid_runs(c, model)
    rows, plot = [], []
    for level in c.target_levels:
        lv = paths.level_name(level)
        mine = targeted.get(level, [])
        accs = [a for s in mine if (a := at(s, level)) is not None]
        natural = [100 * s["final"]["natural_sparsity"] for s in mine]
        tuned_name = c.focus_name_at(model, lv)
        tuned = c.accuracies("runs", tuned_name, lv)
        # GMP reaches its level during training (its points say fine_tuned: the last epochs train the masked network)
        gmp = list(accuracy_by_seed(c.out / "runs", f"{c.prefix}_{model}_gmp", lv, fine_tuned=True).values())
        nn = {r: nncf_results(c, model, r, level) for r in RECIPES}
        verdicts = []
        where = f"{c.name} {model} at {100 * level:g}%"
        done = len(accs) == len(c.seeds)
        if done and len(tuned) == len(c.seeds):
            verdicts.append("grid −0.1: " + ("met" if mean(accs) >= mean(tuned) - 0.1 else "missed"))
            if verdicts[-1].endswith("missed"):
                misses.append(f"{where}: HALO (target) {mean(accs):.2f}, the grid-tuned HALO {mean(tuned):.2f}")
        if len(natural) == len(c.seeds):
            verdicts.append("natural ±0.5: " + ("met" if abs(mean(natural) - 100 * level) <= 0.5 else "missed"))
            if verdicts[-1].endswith("missed"):
                misses.append(f"{where}: natural sparsity {mean(natural):.2f}%")
        best_nncf = max((mean(r["test_acc_pruned"] for r in v) for v in nn.values() if v), default=None)
        if done and best_nncf is not None:
            verdicts.append("≥ NNCF: " + ("met" if mean(accs) >= best_nncf else "missed"))
            if verdicts[-1].endswith("missed"):
                misses.append(f"{where}: HALO (target) {mean(accs):.2f}, NNCF {best_nncf:.2f}")
        if done and (goal := ABSOLUTE.get((c.name, model, level))) is not None:
            verdicts.append(f"≥ {goal:g}: " + ("met" if mean(accs) >= goal else "missed"))
            if verdicts[-1].endswith("missed"):
                misses.append(f"{where}: HALO (target) {mean(accs):.2f} against the absolute target {goal:g}")
        rows.append([f"{100 * level:g}%", values_cell(accs), f"{mean(natural):.2f}%" if natural else MISSING, str(len(accs)),
                     values_cell(tuned), f"{grid} + {len(tuned)}" if tuned else MISSING,
                     values_cell(gmp), str(len(gmp)) if gmp else MISSING,
                     *[(values_cell([r["test_acc_pruned"] for r in nn[rc]]) + " / "
                        + f"{mean(100 * r['mask_sparsity'] for r in nn[rc]):.2f}%") if nn[rc] else MISSING for rc in RECIPES],
                     "; ".join(verdicts) or "pending"])
        for method, values in (("HALO (target)", accs), ("HALO, grid per level", tuned), ("GMP", gmp),
                               *((f"NNCF RB ({rc} recipe)", [r["test_acc_pruned"] for r in nn[rc]]) for rc in RECIPES)):
            if values:
                csv_rows.append({"dataset": DATASET[c.name], "model": model, "method": method, "sparsity": level,
                                 "seeds": len(values), **dict(zip(("acc_mean", "acc_std"), mean_std(values))),
                                 "natural_sparsity_mean": mean(natural) / 100 if method == "HALO (target)" and natural else None})
                plot.append({"name": method, "method": method, "procedure": {"HALO": "oneshot", "GMP": "gmp"}.get(method.split()[0], "nncf"),
                             "penalty": "halo" if method.startswith("HALO") else None, "fine_tuned": None,
                             "sparsity": level, **dict(zip(("acc_mean", "acc_std"), mean_std(values))),
                             "seeds": len(values)})
    head = ["sparsity", "HALO (target)", "natural sparsity", "runs", "HALO, grid per level", "runs",
            "GMP", "runs", "NNCF RB, our optimizer / mask sparsity", "NNCF RB, its recipe / mask sparsity", "targets"]
    figure = f"accuracy_{DATASET[c.name]}_{model}.png"
    if plot and targeted:
        cols = list(dict.fromkeys(((r["name"], None), r["method"]) for r in plot))
        plot_accuracy(plot, cols, OUT / figure, f"{c.name} {model}: HALO in target mode against the tuned and the baselines",
                      "test accuracy, mean ± std over the seeds run (table); no fine-tuning after the final prune")
    epochs = c.load(model, c.focus).train.epochs
    return [f"## {c.name}, {model} ({epochs} epochs for every method)", "",
            *markdown_table(head, rows, "rrrrrrrrrrl"), "",
            f"Runs: the training runs each method needed for its cell (HALO's grid: {grid} validation runs of "
            f"`{c.sweep_of[model]}`, shared by every level, + the seeds of the setting chosen for the level). "
            "NNCF: mean of its seeds; mask sparsity = share of the weights its masks set to zero at the end.", "",
            *([f"![accuracy against sparsity]({figure})", ""] if plot and targeted else [])]


def cifar_section(csv_rows: list[dict], misses: list[str]) -> list[str]:
    """ResNet-20 on CIFAR-10 from ``results/cifar10-cpu`` (scripts/cifar10_cpu.sh: 10 epochs, one seed)."""
    summaries = load_summaries(find_runs([CIFAR / "runs"])) if (CIFAR / "runs").is_dir() else []
    targeted = {s["target_sparsity"]: s for s in summaries if s.get("target_sparsity") is not None}
    if not targeted:
        return []
    rows = {(r["method"], r["sparsity"]): r for r in aggregate(summaries)}
    body = []
    for level in CIFAR_LEVELS:
        mine, fixed, dense = (rows.get((m, level)) for m in ("HALO (target)", "HALO", "magnitude"))
        natural = 100 * targeted[level]["sparsity"]["natural_sparsity"] if level in targeted else None
        verdicts = []
        if natural is not None:
            verdicts.append("natural ±0.5: " + ("met" if abs(natural - 100 * level) <= 0.5 else "missed"))
            if verdicts[-1].endswith("missed"):
                misses.append(f"cifar10 resnet20 at {100 * level:g}%: natural sparsity {natural:.2f}%")
        if mine and fixed:
            verdicts.append("≥ HALO at the fixed strength: " + ("met" if mine["acc_mean"] >= fixed["acc_mean"] else "missed"))
        body.append([f"{100 * level:g}%", *(f"{r['acc_mean']:.2f}" if r else MISSING for r in (mine,)),
                     f"{natural:.2f}%" if natural is not None else MISSING,
                     *(f"{r['acc_mean']:.2f}" if r else MISSING for r in (fixed, dense)), "; ".join(verdicts) or "pending"])
        for method, r in (("HALO (target)", mine), ("HALO, fixed xi = psi = 1e-4", fixed), ("magnitude, no penalty", dense)):
            if r:
                csv_rows.append({"dataset": "cifar10", "model": "resnet20", "method": method, "sparsity": level, "seeds": r["seeds"],
                                 "acc_mean": r["acc_mean"], "acc_std": r["acc_std"],
                                 "natural_sparsity_mean": natural / 100 if method == "HALO (target)" and natural is not None else None})
    head = ["sparsity", "HALO (target)", "natural sparsity", "HALO, xi = psi = 1e-4 (not tuned)", "no penalty, magnitude prune", "targets"]
    return ["## cifar10, resnet20 (REDUCED: 10 epochs, 1 seed, every method one run)", "",
            *markdown_table(head, body, "rrrrrl"), "",
            "From `results/cifar10-cpu` (`scripts/cifar10_cpu.sh`: ResNet-20, 10 epochs, batch 128, cosine, seed 0, the "
            "CIFAR-10 JPEG copy; sparsity of the 270,256 Conv2d weights). No grid was run here, and neither GMP nor NNCF: "
            "at about 16 minutes per run on this CPU they did not fit. HALO (target) starts from the same xi / psi.", ""]


def findings(misses: list[str]) -> list[str]:
    """The targets missed, with their numbers, and what was tried (the numbers come from the tables above)."""
    if not misses:
        return ["## Targets missed", "", "None.", ""]
    return ["## Targets missed", "", *(f"- {m}" for m in misses), "",
            "What was tried (`design.md`, validation split, seed 0): the strength on psi, on the weights' pull, on "
            "the prune set alone and on both; GMP's cubic schedule, a geometric (exp) schedule and a constant target "
            "(dual ascent); absolute and relative errors; the weights or a running average measured; and the bound on "
            "the strength (`penalty.target_factor` 10, 100, 1000). Two causes remain. (1) At the lowest level "
            "(95%) the starting xi / psi is already sparser than asked and stays so even with the strength at its "
            "lower bound (the factor rows of `design.md`: with the bound at 1000 the strength falls to its floor "
            "and LeNet-300-100 still ends sparser than 95%): HALO captures weights for good in the first epochs. Starting from a weaker xi / psi "
            "for a lower target (the starting strength scaled by the target's density) should close it. (2) At 99% "
            "and above on LeNet-5 the strength sits at its upper bound (10x) for the last epochs and the network "
            "never reaches the target by itself; a bound of 1000 reaches it on the validation split (`design.md`) "
            "but costs LeNet-300-100 accuracy at 99.5%, so the default stays 10 (defaults never change: they are "
            "part of every run's hash). A bound that keeps rising while more strength still raises the measured "
            "sparsity is what we think closes it; at 99.5-99.6% on LeNet-300-100 and LeNet-5-Caffe the grid's "
            "per-level xi / psi (chosen on a validation grid) still wins, by the margins listed above.", ""]


def write_page(campaigns: dict) -> None:
    csv_rows: list[dict] = []
    body, misses = [], []
    for name, model in ORDER:
        if name in campaigns:
            body += section(campaigns[name], model, csv_rows, misses)
    body += cifar_section(csv_rows, misses)
    body += findings(misses)
    write_csv(OUT / "summary.csv", csv_rows, ["dataset", "model", "method", "sparsity", "seeds", "acc_mean", "acc_std",
                                              "natural_sparsity_mean"])
    lines = ["# Target-mode HALO: ask for a sparsity, get it from one run", "",
             "Regenerate (resumable): `.venv/bin/python scripts/target_results.py`; rewrite this page from finished runs "
             "only: `--report`. The controller's design: `design.md` (validation split).", "",
             "Protocol: test accuracy (%) after one global magnitude prune to the level (sparsity of the prunable "
             "weights: every Linear / Conv2d weight, biases excluded), no fine-tuning, mean ± std over the seeds run. "
             "HALO (target): `penalty.target_sparsity` set to the level, xi / psi of the committed config as the "
             "starting strength, one run per level and seed, no grid; natural sparsity = share of the prunable weights "
             "with |w| <= 1e-3 before the prune. HALO, grid per level and GMP: the campaigns' runs "
             "(`results/mnist`, `results/fashion-mnist`). NNCF: `benchmarks/nncf_rb.py` (same model, data, epochs, "
             "batch; its masks' own sparsity, then the same magnitude prune).", "",
             "Targets (issue 12): HALO (target) >= the grid-tuned per-level HALO − 0.1 and >= NNCF at every level; "
             "natural sparsity within 0.5 points of the target.", "", *body]
    atomic_write_text(OUT / "README.md", "\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", action="store_true", help="only rewrite results/target/ from finished runs")
    ap.add_argument("--no-nncf", action="store_true", help="train no NNCF runs")
    add_arguments(ap)
    args = ap.parse_args()
    args.results, args.configs = ROOT / "results", ROOT / "configs"
    data_dir = args.data_dir or os.environ.get("SPARSEHALO_DATA_DIR")
    campaigns = {name: configure(pages.CAMPAIGNS[name], args) for name in ("mnist", "fashion-mnist")}
    if not args.report:
        for i, (name, model) in enumerate(ORDER):
            c = campaigns[name]
            work(lambda c=c, model=model: c.target_runs(model), echo=lambda s: print(s, flush=True),
                 after=lambda item: write_page(campaigns))
            if not args.no_nncf:
                run_nncf(c, model, c.seeds[:1], args.threads, data_dir)
        if not args.no_nncf:
            for name, model in ORDER:
                run_nncf(campaigns[name], model, campaigns[name].seeds[1:], args.threads, data_dir)
    write_page(campaigns)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
