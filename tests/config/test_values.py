"""Reading a table into a dataclass: the public reader used by every section and every Options."""

import dataclasses

import pytest

from sparsehalo import config
from sparsehalo.errors import ConfigError


def test_from_section_is_the_public_reader():
    @dataclasses.dataclass
    class Opts:
        k: int = 1
        f: float = 0.5

    assert config.from_section(Opts, {"k": 3, "f": 2}, "method.options.") == Opts(3, 2.0)
    with pytest.raises(ConfigError, match="unknown config key 'method.options.q'"):
        config.from_section(Opts, {"q": 1}, "method.options.")
    assert not hasattr(config, "load_json")  # dead: run directories are read by the training code
