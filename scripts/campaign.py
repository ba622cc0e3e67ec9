#!/usr/bin/env python3
"""The MNIST and Fashion-MNIST results of issue 3, from one command (resumable):

    .venv/bin/python scripts/campaign.py                          # both campaigns, MNIST first
    .venv/bin/python scripts/campaign.py --campaign fashion-mnist # one of them
    .venv/bin/python scripts/campaign.py --report                 # only rewrite results/*/ from finished runs
    .venv/bin/python scripts/campaign.py --plan                   # list the runs and their state

Stages, in priority order (a run is skipped when its summary exists and resumed when it has a checkpoint):

1. Validation sweep: each penalty's knobs on a grid, trained on 50,000 training images and scored on the
   other 10,000 (never the test set) by the mean validation accuracy after one-shot pruning to 98.5%, 99%
   and 99.5%. The best setting of each penalty is used below.
2. Main runs on the full training set, seeds 0, 1, 2: one-shot methods (evaluated at every level of the
   config's prune.levels, never fine-tuned) and fixed-sparsity baselines (one run per level). Every method
   of a model has the same epoch budget (train.epochs of the model's dense config), fine-tuning and IMP
   rounds included.

Run directories live in results/<campaign>/runs/ and results/<campaign>/sweep/; their summary.json,
config.json and metrics.csv are committed, checkpoints are not. The report (README.md, summary.csv,
plots) is rewritten after every finished run.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sparsehalo import checkpoint, config as config_mod  # noqa: E402
from sparsehalo.engine import train  # noqa: E402
from sparsehalo.errors import SparsehaloError  # noqa: E402
from sparsehalo.report import find_runs, make_report  # noqa: E402

CONFIGS = ROOT / "configs"
SEEDS = [0, 1, 2]
SELECT_LEVELS = ("0.985", "0.99", "0.995")
# Levels at which HALO's xi / psi are also chosen separately (the targets of issue 3 sit at 98.5, 99.5, 99.6%;
# 95% is the fixed-sparsity baselines' lowest level, so every level of the at-a-glance table has its own choice).
PER_LEVEL = ("0.95", "0.985", "0.99", "0.995", "0.996")
# One thread by default, so that a campaign leaves a core for other work ($SPARSEHALO_CAMPAIGN_THREADS).
COMMON = ["run.progress=false", f"run.threads={int(os.environ.get('SPARSEHALO_CAMPAIGN_THREADS', '1'))}", "run.eval_pruned_every=5"]
# The knobs swept on the validation split (values of the penalty configs' xi / psi).
GRIDS = {
    "halo": {"penalty.xi": [5e-5, 1e-4, 2e-4], "penalty.psi": [5e-5, 1e-4, 2e-4]},
    "l1": {"penalty.xi": [5e-6, 1e-5, 2e-5]},
    "sws": {"penalty.xi": [5e-6, 1e-5, 2e-5]},
    "mcp": {"penalty.xi": [5e-5, 1e-4, 2e-4]},
}


@dataclass
class Campaign:
    name: str
    prefix: str  # config file prefix
    models: list[str]
    oneshot: list[str]
    fixed: list[str]
    fixed_levels: list[float]
    sweep_of: dict[str, tuple[str, str]]  # model -> (campaign, model) whose sweep picks its settings
    description: str
    extra: list[str] = field(default_factory=list)
    repro: list[str] = field(default_factory=list)  # models whose HALO seed 0 is trained a second time
    studies: list["Study"] = field(default_factory=list)  # HALO on other schedules, outside the equal budget
    select_levels: tuple[str, ...] = SELECT_LEVELS  # the sweep's score: mean validation accuracy at these levels
    per_level: tuple[str, ...] = PER_LEVEL  # levels at which HALO's setting is also chosen on its own
    grids: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # per-campaign replacements of GRIDS

    @property
    def out(self) -> Path:
        return ROOT / "results" / self.name


@dataclass(frozen=True)
class Study:
    """HALO on one model with another schedule, outside the equal budget: a validation grid at that schedule
    picks xi / psi for ``level``, then 3 seeds of that choice (first also of the 30-epoch per-level choice
    when ``with_short_choice``). Runs are named ``<setting>_<tag>``; results go to ``<out>/long/``."""

    model: str
    tag: str
    level: str
    overrides: tuple[str, ...]
    grid: tuple[dict, ...]
    title: str
    with_short_choice: bool = True


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
    name="mnist",
    prefix="mnist",
    models=["lenet300", "lenet5_caffe", "lenet5"],
    oneshot=["halo", "l1", "sws", "mcp", "dense"],
    fixed=["finetune", "gmp", "imp", "snip", "random"],
    # One run per level and seed makes the fixed-sparsity baselines the bulk of the compute: they run at
    # three levels spanning the targets; one-shot methods are evaluated at every level.
    fixed_levels=[0.95, 0.985, 0.995],
    # LeNet-5 reuses the choices of the other LeNet-5 (LeNet-5-Caffe) to save its sweep.
    sweep_of={"lenet300": ("mnist", "lenet300"), "lenet5_caffe": ("mnist", "lenet5_caffe"), "lenet5": ("mnist", "lenet5_caffe")},
    repro=["lenet300"],
    studies=[LONG_100, PAPER],
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
    name="fashion-mnist",
    prefix="fashion",
    models=["lenet300"],
    oneshot=["halo", "dense"],
    fixed=["gmp"],
    fixed_levels=[0.95, 0.98, 0.99],
    sweep_of={"lenet300": ("fashion-mnist", "lenet300")},
    select_levels=("0.95", "0.98", "0.99"),
    per_level=("0.95", "0.98", "0.99"),
    # Fashion-MNIST's best points sat on the weak edge of MNIST's grid: one more step down in each knob.
    grids={"halo": {"penalty.xi": [2.5e-5, 5e-5, 1e-4, 2e-4], "penalty.psi": [2.5e-5, 5e-5, 1e-4, 2e-4]}},
    description=("LeNet-300-100, 30 epochs for every method; HALO's xi / psi chosen on Fashion-MNIST's own validation "
                 "split (scored at 95 / 98 / 99%). `transfer/` holds HALO trained with the setting chosen on MNIST, "
                 "which is far too strong here (every level at the accuracy of its natural sparsity)."),
)
CAMPAIGNS = {c.name: c for c in (MNIST, FASHION)}


def data_settings() -> list[str]:
    """Fashion-MNIST is not bundled: use $SPARSEHALO_DATA_DIR, else the workspace copy beside the checkout."""
    shared = ROOT.parent / "shared" / "datasets"
    if not os.environ.get("SPARSEHALO_DATA_DIR") and shared.is_dir():
        return [f'run.data_dir="{shared}"']
    return []


def cfg_path(c: Campaign, model: str, method: str) -> Path:
    return CONFIGS / f"{c.prefix}_{model}_{method}.toml"


def load(c: Campaign, model: str, method: str, *overrides: str) -> config_mod.Config:
    """The campaign's config of (model, method): the committed TOML, the campaign's run settings, overrides."""
    return config_mod.load(cfg_path(c, model, method), [*COMMON, *data_settings(), *overrides])


def grid_points(c: "Campaign", method: str) -> list[dict[str, float]]:
    grid = {**GRIDS, **c.grids}[method]
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def _sets(point: dict) -> list[str]:
    return [f"{k}={v!r}" for k, v in point.items()]


def sweep_config(c: Campaign, model: str, method: str, point: dict) -> config_mod.Config:
    return load(c, model, method, "data.val_size=10000", *_sets(point), f'name="sweep_{model}_{method}"')


def _val_by_level(summary: dict) -> dict[str, float | None]:
    return {f"{p['sparsity_requested']:g}": p["val_accuracy"] for p in summary["points"]}


def score(summary: dict, levels: tuple[str, ...]) -> float | None:
    accs = [p["val_accuracy"] for p in summary["points"] if f"{p['sparsity_requested']:g}" in levels]
    return statistics.mean(accs) if len(accs) == len(levels) and None not in accs else None


def chosen(c: Campaign, model: str, method: str) -> dict[str, float] | None:
    """The best grid point of a finished sweep (None while the sweep is incomplete)."""
    best, best_score = None, None
    for point in grid_points(c, method):
        path = sweep_config(c, model, method, point).run_dir(c.out / "sweep") / "summary.json"
        if not path.exists():
            return None
        s = score(json.loads(path.read_text()), c.select_levels)
        if s is not None and (best_score is None or s > best_score):
            best, best_score = point, s
    return best


def chosen_per_level(c: Campaign, model: str, method: str) -> dict[str, tuple[dict, float]] | None:
    """For each level of ``c.per_level``, the grid point with the best validation accuracy there (and that accuracy)."""
    best: dict[str, tuple[dict, float]] = {}
    for point in grid_points(c, method):
        path = sweep_config(c, model, method, point).run_dir(c.out / "sweep") / "summary.json"
        if not path.exists():
            return None
        val = _val_by_level(json.loads(path.read_text()))
        for level in c.per_level:
            if val.get(level) is not None and (level not in best or val[level] > best[level][1]):
                best[level] = (point, val[level])
    return best


def setting_name(c: Campaign, model: str, method: str, point: dict) -> str:
    return f"{c.prefix}_{model}_{method}_" + "_".join(f"{k.split('.')[1]}{v:g}" for k, v in point.items())


def per_level_runs(c: Campaign, model: str) -> list[tuple[str, config_mod.Config | None]]:
    """HALO with xi / psi chosen separately for each target level on the validation split: three seeds of
    every per-level winner that differs from the overall choice (which already has its main runs)."""
    if "halo" not in c.oneshot or c.sweep_of[model] != (c.name, model):
        return []
    overall, per_level = chosen(c, model, "halo"), chosen_per_level(c, model, "halo")
    if overall is None or per_level is None:
        return [(f"{model} halo-per-level: waits for its sweep", None)]
    runs, seen = [], [overall]
    for point, _ in per_level.values():
        if point in seen:
            continue
        seen.append(point)
        for seed in SEEDS:
            cfg = load(c, model, "halo", *_sets(point), f"train.seed={seed}", f'name="{setting_name(c, model, "halo", point)}"')
            runs.append((f"{model} halo-per-level {setting_name(c, model, 'halo', point)} seed {seed}", cfg))
    return runs


def study_sweep(c: Campaign, st: Study) -> list[tuple[str, config_mod.Config]]:
    """Validation runs of the study's grid (10,000 held-out training images)."""
    return [(f"sweep {st.model} halo {st.tag} {p}",
             load(c, st.model, "halo", "data.val_size=10000", *_sets(p), *st.overrides,
                  f'name="sweep_{st.model}_halo_{st.tag}"'))
            for p in st.grid]


