"""External checkpoints: safe loading, strict matching, sparsity over Conv2d weights, evaluation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from sparsehalo.errors import CheckpointError
from sparsehalo.measure import evaluate
from sparsehalo.measure.external import describe_external, load_external
from sparsehalo.models import build
from support import shared_path



def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


@pytest.fixture(scope="module")
def released():
    """describe_external of both released checkpoints, computed once (skipped without ../shared)."""
    released_dir = shared_path("reference", "halo-released")
    return {
        ratio: describe_external(released_dir / f"res50_c100_pruned_{ratio}.pth.tar", "resnet", 100, depth=50)
        for ratio in ("0.7", "0.95")
    }


@pytest.mark.parametrize("ratio, conv_sparsity, acc", [("0.7", 70.0, 70.70), ("0.95", 95.0, 65.57)])
def test_released_checkpoints(released, ratio, conv_sparsity, acc):
    info = released[ratio]
    assert abs(100 * info["conv_sparsity"] - conv_sparsity) < 0.1
    assert info["acc"] == pytest.approx(acc)
    assert info["epoch"] == 0 and info["best_acc"] == 0.0
    assert info["num_parameters"] == 764_404
    # Conv weights: all parameters less fc (64 x 100 + 100) and BN affine terms.
    bn = sum(m.weight.numel() + m.bias.numel() for m in info["model"].modules() if isinstance(m, nn.BatchNorm2d))
    assert info["num_conv_weights"] == 764_404 - 6_500 - bn
    assert info["conv"]["total"] == info["num_conv_weights"]
    assert "Conv2d weights" in info["conv"]["denominator"]
    assert len(info["conv"]["layers"]) == 51  # 49 in the blocks, the stem, two shortcuts
    assert all(row["name"].endswith(".weight") for row in info["conv"]["layers"])
    # fc and BN stay dense, so the share of all parameters pruned is a little lower (METHOD.md: 95%
    # conv pruning leaves 6.3% of the network).
    assert info["all_sparsity"] < info["conv_sparsity"]
    if ratio == "0.95":
        assert 1 - info["all_sparsity"] == pytest.approx(0.063, abs=0.0005)
    assert "Conv2d weights" in str(info["table"])


def test_load_external_forms(tmp_path):
    model = build("resnet", depth=8)
    state = model.state_dict()
    raw = tmp_path / "raw.pt"
    torch.save(state, raw)
    out = load_external(raw)
    assert list(out["state_dict"]) == list(state) and out["acc"] is None and out["epoch"] is None
    nested = tmp_path / "nested.pt"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "acc": torch.tensor(12.5), "epoch": 3}, nested)
    out = load_external(nested)
    assert list(out["state_dict"]) == list(state)
    assert out["acc"] == 12.5 and isinstance(out["acc"], float) and out["epoch"] == 3 and out["best_acc"] is None
    empty = tmp_path / "empty.pt"
    torch.save({"epoch": 1, "optimizer": {"lr": 0.1}}, empty)
    with pytest.raises(CheckpointError) as exc:
        load_external(empty)
    assert "no state dict" in one_line(exc)
    with pytest.raises(CheckpointError):
        load_external(tmp_path / "absent.pt")


def test_mismatch_names_the_keys(tmp_path):
    state = build("resnet", depth=8).state_dict()
    state["layer9.0.conv1.weight"] = state.pop("layer1.0.conv1.weight")
    path = tmp_path / "wrong.pth.tar"
    torch.save({"state_dict": state, "acc": 50.0}, path)
    with pytest.raises(CheckpointError) as exc:
        describe_external(path, "resnet", 10, depth=8)
    msg = one_line(exc)
    assert "missing keys layer1.0.conv1.weight" in msg and "unexpected keys layer9.0.conv1.weight" in msg
    # Wrong number of classes: a shape mismatch, reported as such.
    with pytest.raises(CheckpointError) as exc:
        describe_external(shared_path("reference", "halo-released", "res50_c100_pruned_0.7.pth.tar"), "resnet", 10, depth=50)
    assert "fc.weight 100x64 vs 10x64" in one_line(exc)
    # Wrong depth: many missing keys, only the first few quoted.
    with pytest.raises(CheckpointError) as exc:
        describe_external(shared_path("reference", "halo-released", "res50_c100_pruned_0.7.pth.tar"), "resnet", 100, depth=20)
    assert "more)" in one_line(exc)


class _Exploit:
    """Unpickling this object calls os.mkdir(marker): the canary for code execution."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_code_executing_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": build("resnet", depth=8).state_dict(), "acc": _Exploit(marker)}, path)
    with pytest.raises(CheckpointError) as exc:
        load_external(path)
    one_line(exc)
    with pytest.raises(CheckpointError):
        describe_external(path, "resnet", 10, depth=8)
    assert not marker.exists()
    # The canary is real: an unsafe load does run it.
    torch.load(path, map_location="cpu", weights_only=False)
    assert marker.exists()


def test_evaluate_on_released_model_matches_hand_count(released):
    model = released["0.7"]["model"]
    torch.manual_seed(0)
    x = torch.randn(12, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    # Half the labels agree with the model, half are arbitrary, in uneven batches.
    y = torch.where(torch.arange(12) % 2 == 0, pred, torch.randint(0, 100, (12,)))
    expected = 100.0 * (pred == y).float().mean().item()
    model.train()
    batches = [(x[:5], y[:5]), (x[5:7], y[5:7]), (x[7:], y[7:])]
    out = evaluate(model, batches)
    assert 0 <= out["accuracy"] <= 100
    assert out["accuracy"] == pytest.approx(expected) and out["n"] == 12
    assert model.training  # mode restored
