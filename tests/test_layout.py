"""The package's shape: no import cycle, no oversized module, a README layout that matches the tree."""

import ast
import re
from pathlib import Path

from support import ROOT

PKG = ROOT / "src" / "sparsehalo"
MAX_LINES = 420  # "no module much over 400 lines"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Package modules ``name`` imports anywhere in its file: top level, functions, TYPE_CHECKING."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from . import x` / `from .pkg import mod` name modules; `from .mod import f` names mod.
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import sparsehalo.a.b` counts as an import of sparsehalo.a.b
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_import_resolution_sees_function_level_and_type_checking_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import X\n"
        "def f():\n    from ..c.d import y\n    from . import e\n"
    )
    known = {"pkg.sub.m", "pkg.sub.b", "pkg.c.d", "pkg.sub.e", "pkg.sub", "pkg"}
    assert imports_of("pkg.sub.m", src, known) == {"pkg.sub.b", "pkg.c.d", "pkg.sub.e"}


def test_package_import_graph_has_no_cycle():
    g = graph()
    assert len(g) > 40 and sum(len(v) for v in g.values()) > 80  # the graph is real, not empty
    cycle = find_cycle(g)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_is_much_over_400_lines():
    long = {name: n for name, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_readme_layout_matches_the_tree():
    """Every module and subpackage the README's layout section names exists, and every one that exists is named."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- layout -->\n```text\n(.*?)```", text, re.S)
    assert block, "README.md needs a ```text block after <!-- layout -->"
    # Entries of src/sparsehalo/ are indented by exactly two spaces; top-level folders are not indented.
    named = set(re.findall(r"^  ([a-z_]+(?:\.py|/))", block.group(1), re.M))
    actual = {p.name + "/" for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    actual |= {p.name for p in PKG.glob("*.py") if p.name != "__init__.py"}
    assert named == actual, f"README names {sorted(named - actual)} that do not exist; misses {sorted(actual - named)}"
