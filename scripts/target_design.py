#!/usr/bin/env python3
"""Target-mode HALO: which controller design, chosen on the validation split (issue 12).

    .venv/bin/python scripts/target_design.py [--threads 1] [--report]

Trains LeNet-300-100 on MNIST as in ``configs/mnist_lenet300_halo.toml`` (30 epochs, SGD, cosine;
xi = psi = 1e-4 as the starting strength) with ``penalty.target_sparsity`` at each level and each
design below, on 50,000 training images (10,000 held out for validation, never the test set), one run
per design and level, seed 0.  Writes ``results/target/design/`` (run directories, resumable: finished
runs are skipped) and ``results/target/design.md`` / ``design.csv``: natural sparsity at the end,
validation and test accuracy after pruning to the level (no fine-tuning), and the final strength.
The fixed-strength HALO rows come from the validation grid of ``results/mnist/sweep.csv`` (the same
protocol: 30 epochs, the same validation split).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from sparsehalo import config
from sparsehalo.io import atomic_write_text, read_json, write_csv
from sparsehalo.paths import summary as summary_path
from sparsehalo.results.tables import markdown_table
from sparsehalo.training import train

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "target"
LEVELS = (0.985, 0.995)
#: design -> (what it is, settings); every design sets all its knobs, so the defaults can change freely.
DESIGNS = {
    "pull-cubic-abs": ("strength on the weights' pull, GMP's cubic schedule reaching the target at 70%, absolute error, "
                       "fast PI gains", ['penalty.target_knob="pull"', 'penalty.target_schedule="cubic"',
                                         'penalty.target_error="absolute"', "penalty.target_gain=50.0", "penalty.target_gain_p=5.0"]),
    "pull-cubic-log": ("as pull-cubic-abs with the relative (log density) error",
                       ['penalty.target_knob="pull"', 'penalty.target_schedule="cubic"', 'penalty.target_error="log"',
                        "penalty.target_gain=50.0", "penalty.target_gain_p=5.0"]),
    "psi-cubic-abs": ("as pull-cubic-abs with the strength on psi",
                      ['penalty.target_knob="psi"', 'penalty.target_schedule="cubic"', 'penalty.target_error="absolute"',
                       "penalty.target_gain=50.0", "penalty.target_gain_p=5.0"]),
    "psi-constant": ("strength on psi, the target from step 1 (slow dual ascent on the log density error)",
                     ['penalty.target_knob="psi"', 'penalty.target_schedule="constant"', 'penalty.target_error="log"',
                      "penalty.target_gain=3.0", "penalty.target_gain_p=0.0"]),
    "psi-constant-slow": ("as psi-constant with half the gain",
                          ['penalty.target_knob="psi"', 'penalty.target_schedule="constant"', 'penalty.target_error="log"',
                           "penalty.target_gain=1.5", "penalty.target_gain_p=0.0"]),
    "psi-constant-avg": ("as psi-constant-slow, measuring a running average of the weights (decay 0.99) instead of "
                         "the weights themselves", ['penalty.target_knob="psi"', 'penalty.target_schedule="constant"',
                                                    'penalty.target_error="log"', "penalty.target_gain=1.5",
                                                    "penalty.target_gain_p=0.0", "penalty.target_average=0.99"]),
    "pull-cubic-avg": ("strength on the weights' pull, GMP's cubic schedule reaching the target at 70%, relative error, "
                       "moderate PI gains, measuring a running average of the weights (decay 0.99)",
                       ['penalty.target_knob="pull"', 'penalty.target_schedule="cubic"', 'penalty.target_error="log"',
                        "penalty.target_gain=20.0", "penalty.target_gain_p=2.0", "penalty.target_average=0.99"]),
    "psi-cubic-avg": ("as pull-cubic-avg with the strength on psi",
                      ['penalty.target_knob="psi"', 'penalty.target_schedule="cubic"', 'penalty.target_error="log"',
                       "penalty.target_gain=20.0", "penalty.target_gain_p=2.0", "penalty.target_average=0.99"]),
    "psi-cubic-jitter": ("as psi-cubic-avg, counting a weight as zero while its average is within its own jitter of 0",
                         ['penalty.target_knob="psi"', 'penalty.target_schedule="cubic"', 'penalty.target_error="log"',
                          "penalty.target_gain=20.0", "penalty.target_gain_p=2.0", "penalty.target_average=0.99",
                          'penalty.target_zero="jitter"']),
    "psi-constant-low": ("strength on psi from a tenth of the starting xi / psi, dual ascent on the target from step 1 "
                         "(gain 6), jitter-aware zeros of the running average (decay 0.99)",
                         ['penalty.target_knob="psi"', 'penalty.target_schedule="constant"', 'penalty.target_error="log"',
                          "penalty.target_gain=6.0", "penalty.target_gain_p=0.0", "penalty.target_average=0.99",
                          'penalty.target_zero="jitter"', "penalty.target_start=0.1"]),
    "psi-exp": ("strength on psi, a schedule whose density falls geometrically from 1 to the target's at 90% of "
                "training (log-linear), slow integral gain 6, jitter-aware zeros of the running average (decay 0.99)",
                ['penalty.target_knob="psi"', 'penalty.target_schedule="exp"', "penalty.target_ramp=0.9",
                 'penalty.target_error="log"', "penalty.target_gain=6.0", "penalty.target_gain_p=0.0",
                 "penalty.target_average=0.99", 'penalty.target_zero="jitter"']),
    "psi-exp-70": ("as psi-exp, reaching the target at 70% of training", [
        'penalty.target_knob="psi"', 'penalty.target_schedule="exp"', "penalty.target_ramp=0.7",
        'penalty.target_error="log"', "penalty.target_gain=6.0", "penalty.target_gain_p=0.0",
        "penalty.target_average=0.99", 'penalty.target_zero="jitter"']),
    "prune-exp": ("HALO at the config's xi / psi plus a pull, steered from a tenth of HALO's, on only the target share of "
                  "smallest weights (those the final prune removes); the exp schedule reaching the target at 70%, "
                  "integral gain 15, jitter-aware zeros of the running average (decay 0.99)", [
                      'penalty.target_knob="prune"', 'penalty.target_schedule="exp"', "penalty.target_ramp=0.7",
                      'penalty.target_error="log"', "penalty.target_gain=15.0", "penalty.target_gain_p=0.0",
                      "penalty.target_average=0.99", 'penalty.target_zero="jitter"', "penalty.target_start=0.1"]),
    "prune-exp-weak": ("as prune-exp from xi = psi = 5e-5 (half the config's)", [
        'penalty.target_knob="prune"', 'penalty.target_schedule="exp"', "penalty.target_ramp=0.7",
        'penalty.target_error="log"', "penalty.target_gain=15.0", "penalty.target_gain_p=0.0",
        "penalty.target_average=0.99", 'penalty.target_zero="jitter"', "penalty.target_start=0.1",
        "penalty.xi=5e-05", "penalty.psi=5e-05"]),
    "both-exp": ("one strength on two knobs: below 1 it weakens the hyper-penalty (psi knob), above 1 it adds pull on "
                 "the prune set (prune knob); from the config's xi / psi, the exp schedule at 70%, gain 15, "
                 "jitter-aware zeros of the running average (decay 0.99)", [
                     'penalty.target_knob="both"', 'penalty.target_schedule="exp"', "penalty.target_ramp=0.7",
                     'penalty.target_error="log"', "penalty.target_gain=15.0", "penalty.target_gain_p=0.0",
                     "penalty.target_average=0.99", 'penalty.target_zero="jitter"', "penalty.target_start=1.0"]),
}
CHOSEN = "both-exp"
WHY = ("The designs that only strengthen or weaken HALO (psi, pull) all ended near the same natural sparsity whatever "
       "the target (HALO captures weights for good early; a late push costs accuracy); pulling only the prune set "
       "steers the end point. `both-exp` and `prune-exp-weak` tie on the mean validation accuracy of the two levels "
       "(see the table) and both reach 98.50% for 98.5%; `both-exp` needs no weaker start than the fixed-mode config. "
       "Neither reaches 99.5% natural sparsity (99.40 / 99.31%: the strength ends at its bound of 10). "
       "The bound (the `factor` rows, the chosen design with target_factor 10, 100 and 1000): it binds on LeNet-5, where "
       "a wider one reaches the target's natural sparsity and far better accuracy at 99.5%, and not on LeNet-300-100, "
       "where a wider one leaves the natural sparsity where it was (the jitter back-off limits it there) and costs "
       "validation accuracy at 99.5%; at 95% a floor of 0.001 instead of 0.1 changes the natural sparsity little "
       "(HALO at the starting xi / psi already overshoots 95%). So the default stays 10: no single wider bound "
       "wins on both networks.")
COMMON = ["penalty.target_average=0.0", "penalty.target_factor=10.0", 'penalty.target_zero="eps"', "penalty.target_start=1.0"]  # the weights themselves; strength in [0.1, 10]


#: the strength's bound (issue 12's misses: the strength ended at 10 on LeNet-300-100 at 99.5% and on LeNet-5 at
#: 98.5% and above, and at 0.1 at 95%): the chosen design with target_factor 10 (the default), 100 and 1000.
FACTORS = (("mnist_lenet300_halo.toml", 0.95, (10, 1000)), ("mnist_lenet300_halo.toml", 0.995, (1000,)),
           ("mnist_lenet5_halo.toml", 0.995, (10, 100, 1000)))


def factor_configs(threads: int) -> list[tuple[str, float, config.Config]]:
    out = []
    for file, level, factors in FACTORS:
        model = file.removeprefix("mnist_").removesuffix("_halo.toml")
        for factor in factors:
            cfg = config.load(ROOT / "configs" / file, [
                *COMMON, *DESIGNS[CHOSEN][1], f"penalty.target_factor={factor:g}.0", f"penalty.target_sparsity={level}",
                "data.val_size=10000", f"prune.levels=[{level}]", f'name="factor_{model}_{factor:g}_{level:g}"',
                f"run.threads={threads}", "run.progress=false", "run.eval_pruned_every=0"])
            out.append((f"{CHOSEN}, {model}, factor {factor:g}", level, cfg))
    return out


def configs(threads: int) -> list[tuple[str, float, config.Config]]:
    out = []
    for design, (_, sets) in DESIGNS.items():
        for level in LEVELS:
            cfg = config.load(ROOT / "configs" / "mnist_lenet300_halo.toml", [
                *COMMON, *sets, f"penalty.target_sparsity={level}", "data.val_size=10000", f"prune.levels=[{level}]",
                f'name="target_{design}_{level:g}"', f"run.threads={threads}", "run.progress=false"])
            out.append((design, level, cfg))
    return out


def finished(cfg: config.Config) -> Path | None:
    """The finished run directory of ``cfg``'s name (its own, or one trained before a knob with the
    default it ran with was added to COMMON, which changed the config hash but not the training)."""
    own = cfg.run_dir(OUT / "design")
    if summary_path(own).exists():
        return own
    return next((d for d in sorted((OUT / "design").glob(f"{cfg.name}-*")) if summary_path(d).exists()), None)


def fixed_rows() -> list[list[str]]:
    """The best fixed (xi, psi) of the MNIST validation grid at each level, and xi = psi = 1e-4."""
    rows = []
    grid = [r for r in csv.DictReader((ROOT / "results" / "mnist" / "sweep.csv").open()) if r["model"] == "lenet300" and r["method"] == "halo"]
    for level in LEVELS:
        key = f"val_acc_{100 * level:g}"
        best = max(grid, key=lambda r: float(r[key]))
        same = next(r for r in grid if float(r["xi"]) == 1e-4 and float(r["psi"]) == 1e-4)
        rows.append([f"fixed, grid's best at this level (xi {best['xi']}, psi {best['psi']}; 9 runs)", f"{100 * level:g}%",
                     "—", best[key], "—", "—"])
        rows.append(["fixed, xi = psi = 1e-4 (the starting strength)", f"{100 * level:g}%", "—", same[key], "—", "1"])
    return rows


def report(runs: list[tuple[str, float, config.Config]]) -> None:
    rows, table = [], []
    for design, level, cfg in runs:
        run_dir = finished(cfg)
        if run_dir is None:
            continue
        path = summary_path(run_dir)
        s = read_json(path, "summary")
        fin, key = s["final"], f"{level:g}"
        row = {"design": design, "level": level, "natural_sparsity": fin["natural_sparsity"],
               "val_acc": fin.get(f"val_acc_pruned_{key}"), "test_acc": fin.get(f"test_acc_pruned_{key}"),
               "strength": fin.get("target_strength"), "run_dir": run_dir.name}
        rows.append(row)
        table.append([design, f"{100 * level:g}%", f"{100 * row['natural_sparsity']:.2f}%", f"{row['val_acc']:.2f}",
                      f"{row['test_acc']:.2f}", f"{row['strength']:.3g}"])
    write_csv(OUT / "design.csv", rows, ["design", "level", "natural_sparsity", "val_acc", "test_acc", "strength", "run_dir"])
    lines = ["# Target-mode HALO: the controller's design", "",
             "Regenerate (resumable): `.venv/bin/python scripts/target_design.py`; rewrite this page: `--report`.", "",
             "LeNet-300-100 on MNIST, 30 epochs (SGD, lr 0.1, momentum 0.9, cosine), seed 0, trained on 50,000 images; "
             "accuracy in % on the 10,000 held-out validation images and on the test set after one global magnitude "
             "prune to the level (sparsity of the 266,200 Linear weights), no fine-tuning; natural sparsity = share of "
             "those weights with |w| <= 1e-3 before the prune; strength = the controller's factor on the starting "
             "xi / psi at the end. One run per design and level: the choice is made on validation accuracy. "
             "The `factor` rows vary the strength's bound (`penalty.target_factor`: the strength stays in [1/f, f]) "
             "of the chosen design; their LeNet-5 rows train `configs/mnist_lenet5_halo.toml` (15 epochs, the same "
             "split; sparsity of its 61,470 Conv2d and Linear weights).", "",
             *markdown_table(["design", "target", "natural sparsity", "val acc.", "test acc.", "strength"],
                             table + fixed_rows(), "lrrrrr"), "", "Designs:", "",
             *[f"- `{name}`: {what}." for name, (what, _) in DESIGNS.items()], "",
             f"Chosen (the defaults of target mode): `{CHOSEN}`. {WHY}", ""]
    atomic_write_text(OUT / "design.md", "\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report", action="store_true", help="only rewrite design.md / design.csv from finished runs")
    args = ap.parse_args()
    runs = configs(args.threads) + factor_configs(args.threads)
    if not args.report:
        for design, level, cfg in runs:
            if finished(cfg) is None:
                train(cfg, cfg.run_dir(OUT / "design"), echo=lambda s: print(s, flush=True))
            report(runs)
    report(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
