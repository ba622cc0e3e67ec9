"""Structured pruning: coupling analysis, exact targets, ChannelMask, slim (outputs equal the masked model's)."""

import copy
import io

import pytest
import torch
from torch import nn

from sparsehalo import models
from sparsehalo.errors import CheckpointError, ConfigError, SparsehaloError
from sparsehalo.measure.cost import layer_costs
from sparsehalo.pruning import ChannelMask, coupled_groups, prune_channels, slim, unit_norms

MNIST, CIFAR = (1, 28, 28), (3, 32, 32)
FAMILIES = [("lenet300", {}, MNIST), ("lenet5", {}, MNIST), ("lenet5_caffe", {}, MNIST), ("resnet", {"depth": 20}, CIFAR),
            ("vgg16_bn", {}, CIFAR)]
SMALL = FAMILIES[:4]


def build(name, kw, seed=0):
    """A family's model with random weights and random BatchNorm statistics (non-zero shifts), in eval mode."""
    torch.manual_seed(seed)
    m = models.build(name, **kw)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                n = mod.num_features
                mod.weight.copy_(torch.rand(n, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(n, generator=g))
                mod.running_mean.copy_(torch.randn(n, generator=g))
                mod.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return m.eval()


def dense_macs(model, shape):
    return sum(c.macs_dense for c in layer_costs(model, shape))


def assert_same_outputs(a, b, shape, n=5):
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.shape == yb.shape
    torch.testing.assert_close(yb, ya, atol=1e-5 * max(1.0, ya.abs().max().item()), rtol=1e-5)


# --- coupling ------------------------------------------------------------------------------------------


def test_coupling_of_lenet5_caffe_and_resnet20():
    g = {gr.producers: gr for gr in coupled_groups(models.build("lenet5_caffe"), MNIST)}
    assert g[("conv2",)].consumers == (("fc1", 16),)  # conv -> max-pool -> flatten -> Linear: 4x4 features per channel
    assert g[("fc1",)].consumers == (("fc2", 1),) and g[("fc2",)].blocked  # the output layer
    groups = coupled_groups(models.build("resnet", depth=20), CIFAR)
    stage1 = next(gr for gr in groups if "conv1" in gr.producers)
    # the residual chain of stage 1: the stem and every block's second conv, with their BatchNorms
    assert stage1.producers == ("conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2")
    assert stage1.followers == ("bn1", "layer1.0.bn2", "layer1.1.bn2", "layer1.2.bn2")
    assert ("layer2.0.downsample.0", 1) in stage1.consumers and stage1.prunable
    stage3 = next(gr for gr in groups if "layer3.0.downsample.0" in gr.producers)
    assert ("fc", 1) in stage3.consumers and stage3.size == 64
    assert [gr.producers for gr in groups if gr.blocked] == [("fc",)]
    assert len(groups) == 1 + 3 * 4  # three stage chains, nine inner block groups, fc


def test_unknown_operations_block_only_their_groups():
    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 4, 3), nn.Conv2d(1, 5, 3)
            self.c, self.d = nn.Conv2d(9, 6, 3), nn.Conv2d(6, 7, 1)
            self.fc = nn.Linear(7, 3)

        def forward(self, x):
            y = torch.cat([self.a(x), self.b(x)], 1)  # concatenation: not followed, a and b are kept whole
            z = torch.relu(self.d(torch.relu(self.c(y))))
            return self.fc(z.mean((2, 3)))  # a mean over positions: d is not followed either

    m = Cat().eval()
    blocked = {gr.producers: gr.blocked for gr in coupled_groups(m, (1, 12, 12))}
    assert blocked[("a",)] and blocked[("b",)] and blocked[("d",)] and blocked[("fc",)]
    assert blocked[("c",)] is None
    masked = copy.deepcopy(m)
    mask = prune_channels(masked, (1, 12, 12), channels=0.5)
    assert list(mask) == ["c"] and mask.units_removed == 3
    small = slim(m, mask)
    assert small.c.out_channels == 3 and small.d.in_channels == 3
    assert_same_outputs(masked, small, (1, 12, 12))


def test_untraceable_model_is_one_line():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else -self.fc(x)

    with pytest.raises(SparsehaloError, match="torch.fx can trace"):
        prune_channels(Branchy(), (4,), channels=0.5)


