"""Magnitude pruning and masks on tiny models with hand-set weights."""

import io
import warnings

import pytest
import torch
from torch import nn

from sparsehalo.errors import CheckpointError, ConfigError, SparsehaloError
from sparsehalo.models import build
from sparsehalo.pruning import Mask, MaskHandle, prunable_parameters, prune


class Toy(nn.Module):
    """Two Linear layers: ``a.weight`` is 2x3, ``b.weight`` is 2x2 (10 prunable entries)."""

    def __init__(self, a=None, b=None):
        super().__init__()
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(2, 2)
        with torch.no_grad():
            if a is not None:
                self.a.weight.copy_(torch.tensor(a))
            if b is not None:
                self.b.weight.copy_(torch.tensor(b))
            self.a.bias.fill_(0.01)  # tiny biases: must never be pruned by default
            self.b.bias.fill_(0.01)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


A = [[0.1, -0.9, 0.3], [0.5, -0.2, 0.8]]
B = [[0.05, -0.7], [0.4, 0.6]]


def test_prunable_parameters_are_weights_only():
    assert list(prunable_parameters(Toy())) == ["a.weight", "b.weight"]


def test_global_prune_removes_the_smallest_magnitudes_over_both_layers():
    model = Toy(A, B)
    mask = prune(model, 0.4)  # k = 4 of 10: 0.05 (b), 0.1, -0.2, 0.3 (a)
    assert torch.equal(mask["a.weight"], torch.tensor([[False, True, False], [True, False, True]]))
    assert torch.equal(mask["b.weight"], torch.tensor([[False, True], [True, True]]))
    assert (mask.num_total, mask.num_kept, mask.num_pruned) == (10, 6, 4)
    assert mask.sparsity == 0.4
    assert torch.equal(model.a.weight, torch.tensor([[0.0, -0.9, 0.0], [0.5, 0.0, 0.8]]))
    assert torch.equal(model.b.weight, torch.tensor([[0.0, -0.7], [0.4, 0.6]]))
    assert torch.equal(model.a.bias, torch.full((2,), 0.01))


def test_layer_scope_prunes_each_tensor_to_its_own_count():
    model = Toy(A, B)
    mask = prune(model, 0.5, scope="layer")  # a: 3 of 6, b: 2 of 4
    assert torch.equal(mask["a.weight"], torch.tensor([[False, True, False], [True, False, True]]))
    assert torch.equal(mask["b.weight"], torch.tensor([[False, True], [False, True]]))
    assert [(s["name"], s["total"], s["kept"]) for s in mask.layer_stats()] == [("a.weight", 6, 3), ("b.weight", 4, 2)]
    assert [s["sparsity"] for s in mask.layer_stats()] == [0.5, 0.5]


def test_apply_false_leaves_weights_alone():
    model = Toy(A, B)
    prune(model, 0.4, apply=False)
    assert torch.equal(model.a.weight, torch.tensor(A))


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_ties_give_an_exact_deterministic_count(scope):
    model = Toy([[1.0] * 3] * 2, [[-1.0] * 2] * 2)
    mask = prune(model, 0.5, scope=scope)
    assert mask.num_pruned == 5  # global: 5 of 10; layer: 3 of 6 plus 2 of 4
    again = prune(Toy([[1.0] * 3] * 2, [[-1.0] * 2] * 2), 0.5, scope=scope)
    assert mask == again
    if scope == "global":
        # Ties break by position: the first five entries in selection order go.
        assert torch.equal(mask["a.weight"], torch.tensor([[False, False, False], [False, False, True]]))
        assert torch.equal(mask["b.weight"], torch.ones(2, 2, dtype=torch.bool))


