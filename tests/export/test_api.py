"""The export API: round trips through a model, the size target, run directories of both scopes."""

import json

import pytest
import torch

import sparsehalo
from sparsehalo import config as config_mod
from sparsehalo import export, models, paths
from sparsehalo.errors import CheckpointError, SparsehaloError
from sparsehalo.io import load_torch, save_torch
from sparsehalo.posthoc import prune_run
from sparsehalo.pruning import prune
from sparsehalo.training import train


def pruned_lenet(sparsity, seed=0, scope="layer"):
    torch.manual_seed(seed)
    model = models.build("lenet300").eval()
    prune(model, sparsity, scope=scope)
    return model


def same_state(a, b):
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


def test_round_trip_is_bit_identical(tmp_path):
    model = pruned_lenet(0.95)
    report = export.export_sparse(model, tmp_path / "m.safetensors")
    state, meta = export.read_sparse_state(tmp_path / "m.safetensors")
    assert same_state(state, model.state_dict())
    assert meta["format"] == export.FORMAT
    loaded = export.load_sparse(tmp_path / "m.safetensors", models.build("lenet300"))
    assert not loaded.training
    x = torch.rand(64, 1, 28, 28)
    assert torch.equal(loaded(x), model(x))
    assert report["file_bytes"] == (tmp_path / "m.safetensors").stat().st_size
    assert report["dense_fp32_bytes"] == 4 * 266_610
    assert report["ratio"] == pytest.approx(report["file_bytes"] / report["dense_fp32_bytes"])
    assert {n: t["encoding"] for n, t in report["tensors"].items() if n.endswith("bias")} == {f"fc{i}.bias": "dense" for i in (1, 2, 3)}
    encodings = json.loads(meta["encodings"])
    assert encodings["fc1.weight"]["encoding"] == report["tensors"]["fc1.weight"]["encoding"] != "dense"


def test_size_target_at_98_percent(tmp_path):
    """The issue's target: 98% sparse LeNet-300-100 in at most 3% of the dense fp32 bytes."""
    model = pruned_lenet(0.98)
    nonzero = sum(int((p != 0).sum()) for n, p in model.named_parameters() if n.endswith("weight"))
    assert nonzero == 5_324
    fp16 = export.export_sparse(model, tmp_path / "h.safetensors", values_dtype=torch.float16)
    fp32 = export.export_sparse(model, tmp_path / "f.safetensors")
    assert fp16["ratio"] <= 0.03 and fp32["ratio"] <= 0.03, (fp16["ratio"], fp32["ratio"])
    assert fp16["values_dtype"] == "float16"
    loaded = export.load_sparse(tmp_path / "h.safetensors", models.build("lenet300"))
    assert torch.equal(loaded.fc1.weight, model.fc1.weight.half().float())


def test_bad_arguments(tmp_path):
    model = pruned_lenet(0.9)
    with pytest.raises(SparsehaloError, match="reserved"):
        export.export_sparse(model, tmp_path / "m.safetensors", metadata={"format": "x"})
    with pytest.raises(SparsehaloError, match="str to str"):
        export.export_sparse(model, tmp_path / "m.safetensors", metadata={"num_classes": 10})
    with pytest.raises(SparsehaloError, match="values_dtype"):
        export.export_sparse(model, tmp_path / "m.safetensors", values_dtype=torch.int8)
    export.export_sparse(model, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="no model config"):
        export.load_sparse(tmp_path / "m.safetensors")


def test_file_for_another_model_is_refused(tmp_path):
    export.export_sparse(pruned_lenet(0.9), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="shape"):
        export.load_sparse(tmp_path / "m.safetensors", models.build("lenet300", hidden=(200, 100)))
    with pytest.raises(CheckpointError, match="do not match the model"):
        export.load_sparse(tmp_path / "m.safetensors", models.build("lenet5"))
    with pytest.raises(CheckpointError, match="not found"):
        export.load_sparse(tmp_path / "missing.safetensors")


# --- run directories -----------------------------------------------------------------------------------


@pytest.fixture
def run_dir(tmp_path):
    """A run directory with a final checkpoint and a pruned one, as train / prune write them."""
    cfg = config_mod.load(None, ['data.name="synthetic"', "train.epochs=1"])
    run = tmp_path / "run"
    torch.manual_seed(3)
    model = models.build("lenet300").eval()
    save_torch(paths.checkpoint(run), {"format": "sparsehalo-train-1", "epoch": 1, "config": json.dumps(cfg.to_dict()), "model": model.state_dict()})
    prune(model, 0.98, scope="layer")
    save_torch(paths.pruned_checkpoint(run, 0.98), {"format": "sparsehalo-pruned-1", "config": json.dumps(cfg.to_dict()), "model": model.state_dict()})
    return run, model


def test_export_run_sparse_rebuilds_model_from_metadata(run_dir):
    run, pruned = run_dir
    report = export.export_run(run, "sparse", sparsity=0.98)
    path = run / "export" / "model.sparse.safetensors"
    assert report["path"] == str(path) and report["source"].endswith("sparsity-0.98.pt")
    assert report["prunable_sparsity"] == pytest.approx(0.98, abs=1e-5)
    assert report["ratio"] < 0.03
    loaded = export.load_sparse(path)
    x = torch.rand(8, 1, 28, 28)
    assert torch.equal(loaded(x), pruned.eval()(x))
    assert "fc1.weight" in export.format_report(report)


