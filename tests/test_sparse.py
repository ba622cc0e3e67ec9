"""Sparse inference: SparseLinear kernels match dense, the timing-based choice, sparsify."""

import copy
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
@pytest.mark.parametrize("kernel", ["dense", "csr", "csr_colmajor", "gather"])
@pytest.mark.parametrize("bias", [True, False])
def test_every_kernel_matches_dense(batch, kernel, bias):
    w = pruned_weight(120, 300, 0.9)
    b = torch.randn(120) if bias else None
    layer = SparseLinear(w, b)
    x = torch.randn(batch, 300)
    ref = F.linear(x, w, b)
    with torch.no_grad():
        y = layer.run(x, kernel)
    assert y.shape == ref.shape and y.stride() == ref.stride()
    close(y, ref)


@pytest.mark.parametrize("batch", [1, 256])
def test_forward_matches_dense_and_records_choice(batch):
    w, b = pruned_weight(100, 784, 0.98), torch.randn(100)
    layer = SparseLinear(w, b)
    x = torch.randn(batch, 784)
    with torch.no_grad():
        y = layer(x)
    close(y, F.linear(x, w, b))
    assert layer.choice[bucket_of(batch)] in ("dense", "csr", "csr_colmajor", "gather")
    # At one row csr_colmajor is the same addmv as csr, and is not timed twice.
    timed = {"dense", "csr", "gather"} if batch == 1 else {"dense", "csr", "csr_colmajor", "gather"}
    assert set(layer.timings[bucket_of(batch)]) == timed


def test_three_dim_input_and_chain():
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
    # Outputs are contiguous like nn.Linear's (the sparse path used to hand back a transposed view).
    assert h.is_contiguous() and y.is_contiguous() and y.stride() == (8 * 16, 16, 1)
    h2 = l1(torch.randn(8, 32))
    assert h2.is_contiguous() and h2.view(-1).shape == (8 * 64,)


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
    # bucket 4, then bucket 1 (where csr_colmajor is csr and is not timed)
    assert calls == [["csr", "csr_colmajor", "dense", "gather"], ["csr", "dense", "gather"]]
    assert layer.choice == {4: "csr", 1: "csr"}


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


# Output layout: exactly nn.Linear's -----------------------------------------------------------------


def linear_of(layer):
    ref = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    ref.load_state_dict(layer.state_dict())
    return ref


LAYOUT_INPUTS = {
    "rows": lambda: torch.randn(5, 12),
    "one row": lambda: torch.randn(1, 12),
    "1-D": lambda: torch.randn(12),
    "3-D": lambda: torch.randn(2, 3, 12),
    "3-D one row": lambda: torch.randn(1, 1, 12),
    "3-D transposed": lambda: torch.randn(3, 2, 12).transpose(0, 1),
    "column slice": lambda: torch.randn(4, 24)[:, ::2],
    "expanded": lambda: torch.randn(1, 12).expand(6, 12),
}


@pytest.mark.parametrize("kernel", sparse.KERNELS)
@pytest.mark.parametrize("name", sorted(LAYOUT_INPUTS))
@pytest.mark.parametrize("bias", [True, False])
def test_output_has_the_layout_of_nn_linear(kernel, name, bias):
    layer = SparseLinear(pruned_weight(7, 12, 0.8, seed=3), torch.randn(7) if bias else None, timer=fake_timer(kernel))
    x = LAYOUT_INPUTS[name]()
    with torch.no_grad():
        ref = linear_of(layer)(x)
        for y in (layer(x), layer.run(x, kernel)):
            assert y.shape == ref.shape and y.dtype == ref.dtype and y.stride() == ref.stride()
            assert y.is_contiguous()
            close(y.view(-1), ref.view(-1))
    rows = x.numel() // 12
    assert layer.choice == {bucket_of(rows): "dense" if rows == 1 and kernel == "csr_colmajor" else kernel}


# Tracing: torch.export and torch.compile -----------------------------------------------------------


def small_mlp(seed=0, sparsity=0.9):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 5)).eval()
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight[torch.rand_like(layer.weight) < sparsity] = 0
    return model


def no_timing(candidates):
    raise AssertionError("a trace must not time kernels")


def calibrated(kernel, batches, seed=0):
    """A sparsified small MLP whose every layer chose ``kernel`` for each of ``batches``; then no timer."""
    sm = sparsify(small_mlp(seed), timer=fake_timer(kernel))
    with torch.no_grad():
        for batch in batches:
            sm(torch.randn(batch, 12))
    for layer in (sm[0], sm[2]):
        layer.timer = no_timing
    return sm


def graph_targets(graph):
    return [str(node.target) for node in graph.nodes if node.op == "call_function"]


