"""A plan of runs that several workers share, resumable by running it again.

A plan is a list of :class:`Item` in priority order: a label for people, where the run goes, its
config, and the structured setting it was made from (model, method, seed, ...), so code that
orders or looks up items reads fields instead of parsing labels.  An item whose config is None
*waits* (for a sweep to choose its setting); plans are rebuilt after every run, so a finished sweep
turns its waiting items into runs.

A run is *finished* when its summary exists (:func:`sparsehalo.paths.summary`).  A worker takes a
run by locking it (:mod:`sparsehalo.locks`, an exclusive ``flock`` on its ``run.lock``); other
workers skip locked runs, and the run of a worker that died is free again (its lock went with it;
the run then resumes from its checkpoint).  Re-running a plan skips finished runs, so resuming is running again.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .. import locks, paths
from ..config import Config
from ..errors import SparsehaloError


@dataclass(frozen=True)
class Item:
    """One planned run.

    Args:
        label: what ``--plan`` shows.
        root: the directory its run directory goes in (None for a waiting item).
        config: the run's config, or None while it waits for a choice.
        setting: the structured setting the item was made from (read it; never parse ``label``).
        group: what the item belongs to (a campaign), shown beside its label.
    """

    label: str
    root: Path | None
    config: Config | None
    setting: Mapping[str, Any] = field(default_factory=dict)
    group: str = ""

    @property
    def waiting(self) -> bool:
        return self.config is None

    @property
    def run_dir(self) -> Path | None:
        return None if self.config is None else self.config.run_dir(self.root)


def waiting(label: str, group: str = "", **setting: Any) -> Item:
    """An item that waits (its config depends on a choice not made yet)."""
    return Item(label, None, None, setting, group)


def finished(item: Item) -> bool:
    """Whether the item's run has written its summary."""
    return item.config is not None and paths.summary(item.run_dir).exists()


def state(item: Item) -> str:
    """``"waiting"``, ``"done"`` or ``"todo"``."""
    return "waiting" if item.waiting else ("done" if finished(item) else "todo")


def progress(items: Iterable[Item]) -> tuple[int, int, int]:
    """``(finished, planned, waiting)``: runs finished, runs with a config, items that wait."""
    items = list(items)
    return sum(map(finished, items)), sum(not i.waiting for i in items), sum(i.waiting for i in items)


def listing(items: Iterable[Item]) -> list[str]:
    """One line per item: group, state and label (what ``--plan`` prints)."""
    return [f"{item.group:14} {state(item):8} {item.label}" for item in items]


def with_origin(cfg: Config, path: str | Path, overrides: list[str] | tuple[str, ...]) -> Config:
    """Record on ``cfg`` the config file and overrides it was loaded from (for :func:`command`)."""
    cfg.__dict__["_origin"] = (Path(path).resolve(), tuple(overrides))
    return cfg


def command(item: Item, program: str = "sparsehalo") -> str:
    """The shell command that trains ``item``: ``sparsehalo train FILE --out ROOT --set ... --quiet``.

    Idempotent like every ``train``: a finished run is skipped, an unfinished one resumes, and a run
    another process trains is refused by its lock (exit 2), so a scheduler may start it twice.

    Raises:
        SparsehaloError: the item waits, or its config has no recorded origin, or the command would
            not rebuild the same run directory (checked here, by loading it).
    """
    from ..config import load

    origin = getattr(item.config, "_origin", None) if item.config is not None else None
    if origin is None:
        raise SparsehaloError(f"{item.label!r} has no config file and overrides to train it from")
    path, overrides = origin
    if load(path, list(overrides)).run_dir(item.root) != item.run_dir:
        raise SparsehaloError(f"{item.label!r}: its file and overrides do not rebuild its config")
    words = [program, "train", str(path), "--out", str(Path(item.root).resolve())]
    for o in overrides:
        words += ["--set", o]
    return shlex.join([*words, "--quiet"])


def pending_commands(items: Iterable[Item], program: str = "sparsehalo") -> tuple[list[str], int]:
    """(one :func:`command` per unfinished run, the number of items that wait for a choice)."""
    items = list(items)
    return [command(i, program) for i in items if not i.waiting and not finished(i)], sum(i.waiting for i in items)


def claim(run_dir: str | Path) -> bool:
    """Take the run in ``run_dir`` for this process: its lock (:mod:`sparsehalo.locks`).

    The lock is held until :func:`release` or until the process ends (the kernel drops the lock of a
    dead process, so a dead worker's run is free again and no two workers take it over together).

    Returns:
        True if this process now holds the run; False if another worker (or this process, through
        an earlier claim) holds it.
    """
    if locks.held_here(run_dir):
        return False
    return locks.acquire(run_dir)[0]


def release(run_dir: str | Path) -> None:
    """Give up this process's claim on ``run_dir`` (nothing happens if it holds none)."""
    locks.release(run_dir)


def retire(items: list[Item], runs_root: str | Path, to: str | Path, echo: Callable[[str], None] = print) -> list[Path]:
    """Move finished runs under ``runs_root`` that no item of the final plan names to ``to``.

    A sweep that grew may choose another setting; moving the old runs aside keeps reports from
    mixing two settings under one name.  Nothing moves while an item waits (the plan is not final).

    Returns:
        The new locations of the moved runs.
    """
    if any(item.waiting for item in items):
        return []
    wanted = {item.run_dir for item in items}
    moved = []
    for summary in sorted(Path(runs_root).glob(f"*/{paths.summary(Path()).name}")):
        run = summary.parent
        if run not in wanted:
            Path(to).mkdir(parents=True, exist_ok=True)
            run.rename(Path(to) / run.name)
            moved.append(Path(to) / run.name)
            echo(f"moved {run.name} to {Path(to).name}/ (no longer in the plan)")
    return moved


def work(make_plan: Callable[[], list[Item]], *, after: Callable[[Item], Any] | None = None,
         train: Callable[..., Any] | None = None, echo: Callable[[str], None] = print) -> list[Item]:
    """Train the plan's unfinished runs, one at a time, in priority order, sharing it with other workers.

    The plan is rebuilt after each run (a finished sweep unlocks the runs that wait for it).  The
    first unfinished run that this worker can claim is trained; the worker stops when every run is
    finished or claimed by another live worker.

    Args:
        make_plan: builds the current plan.
        after: called with each item after its run (e.g. to rewrite the reports).
        train: ``train(config, run_dir, echo=...)``; default :func:`sparsehalo.training.train`.
        echo: where progress lines go.

    Returns:
        The items this worker trained.
    """
    if train is None:
        from ..training import train
    done = []
    while True:
        todo = [item for item in make_plan() if not item.waiting and not finished(item)]
        pick = next((item for item in todo if claim(item.run_dir)), None)
        if pick is None:
            return done
        echo(f"== {pick.group + ': ' if pick.group else ''}{pick.label} -> {pick.run_dir}")
        try:
            train(pick.config, pick.run_dir, echo=echo)
        finally:
            release(pick.run_dir)
        if not finished(pick):  # would be picked again forever
            raise SparsehaloError(f"training {pick.label!r} returned without writing {paths.summary(pick.run_dir)}")
        done.append(pick)
        if after is not None:
            after(pick)
