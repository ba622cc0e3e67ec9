"""Results of finished runs: find and read them, average seeds, write tables and figures.

- :mod:`.runs`: find run directories and read their summaries.
- :mod:`.aggregate`: mean and sample std over the seeds of each method and sparsity.
- :mod:`.tables`: ``summary.csv``, the markdown of ``report.md``, the one accuracy-cell format.
- :mod:`.style`: one colour and marker per method family; tick-label thinning.
- :mod:`.plots`: accuracy against sparsity; HALO's learned scales.
- :mod:`.report`: :func:`write_report` and :func:`make_report` (``sparsehalo report``).
"""

from .aggregate import aggregate, mean_std, status
from .plots import plot_accuracy, plot_scales
from .report import make_report, write_report
from .runs import accuracy_by_seed, find_runs, has_runs, load_summaries, read_summary, run_name, summaries_named
from .tables import CSV_COLUMNS, MISSING, cell, markdown_table, replace_block, values_cell

__all__ = [
    "CSV_COLUMNS", "MISSING", "accuracy_by_seed", "aggregate", "cell", "find_runs", "has_runs", "load_summaries",
    "make_report", "markdown_table", "mean_std", "plot_accuracy", "plot_scales", "read_summary", "replace_block",
    "run_name", "status", "summaries_named", "values_cell", "write_report",
]