# --- targets -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,kw,shape", SMALL)
@pytest.mark.parametrize("share", [0.0, 0.3, 0.77])
def test_channel_target_removes_an_exact_number(name, kw, shape, share):
    m = build(name, kw)
    groups = [g for g in coupled_groups(m, shape) if g.prunable]
    mask = prune_channels(copy.deepcopy(m), shape, channels=share)
    assert mask.units_removed == round(share * sum(g.size for g in groups))
    layer = prune_channels(copy.deepcopy(m), shape, channels=share, scope="layer")
    assert [s["units"] - s["kept"] for s in layer.layer_stats()] == [min(round(share * g.size), g.size - 1) for g in groups]
    # the lowest-norm units of each group go first (layer scope)
    for g in groups:
        norms, keep = unit_norms(m, g), layer[g.producers[0]]
        if (~keep).any():
            assert norms[~keep].max() <= norms[keep].min()


def _last_removed(model, mask, groups, scope):
    """(producer, unit) the scope's order removed last."""
    best = None
    for i, g in enumerate(groups):
        n, keep = unit_norms(model, g), mask[g.producers[0]]
        removed = (~keep).nonzero().flatten()
        if not len(removed):
            continue
        if scope == "global":
            score = n / n.pow(2).mean().sqrt()
            u = max(removed.tolist(), key=lambda j: (score[j].item(), j))
            key = (score[u].item(), i, u)
        else:
            u = max(removed.tolist(), key=lambda j: (n[j].item(), j))
            key = (len(removed) / g.size, i, 0)
        if best is None or key > best[0]:
            best = (key, g.producers, u)
    return best[1], best[2]


@pytest.mark.parametrize("name,kw,shape", SMALL)
@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("share", [0.25, 0.5, 0.8])
def test_macs_target_is_reached_and_minimal(name, kw, shape, scope, share):
    m = build(name, kw)
    before = dense_macs(m, shape)
    mask = prune_channels(copy.deepcopy(m), shape, macs=share, scope=scope)
    after = dense_macs(slim(m, mask), shape)
    assert (mask.macs_before, mask.macs_after) == (before, after)  # the analytic count is the counter's
    assert before - after >= share * before
    groups = [g for g in coupled_groups(m, shape) if g.prunable]
    producers, unit = _last_removed(m, mask, groups, scope)
    one_fewer = dict(mask)
    for p in producers:
        one_fewer[p] = mask[p].clone()
        one_fewer[p][unit] = True
    fewer = ChannelMask(one_fewer, shape, mask.groups)
    assert before - dense_macs(slim(m, fewer), shape) < share * before


def test_each_group_keeps_a_unit_and_impossible_targets_are_refused():
    m = build("lenet5", {})
    mask = prune_channels(copy.deepcopy(m), MNIST, channels=0.99, scope="layer")
    assert all(s["kept"] == 1 for s in mask.layer_stats())
    with pytest.raises(SparsehaloError, match="keeps one"):
        prune_channels(copy.deepcopy(m), MNIST, channels=0.99)
    with pytest.raises(SparsehaloError, match="cannot remove 99.9% of the MACs"):
        prune_channels(copy.deepcopy(m), MNIST, macs=0.999)


@pytest.mark.parametrize("kwargs,match", [({}, "exactly one"), ({"channels": 0.1, "macs": 0.1}, "exactly one"),
                                          ({"channels": 1.0}, r"\[0, 1\)"), ({"macs": -0.1}, r"\[0, 1\)"),
                                          ({"channels": True}, r"\[0, 1\)")])
def test_bad_targets(kwargs, match):
    with pytest.raises(SparsehaloError, match=match):
        prune_channels(models.build("lenet300"), MNIST, **kwargs)


def test_unknown_scope():
    with pytest.raises(ConfigError, match="unknown pruning scope"):
        prune_channels(models.build("lenet300"), MNIST, channels=0.1, scope="block")


