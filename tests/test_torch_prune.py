"""torch.nn.utils.prune interop: Mask.to_torch_prune / Mask.from_torch_prune, round trips, wrappers, tied weights."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

import sparsehalo
from sparsehalo import Mask, models
from sparsehalo.errors import CheckpointError, SparsehaloError

LAYERS = ("fc1", "fc2", "fc3")


def lenet(seed=0):
    torch.manual_seed(seed)
    return models.build("lenet300").eval()


class Tied(nn.Module):
    """enc and dec share one weight tensor (registered as enc.weight and dec.weight)."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(8, 8)
        self.mid = nn.Linear(8, 8)
        self.dec = nn.Linear(8, 8, bias=False)
        self.dec.weight = self.enc.weight

    def forward(self, x):
        return self.dec(torch.relu(self.mid(torch.relu(self.enc(x)))))


def same_masks(a, b):
    return set(a) == set(b) and all(torch.equal(a[n].cpu(), b[n].cpu()) for n in a)


def test_ours_to_torch_and_back_is_equal():
    model = lenet()
    reference = copy.deepcopy(model)
    mask = sparsehalo.prune(model, 0.9, apply=False)
    assert list(mask) == [f"{n}.weight" for n in LAYERS]
    pruned = mask.to_torch_prune(model)
    assert pruned == [f"{n}.weight" for n in LAYERS]
    for n in LAYERS:  # torch's reparametrization is in place
        layer = getattr(model, n)
        assert "weight_orig" in layer._parameters and "weight" not in layer._parameters
        assert torch.equal(layer.weight_mask, mask[f"{n}.weight"].float())
    back = Mask.from_torch_prune(model)
    assert back == mask and list(back) == list(mask) and back.aliases == {} == mask.aliases
    assert back.sparsity == mask.sparsity and back.num_pruned == round(0.9 * 266_200)
    mask.apply(reference)
    x = torch.rand(16, 1, 28, 28)
    assert torch.equal(model(x), reference(x))
    back.check(model)  # the plain names resolve to weight_orig on the torch-pruned model


def test_remove_after_to_torch_prune_equals_apply():
    model = lenet(1)
    applied = copy.deepcopy(model)
    mask = sparsehalo.prune(model, 0.95, scope="layer", apply=False)
    params = {n: getattr(model, n).weight for n in LAYERS}
    mask.to_torch_prune(model)
    for n in LAYERS:
        torch_prune.remove(getattr(model, n), "weight")
    mask.apply(applied)
    assert not torch.equal(applied.fc1.weight, lenet(1).fc1.weight)  # apply did zero something
    state, want = model.state_dict(), applied.state_dict()
    assert set(state) == set(want) and all(torch.equal(state[k], want[k]) for k in want)  # (remove re-registers weight last)
    assert all(getattr(model, n).weight is params[n] for n in LAYERS)  # the same Parameter objects
    assert len(Mask.from_torch_prune(model)) == 0


def test_torch_global_unstructured_to_ours_same_zeros_and_sparsity():
    model = lenet(2)
    with torch.no_grad():  # one scale for all layers, so that a global threshold keeps some of each
        for n in LAYERS:
            getattr(model, n).weight.normal_()
    ours_model = copy.deepcopy(model)
    torch_prune.global_unstructured([(getattr(model, n), "weight") for n in LAYERS], torch_prune.L1Unstructured, amount=0.98)
    mask = Mask.from_torch_prune(model)
    total = sum(getattr(model, n).weight_mask.numel() for n in LAYERS)
    torch_zeros = sum(int((getattr(model, n).weight_mask == 0).sum()) for n in LAYERS)
    assert mask.num_total == total == 266_200
    assert mask.num_pruned == torch_zeros == round(0.98 * total)
    assert mask.sparsity == pytest.approx(0.98, abs=1e-6) and mask.empty_layers == []
    for n in LAYERS:  # the zeros the torch-pruned model computes with are exactly the mask's
        assert torch.equal(getattr(model, n).weight == 0, ~mask[f"{n}.weight"])
    # our global magnitude threshold on the same weights picks the same entries (no ties in random weights)
    assert sparsehalo.prune(ours_model, 0.98) == mask
    mask.apply(ours_model)
    x = torch.rand(8, 1, 28, 28)
    assert torch.allclose(model(x), ours_model(x), atol=1e-6)