def study_choice(c: Campaign, st: Study) -> tuple[dict, float] | None:
    """The grid point with the best validation accuracy at the study's level (None until all ran)."""
    best = None
    for point, (_, cfg) in zip(st.grid, study_sweep(c, st)):
        path = cfg.run_dir(c.out / "sweep") / "summary.json"
        if not path.exists():
            return None
        val = _val_by_level(json.loads(path.read_text()))
        if best is None or val[st.level] > best[1]:
            best = (point, val[st.level])
    return best


def study_runs(c: Campaign, st: Study) -> list[tuple[str, config_mod.Config | None]]:
    """The study's seeds: of the 30-epoch per-level choice (if asked), then of its own validation choice."""
    points = []
    if st.with_short_choice:
        per_level = chosen_per_level(c, st.model, "halo")
        if not per_level or st.level not in per_level:
            return [(f"{st.model} halo-{st.tag}: waits for its sweep", None)]
        points.append(per_level[st.level][0])
    pick = study_choice(c, st)
    if pick is None:
        return [*(run for p in points for run in _study_seeds(c, st, p)),
                (f"{st.model} halo-{st.tag}: waits for its {st.tag} sweep", None)]
    if pick[0] not in points:
        points.append(pick[0])
    return [run for point in points for run in _study_seeds(c, st, point)]


