"""sparsehalo: train sparse networks with learned shrinkage penalties (HALO), prune and measure them.

The three lines a user adds to their own loop::

    penalty = sparsehalo.HALO.for_model(model, xi=1e-4, psi=1e-4)
    opt = torch.optim.SGD([{"params": model.parameters()}, *penalty.param_groups(lr=0.1)], lr=0.1, momentum=0.9)
    loss = F.cross_entropy(model(x), y) + penalty()
"""

from .errors import SparsehaloError
from .penalties import HALO, L1, SWS, NoPenalty, Penalty

__version__ = "0.1.0"

__all__ = ["HALO", "L1", "SWS", "NoPenalty", "Penalty", "SparsehaloError", "__version__"]
