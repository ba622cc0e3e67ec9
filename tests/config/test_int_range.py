"""An integer setting beyond 64 bits (which TOML cannot hold) is a one-line ConfigError, whatever the key's bounds."""

import pytest

from sparsehalo.config.files import load
from sparsehalo.errors import ConfigError

from support import ROOT


@pytest.mark.parametrize("value", [2**63, 2**1024, -(2**63) - 1])
def test_an_integer_beyond_64_bits_is_refused(value):
    with pytest.raises(ConfigError, match="too large for an integer"):
        load(ROOT / "configs" / "mnist_lenet300_halo.toml", [f"run.eval_pruned_every={value}"])


def test_a_large_64_bit_integer_is_still_read():
    cfg = load(ROOT / "configs" / "mnist_lenet300_halo.toml", [f"run.eval_pruned_every={2**63 - 1}"])
    assert cfg.run.eval_pruned_every == 2**63 - 1