@pytest.mark.parametrize("kernel", sparse.KERNELS)
def test_export_round_trip_equals_eager(kernel):
    import io

    sm = calibrated(kernel, [8])
    x = torch.randn(8, 12)
    ep = torch.export.export(sm, (x,))
    targets = graph_targets(ep.graph)
    n_op = targets.count("sparsehalo.csr_linear.default")
    assert n_op == (2 if kernel.startswith("csr") else 0)
    assert ("aten.index_add_.default" in targets) == (kernel == "gather") and "aten.linear.default" not in targets
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    buf.seek(0)
    loaded = torch.export.load(buf)
    with torch.no_grad():
        expected = sm(x)
        for program in (ep, loaded):
            y = program.module()(x)
            assert torch.equal(y, expected) and y.stride() == expected.stride()
        close(expected, small_mlp()(x))


def test_export_of_an_uncalibrated_bucket_is_dense():
    sm = calibrated("csr", [8])
    x = torch.randn(2, 12)  # bucket 2: never calibrated, and a trace does not time
    ep = torch.export.export(sm, (x,))
    assert graph_targets(ep.graph).count("aten.linear.default") == 2
    assert choices(sm) == {"0": {8: "csr"}, "2": {8: "csr"}}
    assert torch.equal(ep.module()(x), small_mlp()(x))


@pytest.mark.parametrize("second, op_count", [("csr", 2), ("gather", 0)])
def test_export_with_a_dynamic_batch_uses_the_agreed_kernel(second, op_count):
    sm = sparsify(small_mlp(), timer=fake_timer("csr"))
    with torch.no_grad():
        sm(torch.randn(4, 12))
        for layer in (sm[0], sm[2]):
            layer.timer = fake_timer(second)
        sm(torch.randn(16, 12))
    batch = torch.export.Dim("batch")
    ep = torch.export.export(sm, (torch.randn(4, 12),), dynamic_shapes={"input": {0: batch}})
    targets = graph_targets(ep.graph)
    # both buckets chose csr: csr for every batch size; they disagree: dense
    assert targets.count("sparsehalo.csr_linear.default") == op_count
    assert targets.count("aten.linear.default") == 2 - op_count
    with torch.no_grad():
        for rows in (3, 13, 40):
            x = torch.randn(rows, 12)
            close(ep.module()(x), small_mlp()(x))


@pytest.mark.parametrize("kernel", sparse.KERNELS)
def test_compile_fullgraph_records_the_chosen_kernel(kernel):
    torch._dynamo.reset()  # every SparseLinear shares one forward: fresh recompile budget
    graphs = []

    def recording_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    sm = calibrated(kernel, [8])
    x = torch.randn(2, 4, 12)
    compiled = torch.compile(sm, backend=recording_backend, fullgraph=True)
    with torch.no_grad():
        y, expected = compiled(x), sm(x)
    assert torch.equal(y, expected) and y.stride() == expected.stride() == (20, 5, 1)
    targets = graph_targets(graphs[0].graph)
    assert targets.count("sparsehalo.csr_linear") == (2 if kernel.startswith("csr") else 0)
    assert "<built-in function linear>" not in targets


def test_compile_with_inductor_equals_eager_and_views():
    torch._dynamo.reset()
    sm = calibrated("csr", [8])
    x = torch.randn(2, 4, 12)
    compiled = torch.compile(lambda inp: sm(inp).view(-1), fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), sm(x).view(-1), rtol=0, atol=0)


def test_conversion_or_load_makes_traces_dense_until_an_eager_call():
    sm = calibrated("csr", [8])
    x = torch.randn(8, 12)
    new = small_mlp(seed=5)
    sm.load_state_dict(new.state_dict())
    assert sm[0].traced_kernel(x) == "dense"  # stale sparse forms are never traced
    ep = torch.export.export(sm, (x,))
    assert graph_targets(ep.graph).count("aten.linear.default") == 2
    assert torch.equal(ep.module()(x), new(x))
    for layer in (sm[0], sm[2]):
        layer.timer = fake_timer("gather")
    with torch.no_grad():
        close(sm(x), new(x))  # the eager call rebuilds and recalibrates
    assert sm[0].traced_kernel(x) == "gather" and sm[0].traced_kernel(torch.randn(3, 12)) == "dense"
    wide = copy.deepcopy(sm).double()
    assert wide[0].traced_kernel(x.double()) == "dense" and wide[0].choice == {8: "gather"}
    same = copy.deepcopy(sm).to("cpu")  # a conversion that changes nothing keeps the layer traceable
    assert same[0].traced_kernel(x) == "gather"
