"""MACs and parameter counts against hand counts."""

import json
import warnings

import pytest
import torch
from torch import nn

from sparsehalo.errors import SparsehaloError
from sparsehalo.measure import LayerCost, layer_costs, measure
from sparsehalo.models import build


def test_lenet300_dense_macs():
    costs = layer_costs(build("lenet300"), (1, 28, 28))
    assert [(c.name, c.kind, c.macs_dense) for c in costs] == [
        ("fc1", "Linear", 784 * 300),
        ("fc2", "Linear", 300 * 100),
        ("fc3", "Linear", 100 * 10),
    ]
    assert sum(c.macs_dense for c in costs) == 266_200
    # Random init has no exact zeros.
    assert all(c.macs_nonzero == c.macs_dense and c.params_nonzero == c.params for c in costs)


def test_lenet5_conv_and_fc_macs():
    costs = {c.name: c for c in layer_costs(build("lenet5"), (1, 28, 28))}
    assert costs["conv1"].macs_dense == 28 * 28 * 6 * 25 == 117_600
    assert costs["conv2"].macs_dense == 10 * 10 * 16 * 150 == 240_000
    assert costs["fc1"].macs_dense == 400 * 120
    assert costs["fc2"].macs_dense == 120 * 84
    assert costs["fc3"].macs_dense == 84 * 10
    assert costs["conv1"].kind == "Conv2d" and costs["conv1"].params == 150


def test_pruned_conv_counts_each_nonzero_once_per_position():
    conv = nn.Conv2d(3, 4, 3)  # 8x8 input -> 6x6 output, 108 weights
    k = 40
    with torch.no_grad():
        conv.weight.view(-1)[torch.randperm(108, generator=torch.Generator().manual_seed(0))[:k]] = 0
    (c,) = layer_costs(conv, (3, 8, 8))
    assert c == LayerCost("", "Conv2d", 6 * 6 * 108, 6 * 6 * (108 - k), 108, 108 - k)


def test_grouped_conv_and_stride_dense_count():
    conv = nn.Conv2d(4, 6, 3, groups=2, stride=2, padding=1)  # 9x9 -> 5x5; weight 6 x 2 x 3 x 3
    (c,) = layer_costs(conv, (4, 9, 9))
    assert c.macs_dense == 5 * 5 * 6 * (4 // 2) * 3 * 3
    assert c.params == 108


def test_linear_with_inner_rows():
    lin = nn.Linear(5, 7)
    (c,) = layer_costs(lin, (3, 4, 5))  # 12 rows of 5 features per example
    assert c.macs_dense == 12 * 5 * 7


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.unused = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.fc(x))


def test_layer_called_twice_counts_twice_and_unused_costs_nothing():
    costs = {c.name: c for c in layer_costs(Shared(), (4,))}
    assert costs["fc"].macs_dense == 2 * 16
    assert costs["unused"].macs_dense == 0 and costs["unused"].params == 8


