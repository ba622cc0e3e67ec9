"""One colour and marker per method family; HALO settings as shades of one hue; tick-label thinning."""

import colorsys
import random

import pytest

from sparsehalo.results.style import FAMILIES, Style, assign_styles, family_of, shades, thin_labels


def hls(colour):
    h = colour.lstrip("#")
    return colorsys.rgb_to_hls(*(int(h[i:i + 2], 16) / 255 for i in (0, 2, 4)))


def test_families_have_distinct_colours_and_markers():
    colours = [FAMILIES[f].colour for f in FAMILIES]
    markers = [FAMILIES[f].marker for f in FAMILIES]
    assert len(set(colours)) == len(colours)
    assert len(set(markers)) == len(markers)
    for name in ("HALO", "L1", "SWS", "MCP", "SCAD", "group", "magnitude", "GMP", "IMP", "SNIP", "random", "fine-tuning"):
        assert name in FAMILIES


@pytest.mark.parametrize("procedure, penalty, family", [
    ("oneshot", "halo", "HALO"), ("oneshot", "l1", "L1"), ("oneshot", "sws", "SWS"), ("oneshot", "mcp", "MCP"),
    ("oneshot", "scad", "SCAD"), ("oneshot", "group_lasso", "group"), ("oneshot", "group_halo", "group"),
    ("oneshot", "none", "magnitude"), ("gmp", "none", "GMP"), ("imp", "none", "IMP"), ("snip", "none", "SNIP"),
    ("random", "none", "random"), ("finetune", "none", "fine-tuning"), ("finetune", "halo", "fine-tuning"),
    (None, "halo", "HALO"), ("lottery", "none", "other: lottery/none"),
])
def test_family_of(procedure, penalty, family):
    assert family_of(procedure, penalty) == family


def test_halo_settings_are_shades_of_one_hue():
    colours = shades(FAMILIES["HALO"].colour, 5)
    assert len(set(colours)) == 5
    base_h, _, base_s = hls(FAMILIES["HALO"].colour)
    lightness = []
    for c in colours:
        h, light, s = hls(c)
        assert h == pytest.approx(base_h, abs=0.01) or abs(h - base_h) > 0.99  # hue wraps at red
        assert s == pytest.approx(base_s, abs=0.03)
        lightness.append(light)
    assert lightness == sorted(lightness) and lightness[-1] - lightness[0] > 0.3  # dark to light, clearly apart
    assert shades("#123456", 1) == ["#123456"]


def test_assign_styles_never_repeats_a_look():
    families = ["GMP", *["HALO"] * 5, "IMP", "L1", "MCP", "SNIP", "SWS", "magnitude", "fine-tuning", "random",
                "other: a/b", "other: c/d"]
    tuned = [f in ("GMP", "IMP", "SNIP", "random", "fine-tuning") for f in families]
    styles = assign_styles(families, tuned)
    assert len({(s.colour, s.marker) for s in styles}) == len(families)
    halo = [s for f, s in zip(families, styles) if f == "HALO"]
    assert {s.marker for s in halo} == {FAMILIES["HALO"].marker}  # one marker per family
    assert halo[0].colour != halo[1].colour
    assert styles[0] == Style(FAMILIES["GMP"].colour, FAMILIES["GMP"].marker, "--")
    assert styles[7] == Style(FAMILIES["L1"].colour, FAMILIES["L1"].marker, "-")  # a lone series: the base colour
    spare = styles[-2:]
    assert spare[0].colour != spare[1].colour and all(s.colour not in [FAMILIES[f].colour for f in FAMILIES] for s in spare)
    many = assign_styles([f"other: {i}/x" for i in range(30)])
    assert len({(s.colour, s.marker) for s in many}) == 30


def gaps(centres, widths, kept):
    kept = sorted(kept, key=lambda i: centres[i])
    return [(centres[j] - widths[j] / 2) - (centres[i] + widths[i] / 2) for i, j in zip(kept, kept[1:])]


def test_thin_labels_keeps_a_minimum_spacing():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 15)
        centres = [rng.uniform(0, 500) for _ in range(n)]
        widths = [rng.uniform(5, 40) for _ in range(n)]
        kept = thin_labels(centres, widths, gap=4.0)
        assert kept and len(set(kept)) == len(kept)
        assert all(g >= 4.0 for g in gaps(centres, widths, kept))
        assert max(kept, key=lambda i: centres[i]) == max(range(n), key=lambda i: centres[i])  # the extreme stays


def test_thin_labels_drops_only_what_collides():
    # Display order is by position, not by index: the input may come in any order (inverted axes).
    centres, widths = [400.0, 0.0, 100.0, 110.0, 300.0], [20.0] * 5
    assert thin_labels(centres, widths, gap=4.0) == [1, 2, 4, 0]  # 110 collides with 100
    assert thin_labels([0.0, 50.0, 100.0], [20.0] * 3, gap=4.0) == [0, 1, 2]
    assert thin_labels([0.0, 10.0], [20.0, 20.0], gap=4.0) == [1]  # the last one wins the collision
    assert thin_labels([], [], gap=4.0) == []
