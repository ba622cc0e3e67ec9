"""`sparsehalo export RUN --format onnx`: the pruned dense graph runs in onnxruntime like in PyTorch, at any batch size.

Tolerance: onnxruntime and PyTorch are compared at atol 1e-5, rtol 1e-4 (fp32 kernels that sum in another
order; the measured difference is about 1e-7).  The pruned zeros are checked exactly, in the file's initializers.
"""

import sys

import numpy as np
import pytest
import torch

from sparsehalo import config as config_mod
from sparsehalo import io, models, paths
from sparsehalo.export import export_onnx, find_source
from sparsehalo.io import load_torch
from sparsehalo.posthoc import prune_run
from sparsehalo.pruning import prune
from sparsehalo.selection import prunable_parameters
from sparsehalo.training import build_model, train

from support import cli, require_extra

ATOL, RTOL = 1e-5, 1e-4


@pytest.fixture(scope="module")
def onnx_mods():
    for name in ("onnx", "onnxruntime", "onnxscript"):
        require_extra(name, "onnx")
    import onnx
    import onnxruntime

    return onnx, onnxruntime


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    """A 1-epoch HALO run of LeNet-300-100 on the synthetic data, pruned to 90%."""
    settings = ['data.name="synthetic"', "data.batch_size=64", "data.eval_batch_size=256", "train.epochs=1",
                'penalty.name="halo"', "penalty.xi=1e-3", "penalty.psi=1e-3", "prune.levels=[0.9]",
                "run.progress=false", 'run.device="cpu"']
    cfg = config_mod.load(None, settings)
    run_dir = cfg.run_dir(tmp_path_factory.mktemp("runs"))
    train(cfg, run_dir, echo=lambda s: None)
    prune_run(run_dir, 0.9)
    return run_dir, cfg


def _torch_model(cfg, source):
    model = build_model(cfg, 10)
    model.load_state_dict(load_torch(source)["model"])
    return model.eval()


def _session(onnxruntime, path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _ok(capsys, *args):
    rc, out, err = cli(capsys, *args)
    assert rc == 0 and err == [], (rc, err)
    return out


def _refused(capsys, *args, needle, prefix="sparsehalo: error: "):
    rc, out, err = cli(capsys, *args)
    assert rc == 2 and len(err) == 1, (rc, err)
    assert err[0].startswith(prefix) and needle in err[0], err
    return err[0]


def test_export_runs_in_onnxruntime_like_pytorch(onnx_mods, pruned_run, capsys):
    onnx, onnxruntime = onnx_mods
    run_dir, cfg = pruned_run
    out = _ok(capsys, "export", run_dir, "--format", "onnx", "--sparsity", "0.9")
    path = paths.onnx_export(run_dir)
    assert f"wrote {path} (onnx, opset" in out and "input: [batch, 1, 28, 28] -> logits" in out
    io.verify(path)  # its SHA-256 sidecar
    model = _torch_model(cfg, find_source(run_dir, 0.9))

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    (inp,) = proto.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "input" and dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [1, 28, 28]

    session = _session(onnxruntime, path)
    g = torch.Generator().manual_seed(0)
    for batch in (2, 1, 7, 300):  # 2 is the export's example batch; the others are not
        x = torch.rand(batch, 1, 28, 28, generator=g)
        (got,) = session.run(["logits"], {"input": x.numpy()})
        with torch.no_grad():
            want = model(x).numpy()
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)

    # the pruned zeros are in the file: every prunable weight is an initializer equal to the pruned weight
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    prunable = prunable_parameters(model)
    assert list(prunable) == ["fc1.weight", "fc2.weight", "fc3.weight"]
    zeros = 0
    for name, p in prunable.items():
        assert np.array_equal(inits[name], p.detach().numpy()), name
        zeros += int((inits[name] == 0).sum())
    assert zeros == round(0.9 * 266_200)


