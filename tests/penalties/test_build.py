"""Building penalties by name: the registry, state dicts, optimizer groups, and xi = 0."""

import pytest
import torch
from torch import nn

from sparsehalo.errors import ConfigError
from sparsehalo.penalties import MCP, PENALTIES, SCAD, GroupHALO, GroupLasso, build

D = torch.float64


def toy(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).to(D)


NEW = {"mcp": MCP, "scad": SCAD, "group_lasso": GroupLasso, "group_halo": GroupHALO}


@pytest.mark.parametrize("name", sorted(NEW))
def test_registry_state_dict_and_param_groups(name, train):
    assert PENALTIES[name] is NEW[name]
    m = toy()
    p = build(name, m, xi=1e-2, biases=True)
    assert type(p) is NEW[name] and p.names == ("0.weight", "0.bias", "2.weight", "2.bias")
    train(m, p, steps=3)
    q = build(name, m, xi=1e-2, biases=True)
    q.load_state_dict(p.state_dict())
    assert torch.equal(p(), q())
    if name == "group_halo":
        assert sorted(p.state_dict()) == ["scales.0__weight", "scales.2__weight"]
        assert not torch.equal(p.scales["0__weight"], torch.ones(3, dtype=D))  # trained, then copied
        (g,) = p.param_groups(lr=0.1)
        assert g["weight_decay"] == 0.0 and g["lr"] == 0.1 and len(g["params"]) == 2
    else:
        assert p.state_dict() == {} and p.param_groups(lr=0.1) == []
    with pytest.raises(ConfigError):
        build(name, m, xii=1.0)


@pytest.mark.parametrize("name", sorted(NEW))
def test_xi_zero_is_identical_to_no_penalty(name, train):
    a, b = toy(), toy()
    train(a, build(name, a, xi=0.0, biases=True))
    train(b, None)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