def _study_seeds(c: Campaign, st: Study, point: dict) -> list[tuple[str, config_mod.Config]]:
    name = f"{setting_name(c, st.model, 'halo', point)}_{st.tag}"
    return [(f"{st.model} halo-{st.tag} {name} seed {seed}",
             load(c, st.model, "halo", *_sets(point), f"train.seed={seed}", *st.overrides, f'name="{name}"'))
            for seed in SEEDS]


def repro_run(c: Campaign, model: str) -> list[tuple[str, config_mod.Config | None]]:
    """Seed 0 of the main HALO run trained again from scratch (into <out>/repro/) to check reproducibility."""
    if model not in c.repro:
        return []
    main = [cfg for label, cfg in main_runs(c, model) if label == f"{model} halo seed 0"]
    return [(f"{model} halo-repro seed 0", main[0])] if main else [(f"{model} halo-repro: waits for its sweep", None)]


def main_runs(c: Campaign, model: str) -> list[tuple[str, config_mod.Config | None]]:
    runs = []
    for method in c.oneshot:
        sets = []
        if method in GRIDS:
            src_campaign, src_model = c.sweep_of[model]
            point = chosen(CAMPAIGNS[src_campaign], src_model, method)
            if point is None:
                runs.append((f"{model} {method}: waits for its sweep", None))
                continue
            sets = _sets(point)
        for seed in SEEDS:
            cfg = load(c, model, method, *sets, f"train.seed={seed}")
            runs.append((f"{model} {method} seed {seed}", cfg))
    for seed in SEEDS:
        for method in c.fixed:
            for level in c.fixed_levels:
                cfg = load(c, model, method, f"method.sparsity={level}", f"train.seed={seed}")
                runs.append((f"{model} {method} {level} seed {seed}", cfg))
    return runs


