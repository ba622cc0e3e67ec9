"""Training: the run state built from a config, the one epoch loop with hooks, checkpoints, evaluation.

- :mod:`.state`: :class:`RunState` and :func:`build` (data, model, penalty, method, optimizer, schedule);
- :mod:`.loop`: :func:`train` and its hooks;
- :mod:`.checkpointing`: ``checkpoint.pt`` and :func:`load_run`;
- :mod:`.evaluate`: the one prune-a-copy-and-measure (:func:`pruned`) and the points built on it;
- :mod:`.summary`: the metrics row of an epoch and ``summary.json``.
"""

from .checkpointing import config_of, load_run
from .evaluate import pruned
from .loop import EpochLog, Hook, train
from .state import RunState, build, build_model, load_data, resolve_device

__all__ = ["EpochLog", "Hook", "RunState", "build", "build_model", "config_of", "load_data", "load_run", "pruned", "resolve_device", "train"]
