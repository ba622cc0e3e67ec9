"""Text of the reports: ``summary.csv``, the markdown tables of ``report.md``, and the one cell format.

Every accuracy cell of every page (``report.md``, the campaign's pages, the project README's block)
is written by :func:`cell`: ``mean`` for one seed, ``mean ± std`` for several, both with two
decimals, and ``(n=k)`` appended where a table does not state the seed count once for all cells.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Iterable, Sequence

from ..io import atomic_write_text
from .aggregate import mean_std

#: What a table shows where there is no value.
MISSING = "—"

#: Columns of ``summary.csv``: the first seven are fixed, the rest follow in this order.
CSV_COLUMNS = (
    "model", "method", "sparsity", "seeds", "acc_mean", "acc_std", "epochs",
    "dataset", "name", "sparsity_measured", "fine_tuned", "compression", "speedup", "denominator",
    "acc_min", "acc_max", "seed_list", "flops_nonzero",
)


# -- cells -------------------------------------------------------------------------------------
def cell(mean: float | None, std: float | None = 0.0, n: int = 1, *, show_n: bool = False) -> str:
    """``"97.41"``, ``"97.41 ± 0.12"``, with ``" (n=3)"`` when ``show_n``; :data:`MISSING` for None.

    Args:
        mean: the mean accuracy (percent), or None when nothing was measured.
        std: its sample standard deviation, shown only when ``n > 1``.
        n: how many seeds the mean is over.
        show_n: append the seed count (for tables whose cells differ in ``n``).
    """
    if mean is None:
        return MISSING
    text = f"{mean:.2f}" if n == 1 else f"{mean:.2f} ± {std or 0.0:.2f}"
    return f"{text} (n={n})" if show_n else text


def values_cell(values: Sequence[float], *, show_n: bool = True) -> str:
    """:func:`cell` of the mean and sample std of ``values`` (:data:`MISSING` when there are none)."""
    if not values:
        return MISSING
    mean, std = mean_std(values)
    return cell(mean, std, len(values), show_n=show_n)


def level_text(sparsity: float) -> str:
    """``0.985`` -> ``"98.5%"``; the unpruned level is marked."""
    text = f"{round(100 * sparsity, 6):.12g}%"
    return f"{text} (unpruned)" if sparsity == 0 else text


def safe_name(text: str) -> str:
    """``text`` with every run of characters outside ``[A-Za-z0-9._-]`` replaced by ``_`` (file names)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str) -> list[str]:
    """Lines of a markdown table; ``align`` has one letter per column, ``l`` or ``r``."""
    if len(align) != len(header):
        raise ValueError(f"align {align!r} does not have one letter per column of {list(header)}")
    lines = ["| " + " | ".join(header) + " |", "|" + "".join("---:|" if a == "r" else "---|" for a in align)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def replace_block(path: str | Path, start: str, end: str, lines: Sequence[str]) -> bool:
    """Rewrite the text between the marker lines ``start`` and ``end`` of a file (markers kept).

    Returns:
        Whether the file has both markers (and was rewritten).
    """
    path = Path(path)
    text = path.read_text()
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    atomic_write_text(path, head + start + "\n" + "\n".join(lines) + rest[rest.index(end):])
    return True


# -- summary.csv -------------------------------------------------------------------------------
def summary_csv(rows: list[dict]) -> str:
    """``summary.csv`` of :func:`~sparsehalo.results.aggregate.aggregate` rows (``\\n`` line ends)."""
    def value(v):
        return "" if v is None else v

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([value(v) for v in (
            r["model"], r["method"], r["sparsity"], r["seeds"], r["acc_mean"], r["acc_std"], r["epochs"],
            r["dataset"], r["name"], r["sparsity_measured_mean"], r["fine_tuned"], r["compression_mean"],
            r["speedup_mean"], r["denominator"], r["acc_min"], r["acc_max"],
            " ".join(map(str, r["seed_list"])), r["flops_nonzero_mean"],
        )])
    return buf.getvalue()


# -- columns of one (dataset, model) table -----------------------------------------------------
Column = tuple[tuple, str]  # (key, header); key = (run name, fine_tuned or None)


def columns(rows: list[dict]) -> list[Column]:
    """Table columns of one (dataset, model): ``[(key, header)]`` with unique headers.

    A column is a run name, split by ``fine_tuned`` only when that name reports both; the header is
    the method's label, with the run name in brackets when several names share the label.
    """
    variants: dict[str, set] = {}
    labels: dict[str, set] = {}
    for r in rows:
        variants.setdefault(r["name"], set()).add(r["fine_tuned"])
        labels.setdefault(r["method"], set()).add(r["name"])
    cols: dict[tuple, str] = {}
    for r in rows:
        split = len(variants[r["name"]]) > 1
        key = (r["name"], r["fine_tuned"] if split else None)
        if key in cols:
            continue
        head = r["method"] if len(labels[r["method"]]) == 1 else f"{r['method']} [{r['name']}]"
        if split:
            head += " (fine-tuned)" if r["fine_tuned"] else " (no fine-tuning)"
        cols[key] = head
    return list(cols.items())


def column_key(row: dict, cols: list[Column]) -> tuple:
    """The key of the column ``row`` belongs to."""
    keys = {k for k, _ in cols}
    split = (row["name"], row["fine_tuned"])
    return split if split in keys else (row["name"], None)


def seeds_phrase(rows: list[dict]) -> tuple[str, bool]:
    """Sentence about seed counts, and whether cells must state their own ``n``."""
    counts = {r["seeds"] for r in rows}
    if len(counts) > 1:
        return "mean ± std over the seeds of each cell (n given in the cell; sample standard deviation)", True
    n = counts.pop()
    if n == 1:
        return "one seed per cell (no standard deviation)", False
    return f"mean ± std over {n} seeds (sample standard deviation)", False


def _per_column(rows: list[dict], cols: list[Column], field: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for key, head in cols:
        values = {r[field] for r in rows if column_key(r, cols) == key}
        out[head] = sorted(values, key=lambda v: (v is None, str(v) if not isinstance(v, (int, float)) else v))
    return out


def _epochs_line(rows: list[dict], cols: list[Column]) -> str:
    per = _per_column(rows, cols, "epochs")
    every = {e for values in per.values() for e in values}
    if len(every) == 1 and None not in every:
        return f"Training budget: all methods: {every.pop()} epochs in total, fine-tuning and IMP rounds included."
    parts = [
        f"{head}: {', '.join('not recorded' if e is None else str(e) for e in values)}"
        for head, values in per.items()
    ]
    return "Training budget (epochs in total, fine-tuning and IMP rounds included): " + "; ".join(parts) + "."


def _denominator_line(rows: list[dict], cols: list[Column]) -> str:
    per = _per_column(rows, cols, "denominator")
    every = {d for values in per.values() for d in values}
    if len(every) == 1 and None not in every:
        return f"Sparsity = exact zeros / {every.pop()}."
    parts = [f"{head}: {' / '.join('not recorded' if d is None else d for d in values)}" for head, values in per.items()]
    return "Sparsity = exact zeros / (differs per method) " + "; ".join(parts) + "."


def _measured_line(rows: list[dict]) -> str:
    gaps = [abs(r["sparsity_measured_mean"] - r["sparsity"]) for r in rows if r["sparsity_measured_mean"] is not None]
    if not gaps:
        return "Rows are the requested sparsity levels (measured sparsity not recorded)."
    worst = max(gaps)
    if worst < 5e-5:
        return "Rows are the requested sparsity levels; the measured sparsity matches them to within 0.01%."
    return f"Rows are the requested sparsity levels; the measured sparsity differs by up to {100 * worst:.2f}% (see summary.csv)."


def _fine_tune_line(rows: list[dict], cols: list[Column]) -> str | None:
    per = _per_column(rows, cols, "fine_tuned")
    tuned = [h for h, v in per.items() if v == [True]]
    plain = [h for h, v in per.items() if v == [False]]
    parts = []
    if tuned:
        parts.append(f"fine-tuned after pruning: {', '.join(tuned)}")
    if plain:
        parts.append(f"evaluated right after pruning, no fine-tuning: {', '.join(plain)}")
    if not parts:
        return None
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def section(dataset: str, model: str, rows: list[dict], figures: Sequence[tuple[str, str]] = ()) -> list[str]:
    """The ``report.md`` section of one (dataset, model): table, the terms it is on, runs, figures.

    Args:
        rows: the aggregated rows of this dataset and model.
        figures: ``(alt text, link)`` of the images shown under the section, in order.
    """
    cols = columns(rows)
    phrase, show_n = seeds_phrase(rows)
    cells = {(r["sparsity"], column_key(r, cols)): r for r in rows}
    body = []
    for sp in sorted({r["sparsity"] for r in rows}):
        at = [cells.get((sp, key)) for key, _ in cols]
        body.append([level_text(sp)] + [
            MISSING if r is None else cell(r["acc_mean"], r["acc_std"], r["seeds"], show_n=show_n) for r in at
        ])
    md = [f"## {dataset} / {model}", "", f"Test accuracy (%), {phrase}.", ""]
    md += markdown_table(["sparsity", *(head for _, head in cols)], body, "r" * (len(cols) + 1))
    md += ["", _denominator_line(rows, cols), _measured_line(rows), _epochs_line(rows, cols)]
    fine = _fine_tune_line(rows, cols)
    if fine:
        md.append(fine)
    runs: dict[tuple, set] = {}
    for r in rows:
        runs.setdefault((r["method"], r["name"]), set()).update(r["seed_list"])
    md += ["", "Runs: " + "; ".join(
        f"{method} (`{name}`, seeds {', '.join(map(str, sorted(seeds))) or 'not recorded'})"
        for (method, name), seeds in runs.items()
    ) + ".", ""]
    for alt, link in figures:
        md += [f"![{alt}]({link})", ""]
    return md