class Tiny(nn.Module):
    """Conv 1->2 3x3 on 4x4 (2x2 out) then Linear 8->3, with batch norm and dropout."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.drop(self.bn(self.conv(x))).flatten(1))


def test_measure_hand_made_case():
    model = Tiny()
    with torch.no_grad():
        model.conv.weight.view(-1)[:9] = 0  # 18 -> 9 non-zero
        model.conv.bias.zero_()  # 2 zero biases count in params_nonzero, not in prunable
        model.fc.weight.view(-1)[:20] = 0  # 24 -> 4 non-zero
    m = measure(model, (1, 4, 4))
    params_total = 18 + 2 + 2 + 2 + 24 + 3  # conv w/b, bn w/b, fc w/b
    params_nonzero = 9 + 0 + 2 + 0 + 4 + 3  # bn bias starts at 0
    assert m["params_total"] == params_total == 51
    assert m["params_nonzero"] == params_nonzero == 18
    assert (m["prunable_total"], m["prunable_nonzero"]) == (42, 13)
    assert m["flops_dense"] == 4 * 18 + 24 == 96
    assert m["flops_nonzero"] == 4 * 9 + 4 == 40
    assert m["compression"] == pytest.approx(51 / 18)
    assert m["speedup"] == pytest.approx(96 / 40)
    assert [layer["name"] for layer in m["layers"]] == ["conv", "fc"]
    assert json.loads(json.dumps(m)) == m


def test_measure_explicit_selection_and_zero_guard():
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    m = measure(model, (3,), prunable={"bias": model.bias})
    assert (m["prunable_total"], m["prunable_nonzero"]) == (2, 0)
    assert (m["flops_dense"], m["flops_nonzero"]) == (6, 0)
    assert m["compression"] is None and m["speedup"] is None
    json.dumps(m, allow_nan=False)


def test_mode_restored_and_hooks_removed():
    model = Tiny()
    model.train()
    model.bn.eval()  # a mixed state must come back as it was
    layer_costs(model, (1, 4, 4))
    assert model.training and model.conv.training and not model.bn.training
    assert not model.conv._forward_hooks and not model.fc._forward_hooks
    with pytest.raises(SparsehaloError, match="shape"):
        layer_costs(model, (1, 5, 5))  # fc expects 8 features, gets 18
    assert model.training and not model.bn.training
    assert not model.conv._forward_hooks and not model.fc._forward_hooks


# --- every weight the default selection takes: convolutions of every kind, Linear-like, attention ----


def _out(n, k, s=1, p=0, d=1):
    """Output length of a convolution along one axis."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _zero(w, k, seed=0):
    """Set k entries of ``w`` to zero (positions drawn with a fixed seed); returns the non-zero count."""
    with torch.no_grad():
        w.view(-1)[torch.randperm(w.numel(), generator=torch.Generator().manual_seed(seed))[:k]] = 0
    return w.numel() - k


def test_conv1d_dense_and_nonzero():
    conv = nn.Conv1d(3, 4, 5, stride=2, padding=1)  # 20 -> 9 positions; weight 4 x 3 x 5
    nonzero = _zero(conv.weight, 17)
    (c,) = layer_costs(conv, (3, 20))
    positions = _out(20, 5, s=2, p=1)
    assert positions == 9
    assert c == LayerCost("", "Conv1d", positions * 4 * 3 * 5, positions * nonzero, 60, nonzero)


