"""A comparison campaign: the shape of plan behind ``scripts/campaign.py``, with the settings left to it.

A :class:`Campaign` compares methods on some models at equal budget, seed by seed:

- one-shot methods (trained once, pruned to every level); those with a grid in ``grids`` are first
  swept on a validation split and run with the setting of the best mean validation accuracy at
  ``select_levels`` (:func:`~.choice.best`);
- the ``focus`` method (HALO) also gets the setting that is best at each of ``per_level``
  (:func:`~.choice.best_per_level`), a second training of its seed 0 for models in ``repro``, and
  :class:`Study` runs outside the equal budget (another schedule with its own validation grid);
- the focus method in target mode (``penalty.target_sparsity``), one run per level of
  ``target_levels`` and seed, with no grid;
- fixed-sparsity baselines, one run per level of ``fixed_levels`` and seed.

Run directories: ``<out>/sweep/`` (validation), ``<out>/runs/`` (equal budget), ``<out>/repro/``,
``<out>/long/`` (studies).  Every :class:`~.plan.Item` carries its structured setting (model,
method, seed, level, point, study); names of runs are made from points and never read back.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from .. import config, paths
from ..results import accuracy_by_seed, aggregate, find_runs, has_runs, load_summaries, make_report, read_summary
from .choice import best, best_at, best_per_level
from .plan import Item, retire, waiting, with_origin
from .sweep import Trial, grid, outcomes, overrides, setting_name, table, trials, write_table

Point = dict


@dataclass(frozen=True)
class Study:
    """The focus method on one model with another schedule, outside the equal budget: a validation grid
    at that schedule picks its setting for ``level``, then the seeds of that choice (first also of the
    equal-budget per-level choice when ``with_short_choice``).  Runs are named ``<setting>_<tag>``."""

    model: str
    tag: str
    level: str
    overrides: tuple[str, ...]
    grid: tuple[dict, ...]
    title: str
    with_short_choice: bool = True


@dataclass(frozen=True)
class Campaign:
    """What a campaign trains.  Config files are ``<configs>/<prefix>_<model>_<method>.toml``.

    Args:
        sweep_of: model -> the model of this campaign whose sweep picks its settings.
        grids: method -> ``{config key: values}`` swept on validation.
        settings: ``run.*`` overrides of every run (threads, data directory; not hashed).
    """

    name: str
    prefix: str
    models: list[str]
    oneshot: list[str]
    fixed: list[str]
    fixed_levels: list[float]
    sweep_of: dict[str, str]
    grids: dict[str, dict[str, list]]
    select_levels: tuple[str, ...]
    per_level: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    focus: str = "halo"
    repro: list[str] = field(default_factory=list)
    studies: list[Study] = field(default_factory=list)
    target_levels: tuple[float, ...] = ()  # HALO (target): one run per level and seed, no grid
    description: str = ""
    title: str = "HALO against pruning baselines"  # of <out>/report.md, after the campaign's name
    long_title: str = "HALO trained longer (outside the equal budget)"  # of <out>/long/report.md
    out: Path = Path("results")
    configs: Path = Path("configs")
    settings: tuple[str, ...] = ()

    # -- configs and sweeps --------------------------------------------------------------------
    def load(self, model: str, method: str, *sets: str) -> config.Config:
        """The config of (model, method): the committed TOML, the campaign's run settings, ``sets``
        (recorded as its origin, so :func:`~.plan.command` can say how to train it)."""
        path, sets = self.configs / f"{self.prefix}_{model}_{method}.toml", [*self.settings, *sets]
        return with_origin(config.load(path, sets), path, sets)

    def sweep(self, model: str, method: str, study: Study | None = None) -> list[Trial]:
        """Validation trials (10,000 held-out training images) of a method's grid, or of a study's."""
        if study is None:
            points, extra, tag = grid(self.grids[method]), (), ""
        else:
            points, extra, tag = study.grid, study.overrides, f"_{study.tag}"
        return trials(points, lambda p: self.load(model, method, "data.val_size=10000", *overrides(p), *extra,
                                                  f'name="sweep_{model}_{method}{tag}"'), self.out / "sweep")

    def chosen(self, model: str, method: str) -> Point | None:
        """The overall validation choice of ``method`` for ``model`` (None until its sweep finished)."""
        return best(outcomes(self.sweep(self.sweep_of[model], method)), self.select_levels)

    def chosen_per_level(self, model: str) -> dict[str, tuple[Point, float]] | None:
        """The focus method's choice at each of ``per_level``, with its validation accuracy."""
        return best_per_level(outcomes(self.sweep(model, self.focus)), self.per_level)

    def study_choice(self, st: Study) -> tuple[Point, float] | None:
        """The study's validation choice at its level, with its validation accuracy."""
        return best_at(outcomes(self.sweep(st.model, self.focus, st)), st.level)

    def own_sweep(self, model: str) -> bool:
        return self.sweep_of[model] == model

    def sweep_table(self) -> list[dict]:
        """Rows of every finished trial of the campaign's own sweeps (:func:`~.sweep.table`), with model
        and method, in model order then grid order."""
        return [row for model in self.models if self.own_sweep(model) for method in self.grids if method in self.oneshot
                for row in table(self.sweep(model, method), self.select_levels, self.chosen(model, method),
                                 model=model, method=method)]

    def accuracies(self, where: str, name: str, level: str) -> list[float]:
        """Test accuracies (no fine-tuning) at ``level`` of the finished runs ``name`` in ``<out>/<where>``,
        one per seed, in the order of their run directories (not of their seeds)."""
        return list(accuracy_by_seed(self.out / where, name, level).values())

    # -- names -------------------------------------------------------------------------------
    def focus_name(self, model: str, point: Point | None = None, tag: str = "") -> str:
        """Run name of the focus method: ``<prefix>_<model>_halo[_<setting>][_<tag>]``."""
        base = f"{self.prefix}_{model}_{self.focus}"
        return (base if point is None else setting_name(base, point)) + (f"_{tag}" if tag else "")

    def focus_name_at(self, model: str, level: str) -> str:
        """Name of the focus runs that serve ``level``: the per-level choice where the model has a sweep of
        its own and that choice differs from the overall one, else the main runs."""
        if not self.own_sweep(model):
            return self.focus_name(model)
        overall = self.chosen(model, self.focus)
        point = (self.chosen_per_level(model) or {}).get(level, (overall, None))[0]
        return self.focus_name(model) if point in (None, overall) else self.focus_name(model, point)

    # -- items -------------------------------------------------------------------------------
    def _seeds(self, label: str, root: Path, model: str, method: str, *sets: str, **setting) -> list[Item]:
        return [Item(f"{label} seed {seed}", root, self.load(model, method, *sets, f"train.seed={seed}"),
                     {"model": model, "method": method, "seed": seed, **setting}, self.name) for seed in self.seeds]

    def main_runs(self, model: str) -> list[Item]:
        """Seeds of every one-shot method (its validation choice) and of every fixed baseline at every level."""
        runs = []
        for method in self.oneshot:
            point = self.chosen(model, method) if method in self.grids else {}
            if point is None:
                runs.append(waiting(f"{model} {method}: waits for its sweep", self.name, model=model, method=method))
                continue
            runs += self._seeds(f"{model} {method}", self.out / "runs", model, method, *overrides(point))
        for seed in self.seeds:
            runs += [Item(f"{model} {method} {level} seed {seed}", self.out / "runs",
                          self.load(model, method, f"method.sparsity={level}", f"train.seed={seed}"),
                          {"model": model, "method": method, "level": level, "seed": seed}, self.name)
                     for method in self.fixed for level in self.fixed_levels]
        return runs

    def target_name(self, model: str) -> str:
        """Run name of the focus method in target mode: ``<prefix>_<model>_halo_target`` (all levels)."""
        return f"{self.focus_name(model)}_target"

    def target_runs(self, model: str) -> list[Item]:
        """The focus method in target mode (``penalty.target_sparsity``): the committed config's xi / psi as
        the starting strength, one run per level of ``target_levels`` and seed, no validation grid."""
        if self.focus not in self.oneshot:
            return []
        return [Item(f"{model} {self.focus}-target {level:g} seed {seed}", self.out / "runs",
                     self.load(model, self.focus, f"penalty.target_sparsity={level}",
                               f"prune.levels=[{level}]",
                               f'name="{self.target_name(model)}"', f"train.seed={seed}"),
                     {"model": model, "method": self.focus, "target": level, "seed": seed}, self.name)
                for seed in self.seeds for level in self.target_levels]

    def per_level_runs(self, model: str) -> list[Item]:
        """Seeds of every per-level choice of the focus method that differs from the overall one."""
        if self.focus not in self.oneshot or not self.own_sweep(model):
            return []
        overall, per_level = self.chosen(model, self.focus), self.chosen_per_level(model)
        if overall is None or per_level is None:
            return [waiting(f"{model} {self.focus}-per-level: waits for its sweep", self.name, model=model, method=self.focus)]
        points = []
        for p, _ in per_level.values():
            if p != overall and p not in points:
                points.append(p)
        return [run for p in points for run in self._seeds(
            f"{model} {self.focus}-per-level {self.focus_name(model, p)}", self.out / "runs", model, self.focus,
            *overrides(p), f'name="{self.focus_name(model, p)}"', point=p)]

    def repro_run(self, model: str) -> list[Item]:
        """Seed 0 of the main focus run trained again from scratch into ``<out>/repro/``."""
        if model not in self.repro:
            return []
        main = [i for i in self.main_runs(model)
                if not i.waiting and i.setting["method"] == self.focus and i.setting["seed"] == 0]
        if not main:
            return [waiting(f"{model} {self.focus}-repro: waits for its sweep", self.name, model=model, method=self.focus)]
        return [Item(f"{model} {self.focus}-repro seed 0", self.out / "repro", main[0].config, main[0].setting, self.name)]

    def study_runs(self, st: Study) -> list[Item]:
        """The study's seeds: of the per-level choice (if asked), then of its own validation choice."""
        points = []
        if st.with_short_choice:
            per_level = self.chosen_per_level(st.model)
            if not per_level or st.level not in per_level:
                return [waiting(f"{st.model} {self.focus}-{st.tag}: waits for its sweep", self.name, model=st.model)]
            points.append(per_level[st.level][0])
        pick = self.study_choice(st)
        if pick is not None and pick[0] not in points:
            points.append(pick[0])
        runs = [run for p in points for run in self._seeds(
            f"{st.model} {self.focus}-{st.tag} {self.focus_name(st.model, p, st.tag)}", self.out / "long", st.model,
            self.focus, *overrides(p), *st.overrides, f'name="{self.focus_name(st.model, p, st.tag)}"',
            point=p, study=st.tag)]
        if pick is None:
            runs.append(waiting(f"{st.model} {self.focus}-{st.tag}: waits for its {st.tag} sweep", self.name, model=st.model))
        return runs

    def plan(self) -> list[Item]:
        """Runs in priority order: per model, each swept method's sweep directly followed by its main runs
        (so the headline numbers land early); then the studies; then the fixed-sparsity baselines of all
        models, seed by seed (an unfinished campaign has every model's baselines at some seeds rather than
        some models at none)."""
        out, fixed = [], []
        for model in self.models:
            main = self.main_runs(model)
            for method in self.oneshot:
                if method in self.grids and self.own_sweep(model):
                    out += [Item(f"sweep {model} {method} {t.point}", t.root, t.config,
                                 {"model": model, "method": method, "point": t.point}, self.name)
                            for t in self.sweep(model, method)]
                out += [i for i in main if i.setting["method"] == method]
                if method == self.focus:
                    out += self.per_level_runs(model) + self.repro_run(model) + self.target_runs(model)
            fixed += [i for i in main if i.setting["method"] in self.fixed]
        for st in self.studies:
            out += [Item(f"sweep {st.model} {self.focus} {st.tag} {t.point}", t.root, t.config,
                         {"model": st.model, "method": self.focus, "point": t.point, "study": st.tag}, self.name)
                    for t in self.sweep(st.model, self.focus, st)]
            out += self.study_runs(st)
        return out + sorted(fixed, key=lambda i: i.setting["seed"])  # stable: models, methods, levels keep their order

    def reruns(self) -> list[tuple[Item, dict, dict]]:
        """``(item, summary of the first run, summary of the re-run)`` of every finished repro run."""
        out = []
        for item in (i for model in self.repro for i in self.repro_run(model) if not i.waiting):
            first = item.config.run_dir(self.out / "runs")
            if paths.summary(first).exists() and paths.summary(item.run_dir).exists():
                out.append((item, read_summary(first), read_summary(item.run_dir)))
        return out

    # -- reports -----------------------------------------------------------------------------
    def write_reports(self, echo: Callable[[str], None] = print) -> list[dict]:
        """Rewrite the reports of finished runs: ``<out>/`` (report.md, summary.csv, figures) from ``runs/``,
        ``<out>/long/`` from the studies' runs, and ``<out>/sweep.csv``.

        Finished runs of ``runs/`` that the final plan no longer names are first moved to ``superseded/``
        (:func:`~.plan.retire`), so a report never mixes two settings under one name.

        Returns:
            The aggregated rows of ``runs/`` (:func:`~sparsehalo.results.aggregate`; empty without runs).
        """
        retire(self.plan(), self.out / "runs", self.out / "superseded", echo=echo)
        runs, long = self.out / "runs", self.out / "long"
        rows = aggregate(load_summaries(find_runs([runs]))) if has_runs(runs) else []
        if rows:
            make_report([runs], self.out, title=f"{self.name}: {self.title}", force=True)
        if has_runs(long):
            make_report([long], long, title=f"{self.name}: {self.long_title}", force=True)
        if sweeps := self.sweep_table():
            write_table(self.out / "sweep.csv", sweeps)
        return rows


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options every campaign script shares: where things are, and how runs run."""
    ap.add_argument("--results", type=Path, default=Path("results"), help="holds <campaign>/ (default: ./results)")
    ap.add_argument("--configs", type=Path, default=Path("configs"), help="the runs' TOML configs (default: ./configs)")
    ap.add_argument("--readme", type=Path, default=Path("README.md"),
                    help="README whose generated block is rewritten, if it has the markers (default: ./README.md)")
    ap.add_argument("--data-dir", help="dataset directory for training (default: $SPARSEHALO_DATA_DIR, cache, bundled MNIST)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("SPARSEHALO_CAMPAIGN_THREADS", "1")),
                    help="torch threads per run (default: $SPARSEHALO_CAMPAIGN_THREADS or 1, leaving a core for other work)")


def configure(c: Campaign, args: argparse.Namespace) -> Campaign:
    """``c`` with the paths and run settings of :func:`add_arguments`' options."""
    settings = ("run.progress=false", f"run.threads={args.threads}", "run.eval_pruned_every=5",
                *([f"run.data_dir={json.dumps(str(args.data_dir))}"] if args.data_dir else []))
    return replace(c, out=Path(args.results).resolve() / c.name, configs=Path(args.configs), settings=settings)
