"""How series look in the figures: one colour and one marker per method family, and tick thinning.

A family is what a reader compares (HALO, L1, GMP, ...), found from a run's ``method`` (the
procedure: ``oneshot``, ``gmp``, ...) and ``penalty``.  Several series of one family (HALO with
different xi / psi, a method with and without fine-tuning) are shades of the family's colour: the
same hue and saturation at different lightness.  Fine-tuned series are dashed.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Sequence

from ..registry import Registry


@dataclass(frozen=True)
class Family:
    """A method family: its colour, marker, and the runs that belong to it.

    Args:
        colour: the base colour (hex); shades keep its hue.
        marker: a matplotlib marker.
        penalties: penalties of one-shot runs (``method = "oneshot"``) in the family.
        procedures: run methods (``gmp``, ``imp``, ...) in the family, whatever their penalty.
    """

    colour: str
    marker: str
    penalties: tuple[str, ...] = ()
    procedures: tuple[str, ...] = ()


@dataclass(frozen=True)
class Style:
    """Colour, marker and line style of one series."""

    colour: str
    marker: str
    linestyle: str = "-"


FAMILIES: Registry[Family] = Registry("plot family")
for _name, _family in {
    "HALO": Family("#d62728", "o", penalties=("halo",)),
    "L1": Family("#1f77b4", "s", penalties=("l1",)),
    "SWS": Family("#9467bd", "D", penalties=("sws",)),
    "MCP": Family("#8c564b", "v", penalties=("mcp",)),
    "SCAD": Family("#e377c2", "^", penalties=("scad",)),
    "group": Family("#6b6ecf", "P", penalties=("group_lasso", "group_halo")),
    "magnitude": Family("#000000", "X", penalties=("none",)),
    "fine-tuning": Family("#7f7f7f", "d", procedures=("finetune",)),
    "GMP": Family("#2ca02c", "<", procedures=("gmp",)),
    "IMP": Family("#ff7f0e", ">", procedures=("imp",)),
    "SNIP": Family("#17becf", "h", procedures=("snip",)),
    "random": Family("#bcbd22", "*", procedures=("random",)),
}.items():
    FAMILIES.add(_name, _family)

# Families outside the table (a new method or penalty) take these, in order of first appearance.
_SPARE_COLOURS = ("#393b79", "#637939", "#843c39", "#7b4173", "#3182bd", "#31a354")
_SPARE_MARKERS = ("p", "H", "8", "1", "2", "3")
# Lightness of the darkest and lightest shade when a family has several series.
_SHADES = (0.22, 0.62)


def family_of(procedure: str | None, penalty: str | None) -> str:
    """The family of a run with ``method = procedure`` and ``penalty``.

    Returns:
        A name registered in :data:`FAMILIES`, else ``"other: <procedure>/<penalty>"``.
    """
    for name, fam in FAMILIES.items():
        if procedure in fam.procedures:
            return name
    if procedure in (None, "oneshot"):
        for name, fam in FAMILIES.items():
            if penalty in fam.penalties:
                return name
    return f"other: {procedure}/{penalty}"


def _rgb(colour: str) -> tuple[float, float, float]:
    h = colour.lstrip("#")
    return tuple(int(h[i:i + 2], 16) / 255 for i in (0, 2, 4))


def _hex(rgb: Sequence[float]) -> str:
    return "#" + "".join(f"{round(255 * min(max(c, 0.0), 1.0)):02x}" for c in rgb)


def shades(colour: str, k: int) -> list[str]:
    """``k`` colours of the hue and saturation of ``colour`` (``#rrggbb``; itself when ``k == 1``),
    dark to light."""
    if k == 1:
        return [colour]
    h, _, s = colorsys.rgb_to_hls(*_rgb(colour))
    lo, hi = _SHADES
    return [_hex(colorsys.hls_to_rgb(h, lo + (hi - lo) * i / (k - 1), s)) for i in range(k)]


def assign_styles(families: Sequence[str], fine_tuned: Sequence[bool | None] = ()) -> list[Style]:
    """Styles of series given their families (in legend order).

    Args:
        families: the family of each series (from :func:`family_of`).
        fine_tuned: per series, whether it was fine-tuned (dashed); missing entries are solid.

    Returns:
        One :class:`Style` per series; no two share colour and marker.
    """
    base: dict[str, tuple[str, str]] = {}
    for fam in families:
        if fam in base:
            continue
        if fam in FAMILIES:
            base[fam] = (FAMILIES[fam].colour, FAMILIES[fam].marker)
        else:
            i = sum(f not in FAMILIES for f in base)
            base[fam] = (_SPARE_COLOURS[i % len(_SPARE_COLOURS)],
                         _SPARE_MARKERS[(i // len(_SPARE_COLOURS)) % len(_SPARE_MARKERS)])
    count = {fam: list(families).count(fam) for fam in base}
    palettes = {fam: shades(base[fam][0], count[fam]) for fam in base}
    used = {fam: 0 for fam in base}
    styles = []
    for i, fam in enumerate(families):
        colour = palettes[fam][used[fam]]
        used[fam] += 1
        dashed = i < len(fine_tuned) and bool(fine_tuned[i])
        styles.append(Style(colour, base[fam][1], "--" if dashed else "-"))
    return styles


def thin_labels(centres: Sequence[float], widths: Sequence[float], gap: float) -> list[int]:
    """Which tick labels to show so that no two come closer than ``gap`` (display units).

    Labels are taken in display order; one is kept when its left edge lies at least ``gap`` right
    of the right edge of the last kept label.  The last label is always kept (the most extreme
    level), dropping kept ones that collide with it.

    Args:
        centres: horizontal centre of each label.
        widths: width of each label.
        gap: the smallest free space between two shown labels.

    Returns:
        Indices into ``centres`` of the labels to show, in display order.
    """
    order = sorted(range(len(centres)), key=lambda i: centres[i])

    def apart(i: int, j: int) -> bool:  # i left of j
        return (centres[j] - widths[j] / 2) - (centres[i] + widths[i] / 2) >= gap

    kept: list[int] = []
    for i in order:
        if not kept or apart(kept[-1], i):
            kept.append(i)
    if order and kept[-1] != order[-1]:
        last = order[-1]
        while kept and not apart(kept[-1], last):
            kept.pop()
        kept.append(last)
    return kept
