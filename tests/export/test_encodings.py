"""Encodings of one tensor: each round trips, the smallest is chosen, indices are range-checked."""

import json
import struct

import pytest
import torch
from torch import nn

from sparsehalo import export, models
from sparsehalo.errors import CheckpointError, SparsehaloError
from sparsehalo.export import encodings as enc
from sparsehalo.measure import count_nonzero
from sparsehalo.pruning import prune


def pruned_lenet(sparsity, seed=0, scope="layer"):
    torch.manual_seed(seed)
    model = models.build("lenet300").eval()
    prune(model, sparsity, scope=scope)
    return model


class ConvNet(nn.Module):
    """Conv + BatchNorm (float and integer buffers) + Linear, to cover every kind of tensor."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 6 * 6, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def write_raw(path, header, body=b""):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)
    return path


def patch_part(header, body, key, values):
    begin, end = header[key]["data_offsets"]
    dtype = {"U8": "<u1", "U16": "<u2"}[header[key]["dtype"]]
    import numpy as np

    return body[:begin] + np.asarray(values, dtype=dtype).tobytes() + body[end:]


@pytest.mark.parametrize("encoding", ["bitmask", "csr", "delta", "dense"])
@pytest.mark.parametrize("values_dtype", [torch.float32, torch.float16])
def test_each_encoding_round_trips(tmp_path, encoding, values_dtype):
    model = ConvNet()
    prune(model, 0.8, scope="layer")
    with torch.no_grad():
        model.conv.weight[0, 0, 0, 0] = -0.0  # a negative zero is dropped like any zero
        model.bn.running_mean.uniform_()
        model.bn.num_batches_tracked.fill_(7)
    data, report = export.encode_state(model.state_dict(), {"conv.weight", "fc.weight"}, values_dtype, allowed=(encoding,))
    (tmp_path / "m.safetensors").write_bytes(data)
    state, _ = export.read_sparse_state(tmp_path / "m.safetensors")
    assert report["conv.weight"]["encoding"] == report["fc.weight"]["encoding"] == encoding
    assert report["bn.running_mean"]["encoding"] == "dense" and state["bn.num_batches_tracked"].dtype == torch.int64
    for name, t in model.state_dict().items():
        expected = t.to(values_dtype).to(t.dtype) if name in ("conv.weight", "fc.weight") and encoding != "dense" else t
        assert torch.equal(state[name], expected), name
        assert state[name].dtype == t.dtype


@pytest.mark.parametrize("every, gaps", [(50, "U8"), (2000, "U16")])
def test_delta_fillers_bridge_long_runs_of_zeros(tmp_path, every, gaps):
    w = torch.zeros(4, 1000)
    w.view(-1)[::every] = torch.arange(1.0, 1 + len(w.view(-1)[::every]))
    w[1, :] = 0  # a run of over 1000 zeros: U8 gaps need fillers to bridge it
    w[3, 999] = -2.0
    data, report = export.encode_state({"w": w}, {"w"}, allowed=("delta",))
    (tmp_path / "d.safetensors").write_bytes(data)
    state, _ = export.read_sparse_state(tmp_path / "d.safetensors")
    assert torch.equal(state["w"], w) and report["w"]["encoding"] == "delta"
    n = struct.unpack("<Q", data[:8])[0]
    assert json.loads(data[8 : 8 + n])["w::gaps"]["dtype"] == gaps


def test_smallest_encoding_is_chosen_and_dense_tensors_stay_dense(tmp_path):
    model = pruned_lenet(0.6)
    report = export.export_sparse(model, tmp_path / "m.safetensors")
    # At 60% zeros the bitmask (1 bit per entry) beats relative indices (1 byte per non-zero).
    assert report["tensors"]["fc1.weight"]["encoding"] == "bitmask"
    # Below COMPACT_MIN_ZEROS (10%) zeros a weight counts as unpruned and stays dense.
    report = export.export_sparse(pruned_lenet(0.05), tmp_path / "d.safetensors")
    assert all(t["encoding"] == "dense" for t in report["tensors"].values())
    # Above it, dense still wins where it is smaller (here: no encoding allowed but dense).
    data, report = export.encode_state(pruned_lenet(0.9).state_dict(), {"fc1.weight"}, allowed=("dense",))
    assert report["fc1.weight"]["encoding"] == "dense"


def test_fp16_overflow_is_refused(tmp_path):
    model = pruned_lenet(0.9)
    with torch.no_grad():
        model.fc1.weight[model.fc1.weight != 0] *= 1e7
    with pytest.raises(SparsehaloError, match="overflow"):
        export.export_sparse(model, tmp_path / "m.safetensors", values_dtype=torch.float16)


@pytest.mark.parametrize("encoding", ["delta", "bitmask"])
def test_index_parts_are_range_checked(tmp_path, encoding):
    w = torch.zeros(2, 8)
    w[0, 3], w[1, 7] = 1.0, 2.0
    data, _ = export.encode_state({"w": w}, {"w"}, allowed=(encoding,))
    n = struct.unpack("<Q", data[:8])[0]
    header, body = json.loads(data[8 : 8 + n]), data[8 + n :]
    part = "w::gaps" if encoding == "delta" else "w::bitmask"
    bad = patch_part(header, body, part, [3, 250] if encoding == "delta" else [8, 255])
    with pytest.raises(CheckpointError, match="past the end|marks"):
        export.read_sparse_state(write_raw(tmp_path / "b.safetensors", header, bad))
    if encoding == "bitmask":
        w2 = torch.zeros(1, 4)
        w2[0, 1] = 1.0
        data, _ = export.encode_state({"w": w2}, {"w"}, allowed=("bitmask",))
        n = struct.unpack("<Q", data[:8])[0]
        header, body = json.loads(data[8 : 8 + n]), data[8 + n :]
        with pytest.raises(CheckpointError, match="padding"):
            export.read_sparse_state(write_raw(tmp_path / "p.safetensors", header, patch_part(header, body, "w::bitmask", [0x12])))


# --- the pure functions, without a file ------------------------------------------------------------------


def sparse_matrix(rows=5, cols=300, every=7):
    w = torch.zeros(rows, cols)
    w.view(-1)[::every] = torch.arange(1, 1 + len(w.view(-1)[::every]), dtype=torch.float32) / 8
    w[2] = 0  # an empty row
    return w


@pytest.mark.parametrize("encoding", ["bitmask", "csr", "delta"])
@pytest.mark.parametrize("values_dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_pure_round_trip_and_part_shapes(encoding, values_dtype):
    w = sparse_matrix()
    encoded = enc.encode_compact(w, values_dtype, allowed=(encoding,))
    assert encoded.encoding == encoding and encoded.nnz == count_nonzero([w])[1]
    assert set(encoded.parts) == set(enc.PARTS[encoding])
    assert all(p.dim() == 1 and p.is_contiguous() for p in encoded.parts.values())
    assert encoded.parts["values"].dtype == values_dtype
    assert encoded.nbytes == sum(p.numel() * p.element_size() for p in encoded.parts.values())
    if encoding == "csr":
        # 5 rows of 300 columns: row pointers up to nnz (< 256) fit U8, column indices need U16.
        assert encoded.parts["crow"].dtype == torch.uint8 and encoded.parts["col"].dtype == torch.uint16
    record = enc.record(encoded, w)
    assert record == {"encoding": encoding, "dtype": "F32", "shape": [5, 300], "nnz": encoded.nnz}
    back = enc.decode("w", encoding, "F32", (5, 300), encoded.parts, record["nnz"])
    assert torch.equal(back, w) and back.dtype == torch.float32  # values k/8 are exact in every dtype


def test_encode_decides_compact_or_dense():
    w = sparse_matrix()
    assert enc.encode(w, compact=False).encoding == "dense"
    assert enc.encode(w, compact=True).encoding != "dense"
    assert enc.encode(torch.ones(4, 4), compact=True).encoding == "dense"  # no zeros
    assert enc.encode(torch.zeros(10), compact=True).encoding == "dense"  # rank 1
    assert enc.encode(torch.zeros(4, 4, dtype=torch.int64), compact=True).encoding == "dense"
    assert enc.encode(w.to_sparse(), compact=True).encoding != "dense"  # a sparse layout is densified
    dense = enc.encode(w, compact=False)
    assert torch.equal(dense.parts[""], w) and dense.nnz == count_nonzero([w])[1]
    assert enc.record(dense, w) == {"encoding": "dense", "dtype": "F32", "shape": [5, 300]}
    with pytest.raises(SparsehaloError, match="dtype"):
        enc.encode(torch.zeros(2, 2, dtype=torch.complex64), compact=False)


def test_all_zero_weight_takes_empty_parts(tmp_path):
    w = torch.zeros(3, 40)
    for encoding in ("bitmask", "csr", "delta"):
        encoded = enc.encode_compact(w, allowed=(encoding,))
        assert encoded.nnz == 0 and encoded.parts["values"].numel() == 0
        assert torch.equal(enc.decode("w", encoding, "F32", (3, 40), encoded.parts, 0), w)
        data, report = export.encode_state({"w": w}, {"w"}, allowed=(encoding,))
        (tmp_path / "z.safetensors").write_bytes(data)
        assert report["w"]["encoding"] == encoding
        assert torch.equal(export.read_sparse_state(tmp_path / "z.safetensors")[0]["w"], w)


def test_decode_refuses_inconsistent_parts():
    w = sparse_matrix()
    csr = enc.encode_compact(w, allowed=("csr",))
    with pytest.raises(enc.EncodingError, match="records 3 non-zeros"):
        enc.decode("w", "csr", "F32", (5, 300), csr.parts, 3)
    with pytest.raises(enc.EncodingError, match="row pointers"):
        enc.decode("w", "csr", "F32", (6, 250), csr.parts)
    delta = enc.encode_compact(w, allowed=("delta",))
    gaps = delta.parts["gaps"].clone()
    gaps[-1] = 255  # the last gap an escape
    with pytest.raises(enc.EncodingError, match="escape|gaps for"):
        enc.decode("w", "delta", "F32", (5, 300), {**delta.parts, "gaps": gaps})
    with pytest.raises(enc.EncodingError, match="CSR indices"):
        enc.decode("w", "csr", "F32", (5, 300), {**csr.parts, "col": csr.parts["col"].float()})
    with pytest.raises(enc.EncodingError, match="rank >= 2"):
        enc.check_layout("b", "bitmask", "F32", (10,), {"bitmask": "U8", "values": "F32"})
    with pytest.raises(enc.EncodingError, match="values must be floating"):
        enc.check_layout("w", "bitmask", "F32", (2, 5), {"bitmask": "U8", "values": "I32"})
    # A BOOL byte other than 0/1 decodes to a proper True.
    flag = enc.decode("f", "dense", "BOOL", (2,), {"": torch.tensor([2, 0], dtype=torch.uint8).view(torch.bool)})
    assert flag.tolist() == [True, False] and flag.view(torch.uint8).tolist() == [1, 0]
