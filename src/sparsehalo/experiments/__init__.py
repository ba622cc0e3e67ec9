"""Experiments made of many runs: sweeps over overrides, choice by validation, shared resumable plans.

- :mod:`.sweep`: a grid of settings (``--set`` overrides), one trial per setting, the sweep table.
- :mod:`.choice`: the setting with the best validation accuracy, overall, per level, at one level.
- :mod:`.plan`: a plan of runs, claims so that several workers share it, resume by running again.
"""

from .choice import best, best_at, best_per_level, score, val_by_level
from .plan import (Item, claim, command, finished, listing, pending_commands, progress, release, retire, state, waiting,
                   with_origin, work)
from .sweep import Trial, grid, outcomes, overrides, setting_name, short_key, table, trials, write_table

__all__ = [
    "Item", "Trial", "best", "best_at", "best_per_level", "claim", "command", "finished", "grid", "listing", "outcomes",
    "overrides", "pending_commands", "progress", "release", "retire", "score", "setting_name", "short_key", "state",
    "table", "trials", "val_by_level", "waiting", "with_origin", "work", "write_table",
]