def plan(c: Campaign) -> list[tuple[str, Path, config_mod.Config | None]]:
    """Runs in priority order: per model, each penalty's sweep directly followed by its main runs (so the
    headline numbers land early); then the fixed-sparsity baselines of all models, seed by seed (so that an
    unfinished campaign has every model's baselines at some seeds rather than some models at none)."""
    out, fixed = [], []
    for model in c.models:
        main = main_runs(c, model)
        for method in c.oneshot:
            if method in GRIDS and c.sweep_of[model] == (c.name, model):
                out += [(f"sweep {model} {method} {p}", c.out / "sweep", sweep_config(c, model, method, p)) for p in grid_points(c, method)]
            out += [(label, c.out / "runs", cfg) for label, cfg in main if label.split()[1].rstrip(":") == method]
            if method == "halo":
                out += [(label, c.out / "runs", cfg) for label, cfg in per_level_runs(c, model)]
                out += [(label, c.out / "repro", cfg) for label, cfg in repro_run(c, model)]
        fixed += [(label, c.out / "runs", cfg) for label, cfg in main if label.split()[1] in c.fixed]
    for st in c.studies:
        out += [(label, c.out / "sweep", cfg) for label, cfg in study_sweep(c, st)]
        out += [(label, c.out / "long", cfg) for label, cfg in study_runs(c, st)]
    seed_of = lambda item: int(item[0].rsplit(" ", 1)[1])  # noqa: E731  (labels end in "seed N")
    return out + sorted(fixed, key=seed_of)  # stable: models, methods and levels keep their order per seed


CLAIM = "claim.pid"