# --- slim ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,kw,shape", FAMILIES)
def test_slim_outputs_equal_the_masked_models(name, kw, shape):
    m = build(name, kw)
    targets = [{"macs": 0.5}] if name == "vgg16_bn" else [{"channels": 0.3}, {"macs": 0.5, "scope": "layer"}]
    for target in targets:
        masked = copy.deepcopy(m)
        mask = prune_channels(masked, shape, **target)
        small = slim(m, mask)  # from the unmasked weights: the same network
        assert_same_outputs(masked, small, shape)
        assert_same_outputs(masked, slim(masked, mask), shape)
        assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in m.parameters())
        for g in mask.groups:  # new shapes: the kept units
            out = small.get_submodule(g[0])
            assert (out.out_channels if hasattr(out, "out_channels") else out.out_features) == int(mask[g[0]].sum())
        # the output layer is never touched
        head = [n for n, mod in m.named_modules() if isinstance(mod, nn.Linear)][-1]
        assert head not in mask and small.get_submodule(head).out_features == 10


def test_batchnorm_shift_is_zeroed_with_the_channel():
    """A zeroed conv channel still outputs its BatchNorm's shift; the masked model zeroes the shift too."""
    m = build("resnet", {"depth": 8})
    masked = copy.deepcopy(m)
    mask = prune_channels(masked, CIFAR, channels=0.4)
    drop = ~mask["layer1.0.conv1"]
    assert drop.any() and not masked.layer1[0].bn1.bias[drop].any() and not masked.layer1[0].bn1.weight[drop].any()
    conv_only = copy.deepcopy(m)
    with torch.no_grad():
        for g in mask.groups:
            for p in g:
                conv_only.get_submodule(p).weight[~mask[p]] = 0
    x = torch.randn(2, *CIFAR)
    with torch.no_grad():
        assert (conv_only(x) - slim(m, mask)(x)).abs().max() > 1e-3  # zeroing the conv alone would not do
    assert_same_outputs(masked, slim(m, mask), CIFAR)


def test_residual_chains_stay_aligned():
    m = build("resnet", {"depth": 20})
    mask = prune_channels(copy.deepcopy(m), CIFAR, macs=0.4)
    small = slim(m, mask)
    for stage, first in (("layer1", "conv1"), ("layer2", "layer2.0.downsample.0"), ("layer3", "layer3.0.downsample.0")):
        chain = [first] + [f"{stage}.{i}.conv2" for i in range(3)]
        assert all(torch.equal(mask[c], mask[first]) for c in chain)
        width = int(mask[first].sum())
        assert all(small.get_submodule(c).out_channels == width for c in chain)
        assert all(small.get_submodule(f"{stage}.{i}.bn2").num_features == width for i in range(3))
    assert small.fc.in_features == int(mask["layer3.0.downsample.0"].sum())


def test_idempotence():
    m = build("resnet", {"depth": 8})
    masked = copy.deepcopy(m)
    mask = prune_channels(masked, CIFAR, channels=0.3)
    again = copy.deepcopy(masked)
    mask.apply(again)  # applying twice changes nothing
    assert all(torch.equal(a, b) for a, b in zip(masked.state_dict().values(), again.state_dict().values()))
    for scope in ("global", "layer"):
        first = copy.deepcopy(m)
        mask1 = prune_channels(first, CIFAR, channels=0.3, scope=scope)
        assert prune_channels(copy.deepcopy(first), CIFAR, channels=0.3, scope=scope) == mask1
    small = slim(m, mask)
    groups = [g for g in coupled_groups(small, CIFAR) if g.prunable]
    keep_all = ChannelMask({p: torch.ones(g.size, dtype=torch.bool) for g in groups for p in g.producers}, CIFAR,
                           [g.producers for g in groups])
    twice = slim(small, keep_all)
    assert {k: v.shape for k, v in twice.state_dict().items()} == {k: v.shape for k, v in small.state_dict().items()}
    assert all(torch.equal(twice.state_dict()[k], v) for k, v in small.state_dict().items())