def test_many_existing_zeros_still_give_an_exact_count():
    model = nn.Linear(100, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[0, 60:] = torch.linspace(1, 2, 40)
    mask = prune(model, 0.3)  # 30 of the 60 zeros go, nothing else
    assert mask.num_pruned == 30
    assert bool(mask["weight"][0, 60:].all())
    assert torch.equal(mask["weight"][0, :30], torch.zeros(30, dtype=torch.bool))


def test_min_density_keeps_a_floor_and_the_exact_total():
    a = [[0.01, 0.02, 0.03], [0.04, 0.05, 0.06]]
    b = [[1.0, 2.0], [3.0, 4.0]]
    with pytest.warns(UserWarning, match="a.weight"):
        plain = prune(Toy(a, b), 0.6)  # k = 6: all of a
    assert plain.empty_layers == ["a.weight"]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no empty-layer warning now
        mask = prune(Toy(a, b), 0.6, min_density=0.25)
    # Floors: a keeps ceil(1.5) = 2, b keeps ceil(1.0) = 1.  The 6 removed are a's 4 smallest and b's 1, 2.
    assert torch.equal(mask["a.weight"], torch.tensor([[False, False, False], [False, True, True]]))
    assert torch.equal(mask["b.weight"], torch.tensor([[False, False], [True, True]]))
    assert mask.num_pruned == 6
    assert mask.empty_layers == []


def test_min_density_that_cannot_be_met_errors():
    a = [[0.01, 0.02, 0.03], [0.04, 0.05, 0.06]]
    with pytest.raises(SparsehaloError, match="min_density"):
        prune(Toy(a, B), 0.8, min_density=0.5)  # k = 8, but 3 + 2 entries are reserved
    with pytest.raises(SparsehaloError, match="min_density"):
        prune(Toy(a, B), 0.8, scope="layer", min_density=0.5)
    with pytest.raises(SparsehaloError, match="min_density"):
        prune(Toy(a, B), 0.5, min_density=1.5)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.5", True])
def test_bad_sparsity_errors(bad):
    with pytest.raises(SparsehaloError, match="sparsity"):
        prune(Toy(A, B), bad)


def test_unknown_scope_and_nonfinite_weights_error():
    with pytest.raises(ConfigError, match="global"):
        prune(Toy(A, B), 0.5, scope="channel")
    with pytest.raises(SparsehaloError, match="a.weight"):
        prune(Toy([[float("nan"), 1.0, 1.0], [1.0, 1.0, 1.0]], B), 0.5)


def test_layer_scope_reports_an_emptied_layer():
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Linear(1, 4, bias=False))
    with pytest.warns(UserWarning, match=r"0\.weight"):
        mask = prune(model, 0.6, scope="layer")  # round(0.6 * 1) = 1 of 1, round(0.6 * 4) = 2 of 4
    assert mask.empty_layers == ["0.weight"]


