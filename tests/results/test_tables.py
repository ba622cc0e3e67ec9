"""The one accuracy-cell format, markdown tables, the README block, level texts."""

import statistics

import pytest

from sparsehalo.results import MISSING, cell, markdown_table, replace_block, values_cell
from sparsehalo.results.tables import level_text, safe_name


def test_cell_format():
    assert cell(97.414, 0.1234, 3) == "97.41 ± 0.12"
    assert cell(97.414, 0.1234, 3, show_n=True) == "97.41 ± 0.12 (n=3)"
    assert cell(97.415) == "97.42" or cell(97.415) == "97.41"  # plain float rounding, two decimals
    assert cell(97.0, 0.5, 1) == "97.00"  # one seed: no std, whatever is passed
    assert cell(97.0, None, 2) == "97.00 ± 0.00"
    assert cell(97.0, n=1, show_n=True) == "97.00 (n=1)"
    assert cell(None) == MISSING == "—"


def test_values_cell():
    values = [98.1, 98.25, 98.31]
    assert values_cell(values) == f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} (n=3)"
    assert values_cell(values, show_n=False) == cell(statistics.mean(values), statistics.stdev(values), 3)
    assert values_cell([96.5]) == "96.50 (n=1)"
    assert values_cell([]) == MISSING


def test_markdown_table():
    assert markdown_table(["a", "b"], [["1", "2"]], "lr") == ["| a | b |", "|---|---:|", "| 1 | 2 |"]
    with pytest.raises(ValueError):
        markdown_table(["a", "b"], [], "l")


def test_replace_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- s -->\nold\nlines\n<!-- e -->\nrest\n")
    assert replace_block(readme, "<!-- s -->", "<!-- e -->", ["new", ""])
    assert readme.read_text() == "intro\n<!-- s -->\nnew\n<!-- e -->\nrest\n"
    assert not replace_block(readme, "<!-- x -->", "<!-- e -->", ["y"])
    assert readme.read_text() == "intro\n<!-- s -->\nnew\n<!-- e -->\nrest\n"


def test_level_and_file_names():
    assert level_text(0.985) == "98.5%"
    assert level_text(0.0) == "0% (unpruned)"
    assert level_text(0.9999999) == "99.99999%"
    assert safe_name("fashion-mnist / lenet300") == "fashion-mnist_lenet300"
    assert safe_name("///") == "x"