def test_export_run_dense_loads_with_weights_only(run_dir, tmp_path):
    run, _ = run_dir
    report = export.export_run(run, "dense", out=tmp_path / "out.pt")
    state = torch.load(tmp_path / "out.pt", weights_only=True)
    model = models.build("lenet300")
    model.load_state_dict(state)
    expected = load_torch(run / "checkpoint.pt")["model"]
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    assert report["format"] == "dense" and report["file_bytes"] > report["dense_fp32_bytes"]


def test_export_run_errors(run_dir, tmp_path):
    run, _ = run_dir
    with pytest.raises(CheckpointError, match="sparsehalo prune .* --sparsity 0.9` first"):
        export.export_run(run, "sparse", sparsity=0.9)
    with pytest.raises(SparsehaloError, match="--fp16"):
        export.export_run(run, "dense", fp16=True)
    with pytest.raises(SparsehaloError, match="format"):
        export.export_run(run, "tflite")  # (onnx is a format since issue 14)
    with pytest.raises(CheckpointError, match="not found"):
        export.export_run(tmp_path / "nowhere", "sparse")


def test_export_run_fp16_values(run_dir):
    run, pruned = run_dir
    r16 = export.export_run(run, "sparse", sparsity=0.98, fp16=True)
    out32 = run / "export" / "fp32.safetensors"
    r32 = export.export_run(run, "sparse", out32, sparsity=0.98)
    assert r16["file_bytes"] < r32["file_bytes"] and r16["values_dtype"] == "float16"
    loaded = export.load_sparse(r16["path"])
    assert torch.equal(loaded.fc2.weight, pruned.fc2.weight.half().float())
    assert out32.is_file() and r32["path"] == str(out32)


def test_crafted_config_cannot_allocate_a_huge_model(tmp_path):
    cfg = config_mod.load(None, ['model.kwargs={hidden=[1000000, 1000000]}'])
    model = pruned_lenet(0.9)
    meta = {"config": json.dumps(cfg.to_dict()), "num_classes": "10"}
    export.export_sparse(model, tmp_path / "m.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match="limit"):
        export.load_sparse(tmp_path / "m.safetensors")


def test_package_root_re_exports_the_api():
    assert sparsehalo.export_sparse is export.export_sparse
    assert sparsehalo.export_dense is export.export_dense and sparsehalo.load_sparse is export.load_sparse


# --- a trained run, pruned with either scope -------------------------------------------------------------


def test_export_run_finds_a_prune_of_either_scope(tmp_path, tiny_settings):
    """``export_run(RUN, sparsity=S)`` reads ``pruned/sparsity-S-layer.pt`` as well as the global one."""
    cfg = config_mod.load(None, [*tiny_settings, "train.epochs=1", "prune.levels=[]"])
    run = cfg.run_dir(tmp_path)
    train(cfg, run, echo=lambda s: None)

    layer = prune_run(run, 0.9, scope="layer")
    report = export.export_run(run, "sparse", sparsity=0.9)  # the only prune at 0.9: no scope needed
    assert report["source"] == str(paths.pruned_checkpoint(run, 0.9, "layer")) == layer["checkpoint"]
    assert report["path"] == str(paths.sparse_export(run))
    stored = load_torch(paths.pruned_checkpoint(run, 0.9, "layer"))["model"]
    loaded = export.load_sparse(report["path"]).state_dict()
    assert all(torch.equal(loaded[k], stored[k]) for k in stored)
    # Layer scope: every prunable weight is itself 90% zeros (global scope would not force that).
    tensors = report["tensors"]
    assert all(t["nonzero"] <= 0.1 * t["shape"][0] * t["shape"][1] + 1 for n, t in tensors.items() if n.endswith("weight"))
    assert report["prunable_sparsity"] == pytest.approx(0.9, abs=1e-3)
    _, meta = export.read_sparse_state(report["path"])
    assert meta["source"] == paths.pruned_checkpoint(run, 0.9, "layer").name and meta["num_classes"] == "10"

    prune_run(run, 0.9, scope="global")
    with pytest.raises(SparsehaloError, match="scopes global, layer; choose one with --scope") as info:
        export.export_run(run, "sparse", sparsity=0.9)
    assert "\n" not in str(info.value)
    for scope in ("global", "layer"):
        out = tmp_path / f"{scope}.pt"
        report = export.export_run(run, "dense", out, sparsity=0.9, scope=scope)
        assert report["source"] == str(paths.pruned_checkpoint(run, 0.9, scope))
        stored = load_torch(paths.pruned_checkpoint(run, 0.9, scope))["model"]
        written = torch.load(out, weights_only=True)
        assert all(torch.equal(written[k], stored[k]) for k in stored)
    assert export.export_run(run, "sparse", sparsity=0.9, scope="global", force=True)["source"].endswith(paths.pruned_checkpoint(run, 0.9).name)

    with pytest.raises(CheckpointError, match=r"sparsehalo prune .* --sparsity 0.5 --scope layer` first"):
        export.export_run(run, "sparse", sparsity=0.5, scope="layer")
    with pytest.raises(SparsehaloError, match="give --sparsity"):
        export.export_run(run, "sparse", scope="layer")
    assert export.export_run(run, "dense")["source"] == str(paths.checkpoint(run))