def test_prune_lenet300_to_exact_target():
    from sparsehalo.measure import sparsity_table

    torch.manual_seed(0)
    model = build("lenet300")
    # Fresh init: fc1's weights are the smallest (fan-in 784), so a global 98% cut empties fc1.
    with pytest.warns(UserWarning, match="fc1.weight"):
        mask = prune(model, 0.98)
    assert mask.empty_layers == ["fc1.weight"]
    k = round(0.98 * 266200)
    assert mask.num_total == 266200 and mask.num_pruned == k
    table = sparsity_table(model)
    assert table.total == 266200
    assert table.total - table.nonzero == k
    assert table.sparsity == pytest.approx(k / 266200, abs=1e-12)

    # With a 1% floor per layer nothing is emptied and the total is still exact.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        floored = prune(build("lenet300"), 0.98, min_density=0.01)
    assert floored.num_pruned == k
    assert [s["kept"] >= -(-s["total"] // 100) for s in floored.layer_stats()] == [True] * 3


def test_check_catches_wrong_names_and_shapes():
    model = Toy()
    Mask({"a.weight": torch.ones(2, 3, dtype=torch.bool)}).check(model)
    with pytest.raises(CheckpointError, match="nope.weight") as e:
        Mask({"nope.weight": torch.ones(2, 3, dtype=torch.bool)}).check(model)
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match=r"\(3, 2\)") as e:
        Mask({"a.weight": torch.ones(3, 2, dtype=torch.bool)}).apply(model)
    assert "\n" not in str(e.value)
    with pytest.raises(SparsehaloError, match="bool"):
        Mask({"a.weight": torch.ones(2, 3)})


def test_apply_keeps_parameter_identity():
    model = Toy(A, B)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.a.weight
    ptr = before.data_ptr()
    prune(model, 0.4)
    assert model.a.weight is before and model.a.weight.data_ptr() == ptr
    assert opt.param_groups[0]["params"][0] is model.a.weight
    assert model.a.weight[0, 0].item() == 0.0


def test_state_dict_round_trip():
    mask = prune(Toy(A, B), 0.4, apply=False)
    buf = io.BytesIO()
    torch.save(mask.state_dict(), buf)
    buf.seek(0)
    back = Mask.from_state_dict(torch.load(buf, weights_only=True))
    assert back == mask and back.num_pruned == 4
    assert back != Mask({"a.weight": mask["a.weight"]})
    assert mask.to("cpu") == mask
    with pytest.raises(CheckpointError, match="bool"):
        Mask.from_state_dict({"a.weight": torch.ones(2, 3, dtype=torch.uint8)})
    with pytest.raises(CheckpointError):
        Mask.from_state_dict([1, 2])


# Enforcing a mask during training -------------------------------------------------------------------


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, 3, generator=g), torch.randint(0, 2, (32,), generator=g)


def _train(model, opt, steps):
    x, y = _data()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _pruned_after_training(enforce: bool, remove_hooks: bool = False, with_optimizer: bool = True):
    torch.manual_seed(0)
    model = Toy()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    _train(model, opt, 3)  # momentum buffers are non-zero before pruning
    assert all(bool(opt.state[p]["momentum_buffer"].ne(0).all()) for p in (model.a.weight, model.b.weight))
    mask = prune(model, 0.5)
    handle = mask.enforce(model, opt if with_optimizer else None) if enforce else None
    if remove_hooks:
        handle.remove()
    after_prune = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train(model, opt, 5)
    return model, opt, mask, after_prune, handle


def test_enforce_keeps_pruned_weights_exactly_zero_under_momentum_and_weight_decay():
    model, opt, mask, after_prune, handle = _pruned_after_training(enforce=True)
    assert isinstance(handle, MaskHandle) and len(handle) == 3  # 2 grad hooks + 1 optimizer hook
    for name in ("a.weight", "b.weight"):
        p, keep = dict(model.named_parameters())[name], mask[name]
        assert bool((p[~keep] == 0.0).all())
        assert bool((p[keep] != after_prune[name][keep]).all())  # unpruned entries still train
        assert bool((opt.state[p]["momentum_buffer"][~keep] == 0.0).all())
        assert bool((p.grad[~keep] == 0.0).all())


def test_without_enforce_momentum_revives_pruned_weights():
    # The control for the test above: it would fail if enforce did nothing, if its hooks outlived
    # remove(), or if gradient hooks alone were enough (old momentum still moves pruned weights).
    variants = ({"enforce": False}, {"enforce": True, "remove_hooks": True}, {"enforce": True, "with_optimizer": False})
    for kwargs in variants:
        model, _, mask, _, _ = _pruned_after_training(**kwargs)
        assert bool((model.a.weight[~mask["a.weight"]] != 0).any())


def test_grad_hooks_alone_zero_pruned_gradients():
    model = Toy(A, B)
    mask = prune(model, 0.4)
    handle = mask.enforce(model)
    assert len(handle) == 2
    x, y = _data()
    nn.functional.cross_entropy(model(x), y).backward()
    assert bool((model.a.weight.grad[~mask["a.weight"]] == 0).all())
    assert bool((model.a.weight.grad[mask["a.weight"]] != 0).any())