def test_export_again_is_idempotent_other_content_refused_force_replaces(onnx_mods, pruned_run, capsys, tmp_path):
    run_dir, _ = pruned_run
    out = tmp_path / "m.onnx"
    _ok(capsys, "export", run_dir, "--format", "onnx", "--sparsity", "0.9", "--out", out)
    first = out.read_bytes()
    _ok(capsys, "export", run_dir, "--format", "onnx", "--sparsity", "0.9", "--out", out, "--input-shape", "1,28,28")  # the same bytes
    assert out.read_bytes() == first
    _refused(capsys, "export", run_dir, "--format", "onnx", "--out", out, needle="--force")  # the unpruned weights differ
    assert out.read_bytes() == first
    report = _ok(capsys, "export", run_dir, "--format", "onnx", "--out", out, "--force", "--json")
    assert out.read_bytes() != first and '"prunable_zeros_in_file"' in report
    io.verify(out)


def test_library_export_of_a_conv_net(onnx_mods, tmp_path):
    _, onnxruntime = onnx_mods
    torch.manual_seed(0)
    model = models.build("lenet5")
    prune(model, 0.8)
    report = export_onnx(model, tmp_path / "lenet5.onnx", (1, 28, 28))
    assert model.training  # the exporter's eval() is undone
    zeros = sum(int((p == 0).sum()) for p in prunable_parameters(model).values())
    assert report["prunable_zeros"] == report["prunable_zeros_in_file"] == zeros > 0
    assert report["prunable_tensors_in_file"] == 5 and report["format"] == "onnx"
    x = torch.rand(5, 1, 28, 28)
    (got,) = _session(onnxruntime, tmp_path / "lenet5.onnx").run(None, {"input": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, model.eval()(x).numpy(), atol=ATOL, rtol=RTOL)


def test_library_export_of_a_transformer_finds_transposed_weights(onnx_mods, tmp_path):
    """The exporter's optimizer stores attention and MLP weights transposed under new names; their zeros still count."""
    onnx, onnxruntime = onnx_mods
    torch.manual_seed(0)
    model = models.build("vit_tiny", depth=1, dim=32, heads=2, mlp=64).eval()
    with torch.no_grad():  # one scale for all layers, so that a global threshold keeps some of each
        for p in prunable_parameters(model).values():
            p.normal_()
    prune(model, 0.7)
    report = export_onnx(model, tmp_path / "vit.onnx", (1, 28, 28))
    names = {i.name for i in onnx.load(str(tmp_path / "vit.onnx")).graph.initializer}
    assert "encoder.layers.0.self_attn.in_proj_weight" not in names  # stored under another name
    zeros = sum(int((p == 0).sum()) for p in prunable_parameters(model).values())
    assert report["prunable_tensors_in_file"] == len(prunable_parameters(model)) == 6
    assert report["prunable_zeros_in_file"] == report["prunable_zeros"] == zeros > 0
    x = torch.rand(3, 1, 28, 28)
    (got,) = _session(onnxruntime, tmp_path / "vit.onnx").run(None, {"input": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=ATOL, rtol=RTOL)


def test_missing_extra_is_one_line_exit_2(pruned_run, capsys, monkeypatch, tmp_path):
    run_dir, _ = pruned_run
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # `import onnxscript` now raises ImportError
    line = _refused(capsys, "export", run_dir, "--format", "onnx", "--out", tmp_path / "m.onnx", needle="onnx extra")
    assert "onnxscript" in line and "pip install 'sparsehalo[onnx]'" in line
    assert not (tmp_path / "m.onnx").exists()


def test_bad_options(onnx_mods, pruned_run, capsys, tmp_path):
    run_dir, _ = pruned_run
    line = _refused(capsys, "export", run_dir, "--format", "onnx", "--input-shape", "3,32,32", "--out", tmp_path / "m.onnx",
                    needle="ONNX export of LeNet300 with input [batch, 3, 32, 32] failed: RuntimeError: ")
    assert "3072" in line and not (tmp_path / "m.onnx").exists()  # the real cause, in one line; nothing written
    _refused(capsys, "export", run_dir, "--format", "onnx", "--fp16", needle="--fp16 applies to --format sparse only")
    _refused(capsys, "export", run_dir, "--format", "dense", "--input-shape", "1,28,28", needle="--input-shape applies")
    _refused(capsys, "export", run_dir, "--format", "onnx", "--input-shape", "1,0,28", needle="positive",
             prefix="sparsehalo export: error: argument --input-shape")  # argparse's own line