def claim(run_dir: Path) -> bool:
    """Take a run for this process, so that several campaign workers (e.g. one thread each) can share the
    plan; a claim whose process has died is taken over (the run then resumes from its checkpoint)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CLAIM
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(path.read_text() or 0)
                os.kill(pid, 0)
                return False  # alive: someone else's run
            except (ValueError, ProcessLookupError, FileNotFoundError):
                path.unlink(missing_ok=True)  # stale claim
                continue
            except PermissionError:
                return False
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def finished(root: Path, cfg: config_mod.Config | None) -> bool:
    return cfg is not None and (cfg.run_dir(root) / "summary.json").exists()


def sweep_rows(c: Campaign) -> list[dict]:
    rows = []
    for model in c.models:
        if c.sweep_of[model] != (c.name, model):
            continue
        for method in (m for m in GRIDS if m in c.oneshot):
            pick = chosen(c, model, method)
            for point in grid_points(c, method):
                path = sweep_config(c, model, method, point).run_dir(c.out / "sweep") / "summary.json"
                if not path.exists():
                    continue
                s = json.loads(path.read_text())
                val = _val_by_level(s)
                rows.append({"model": model, "method": method, **{k.split(".")[1]: v for k, v in point.items()},
                             **{f"val_acc_{float(lv) * 100:g}": val.get(lv) for lv in c.select_levels},
                             "score": score(s, c.select_levels), "chosen": point == pick, "epochs": s["epochs"]})
    return rows


# The targets of issue 3 (mean of 3 seeds, no fine-tuning, test accuracy in percent).
TARGETS = {("mnist", "lenet300", "0.985"): 98.2, ("mnist", "lenet300", "0.995"): 97.5, ("mnist", "lenet5_caffe", "0.996"): 99.2}


def _accs(root: Path, name: str, level: str) -> dict[int, float]:
    """Test accuracy at ``level`` of the finished runs named ``name`` under ``root``, by seed."""
    out = {}
    for s in (json.loads(f.read_text()) for f in root.glob(f"{name}-*/summary.json")):
        if s.get("name") != name:
            continue
        for p in s["points"]:
            if f"{p['sparsity_requested']:g}" == level and not p.get("fine_tuned"):
                out[s["seed"]] = p["test_accuracy"]
    return out


def _mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.2f} (n=1)"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} (n={len(values)})"


def _status(target: float, accs: list[float]) -> str:
    """'met' / 'missed' once every seed has run, else 'pending'."""
    if len(accs) < len(SEEDS):
        return "pending"
    return "met" if statistics.mean(accs) >= target else "missed"


def halo_name_at(c: Campaign, model: str, level: str) -> str:
    """Name of the HALO runs that serve ``level``: the per-level validation choice where the model has a sweep
    of its own and that choice differs from the overall one, else the main runs."""
    main = f"{c.prefix}_{model}_halo"
    if c.sweep_of[model] != (c.name, model):
        return main
    overall, per_level = chosen(c, model, "halo"), chosen_per_level(c, model, "halo") or {}
    point = per_level.get(level, (overall, None))[0]
    return main if point in (None, overall) else setting_name(c, model, "halo", point)


def per_level_section(c: Campaign) -> list[str]:
    """HALO with xi / psi chosen per level on the validation split, against the targets."""
    lines = []
    for model in c.models:
        if "halo" not in c.oneshot or c.sweep_of[model] != (c.name, model):
            continue
        overall, per_level = chosen(c, model, "halo"), chosen_per_level(c, model, "halo")
        if overall is None or not per_level:
            continue
        lines += [f"### {model}: HALO with xi / psi chosen per sparsity level", "",
                  "The overall choice maximizes the mean validation accuracy at "
                  + " / ".join(f"{float(lv) * 100:g}" for lv in c.select_levels) + "%; here each level "
                  "gets the grid point that is best on the validation split at that level (still never the test set).",
                  "", "| sparsity | xi, psi (validation acc.) | test acc. per-level choice | test acc. overall choice | target |",
                  "|---:|---|---:|---:|---:|"]
        for level, (point, val) in per_level.items():
            accs = list(_accs(c.out / "runs", halo_name_at(c, model, level), level).values())
            base = list(_accs(c.out / "runs", f"{c.prefix}_{model}_halo", level).values())
            target = TARGETS.get((c.name, model, level))
            verdict = "—" if target is None else f"{target:.1f}: {_status(target, accs)}"
            setting = ", ".join(f"{v:g}" for v in point.values())
            lines.append(f"| {float(level) * 100:g}% | {setting} ({val:.2f}) | {_mean_std(accs)} | {_mean_std(base)} | {verdict} |")
        lines.append("")
    return lines


def long_section(c: Campaign) -> list[str]:
    lines = []
    for st in c.studies:
        names = list(dict.fromkeys(cfg.name for _, cfg in study_runs(c, st) if cfg is not None))
        rows = [(name, list(_accs(c.out / "long", name, st.level).values())) for name in names]
        rows = [(name, accs) for name, accs in rows if accs]
        pick = study_choice(c, st)
        if not rows and pick is None:
            continue
        target = TARGETS.get((c.name, st.model, st.level))
        first = (f"First with the setting chosen on validation for {float(st.level) * 100:g}% at 30 epochs; then with the "
                 "setting that is best there on validation at this schedule" if st.with_short_choice else
                 "With the setting that is best on validation at this schedule")
        lines += [f"### {st.model}: {st.title} (outside the equal budget)", "",
                  f"Overrides of the 30-epoch config: `{' '.join(st.overrides)}`. {first} (validation runs: "
                  f"`sweep/sweep_{st.model}_halo_{st.tag}-*`"
                  + (f", best: {', '.join(f'{k.split(chr(46))[1]} = {v:g}' for k, v in pick[0].items())} "
                     f"with {pick[1]:.2f}" if pick else ", unfinished") + "). No fine-tuning; every level: `long/report.md`.", "",
                  f"| run | test acc. at {float(st.level) * 100:g}% | target |", "|---|---:|---:|"]
        for name, accs in rows:
            verdict = "—" if target is None else f"{target:.1f}: {_status(target, accs)}"
            lines.append(f"| `{name}` | {_mean_std(accs)} | {verdict} |")
        lines.append("")
    return lines


def transfer_section(c: Campaign) -> list[str]:
    """HALO runs kept in ``transfer/`` (trained with another data set's choice of xi / psi)."""
    root = c.out / "transfer"
    names = sorted({json.loads(f.read_text())["name"] for f in root.glob("*/summary.json")}) if root.is_dir() else []
    lines = []
    for name in names:
        s = next(json.loads(f.read_text()) for f in root.glob(f"{name}-*/summary.json"))
        setting = json.loads((root / Path(s["run_dir"]).name / "config.json").read_text())["penalty"]
        lines += [f"### `transfer/`: {name} with xi = {setting['xi']:g}, psi = {setting['psi']:g} (chosen on MNIST)", "",
                  "| sparsity | test acc. |", "|---:|---:|"]
        levels = sorted({p["sparsity_requested"] for p in s["points"]})
        lines += [f"| {lv * 100:g}% | {_mean_std(list(_accs(root, name, f'{lv:g}').values()))} |" for lv in levels]
        lines.append("")
    return lines


def repro_section(c: Campaign) -> list[str]:
    lines = []
    for model in c.repro:
        runs = repro_run(c, model)
        cfg = runs[0][1] if runs else None
        if cfg is None:
            continue
        first, again = cfg.run_dir(c.out / "runs") / "summary.json", cfg.run_dir(c.out / "repro") / "summary.json"
        if not (first.exists() and again.exists()):
            continue
        a, b = json.loads(first.read_text()), json.loads(again.read_text())
        bp = {p["sparsity_requested"]: p["test_accuracy"] for p in b["points"]}
        rows = [(p["sparsity_requested"], p["test_accuracy"], bp.get(p["sparsity_requested"])) for p in a["points"]]
        diffs = [abs(x - y) for _, x, y in rows if y is not None]
        threads = [json.loads((d.parent / "config.json").read_text())["run"]["threads"] for d in (first, again)]
        lines += [f"### {model}: HALO seed {a['seed']} trained twice", "",
                  f"Same config (`{cfg.name}-{cfg.hash()}`), trained again from scratch into `repro/` "
                  f"({threads[0]} then {threads[1]} CPU thread(s): float sums in another order, so not bit-identical); "
                  f"{sum(d <= 0.3 for d in diffs)} of {len(diffs)} cells within 0.3 points, largest difference "
                  f"{max(diffs):.2f}.", "",
                  "| sparsity | first run | re-run | difference |", "|---:|---:|---:|---:|"]
        lines += [f"| {s * 100:g}% | {x:.2f} | {y:.2f} | {y - x:+.2f} |" for s, x, y in rows if y is not None]
        lines.append("")
    return lines


def _cell(row: dict | None, label: bool = False) -> str:
    if row is None:
        return "—"
    n, mean, std = int(row["seeds"]), float(row["acc_mean"]), float(row["acc_std"] or 0)
    value = f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"
    return (f"{row['method']} " if label else "") + value + ("" if n == len(SEEDS) else f" (n={n})")


def _best(rows: list[dict]) -> dict | None:
    return max(rows, key=lambda r: float(r["acc_mean"]), default=None)


def headline_section(c: Campaign) -> list[str]:
    """At a glance, from ``summary.csv``: at each level where the fixed-sparsity baselines ran, HALO without
    fine-tuning (the setting chosen on validation for that level) against the best of the other one-shot
    methods and the best fine-tuned baseline of the same model and epoch budget."""
    path = c.out / "summary.csv"
    if not path.exists():
        return []
    rows = list(csv.DictReader(path.open()))
    lines = ["| model | sparsity | HALO, no fine-tuning | best other, no fine-tuning | best fine-tuned baseline | epochs |",
             "|---|---:|---:|---:|---:|---:|"]
    for model in c.models:
        for level in c.fixed_levels:
            key = f"{level:g}"
            at = [r for r in rows if r["model"] == model and f"{float(r['sparsity']):g}" == key]
            halo = next((r for r in at if r["name"] == halo_name_at(c, model, key)), None)
            others = [r for r in at if r["fine_tuned"] == "False" and not r["name"].startswith(f"{c.prefix}_{model}_halo")]
            tuned = [r for r in at if r["fine_tuned"] == "True"]
            epochs = (halo or _best(at) or {}).get("epochs", "—")
            lines.append(f"| {model} | {level * 100:g}% | {_cell(halo)} | {_cell(_best(others), True)} | "
                         f"{_cell(_best(tuned), True)} | {epochs} |")
    return lines + ["", f"Test accuracy (%), mean ± std over {len(SEEDS)} seeds unless n is given; sparsity of the "
                        "prunable weights (denominators under the tables below). HALO's xi / psi: "
                        "the validation choice for that level where one was made, else the overall choice.", ""]


def target_lines(c: Campaign) -> list[str]:
    """One line per target of issue 3: HALO's result at that level within the equal budget (the setting chosen
    on validation for the level) and in every study of that model and level, each with its verdict."""
    def verdict(target: float, accs: list[float]) -> str:
        return f"{_mean_std(accs)}, {_status(target, accs)}"

    lines = []
    for (campaign, model, level), target in TARGETS.items():
        if campaign != c.name:
            continue
        parts = [f"equal budget: {verdict(target, list(_accs(c.out / 'runs', halo_name_at(c, model, level), level).values()))}"]
        for st in (st for st in c.studies if (st.model, st.level) == (model, level)):
            pick = study_choice(c, st)
            if pick is not None:
                run = f"{setting_name(c, model, 'halo', pick[0])}_{st.tag}"
                parts.append(f"{st.title.removeprefix('HALO ')}: {verdict(target, list(_accs(c.out / 'long', run, level).values()))}")
        lines.append(f"- {model}, >= {target:g}% at {float(level) * 100:g}% sparsity: " + "; ".join(parts) + ".")
    return lines


def update_readme(c: Campaign, lines: list[str]) -> None:
    """Rewrite the block of the project README between this campaign's markers (if it has them)."""
    readme = ROOT / "README.md"
    start, end = f"<!-- results/{c.name}: written by scripts/campaign.py --report -->", f"<!-- end results/{c.name} -->"
    text = readme.read_text()
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    checkpoint.atomic_write_text(readme, head + start + "\n" + "\n".join(lines) + rest[rest.index(end):])


def retire_superseded(c: Campaign) -> None:
    """Move finished runs that the plan no longer contains (a sweep grew and chose another setting) from
    runs/ to superseded/, so that reports never mix two settings under one name."""
    wanted = {cfg.run_dir(root) for _, root, cfg in plan(c) if cfg is not None}
    if any(cfg is None for _, _, cfg in plan(c)):
        return  # a sweep is unfinished: the plan is not final yet
    for summary in sorted((c.out / "runs").glob("*/summary.json")):
        run = summary.parent
        if run not in wanted:
            (c.out / "superseded").mkdir(exist_ok=True)
            run.rename(c.out / "superseded" / run.name)
            print(f"moved {run.name} to superseded/ (no longer in the plan)", flush=True)


def write_results(c: Campaign) -> None:
    """Rewrite results/<campaign>/ from whatever has finished."""
    retire_superseded(c)
    try:
        have_runs = bool(find_runs([c.out / "runs"]))
    except SparsehaloError:
        have_runs = False
    if have_runs:
        make_report([c.out / "runs"], c.out, title=f"{c.name}: HALO against pruning baselines")
    if (c.out / "long").is_dir() and list((c.out / "long").glob("*/summary.json")):
        make_report([c.out / "long"], c.out / "long", title=f"{c.name}: HALO trained longer (outside the equal budget)")
    rows = sweep_rows(c)
    if rows:
        cols = ["model", "method", "xi", "psi", *(f"val_acc_{float(lv) * 100:g}" for lv in c.select_levels), "score", "chosen",
                "epochs"]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        checkpoint.atomic_write_text(c.out / "sweep.csv", buf.getvalue())
    report = (c.out / "report.md").read_text() if (c.out / "report.md").exists() else "(no finished main run yet)\n"
    headline = headline_section(c)
    items = plan(c)
    total = sum(cfg is not None for _, _, cfg in items)
    done = sum(finished(root, cfg) for _, root, cfg in items)
    waiting = sum(cfg is None for _, _, cfg in items)
    lines = [
        f"# {c.name} results",
        "",
        f"Regenerate (resumable; finished runs are skipped): `.venv/bin/python scripts/campaign.py --campaign {c.name}`;",
        f"rewrite this page from finished runs only: `.venv/bin/python scripts/campaign.py --campaign {c.name} --report`.",
        "",
        "Protocol: test accuracy in percent, mean ± std over the seeds stated; sparsity = pruned / prunable weights "
        "(the denominator is stated under each table; biases excluded); one global magnitude threshold; one-shot methods "
        "are never fine-tuned; fixed-sparsity baselines reach their level during training; every method of a model has "
        "the same total epoch budget. Penalty strengths were chosen on a validation split of 10,000 training images "
        "(`sweep.csv`), never on the test set. " + c.description,
        "",
        f"Campaign status: {done} of {total} planned runs finished"
        + (f"; {waiting} method(s) wait for their validation sweep." if waiting else "."),
        "",
        *(["## At a glance", "", *headline] if headline else []),
        *(["## Targets, per-level choice and reproducibility" if c.name == "mnist" else "## HALO's setting", "",
           *per_level_section(c), *long_section(c), *repro_section(c), *transfer_section(c)]),
        report,
    ]
    checkpoint.atomic_write_text(c.out / "README.md", "\n".join(lines))
    if headline:
        targets = target_lines(c)
        update_readme(c, [f"**{c.name}** (`results/{c.name}/README.md`; {done} of {total} planned runs finished):", "",
                          *headline, *(["HALO against the targets of issue 3 (mean of 3 seeds, no fine-tuning):", "",
                                        *targets, ""] if targets else [])])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campaign", choices=list(CAMPAIGNS), help="only this campaign (default: all, in order)")
    ap.add_argument("--report", action="store_true", help="only rewrite results/<campaign>/ from finished runs")
    ap.add_argument("--plan", action="store_true", help="list the planned runs and whether they are finished")
    args = ap.parse_args()
    campaigns = [CAMPAIGNS[args.campaign]] if args.campaign else list(CAMPAIGNS.values())
    if args.plan:
        for c in campaigns:
            for label, root, cfg in plan(c):
                state = "waiting" if cfg is None else ("done" if finished(root, cfg) else "todo")
                print(f"{c.name:14} {state:8} {label}")
        return 0
    if not args.report:
        while True:  # re-plan after each run: a finished sweep unlocks the runs that wait for it
            todo = [(c, label, root, cfg) for c in campaigns for label, root, cfg in plan(c)
                    if cfg is not None and not finished(root, cfg)]
            if not todo:
                break
            pick = next(((c, label, root, cfg) for c, label, root, cfg in todo if claim(cfg.run_dir(root))), None)
            if pick is None:  # everything left is being trained by other workers
                break
            c, label, root, cfg = pick
            print(f"== {c.name}: {label} -> {cfg.run_dir(root)}", flush=True)
            try:
                train(cfg, cfg.run_dir(root), echo=lambda s: print(s, flush=True))
            finally:
                (cfg.run_dir(root) / CLAIM).unlink(missing_ok=True)
            write_results(c)
    for c in campaigns:
        write_results(c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
