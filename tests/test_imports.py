"""Import paths in configs: ``package.module:factory`` and ``file.py:factory``, offered keywords, errors."""

import sys
import textwrap

import pytest

from sparsehalo import imports
from sparsehalo.errors import ConfigError


@pytest.fixture
def user_pkg(tmp_path, monkeypatch):
    """A package ``userpkg`` in a fresh current directory (not on sys.path otherwise)."""
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "factories.py").write_text(textwrap.dedent("""
        class Maker:
            @staticmethod
            def build(width, depth=1):
                return ("built", width, depth)

        def with_classes(width, num_classes=10):
            return ("classes", width, num_classes)

        def takes_all(**kw):
            return dict(kw)

        def fails(width):
            raise RuntimeError("the user's own bug")
    """))
    (pkg / "broken.py").write_text("import not_a_real_dependency_xyz\n")
    (pkg / "raises.py").write_text("raise ValueError('bad module state')\n")
    (tmp_path / "loose.py").write_text("def make(n):\n    return n * 2\n")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("userpkg")]:
        del sys.modules[name]


def test_is_import_path():
    assert imports.is_import_path("pkg.mod:f") and not imports.is_import_path("lenet300")


def test_resolves_a_dotted_attribute_from_the_current_directory(user_pkg):
    before = list(sys.path)
    assert imports.call("userpkg.factories:Maker.build", "model.name", {"width": 3}) == ("built", 3, 1)
    assert sys.path == before  # the current directory was only added for the import


def test_resolves_a_file_path(user_pkg):
    assert imports.call("loose.py:make", "model.name", {"n": 21}) == 42
    assert imports.call(str(user_pkg / "loose.py") + ":make", "model.name", {"n": 1}) == 2


def test_offered_keywords_only_where_the_signature_takes_them(user_pkg):
    offered = {"num_classes": 7}
    assert imports.call("userpkg.factories:Maker.build", "m", {"width": 1}, offered) == ("built", 1, 1)
    assert imports.call("userpkg.factories:with_classes", "m", {"width": 1}, offered) == ("classes", 1, 7)
    # the config's own value wins over the offered one
    assert imports.call("userpkg.factories:with_classes", "m", {"width": 1, "num_classes": 3}, offered) == ("classes", 1, 3)
    assert imports.call("userpkg.factories:takes_all", "m", {}, offered) == {"num_classes": 7}


@pytest.mark.parametrize("path,message", [
    ("nomodule_xyz:f", "no module named 'nomodule_xyz'"),
    ("userpkg.factories:missing", "has no attribute 'missing'"),
    ("userpkg.factories:", "an import path is"),
    (":f", "an import path is"),
    ("userpkg.broken:f", "importing 'userpkg.broken' failed"),
    ("userpkg.raises:f", "raised ValueError: bad module state"),
    ("nofile.py:f", "file 'nofile.py' not found"),
])
def test_errors_are_one_line_config_errors(user_pkg, path, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as info:
        imports.resolve(path, "model.name")
    assert "\n" not in str(info.value)


def test_wrong_keywords_are_config_errors_but_the_factorys_own_errors_propagate(user_pkg):
    with pytest.raises(ConfigError, match="unexpected keyword argument 'colour'"):
        imports.call("userpkg.factories:Maker.build", "model.name", {"width": 1, "colour": 2})
    with pytest.raises(ConfigError, match="missing a required argument: 'width'"):
        imports.call("userpkg.factories:Maker.build", "model.name", {})
    with pytest.raises(ConfigError, match="is not callable"):
        imports.call("userpkg:__name__", "model.name", {})
    with pytest.raises(RuntimeError, match="the user's own bug"):
        imports.call("userpkg.factories:fails", "model.name", {"width": 1})