def test_wrapped_models_use_plain_names():
    model = lenet(3)
    mask = sparsehalo.prune(torch.compile(model), 0.5, apply=False)
    assert list(mask) == [f"{n}.weight" for n in LAYERS]
    prefixed = Mask({f"module.{n}": m for n, m in mask.items()})
    assert prefixed.to_torch_prune(nn.DataParallel(model)) == list(mask)
    assert Mask.from_torch_prune(nn.DataParallel(model)) == mask
    assert Mask.from_torch_prune(torch.compile(model)) == mask


def test_a_prune_of_a_torch_pruned_model_goes_back_to_torch():
    model = lenet(4)
    torch.manual_seed(0)
    torch_prune.random_unstructured(model.fc1, "weight", amount=0.5)
    before = model.fc1.weight_mask.clone() != 0
    ours = sparsehalo.prune(model, 0.9)  # keyed weight_orig where torch pruned; keeps torch's zeros
    assert "fc1.weight_orig" in ours and bool((~before & ours["fc1.weight_orig"]).sum() == 0)
    ours.to_torch_prune(model)  # torch multiplies the masks: ours already holds torch's
    back = Mask.from_torch_prune(model)
    assert list(back) == [f"{n}.weight" for n in LAYERS]
    assert same_masks(back, {n.removesuffix("_orig"): m for n, m in ours.items()})


def test_bad_masks_change_nothing():
    model = lenet()
    mask = sparsehalo.prune(copy.deepcopy(model), 0.5, apply=False)
    wrong = Mask({**mask, "fc3.weight": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(CheckpointError, match="shape"):
        wrong.to_torch_prune(model)
    with pytest.raises(CheckpointError, match="fc9.weight"):
        Mask({**mask, "fc9.weight": torch.ones(3, dtype=torch.bool)}).to_torch_prune(model)
    assert not any(hasattr(getattr(model, n), "weight_orig") for n in LAYERS)


# --- tied weights ----------------------------------------------------------------------------------------------
# Decision: a tied tensor is reparametrized in every module that uses it, with the same mask (torch masks per
# module, so an unmasked use would compute with the pruned entries); read back, it is one mask with aliases.


def test_tied_weights_are_pruned_in_every_use_and_read_back_once():
    torch.manual_seed(0)
    model = Tied()
    reference = copy.deepcopy(model)
    mask = sparsehalo.prune(model, 0.5, apply=False)
    assert mask.aliases == {"enc.weight": ("dec.weight",)}
    assert mask.to_torch_prune(model) == ["enc.weight", "dec.weight", "mid.weight"]
    assert model.enc.weight_orig is model.dec.weight_orig  # still one tensor
    assert torch.equal(model.enc.weight_mask, model.dec.weight_mask)
    back = Mask.from_torch_prune(model)
    assert back == mask and back.aliases == mask.aliases
    mask.apply(reference)
    x = torch.randn(4, 8)
    assert torch.equal(model(x), reference(x))
    for layer in (model.enc, model.mid, model.dec):
        torch_prune.remove(layer, "weight")
    assert model.enc.weight is model.dec.weight
    assert torch.equal(model.enc.weight, reference.enc.weight) and torch.equal(model.mid.weight, reference.mid.weight)


def test_tied_tensor_pruned_in_one_use_only_or_differently_is_refused():
    torch.manual_seed(0)
    model = Tied()
    torch_prune.l1_unstructured(model.enc, "weight", amount=0.5)
    with pytest.raises(SparsehaloError, match="tied tensor enc.weight .* not as dec.weight"):
        Mask.from_torch_prune(model)
    torch_prune.random_unstructured(model.dec, "weight", amount=0.75)
    with pytest.raises(SparsehaloError, match="different"):
        Mask.from_torch_prune(model)
