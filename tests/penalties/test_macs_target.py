"""Group HALO's MACs target: exact MACs of kept units, the measured share, the prune set, the controller."""

import itertools

import pytest
import torch

from sparsehalo import config as config_mod
from sparsehalo import models
from sparsehalo.errors import ConfigError
from sparsehalo.measure.cost import layer_costs
from sparsehalo.penalties import GroupHALO
from sparsehalo.pruning.slimming import slim
from sparsehalo.pruning.structured import ChannelMask, prune_channels
from sparsehalo.training import build

from support import ROOT

SHAPES = {"lenet5_caffe": (1, 28, 28), "lenet300": (1, 28, 28), "resnet": (3, 32, 32)}


def network(name):
    torch.manual_seed(0)
    kwargs = {"depth": 8} if name == "resnet" else {}
    return models.build(name, {"num_classes": 10}, **kwargs).eval()


def penalty(model, name, **kw):
    # a ResNet channel is set last by its BatchNorm: the BatchNorms' (gamma, beta) pairs are the groups
    types = {"types": ["BatchNorm2d"]} if name == "resnet" else {}
    return GroupHALO.for_model(model, biases=True, target_macs=0.5, input_shape=SHAPES[name], total_steps=100, **types, **kw)


@pytest.mark.parametrize("name", ["lenet5_caffe", "lenet300", "resnet"])
def test_macs_of_kept_units_equal_the_counter_on_the_slimmed_network(name):
    model = network(name)
    target = penalty(model, name)._macs
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        kept = [int(torch.randint(1, g.size + 1, (1,), generator=gen)) for g in target.groups]
        masks = {}
        for g, k in zip(target.groups, kept):
            keep = torch.zeros(g.size, dtype=torch.bool)
            keep[torch.randperm(g.size, generator=gen)[:k]] = True
            masks.update({p: keep for p in g.producers})
        small = slim(model, ChannelMask(masks, SHAPES[name], [g.producers for g in target.groups]))
        counted = sum(c.macs_dense for c in layer_costs(small, SHAPES[name]))
        assert target.costs.macs(kept) == pytest.approx(counted, rel=1e-12)
        for g in range(len(kept)):
            if kept[g] > 1:
                fewer = kept[:g] + [kept[g] - 1] + kept[g + 1:]
                assert target.costs.marginal(g, kept) == pytest.approx(target.costs.macs(kept) - target.costs.macs(fewer))


def test_measured_share_counts_the_units_at_zero():
    model = network("lenet5_caffe")
    pen = penalty(model, "lenet5_caffe")
    target = pen._macs
    assert target.measured(target.unit_norms(pen.magnitudes())) == 0.0  # nothing at zero yet
    with torch.no_grad():  # zero 12 of conv1's 20 channels and 300 of fc1's 500 neurons (weights and biases)
        model.conv1.weight[:12] = 0
        model.conv1.bias[:12] = 0
        model.fc1.weight[:300] = 1e-4  # within 1e-3 of zero in every entry: at zero
        model.fc1.bias[:300] = 0
    kept = [{"conv1": 8, "conv2": 50, "fc1": 200}[g.producers[0]] for g in target.groups]
    expected = 1 - target.costs.macs(kept) / target.costs.total
    assert target.measured(target.unit_norms(pen.magnitudes())) == pytest.approx(expected)
    # conv1: 12 * (24 * 24 * 25) of its own + 12 * (8 * 8 * 50 * 25) of conv2's; fc1: 300 * 800 + 300 * 10 of fc2's.
    removed = 12 * 576 * 25 + 12 * 64 * 50 * 25 + 300 * 800 + 300 * 10
    assert expected == pytest.approx(removed / target.costs.total)


