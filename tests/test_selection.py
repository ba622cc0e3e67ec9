"""The one selection: attention, Conv1d/3d, subclasses, embeddings, tied weights, torch.nn.utils.prune,
wrapped models (compile, DDP), meta models and parameters replaced after the penalty was built."""

import socket
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from sparsehalo import HALO, export_sparse, load_sparse, prune, sparsity_table
from sparsehalo.errors import CheckpointError, ConfigError, SparsehaloError
from sparsehalo.pruning import Mask
from sparsehalo.selection import aliases, select_parameters, strip_wrapper_prefixes, unwrap


def encoder_layer():
    torch.manual_seed(0)
    return nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, batch_first=True)


def test_attention_projections_are_selected_norms_and_biases_are_not():
    layer = encoder_layer()
    assert list(select_parameters(layer)) == ["self_attn.in_proj_weight", "self_attn.out_proj.weight",
                                              "linear1.weight", "linear2.weight"]
    assert list(select_parameters(layer, biases=True)) == [
        "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
        "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias"]
    mha = nn.MultiheadAttention(8, 2)  # bare: used to be "selection ... is empty"
    assert set(HALO.for_model(mha).penalized()) == {"in_proj_weight", "out_proj.weight"}
    kv = nn.MultiheadAttention(8, 2, kdim=4, vdim=6)
    assert list(select_parameters(kv)) == ["q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj.weight"]


class MyLinear(nn.Linear):
    pass


def test_every_conv_and_linear_kind_by_isinstance_embeddings_by_setting():
    model = nn.ModuleDict({"c1": nn.Conv1d(2, 3, 3), "c3": nn.Conv3d(2, 3, 3), "t2": nn.ConvTranspose2d(2, 3, 3),
                           "mine": MyLinear(4, 5), "emb": nn.Embedding(7, 4), "norm": nn.LayerNorm(4)})
    assert list(select_parameters(model)) == ["c1.weight", "c3.weight", "t2.weight", "mine.weight"]
    assert "emb.weight" in select_parameters(model, embeddings=True)
    assert list(select_parameters(model, types=["Conv1d", MyLinear])) == ["c1.weight", "mine.weight"]
    assert list(select_parameters(model, types=["Linear"])) == ["mine.weight"]  # isinstance: subclasses count
    with pytest.raises(ConfigError, match="unknown module type 'Lenear'"):
        select_parameters(model, types=["Lenear"])


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Embedding(10, 4)
        self.mid = nn.Linear(4, 4)
        self.dec = nn.Linear(4, 10, bias=False)
        self.dec.weight = self.enc.weight

    def forward(self, x):
        return self.dec(self.mid(self.enc(x)))


def test_tied_weights_are_one_tensor_everywhere(tmp_path):
    torch.manual_seed(0)
    model = Tied()
    assert aliases(model) == {"enc.weight": ("dec.weight",)}
    assert list(select_parameters(model)) == ["mid.weight", "enc.weight"]  # found through dec, keyed by first name
    pen = HALO.for_model(model, xi=1e-3, psi=1e-3)
    assert len(pen.scales) == 2  # one scale tensor for the tied weight
    pen.check_partition(model)  # used to report "both 'penalized' and 'penalized'"
    assert pen.summary(model) == "penalized: 2 tensors, 56 entries (1 tied, counted once); left out: 1 tensors, 4 entries"
    mask = prune(model, 0.5)
    assert list(mask) == ["mid.weight", "enc.weight"] and mask.aliases == {"enc.weight": ("dec.weight",)}
    assert mask.num_kept == 28 and torch.equal(model.dec.weight, model.enc.weight)
    table = sparsity_table(model)
    assert (table.total, table.nonzero) == (56, 28)
    Mask({"dec.weight": mask["enc.weight"]}).check(model)  # any alias names the tensor
    export_sparse(model, tmp_path / "tied.sparse.safetensors")
    fresh = load_sparse(tmp_path / "tied.sparse.safetensors", Tied())
    assert torch.equal(fresh.enc.weight, model.enc.weight) and torch.equal(fresh.dec.weight, model.enc.weight)


