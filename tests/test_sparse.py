"""Sparse inference: SparseLinear kernels match dense, the timing-based choice, sparsify."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsehalo import models, sparse
from sparsehalo.errors import SparsehaloError
from sparsehalo.pruning import prune
from sparsehalo.sparse import SparseLinear, bucket_of, choices, sparsify


def pruned_weight(out_f, in_f, sparsity, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out_f, in_f, generator=g)
    w[torch.rand(out_f, in_f, generator=g) < sparsity] = 0
    return w


def close(y, ref):
    # Sparse kernels sum in another order: equal within 1e-5 relative to the output's scale.
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max().clamp_min(1e-12)))


def fake_timer(fastest, factor=0.5):
    """A timer that reports ``fastest`` at ``factor`` of every other kernel's time, never running them."""

    def timer(candidates):
        return {name: (factor if name == fastest else 1.0) for name in candidates}

    return timer


class CsrFastest:
    """A picklable fake timer (a module-level class, unlike a closure)."""

    def __call__(self, candidates):
        return {name: (0.5 if name == "csr" else 1.0) for name in candidates}


def pruned_lenet(sparsity=0.9, seed=0):
    torch.manual_seed(seed)
    model = models.build("lenet300").eval()
    prune(model, sparsity, scope="layer")
    return model


@pytest.mark.parametrize("batch", [1, 256])
@pytest.mark.parametrize("kernel", ["dense", "csr", "gather"])
@pytest.mark.parametrize("bias", [True, False])
def test_every_kernel_matches_dense(batch, kernel, bias):
    w = pruned_weight(120, 300, 0.9)
    b = torch.randn(120) if bias else None
    layer = SparseLinear(w, b)
    x = torch.randn(batch, 300)
    ref = F.linear(x, w, b)
    with torch.no_grad():
        y = layer.run(x, kernel)
    assert y.shape == ref.shape
    close(y, ref)


@pytest.mark.parametrize("batch", [1, 256])
def test_forward_matches_dense_and_records_choice(batch):
    w, b = pruned_weight(100, 784, 0.98), torch.randn(100)
    layer = SparseLinear(w, b)
    x = torch.randn(batch, 784)
    with torch.no_grad():
        y = layer(x)
    close(y, F.linear(x, w, b))
    assert layer.choice[bucket_of(batch)] in ("dense", "csr", "gather")
    assert set(layer.timings[bucket_of(batch)]) == {"dense", "csr", "gather"}


def test_three_dim_input_and_transposed_chain():
    w1, w2 = pruned_weight(64, 32, 0.9, seed=1), pruned_weight(16, 64, 0.9, seed=2)
    l1 = SparseLinear(w1, torch.randn(64), timer=fake_timer("csr"))
    l2 = SparseLinear(w2, None, timer=fake_timer("gather"))
    x = torch.randn(4, 8, 32)
    with torch.no_grad():
        h = F.relu(l1(x))
        y = l2(h)
    close(h, F.relu(F.linear(x, w1, l1.bias)))
    close(y, F.linear(h, w2))
    assert l1.choice == {32: "csr"} and l2.choice == {32: "gather"}
    # The batched sparse path hands back a transposed view; the next sparse layer reads it as is.
    h2 = l1(torch.randn(8, 32))
    assert not h2.is_contiguous() and h2.t().is_contiguous()


def test_buckets_are_powers_of_two():
    assert [bucket_of(n) for n in (1, 2, 3, 4, 5, 200, 256, 257)] == [1, 2, 4, 4, 8, 256, 256, 512]


def test_fake_timer_forces_dense_choice():
    w = pruned_weight(50, 80, 0.99)
    layer = SparseLinear(w, torch.randn(50), timer=fake_timer("dense"))
    for batch in (1, 256):
        x = torch.randn(batch, 80)
        with torch.no_grad():
            close(layer(x), F.linear(x, w, layer.bias))
    assert layer.choice == {1: "dense", 256: "dense"}


def test_sparse_must_win_by_the_margin():
    w = pruned_weight(50, 80, 0.99)
    narrowly = SparseLinear(w, None, timer=fake_timer("csr", factor=0.95))
    clearly = SparseLinear(w, None, timer=fake_timer("csr", factor=0.5))
    x = torch.randn(1, 80)
    with torch.no_grad():
        narrowly(x), clearly(x)
    assert narrowly.choice == {1: "dense"} and clearly.choice == {1: "csr"}


def test_calibration_happens_once_per_bucket():
    calls = []

    def timer(candidates):
        calls.append(sorted(candidates))
        return {n: (0.1 if n == "csr" else 1.0) for n in candidates}

    layer = SparseLinear(pruned_weight(20, 30, 0.9), None, timer=timer)
    with torch.no_grad():
        for batch in (3, 4, 3, 1, 4):
            layer(torch.randn(batch, 30))
    assert calls == [["csr", "dense", "gather"]] * 2 and layer.choice == {4: "csr", 1: "csr"}