@pytest.mark.parametrize("name,share", list(itertools.product(["lenet5_caffe", "resnet"], [0.3, 0.5, 0.75])))
def test_the_prune_set_is_what_the_final_macs_prune_removes(name, share):
    model = network(name)
    pen = penalty(model, name)
    target = pen._macs
    chosen = target.prune_set(target.unit_norms(pen.magnitudes()), share)
    mask = prune_channels(model, SHAPES[name], macs=share, apply=False)
    index = {s.name: i for i, s in enumerate(pen._sets)}
    for g in target.groups:  # every stage's set of a unit (a producer, or its own BatchNorm) is in the prune set
        keep = mask[g.producers[0]]
        for stage in g.stages:
            assert torch.equal(chosen[index[stage + ".weight"]], ~keep), stage
    if name == "resnet":  # every conv has its own BatchNorm: the stages are BatchNorms only
        assert all(isinstance(model.get_submodule(st), torch.nn.BatchNorm2d) for g in target.groups for st in g.stages)


def test_a_batchnorm_network_with_unpenalized_batchnorms_is_refused_in_one_line():
    model = network("resnet")
    with pytest.raises(ConfigError, match=r"penalize the BatchNorms.*BatchNorm2d") as err:
        GroupHALO.for_model(model, biases=True, target_macs=0.5, input_shape=SHAPES["resnet"], total_steps=10)
    assert "\n" not in str(err.value)


def test_a_unit_whose_batchnorm_pair_is_zero_counts_as_zero_whatever_its_conv():
    model = network("resnet")
    pen = penalty(model, "resnet")
    target = pen._macs
    g = next(i for i, gr in enumerate(target.groups) if gr.producers == ("layer1.0.conv1",))
    with torch.no_grad():
        model.layer1[0].conv1.weight[:5] *= 100  # large conv rows ...
        model.layer1[0].bn1.weight[:5] = 0  # ... normalized, then scaled and shifted by zero: the channel is zero
        model.layer1[0].bn1.bias[:5] = 0
    norms = target.unit_norms(pen.magnitudes())
    assert torch.equal(norms[g][:5], torch.zeros(5, dtype=torch.float64)) and bool((norms[g][5:] > 0).all())
    kept = [gr.size - (5 if i == g else 0) for i, gr in enumerate(target.groups)]
    assert target.measured(norms) == pytest.approx(1 - target.costs.macs(kept) / target.costs.total)


def test_the_controller_steps_on_training_calls_and_its_state_resumes():
    model = network("lenet5_caffe")
    pen = penalty(model, "lenet5_caffe", xi=1e-3, psi=1e-3)
    with torch.no_grad():
        pen()  # evaluation: no step
    assert int(pen.controller.step) == 0
    opt = torch.optim.SGD([*model.parameters(), *pen.parameters()], lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        pen().backward()
        opt.step()
    stats = pen.stats()
    assert int(pen.controller.step) == 3 and stats["target_macs"] == 0.5 and stats["target_measured"] == 0.0
    assert stats["target_scheduled"] > 0 and stats["target_strength"] > 1  # behind the schedule: stronger
    other = penalty(network("lenet5_caffe"), "lenet5_caffe", xi=1e-3, psi=1e-3)
    other.load_state_dict(pen.state_dict())
    assert int(other.controller.step) == 3 and other.stats()["target_strength"] == stats["target_strength"]


def test_settings_are_checked():
    model = network("lenet5_caffe")
    with pytest.raises(ConfigError, match="target_sparsity .* or target_macs, not both"):
        GroupHALO.for_model(model, target_macs=0.5, target_sparsity=0.9, input_shape=(1, 28, 28), total_steps=10)
    with pytest.raises(ConfigError, match="target_sparsity must be in"):
        GroupHALO.for_model(model, target_macs=1.5, input_shape=(1, 28, 28), total_steps=10)
    pen = GroupHALO.for_model(model, target_macs=0.5, total_steps=10)  # no input shape: said at the first step
    with pytest.raises(ConfigError, match="needs the model and one example's shape"):
        pen()


def test_the_engine_fills_in_the_steps_and_the_input_shape():
    cfg = config_mod.load(ROOT / "configs" / "mnist_lenet5_caffe_dense.toml",
                          ['data.name="synthetic"', 'penalty.name="group_halo"', "penalty.target_macs=0.5",
                           "train.epochs=2", 'run.device="cpu"', "run.progress=false"])
    state = build(cfg)
    assert state.penalty.input_shape == (1, 28, 28) and state.penalty._macs is not None
    assert state.penalty.controller.total_steps == 2 * state.steps_per_epoch
