#!/usr/bin/env python3
"""The MNIST and Fashion-MNIST results of issue 3, from one command (resumable):

    .venv/bin/python scripts/campaign.py                          # both campaigns, MNIST first
    .venv/bin/python scripts/campaign.py --campaign fashion-mnist # one of them
    .venv/bin/python scripts/campaign.py --report                 # only rewrite results/*/ from finished runs
    .venv/bin/python scripts/campaign.py --plan                   # list the runs and their state

Paths are relative to the current directory (--results, --configs, --readme); Fashion-MNIST is not bundled
(--data-dir or $SPARSEHALO_DATA_DIR). The plan (sparsehalo.experiments.campaign): validation sweeps of each
penalty's knobs (50,000 training images, scored on the other 10,000, never the test set), then 3 seeds of every
method at equal epoch budget; finished runs are skipped, unfinished ones resume, several workers share it.
This script holds what is trained, the targets and the pages; run directories' summary.json, config.json and
metrics.csv are committed, checkpoints are not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparsehalo import paths
from sparsehalo.experiments import listing, pending_commands, progress, short_key, work
from sparsehalo.experiments.campaign import Campaign, Study, add_arguments, configure
from sparsehalo.io import atomic_write_text, read_json
from sparsehalo.results import (MISSING, cell, find_runs, has_runs, load_summaries, markdown_table, replace_block,
                                status, summaries_named, values_cell)

SEEDS = (0, 1, 2)
# Levels at which HALO's xi / psi are also chosen separately (the targets of issue 3 sit at 98.5, 99.5, 99.6%;
# 95% is the fixed-sparsity baselines' lowest level, so every level of the at-a-glance table has its own choice).
PER_LEVEL = ("0.95", "0.985", "0.99", "0.995", "0.996")
# The knobs swept on the validation split (values of the penalty configs' xi / psi).
GRIDS = {
    "halo": {"penalty.xi": [5e-5, 1e-4, 2e-4], "penalty.psi": [5e-5, 1e-4, 2e-4]},
    "l1": {"penalty.xi": [5e-6, 1e-5, 2e-5]},
    "sws": {"penalty.xi": [5e-6, 1e-5, 2e-5]},
    "mcp": {"penalty.xi": [5e-5, 1e-4, 2e-4]},
}
# The targets of issue 3 (mean of 3 seeds, no fine-tuning, test accuracy in percent).
TARGETS = {("mnist", "lenet300", "0.985"): 98.2, ("mnist", "lenet300", "0.995"): 97.5, ("mnist", "lenet5_caffe", "0.996"): 99.2}


def _grid(*pairs: tuple[float, float]) -> tuple[dict, ...]:
    return tuple({"penalty.xi": xi, "penalty.psi": psi} for xi, psi in pairs)


# 100 epochs, cosine: the 30-epoch choice over-sparsifies (even 5e-5 / 5e-5 ends at 99.1% natural sparsity),
# so the grid reaches one step below the 30-epoch grid's weakest point.
LONG_100 = Study("lenet300", "100ep", "0.985", ("train.epochs=100",),
                 _grid((5e-5, 5e-5), (5e-5, 1e-4), (1e-4, 5e-5), (2.5e-5, 2.5e-5), (2.5e-5, 5e-5), (5e-5, 2.5e-5)),
                 "HALO trained for 100 epochs")
# The authors' MNIST recipe (METHOD.md section 3): 250 epochs, lr 0.1 x0.1 every 25,000 iterations, biases
# penalized too. Its lr-weighted length (about 55 epochs at lr 0.1) is close to 100 cosine epochs (50).
PAPER = Study("lenet300", "paper", "0.985",
              ("train.epochs=250", 'schedule.name="step"', "schedule.step_size=25000", 'schedule.unit="step"',
               "penalty.biases=true"),
              _grid((2.5e-5, 2.5e-5), (2.5e-5, 5e-5), (5e-5, 2.5e-5)),
              "HALO on the authors' schedule (250 epochs, step decay, biases penalized)", with_short_choice=False)
MNIST = Campaign(
    name="mnist", prefix="mnist", models=["lenet300", "lenet5_caffe", "lenet5"],
    oneshot=["halo", "l1", "sws", "mcp", "dense"], fixed=["finetune", "gmp", "imp", "snip", "random"],
    # One run per level and seed makes the fixed-sparsity baselines the bulk of the compute: they run at
    # three levels spanning the targets; one-shot methods are evaluated at every level.
    fixed_levels=[0.95, 0.985, 0.995],
    # LeNet-5 reuses the choices of the other LeNet-5 (LeNet-5-Caffe) to save its sweep.
    sweep_of={"lenet300": "lenet300", "lenet5_caffe": "lenet5_caffe", "lenet5": "lenet5_caffe"},
    grids=GRIDS, select_levels=("0.985", "0.99", "0.995"), per_level=PER_LEVEL, seeds=SEEDS,
    repro=["lenet300"], studies=[LONG_100, PAPER], target_levels=(0.95, 0.985, 0.99, 0.995, 0.996),
    description=(
        "Epoch budgets: LeNet-300-100 30, LeNet-5 15, LeNet-5-Caffe 10 (fine-tuning and IMP rounds included). "
        "Fixed-sparsity baselines run at 95%, 98.5% and 99.5% only, to fit the compute budget. "
        "LeNet-5 reuses the penalty settings chosen for LeNet-5-Caffe. "
        "Targets (issue 3; mean of 3 seeds, no fine-tuning) are checked in the next section. What was tried "
        "against the misses: choosing xi / psi per level on validation; then, outside the equal budget, 100 epochs "
        "(cosine) and the authors' MNIST schedule (250 epochs, lr x0.1 every 25,000 iterations, biases penalized), "
        "each with its own validation grid. A fixed setting trained longer ends sparser than the target level (its "
        "accuracy is flat up to its natural sparsity), so those grids reach one step weaker than the 30-epoch grid. "
        "LeNet-5-Caffe has not been trained longer than 10 epochs (about 5 minutes per run on one core here)."
    ),
)
FASHION = Campaign(
    name="fashion-mnist", prefix="fashion", models=["lenet300"], oneshot=["halo", "dense"], fixed=["gmp"],
    fixed_levels=[0.95, 0.98, 0.99], sweep_of={"lenet300": "lenet300"},
    select_levels=("0.95", "0.98", "0.99"), per_level=("0.95", "0.98", "0.99"), seeds=SEEDS, target_levels=(0.95, 0.98, 0.99),
    # Fashion-MNIST's best points sat on the weak edge of MNIST's grid: one more step down in each knob.
    grids={**GRIDS, "halo": {"penalty.xi": [2.5e-5, 5e-5, 1e-4, 2e-4], "penalty.psi": [2.5e-5, 5e-5, 1e-4, 2e-4]}},
    description=("LeNet-300-100, 30 epochs for every method; HALO's xi / psi chosen on Fashion-MNIST's own validation "
                 "split (scored at 95 / 98 / 99%). `transfer/` holds HALO trained with the setting chosen on MNIST, "
                 "which is far too strong here (every level at the accuracy of its natural sparsity)."),
)
# Issue 11: a small Vision Transformer (models/vit.py), every weight matrix penalized and pruned (attention
# projections included), 6 epochs for every method, levels 90 / 95 / 98% of those 300,576 weights.
TRANSFORMER = dict(
    models=["vit_tiny"], oneshot=["halo", "dense"], fixed=["gmp"], fixed_levels=[0.9, 0.95, 0.98],
    sweep_of={"vit_tiny": "vit_tiny"}, grids={"halo": {"penalty.xi": [5e-5, 2e-4], "penalty.psi": [5e-5, 2e-4]}},
    select_levels=("0.9", "0.95", "0.98"), per_level=(), seeds=SEEDS,
    description=("A small Vision Transformer (`vit_tiny`: 7x7 patches, 4 pre-norm `nn.TransformerEncoderLayer`s of "
                 "width 96; 300,576 weights in matrices: attention in/out projections, MLPs, patch embedding, head), "
                 "6 epochs of SGD (lr 0.05, momentum 0.9, cosine) for every method, batch 128. HALO's xi / psi chosen "
                 "on the validation split (scored at 90 / 95 / 98%) from a 2 x 2 grid. The `flops_nonzero` / `speedup` "
                 "columns of `summary.csv` come from the MAC counter these runs were trained with, which missed the "
                 "attention in-projections and the two attention matmuls (corrected since in `sparsehalo.measure`, "
                 "tests/measure/test_cost.py::test_vit_tiny_hand_count); read them as MACs of the other layers only."),
)
VIT_MNIST = Campaign(name="transformer/mnist", prefix="mnist", **TRANSFORMER)
VIT_FASHION = Campaign(name="transformer/fashion-mnist", prefix="fashion", **TRANSFORMER)
CAMPAIGNS = {c.name: c for c in (MNIST, FASHION, VIT_MNIST, VIT_FASHION)}


# -- pages ---------------------------------------------------------------------------------------
def pct(level: str | float) -> str:
    return f"{float(level) * 100:g}%"


def verdict(c: Campaign, model: str, level: str, accs: list[float]) -> str:
    target = TARGETS.get((c.name, model, level))
    return MISSING if target is None else f"{target:.1f}: {status(target, accs, len(SEEDS))}"


def per_level_section(c: Campaign) -> list[str]:
    """HALO with xi / psi chosen per level on the validation split, against the targets."""
    lines = []
    for model in (m for m in c.models if "halo" in c.oneshot and c.own_sweep(m)):
        overall, per_level = c.chosen(model, "halo"), c.chosen_per_level(model)
        if overall is not None and not per_level:
            grid = c.grids["halo"]
            edge = [k.split(".")[-1] for k, v in overall.items() if k in grid and v in (min(grid[k]), max(grid[k]))]
            lines += [f"{model}: xi / psi chosen on the validation split (best mean validation accuracy at "
                      + " / ".join(f"{float(lv) * 100:g}" for lv in c.select_levels) + "%, grid and scores in `sweep.csv`): "
                      + ", ".join(f"{k.split('.')[-1]} {v:g}" for k, v in overall.items())
                      + (f"; at the edge of the grid in {', '.join(edge)}." if edge else "."), ""]
        if overall is None or not per_level:
            continue
        rows = []
        for level, (point, val) in per_level.items():
            a = c.accuracies("runs", c.focus_name_at(model, level), level)
            rows.append([pct(level), f"{', '.join(f'{v:g}' for v in point.values())} ({cell(val)})", values_cell(a),
                         values_cell(c.accuracies("runs", c.focus_name(model), level)), verdict(c, model, level, a)])
        lines += [f"### {model}: HALO with xi / psi chosen per sparsity level", "",
                  "The overall choice maximizes the mean validation accuracy at "
                  + " / ".join(f"{float(lv) * 100:g}" for lv in c.select_levels) + "%; here each level "
                  "gets the grid point that is best on the validation split at that level (still never the test set).", "",
                  *markdown_table(["sparsity", "xi, psi (validation acc.)", "test acc. per-level choice",
                                   "test acc. overall choice", "target"], rows, "rlrrr"), ""]
    return lines


def long_section(c: Campaign) -> list[str]:
    lines = []
    for st in c.studies:
        names = dict.fromkeys(i.config.name for i in c.study_runs(st) if not i.waiting)
        rows = [(name, c.accuracies("long", name, st.level)) for name in names]
        rows, pick = [(name, a) for name, a in rows if a], c.study_choice(st)
        if not rows and pick is None:
            continue
        first = (f"First with the setting chosen on validation for {pct(st.level)} at 30 epochs; then with the "
                 "setting that is best there on validation at this schedule" if st.with_short_choice else
                 "With the setting that is best on validation at this schedule")
        best = (f", best: {', '.join(f'{short_key(k)} = {v:g}' for k, v in pick[0].items())} with {pick[1]:.2f}"
                if pick else ", unfinished")
        lines += [f"### {st.model}: {st.title} (outside the equal budget)", "",
                  f"Overrides of the 30-epoch config: `{' '.join(st.overrides)}`. {first} (validation runs: "
                  f"`sweep/sweep_{st.model}_halo_{st.tag}-*`{best}). No fine-tuning; every level: `long/report.md`.", "",
                  *markdown_table(["run", f"test acc. at {pct(st.level)}", "target"],
                                  [[f"`{name}`", values_cell(a), verdict(c, st.model, st.level, a)] for name, a in rows],
                                  "lrr"), ""]
    return lines


def transfer_section(c: Campaign) -> list[str]:
    """HALO runs kept in ``transfer/`` (trained with another data set's choice of xi / psi)."""
    root, lines = c.out / "transfer", []
    for name in sorted({s["name"] for s in load_summaries(find_runs([root]))} if has_runs(root) else ()):
        s = summaries_named(root, name)[0]
        setting = read_json(paths.config(Path(s["run_dir"])), "config")["penalty"]
        levels = sorted({p["sparsity_requested"] for p in s["points"]})
        lines += [f"### `transfer/`: {name} with xi = {setting['xi']:g}, psi = {setting['psi']:g} (chosen on MNIST)", "",
                  *markdown_table(["sparsity", "test acc."], [[f"{lv * 100:g}%", values_cell(
                      c.accuracies("transfer", name, paths.level_name(lv)))] for lv in levels], "rr"), ""]
    return lines


def repro_section(c: Campaign) -> list[str]:
    lines = []
    for item, a, b in c.reruns():
        bp = {p["sparsity_requested"]: p["test_accuracy"] for p in b["points"]}
        rows = [(p["sparsity_requested"], p["test_accuracy"], bp.get(p["sparsity_requested"])) for p in a["points"]]
        diffs = [abs(x - y) for _, x, y in rows if y is not None]
        threads = [read_json(paths.config(Path(s["run_dir"])), "config")["run"]["threads"] for s in (a, b)]
        lines += [f"### {item.setting['model']}: HALO seed {a['seed']} trained twice", "",
                  f"Same config (`{item.config.name}-{item.config.hash()}`), trained again from scratch into `repro/` "
                  f"({threads[0]} then {threads[1]} CPU thread(s): float sums in another order, so not bit-identical); "
                  f"{sum(d <= 0.3 for d in diffs)} of {len(diffs)} cells within 0.3 points, largest difference "
                  f"{max(diffs):.2f}.", "",
                  *markdown_table(["sparsity", "first run", "re-run", "difference"],
                                  [[f"{s * 100:g}%", cell(x), cell(y), f"{y - x:+.2f}"] for s, x, y in rows if y is not None],
                                  "rrrr"), ""]
    return lines


def headline_section(c: Campaign, rows: list[dict]) -> list[str]:
    """At a glance: at each level where the fixed-sparsity baselines ran, HALO without fine-tuning (the setting
    chosen on validation for that level) against the best of the other one-shot methods and the best
    fine-tuned baseline of the same model and epoch budget."""
    def show(r: dict | None, label: bool = False) -> str:
        return MISSING if r is None else ((f"{r['method']} " if label else "")
                                          + cell(r["acc_mean"], r["acc_std"], r["seeds"], show_n=r["seeds"] != len(SEEDS)))

    def top(rs: list[dict]) -> dict | None:
        return max(rs, key=lambda r: r["acc_mean"], default=None)

    if not rows:
        return []
    body = []
    for model in c.models:
        for level in c.fixed_levels:
            at = [r for r in rows if r["model"] == model and paths.level_name(r["sparsity"]) == paths.level_name(level)]
            halo = next((r for r in at if r["name"] == c.focus_name_at(model, paths.level_name(level))), None)
            targeted = next((r for r in at if r["name"] == c.target_name(model)), None)
            others = [r for r in at if r["fine_tuned"] is False and r["penalty"] != "halo"]
            epochs = (halo or top(at) or {}).get("epochs", MISSING)
            body.append([model, f"{level * 100:g}%", show(halo), *([show(targeted)] if c.target_levels else []),
                         show(top(others), True),
                         show(top([r for r in at if r["fine_tuned"] is True]), True), f"{'' if epochs is None else epochs}"])
    return [*markdown_table(["model", "sparsity", "HALO, no fine-tuning",
                             *(["HALO (target), no fine-tuning"] if c.target_levels else []), "best other, no fine-tuning",
                             "best fine-tuned baseline", "epochs"], body, "lrrrrr" + ("r" if c.target_levels else "")),
            "", f"Test accuracy (%), mean ± std over {len(SEEDS)} seeds unless n is given; sparsity of the "
            "prunable weights (denominators under the tables below). HALO's xi / psi: "
            "the validation choice for that level where one was made, else the overall choice."
            + (" HALO (target): one run per level and seed with `penalty.target_sparsity` at the level, from the "
               "committed config's xi / psi, no grid (`results/target/`)." if c.target_levels else ""), ""]


def target_lines(c: Campaign) -> list[str]:
    """One line per target of issue 3: HALO's result at that level within the equal budget (the setting chosen
    on validation for the level) and in every study of that model and level, each with its verdict."""
    def said(target: float, a: list[float]) -> str:
        return f"{values_cell(a)}, {status(target, a, len(SEEDS))}"

    lines = []
    for (campaign, model, level), target in TARGETS.items():
        if campaign != c.name:
            continue
        parts = [f"equal budget: {said(target, c.accuracies('runs', c.focus_name_at(model, level), level))}"]
        for st in (st for st in c.studies if (st.model, st.level) == (model, level)):
            pick = c.study_choice(st)
            if pick is not None:
                run = c.focus_name(model, pick[0], st.tag)
                parts.append(f"{st.title.removeprefix('HALO ')}: {said(target, c.accuracies('long', run, level))}")
        lines.append(f"- {model}, >= {target:g}% at {pct(level)} sparsity: " + "; ".join(parts) + ".")
    return lines


def write_results(c: Campaign, readme: Path) -> None:
    """Rewrite <results>/<campaign>/ (and the campaign's block of ``readme``) from whatever has finished."""
    rows = c.write_reports(echo=lambda s: print(s, flush=True))
    report = (c.out / "report.md").read_text() if (c.out / "report.md").exists() else "(no finished main run yet)\n"
    headline, (done, total, waits) = headline_section(c, rows), progress(c.plan())
    lines = [
        f"# {c.name} results", "",
        f"Regenerate (resumable; finished runs are skipped): `.venv/bin/python scripts/campaign.py --campaign {c.name}`;",
        f"rewrite this page from finished runs only: `.venv/bin/python scripts/campaign.py --campaign {c.name} --report`.", "",
        "Protocol: test accuracy in percent, mean ± std over the seeds stated; sparsity = pruned / prunable weights "
        "(the denominator is stated under each table; biases excluded); one global magnitude threshold; one-shot methods "
        "are never fine-tuned; fixed-sparsity baselines reach their level during training; every method of a model has "
        "the same total epoch budget. Penalty strengths were chosen on a validation split of 10,000 training images "
        "(`sweep.csv`), never on the test set. " + c.description, "",
        f"Campaign status: {done} of {total} planned runs finished"
        + (f"; {waits} method(s) wait for their validation sweep." if waits else "."), "",
        *(["## At a glance", "", *headline] if headline else []),
        "## Targets, per-level choice and reproducibility" if c.name == "mnist" else "## HALO's setting", "",
        *per_level_section(c), *long_section(c), *repro_section(c), *transfer_section(c), report,
    ]
    atomic_write_text(c.out / "README.md", "\n".join(lines))
    if headline and readme.is_file():
        targets = target_lines(c)
        replace_block(readme, f"<!-- results/{c.name}: written by scripts/campaign.py --report -->",
                      f"<!-- end results/{c.name} -->",
                      [f"**{c.name}** (`results/{c.name}/README.md`; {done} of {total} planned runs finished):", "", *headline,
                       *(["HALO against the targets of issue 3 (mean of 3 seeds, no fine-tuning):", "", *targets, ""]
                         if targets else [])])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campaign", choices=list(CAMPAIGNS), help="only this campaign (default: all, in order)")
    ap.add_argument("--report", action="store_true", help="only rewrite results/<campaign>/ from finished runs")
    ap.add_argument("--plan", action="store_true", help="list the planned runs and whether they are finished")
    ap.add_argument("--list-commands", action="store_true",
                    help="print one idempotent `sparsehalo train ...` per unfinished run, for a scheduler (a SLURM job "
                         "array, GNU parallel); runs that wait for a sweep are counted on stderr: list again later")
    add_arguments(ap)
    args = ap.parse_args()
    campaigns = {name: configure(CAMPAIGNS[name], args) for name in ([args.campaign] if args.campaign else CAMPAIGNS)}
    if args.list_commands:
        lines, waiting = pending_commands([i for c in campaigns.values() for i in c.plan()])
        print("\n".join(lines))
        if waiting:
            print(f"# {waiting} more wait for their validation sweeps: list again when these finish", file=sys.stderr)
        return 0
    if args.plan:
        for c in campaigns.values():
            for line in listing(c.plan()):
                print(line)
        return 0
    if not args.report:
        work(lambda: [i for c in campaigns.values() for i in c.plan()], echo=lambda s: print(s, flush=True),
             after=lambda item: write_results(campaigns[item.group], args.readme))
    for c in campaigns.values():
        write_results(c, args.readme)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