def test_weight_change_refreshes_sparse_form_and_choice():
    w = pruned_weight(30, 40, 0.9)
    layer = SparseLinear(w, torch.zeros(30), timer=fake_timer("csr"))
    x = torch.randn(5, 40)
    with torch.no_grad():
        layer(x)
        new = pruned_weight(30, 40, 0.9, seed=7)
        layer.load_state_dict({"weight": new, "bias": torch.ones(30)})
        y = layer(x)
    close(y, F.linear(x, new, torch.ones(30)))
    assert layer.choice == {8: "csr"}  # re-measured after the change


def test_autograd_goes_dense():
    w = pruned_weight(10, 20, 0.9)
    layer = SparseLinear(w, None, timer=fake_timer("csr"))
    x = torch.randn(4, 20, requires_grad=True)
    layer(x).sum().backward()
    torch.testing.assert_close(x.grad, w.sum(0).expand(4, 20))
    assert layer.choice == {}  # no calibration for a call that needs gradients


def test_unsupported_dtype_runs_dense():
    w = pruned_weight(10, 20, 0.9).half()
    layer = SparseLinear(w, None, timer=fake_timer("csr"))
    x = torch.randn(2, 20).half()
    torch.testing.assert_close(layer(x), F.linear(x, w))
    with pytest.raises(SparsehaloError):
        layer.run(x, "csr")
    with pytest.raises(SparsehaloError, match="unknown kernel"):
        layer.run(x, "bsr")


def test_fully_pruned_layer_gives_bias():
    layer = SparseLinear(torch.zeros(6, 9), torch.arange(6.0), timer=fake_timer("gather"))
    for batch in (1, 3):
        with torch.no_grad():
            assert torch.equal(layer(torch.randn(batch, 9)), torch.arange(6.0).expand(batch, 6))


def test_sparsify_replaces_pruned_linear_layers_only():
    model = pruned_lenet(0.9)
    model.fc3.weight.data = torch.randn(10, 100)  # dense again: stays nn.Linear
    sm = sparsify(model, min_sparsity=0.5)
    assert isinstance(sm.fc1, SparseLinear) and isinstance(sm.fc2, SparseLinear)
    assert type(sm.fc3) is nn.Linear and type(model.fc1) is nn.Linear  # the original is untouched
    assert list(sm.state_dict()) == list(model.state_dict())
    fresh = models.build("lenet300")
    fresh.load_state_dict(sm.state_dict())  # state dicts stay interchangeable
    with torch.no_grad():
        for batch in (1, 256):
            x = torch.randn(batch, 1, 28, 28)
            close(sm(x), model(x))
    assert set(choices(sm)) == {"fc1", "fc2"} and set(choices(sm)["fc1"]) == {1, 256}


def test_sparsify_without_pruned_layers_changes_nothing():
    torch.manual_seed(0)
    model = models.build("lenet300").eval()
    sm = sparsify(model)
    assert sm is not model
    assert [type(m) for m in sm.modules()] == [type(m) for m in model.modules()]
    assert all(torch.equal(a, b) for a, b in zip(sm.state_dict().values(), model.state_dict().values()))
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(sm(x), model(x))
    assert choices(sm) == {}


def test_sparsify_shared_layer_stays_shared():
    shared = nn.Linear(8, 8)
    with torch.no_grad():
        shared.weight[:, :6] = 0
    model = nn.Sequential(shared, nn.ReLU(), shared)
    sm = sparsify(model, timer=fake_timer("csr"))
    assert isinstance(sm[0], SparseLinear) and sm[0] is sm[2]


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.5", True])
def test_sparsify_rejects_bad_min_sparsity(bad):
    with pytest.raises(SparsehaloError, match="min_sparsity"):
        sparsify(nn.Linear(2, 2), min_sparsity=bad)


def test_real_timer_returns_every_candidate():
    times = sparse.time_kernels({"a": lambda: torch.zeros(1), "b": lambda: torch.ones(1)}, repeats=5)
    assert set(times) == {"a", "b"} and all(t > 0 for t in times.values())


def test_extra_repr_reports_density_and_choice():
    layer = SparseLinear(pruned_weight(10, 10, 0.5), None, timer=fake_timer("dense"))
    with torch.no_grad(), warnings.catch_warnings():
        layer(torch.randn(1, 10))
    assert "density=" in repr(layer) and "1:dense" in repr(layer)


def test_copies_and_pickles_keep_choices_and_conversions_recalibrate():
    import copy
    import io

    model = pruned_lenet(0.95)
    sm = sparsify(model, timer=CsrFastest())
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        sm(x)
        twin = copy.deepcopy(sm)
        buf = io.BytesIO()
        torch.save(sm, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=False)
        for other in (twin, loaded):
            assert choices(other) == choices(sm)
            close(other(x), model(x))
        wide = copy.deepcopy(sm).double()
        assert choices(wide)["fc1"] == {4: "csr"}  # not looked at yet
        close(wide(x.double()), model.double()(x.double()))
        assert wide.fc1.timings[4] and wide.fc1.weight.dtype == torch.float64


def test_public_entry_points_exist():
    import sparsehalo

    assert callable(sparsehalo.sparse.sparsify) and callable(sparsehalo.load_sparse)
