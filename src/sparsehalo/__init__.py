"""sparsehalo: train sparse networks with learned shrinkage penalties (HALO), prune and measure them.

The three lines a user adds to their own loop::

    penalty = sparsehalo.HALO.for_model(model, xi=1e-4, psi=1e-4)
    opt = torch.optim.SGD([{"params": model.parameters()}, *penalty.param_groups(lr=0.1)], lr=0.1, momentum=0.9)
    loss = F.cross_entropy(model(x), y) + penalty()

and afterwards::

    mask = sparsehalo.prune(model, 0.98)          # one global magnitude threshold, exact target
    print(sparsehalo.sparsity_table(model))       # per layer total / non-zero / sparsity, with denominator

On the CPU, ``sparsehalo.keep_freed_memory()`` (called once) stops glibc from handing per-step
gradient memory back to the system; ``sparsehalo train`` does this itself.
"""

from . import models, sparse
from .allocator import keep_freed_memory
from .errors import SparsehaloError
from .export import export_dense, export_sparse, load_sparse
from .measure import evaluate, sparsity_table
from .penalties import HALO, L1, MCP, SCAD, SWS, GroupHALO, GroupLasso, NoPenalty, Penalty
from .pruning import ChannelMask, Mask, prune, prune_channels, slim
from .selection import prunable_parameters



def _version() -> str:
    """The installed distribution's version; in a source tree that was never installed, pyproject.toml's."""
    import importlib.metadata

    try:
        return importlib.metadata.version("sparsehalo")
    except importlib.metadata.PackageNotFoundError:
        pass
    import tomllib
    from pathlib import Path

    try:  # src/sparsehalo/__init__.py -> pyproject.toml at the root of the tree
        project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
        return str(project["version"]) if project.get("name") == "sparsehalo" else "0+unknown"
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        return "0+unknown"


__version__ = _version()

__all__ = [
    "HALO",
    "L1",
    "SWS",
    "MCP",
    "SCAD",
    "GroupLasso",
    "GroupHALO",
    "NoPenalty",
    "Penalty",
    "Mask",
    "prune",
    "ChannelMask",
    "prune_channels",
    "slim",
    "prunable_parameters",
    "sparsity_table",
    "evaluate",
    "models",
    "sparse",
    "SparsehaloError",
    "export_sparse",
    "export_dense",
    "load_sparse",
    "keep_freed_memory",
    "__version__",
]