def test_mask_checks_and_persistence():
    m = build("resnet", {"depth": 8})
    mask = prune_channels(copy.deepcopy(m), CIFAR, channels=0.3, apply=False)
    buf = io.BytesIO()
    torch.save(mask.state_dict(), buf)
    buf.seek(0)
    assert ChannelMask.from_state_dict(torch.load(buf, weights_only=True)) == mask
    split = {n: t.clone() for n, t in mask.items()}
    split["layer1.0.conv2"][0] = not split["layer1.0.conv2"][0]
    with pytest.raises(SparsehaloError, match="same channel mask"):
        ChannelMask(split, CIFAR, mask.groups)
    with pytest.raises(CheckpointError, match="coupled and must be masked together"):
        ChannelMask({"conv1": mask["conv1"]}, CIFAR).check(m)
    with pytest.raises(CheckpointError, match="cannot be pruned"):
        ChannelMask({"fc": torch.ones(10, dtype=torch.bool)}, CIFAR).check(m)
    with pytest.raises(CheckpointError, match="has 3 units"):
        ChannelMask({"layer1.0.conv1": torch.ones(3, dtype=torch.bool)}, CIFAR).check(m)
    with pytest.raises(CheckpointError, match="no prunable layer"):
        ChannelMask({"nope": torch.ones(3, dtype=torch.bool)}, CIFAR).check(m)
    with pytest.raises(CheckpointError, match="every unit"):
        ChannelMask({"layer1.0.conv1": torch.zeros(16, dtype=torch.bool)}, CIFAR).check(m)
    with pytest.raises(CheckpointError, match="not a channel mask"):
        ChannelMask.from_state_dict({"masks": {}})


# --- stages: what sets a unit's value last ---------------------------------------------------------


class Staged(nn.Module):
    """a -> its own BatchNorm, plus b (no BatchNorm), summed, then a BatchNorm of the sum; c -> a non-affine BatchNorm."""

    def __init__(self):
        super().__init__()
        self.a, self.bna = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.b = nn.Conv2d(3, 4, 3, padding=1)
        self.bns = nn.BatchNorm2d(4)
        self.c, self.bnc = nn.Conv2d(4, 5, 3, padding=1), nn.BatchNorm2d(5, affine=False)
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        y = torch.relu(self.bns(self.bna(self.a(x)) + self.b(x)))
        z = torch.relu(self.bnc(self.c(y)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(z, 1), 1))


def _rows(t, n):
    return t.detach().double().reshape(n, -1).pow(2).sum(1)


def test_stages_and_unit_norms_follow_the_batchnorms():
    torch.manual_seed(0)
    m = Staged().eval()
    with torch.no_grad():
        for bn in (m.bna, m.bns):
            bn.weight.uniform_(0.5, 2)
            bn.bias.normal_()
    groups = {g.producers: g for g in coupled_groups(m, (3, 8, 8))}
    ab, c = groups[("a", "b")], groups[("c",)]
    assert ab.followers == ("bna", "bns") and ab.stages == ("bna", "b", "bns")  # a by its BatchNorm; b itself; the sum's
    assert c.stages == ("c",)  # a non-affine BatchNorm has no scale or shift: the conv sets the channel
    expected = (_rows(m.bna.weight, 4) + _rows(m.bna.bias, 4) + _rows(m.b.weight, 4) + _rows(m.b.bias, 4)
                + _rows(m.bns.weight, 4) + _rows(m.bns.bias, 4)).sqrt()
    torch.testing.assert_close(unit_norms(m, ab), expected, rtol=0, atol=0)
    torch.testing.assert_close(unit_norms(m, c), (_rows(m.c.weight, 5) + _rows(m.c.bias, 5)).sqrt(), rtol=0, atol=0)


def test_channels_whose_batchnorm_pair_is_zero_go_first_and_change_nothing():
    m = build("resnet", {"depth": 20})
    with torch.no_grad():  # 5 channels of layer1.0.conv1 with large conv rows but a zero BatchNorm pair
        m.layer1[0].conv1.weight[[1, 4, 6, 9, 13]] *= 100
        m.layer1[0].bn1.weight[[1, 4, 6, 9, 13]] = 0
        m.layer1[0].bn1.bias[[1, 4, 6, 9, 13]] = 0
    g = next(gr for gr in coupled_groups(m, CIFAR) if gr.producers == ("layer1.0.conv1",))
    norms = unit_norms(m, g)
    assert norms[[1, 4, 6, 9, 13]].eq(0).all() and norms.gt(0).sum() == 11
    keep = norms > 0  # removing exactly those channels: the slim network computes the same function
    small = slim(m, ChannelMask({"layer1.0.conv1": keep}, CIFAR))
    assert small.layer1[0].conv1.out_channels == 11
    assert_same_outputs(m, small, CIFAR)
