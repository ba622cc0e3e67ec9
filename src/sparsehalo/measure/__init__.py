"""Measurements: sparsity (the one non-zero counter), cost (MACs), accuracy, energy, external checkpoints."""

from .accuracy import count_parameters, evaluate
from .cost import FLOPS_UNIT, LayerCost, layer_costs, measure
from .sparsity import LayerSparsity, SparsityTable, count_nonzero, natural_sparsity, sparsity_table

__all__ = [
    "FLOPS_UNIT", "LayerCost", "LayerSparsity", "SparsityTable", "count_nonzero", "count_parameters",
    "evaluate", "layer_costs", "measure", "natural_sparsity", "sparsity_table",
]