def test_conv3d_groups_stride_dilation_padding():
    conv = nn.Conv3d(4, 6, (3, 3, 2), groups=2, stride=(2, 1, 1), dilation=(1, 2, 1), padding=(1, 0, 0))
    nonzero = _zero(conv.weight, 50)
    (c,) = layer_costs(conv, (4, 7, 8, 5))
    positions = _out(7, 3, s=2, p=1) * _out(8, 3, d=2) * _out(5, 2)
    assert positions == 4 * 4 * 4
    assert c.kind == "Conv3d" and c.params == 6 * 2 * 3 * 3 * 2 == 216
    assert c.macs_dense == positions * 6 * (4 // 2) * 3 * 3 * 2
    assert (c.macs_nonzero, c.params_nonzero) == (positions * nonzero, nonzero)


def test_conv_transpose_counts_input_positions():
    # stride 2 makes the output (11 x 12) much larger than the input (5 x 6): each weight entry is used
    # once per input position, not once per output position.
    conv = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2, padding=1, output_padding=1)
    nonzero = _zero(conv.weight, 30)
    (c,) = layer_costs(conv, (4, 5, 6))
    assert conv.weight.shape == (4, 3, 3, 3)
    assert c == LayerCost("", "ConvTranspose2d", 5 * 6 * 4 * (6 // 2) * 3 * 3, 5 * 6 * nonzero, 108, nonzero)

    (c1,) = layer_costs(nn.ConvTranspose1d(2, 3, 4, stride=3), (2, 7))
    assert (c1.kind, c1.macs_dense) == ("ConvTranspose1d", 7 * 2 * 3 * 4)
    (c3,) = layer_costs(nn.ConvTranspose3d(2, 4, 2, stride=2, groups=2), (2, 3, 3, 3))
    assert (c3.kind, c3.macs_dense) == ("ConvTranspose3d", 27 * 2 * (4 // 2) * 2 * 2 * 2)


def test_conv_with_extra_dims_folded_into_the_batch():
    class Folded(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(2, 3, 3)

        def forward(self, x):  # (1, 5, 2, 10): 5 sequences folded into the batch
            return self.conv(x.flatten(0, 1))

    (c,) = layer_costs(Folded(), (5, 2, 10))
    assert c.macs_dense == 5 * 8 * 3 * 2 * 3


class MyLinear(nn.Linear):
    pass


def test_linear_subclasses_and_bilinear():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.mine = MyLinear(7, 5)
            self.nd = nn.modules.linear.NonDynamicallyQuantizableLinear(5, 7)
            self.bil = nn.Bilinear(3, 4, 6)

        def forward(self, x):  # x: (1, 2, 7)
            x = self.nd(self.mine(x))
            return self.bil(x[..., :3], x[..., 3:])

    net = Net()
    nonzero = _zero(net.bil.weight, 10)
    costs = {c.name: c for c in layer_costs(net, (2, 7))}
    assert (costs["mine"].kind, costs["mine"].macs_dense) == ("Linear", 2 * 7 * 5)
    assert (costs["nd"].kind, costs["nd"].macs_dense) == ("Linear", 2 * 5 * 7)
    assert costs["bil"] == LayerCost("bil", "Bilinear", 2 * 3 * 4 * 6, 2 * nonzero, 72, nonzero)


class SelfAttention(nn.Module):
    """Self-attention over the L tokens of a (1, L, E) input, in the layout the module expects."""

    def __init__(self, e=16, heads=4, batch_first=True, **kw):
        super().__init__()
        self.att = nn.MultiheadAttention(e, heads, batch_first=batch_first, **kw)

    def forward(self, x):
        if not self.att.batch_first:
            x = x.transpose(0, 1)  # (L, 1, E)
        return self.att(x, x, x)[0]


@pytest.mark.parametrize("batch_first", [True, False])
def test_self_attention_projections_and_matmuls(batch_first):
    model = SelfAttention(16, 4, batch_first)
    L, E = 6, 16
    costs = layer_costs(model, (L, E))
    assert [(c.name, c.kind) for c in costs] == [
        ("att.in_proj_weight", "attention projection"), ("att", "attention matmul"), ("att.out_proj", "Linear")]
    assert [(c.macs_dense, c.params) for c in costs] == [
        (L * 3 * E * E, 3 * E * E), (2 * L * L * E, 0), (L * E * E, E * E)]
    assert costs[1].macs_nonzero == costs[1].macs_dense
    assert torch.backends.mha.get_fastpath_enabled()  # restored
    assert not model.att._forward_hooks


def test_attention_counts_per_sequence_and_unbatched_input():
    class AsGiven(SelfAttention):
        def forward(self, x):
            return self.att(x, x, x)[0]

    # batch_first=False on a (1, 6, 16) input: 6 sequences of length 1, so each attends to itself only.
    costs = {c.name: c for c in layer_costs(AsGiven(16, 2, batch_first=False, bias=False), (6, 16))}
    assert (costs["att.in_proj_weight"].macs_dense, costs["att"].macs_dense) == (6 * 3 * 256, 2 * 6 * 1 * 1 * 16)

    class Unbatched(SelfAttention):
        def forward(self, x):
            return self.att(x[0], x[0], x[0])[0]  # (L, E): batch_first does not apply

    costs = {c.name: c for c in layer_costs(Unbatched(16, 2, batch_first=True), (5, 16))}
    assert (costs["att.in_proj_weight"].macs_dense, costs["att"].macs_dense) == (5 * 3 * 256, 2 * 5 * 5 * 16)
    assert costs["att.out_proj"].macs_dense == 5 * 256


class CrossAttention(nn.Module):
    """Queries: the 5 tokens of a (1, 5, 16) input; keys and values: its first 3 tokens, cut to kdim / vdim."""

    def __init__(self, **kw):
        super().__init__()
        self.att = nn.MultiheadAttention(16, 2, batch_first=True, **kw)

    def forward(self, x):
        k, v = x[:, :3, : self.att.kdim], x[:, :3, : self.att.vdim]
        return self.att(query=x, key=k, value=v, need_weights=False)[0]


def test_cross_attention_with_kdim_vdim_bias_kv_and_zero_attn():
    model = CrossAttention(kdim=6, vdim=7, add_bias_kv=True, add_zero_attn=True)
    nonzero_k = _zero(model.att.k_proj_weight, 20)
    costs = {c.name: c for c in layer_costs(model, (5, 16))}
    Lq, Lk, E = 5, 3, 16
    assert list(costs) == ["att.q_proj_weight", "att.k_proj_weight", "att.v_proj_weight", "att", "att.out_proj"]
    assert costs["att.q_proj_weight"].macs_dense == Lq * E * E
    assert costs["att.k_proj_weight"] == LayerCost(
        "att.k_proj_weight", "attention projection", Lk * 6 * E, Lk * nonzero_k, 6 * E, nonzero_k)
    assert costs["att.v_proj_weight"].macs_dense == Lk * 7 * E
    # the learned bias_k / bias_v and the zero key / value make 3 + 1 + 1 keys to attend to
    assert costs["att"].macs_dense == 2 * Lq * (Lk + 2) * E
    assert costs["att.out_proj"].macs_dense == Lq * E * E
    m = measure(model, (5, 16))
    assert m["uncounted"] == []  # bias_k / bias_v are understood
    assert m["flops_dense"] == sum(c.macs_dense for c in costs.values())


def test_packed_in_proj_nonzero_counts_each_block_with_its_rows():
    model = CrossAttention()  # packed in_proj_weight, queries 5 rows, keys and values 3 rows
    E = 16
    with torch.no_grad():
        model.att.in_proj_weight[0:3] = 0  # 48 zeros in the q block
        model.att.in_proj_weight[E:E + 4] = 0  # 64 in the k block
        model.att.in_proj_weight[2 * E + 8] = 0  # 16 in the v block
        model.att.out_proj.weight[:2] = 0  # 32
    costs = {c.name: c for c in layer_costs(model, (5, E))}
    c = costs["att.in_proj_weight"]
    assert c.macs_dense == 5 * E * E + 3 * E * E + 3 * E * E
    assert c.macs_nonzero == 5 * (256 - 48) + 3 * (256 - 64) + 3 * (256 - 16)
    assert (c.params, c.params_nonzero) == (768, 768 - 128)
    assert (costs["att.out_proj"].macs_dense, costs["att.out_proj"].macs_nonzero) == (5 * 256, 5 * (256 - 32))
    assert costs["att"].macs_nonzero == costs["att"].macs_dense == 2 * 5 * 3 * E


def _encoder_layer_macs(L, E, F):
    """One encoder layer on L tokens: in_proj, attention matmuls, out_proj, the two MLP layers."""
    return L * 3 * E * E + 2 * L * L * E + L * E * E + L * E * F + L * F * E


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_layer_in_eval_mode_is_counted_fully(norm_first):
    layer = nn.TransformerEncoderLayer(16, 2, 32, 0.0, batch_first=True, norm_first=norm_first).eval()
    m = measure(layer, (5, 16))
    assert m["flops_dense"] == _encoder_layer_macs(5, 16, 32) == 11_040  # the old count: 5,120 (MLP only)
    assert [row["name"] for row in m["layers"]] == [
        "self_attn.in_proj_weight", "self_attn", "self_attn.out_proj", "linear1", "linear2"]
    assert m["uncounted"] == [] and not layer.training


@pytest.mark.parametrize("nested", [False, True])
def test_transformer_encoder_in_eval_mode_is_counted_fully(nested):
    layer = nn.TransformerEncoderLayer(16, 2, 32, 0.0, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=nested).eval()
    assert sum(c.macs_dense for c in layer_costs(encoder, (5, 16))) == 2 * _encoder_layer_macs(5, 16, 32)
    assert torch.backends.mha.get_fastpath_enabled()


def test_vit_tiny_hand_count():
    L, E, F = 17, 96, 192  # 16 patches + the class token
    costs = layer_costs(build("vit_tiny"), (1, 28, 28))
    assert sum(c.macs_dense for c in costs) == 16 * 96 * 49 + 4 * _encoder_layer_macs(L, E, F) + 96 * 10 == 5_311_680
    assert sum(c.params for c in costs) == 300_576  # the weights the default selection prunes


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 4))  # x @ weight.t(): MACs the counter cannot see
        self.pos = nn.Parameter(torch.randn(1, 3))  # only added: no MACs
        self.spare = nn.Parameter(torch.randn(2, 2))  # never used

    def forward(self, x):
        return x @ self.weight.t() + self.pos


class LoRALinear(nn.Linear):
    def __init__(self, n_in, n_out, rank=2):
        super().__init__(n_in, n_out)
        self.lora = nn.Parameter(torch.randn(n_out, n_in))

    def forward(self, x):
        return super().forward(x) + x @ self.lora.t()


def test_uncounted_weights_are_reported_and_warned():
    model = nn.Sequential(LoRALinear(5, 4), Custom(), nn.ReLU())
    with pytest.warns(UserWarning, match=r"MACs not counted for 0\.lora, 1\.weight, 1\.spare"):
        m = measure(model, (5,))
    assert m["uncounted"] == ["0.lora", "1.weight", "1.spare"]  # 1.pos is only added
    assert [row["name"] for row in m["layers"]] == ["0"] and m["flops_dense"] == 20


def test_embeddings_are_lookups_and_tied_weights_count_their_entries_once():
    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 8)
            self.fc = nn.Linear(8, 8, bias=False)
            self.again = nn.Linear(8, 8, bias=False)
            self.again.weight = self.fc.weight
            self.head = nn.Linear(8, 10, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, x):  # x: (1, 3) zeros, used as token ids
            return self.head(self.again(self.fc(self.emb(x.long()))))

    model = LM()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = measure(model, (3,))
    rows = {r["name"]: r for r in m["layers"]}
    assert [(n, r["kind"], r["macs_dense"], r["params"]) for n, r in rows.items()] == [
        ("emb", "Embedding", 0, 80), ("fc", "Linear", 3 * 64, 64), ("again", "Linear", 3 * 64, 0),
        ("head", "Linear", 3 * 80, 0)]
    assert m["flops_dense"] == 3 * (64 + 64 + 80) and m["uncounted"] == []
    assert m["params_total"] == 80 + 64 == sum(r["params"] for r in rows.values())


def test_wrapped_and_reparametrized_models_give_plain_names():
    from torch.nn.utils import prune

    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
    prune.l1_unstructured(model[0], "weight", amount=0.5)  # weight_orig * weight_mask: 12 of 24 left
    costs = layer_costs(torch.compile(model), (3, 6))  # the wrapper is looked through, not compiled
    assert [(c.name, c.macs_dense, c.macs_nonzero, c.params, c.params_nonzero) for c in costs] == [
        ("0", 3 * 24, 3 * 12, 24, 12), ("2", 3 * 8, 3 * 8, 8, 8)]


def test_parametrized_weight_is_counted_with_its_computed_value():
    from torch.nn.utils.parametrizations import weight_norm

    model = nn.Sequential(weight_norm(nn.Linear(4, 3)))  # weight from original0 (g) and original1 (v)
    with torch.no_grad():
        model[0].parametrizations.weight.original0[0] = 0  # g = 0: row 0 of the weight becomes 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = measure(model, (2, 4))
    assert m["layers"] == [dict(name="0", kind="Linear", macs_dense=2 * 12, macs_nonzero=2 * 8, params=12,
                                params_nonzero=8)]
    assert m["uncounted"] == []