def test_a_layer_pruned_with_torch_nn_utils_prune_keeps_its_mask():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8))
    torch_prune.l1_unstructured(model[0], "weight", amount=0.5)  # weight_orig + weight_mask
    before = model[0].weight_mask.bool().clone()
    assert list(select_parameters(model)) == ["0.weight_orig"]
    assert list(HALO.for_model(model).penalized()) == ["0.weight_orig"]
    assert sparsity_table(model).nonzero == 32  # counts the effective weight, not weight_orig
    mask = prune(model, 0.75)
    kept = mask["0.weight_orig"]
    assert int(kept.sum()) == 16 and not bool((kept & ~before).any())  # a subset of the existing mask
    model(torch.randn(2, 8))  # torch's hook recomputes weight = weight_orig * weight_mask
    assert int(model[0].weight.count_nonzero()) == 16


def test_wrapper_prefixes_are_stripped_only_when_every_key_has_them():
    assert list(strip_wrapper_prefixes({"module._orig_mod.fc.weight": 1, "module._orig_mod.fc.bias": 2})) == ["fc.weight", "fc.bias"]
    assert list(strip_wrapper_prefixes({"module.fc.weight": 1, "head.weight": 2})) == ["module.fc.weight", "head.weight"]


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def check_wrapped(wrapped, plain, tmp_path):
    assert unwrap(wrapped) is plain
    assert list(select_parameters(wrapped)) == ["0.weight", "2.weight"]
    mask = prune(wrapped, 0.5)
    assert list(mask) == ["0.weight", "2.weight"]
    mask.check(mlp())  # fits the plain model
    Mask({f"_orig_mod.{n}": m for n, m in mask.items()}).check(plain)  # wrapper-prefixed names too
    export_sparse(wrapped, tmp_path / "w.sparse.safetensors")
    assert torch.equal(load_sparse(tmp_path / "w.sparse.safetensors", mlp())[2].weight, plain[2].weight)
    assert set(HALO.for_model(wrapped).penalized()) == {"0.weight", "2.weight"}


def test_compiled_model_uses_the_plain_names(tmp_path):
    plain = mlp()
    check_wrapped(torch.compile(plain), plain, tmp_path)


def test_ddp_model_uses_the_plain_names(tmp_path):
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        plain = mlp()
        ddp = nn.parallel.DistributedDataParallel(plain)
        check_wrapped(ddp, plain, tmp_path)
        check_wrapped(nn.parallel.DistributedDataParallel(torch.compile(plain)), plain, tmp_path)
    finally:
        dist.destroy_process_group()


def test_penalty_follows_parameters_replaced_after_it_was_built():
    with torch.device("meta"):
        model = mlp()
    pen = HALO.for_model(model, xi=1e-2, psi=1e-2)
    with pytest.raises(SparsehaloError, match="0.weight .*meta device"):
        prune(model, 0.5)
    with pytest.raises(SparsehaloError, match="meta device"):
        sparsity_table(model)
    model.to_empty(device="cpu")
    model.load_state_dict(mlp().state_dict())
    pen.to_empty(device="cpu")
    pen.reset_scales()
    expected = HALO.for_model(mlp(), xi=1e-2, psi=1e-2)()
    assert torch.allclose(pen(), expected)
    # load_state_dict(assign=True) puts new Parameter objects in the modules
    other = {k: v * 2 for k, v in mlp().state_dict().items()}
    model.load_state_dict(other, assign=True)
    assert pen.penalized()["0.weight"] is model[0].weight
    pen().backward()
    assert model[0].weight.grad is not None


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.table = nn.Parameter(torch.zeros(64, 32))  # a weight matrix used in a custom forward
        self.emb = nn.Embedding(100, 16)


def test_summary_warns_about_large_tensors_left_out():
    model = Custom()
    pen = HALO.for_model(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = pen.summary(model)
    assert line == "penalized: 1 tensors, 16 entries; left out: 3 tensors, 3,652 entries"
    assert len(caught) == 1 and "table, emb.weight" in str(caught[0].message)
    with pytest.raises(CheckpointError, match="lacks: nothing.weight"):
        Mask({"nothing.weight": torch.ones(2, dtype=torch.bool)}).check(model)
