"""Typed experiment configuration: dataclasses, TOML files, ``--set`` overrides, canonical hash.

A config is the single source of truth of an experiment.  Every section but ``run`` (device, data
location, progress display: how to run, not what to run) and the experiment ``name`` enters the
canonical hash, which names the run directory: ``<out>/<name>-<hash>``.  Re-running the same config
finds the same directory and resumes or skips it.

Every field carries its help beside it (``metadata["help"]``); :func:`describe` lists every key with
its type, default and help, for ``--help`` and the documentation.  Names (of models, penalties,
methods, schedules, scopes) are checked by their registries, not here.

The ``penalty`` section is flat in files (``[penalty] name = "halo"  xi = 1e-4  psi = 1e-4``): besides
the selection and the scales' optimizer settings it holds the chosen penalty's own settings, which
are checked against that penalty's ``Options`` (:mod:`sparsehalo.penalties`), so ``psi`` for ``l1``
is an error naming ``l1`` and what it takes.

Modules: :mod:`.values` (typed reading of a table: :func:`from_section`), :mod:`.penalty` (the
flat ``penalty`` section), :mod:`.sections` (the other sections, :class:`Config` and its hash),
:mod:`.files` (TOML, ``extends``, ``--set``, bundled configs by name), :mod:`.describe` (the reference of every key).
"""

from .describe import describe
from .files import apply_overrides, bundled_configs, bundled_dir, from_dict, load, parse_override, read_toml, resolve_config
from .penalty import FLAT_PENALTY_KEYS, PenaltyConfig, penalty_settings
from .sections import (
    Config,
    DataConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    PruneConfig,
    RunConfig,
    ScheduleConfig,
    TrainConfig,
)
from .values import check_value, from_section

__all__ = [
    "Config", "ModelConfig", "DataConfig", "PenaltyConfig", "MethodConfig", "OptimConfig", "ScheduleConfig",
    "TrainConfig", "PruneConfig", "RunConfig", "FLAT_PENALTY_KEYS", "penalty_settings", "from_section",
    "check_value", "from_dict", "load", "read_toml", "parse_override", "apply_overrides", "describe",
    "bundled_configs", "bundled_dir", "resolve_config",
]
