"""Sparse and dense exports carry a checksum of their content: one changed byte anywhere is caught.

A sparse export records ``sha256`` (:func:`sparsehalo.export.content_sha256`) in its own metadata,
so it travels with the file; a dense export has a ``sha256sum`` sidecar.  Each test flips single
bytes at every offset of a small file (or at 60+ spread offsets of a larger one) and expects a
one-line :class:`CheckpointError` naming the file; the intact file still reads.
"""

import hashlib
import json
import struct

import pytest
import safetensors.torch
import torch
from torch import nn

from sparsehalo import export
from sparsehalo.cli import main
from sparsehalo.errors import CheckpointError
from sparsehalo.io import load_torch, sidecar
from sparsehalo.pruning import prune


def small_model(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    prune(model, 0.75)
    return model


def offsets(size, n=64):
    return sorted({0, 1, size - 1, *(round(k * (size - 1) / (n - 1)) for k in range(n))})


def flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0xFF
    return bytes(out)


def refuses_in_one_line(path, read):
    with pytest.raises(CheckpointError) as info:
        read(path)
    message = str(info.value)
    assert "\n" not in message and path.name in message, message
    return message


@pytest.mark.parametrize("encoding", ["dense", "bitmask", "csr", "delta"])
@pytest.mark.parametrize("values_dtype", [torch.float32, torch.float16])
def test_every_single_byte_flip_of_a_sparse_export_is_caught(tmp_path, encoding, values_dtype):
    model = small_model()
    data, report = export.encode_state(model.state_dict(), {"0.weight", "2.weight"}, values_dtype,
                                       metadata={"note": "n"}, allowed=(encoding,))
    assert report["0.weight"]["encoding"] == encoding
    good = tmp_path / "good.sparse.safetensors"
    good.write_bytes(data)
    state, meta = export.read_sparse_state(good)
    assert len(meta[export.CHECKSUM_KEY]) == 64
    bad = tmp_path / "bad.sparse.safetensors"
    checksum_catches = 0
    for at in range(len(data)):  # every byte: header length, JSON header, padding, tensor bytes
        bad.write_bytes(flip(data, at))
        message = refuses_in_one_line(bad, export.read_sparse_state)
        checksum_catches += "SHA-256" in message
    assert checksum_catches > 0  # some flips keep the format valid: only the checksum sees them
    back, _ = export.read_sparse_state(good)
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_the_checksum_is_the_documented_hash_of_the_content():
    """sha256 over (name, dtype, shape, byte count) JSON + bytes per tensor in name order, then the
    other metadata as sorted JSON: recomputed here by hand from the parts."""
    model = small_model()
    data, _ = export.encode_state(model.state_dict(), {"0.weight", "2.weight"}, metadata={"note": "n"})
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__")
    body = data[8 + n :]
    h = hashlib.sha256()
    for name in sorted(header):
        begin, end = header[name]["data_offsets"]
        h.update(json.dumps([name, header[name]["dtype"], header[name]["shape"], end - begin]).encode())
        h.update(body[begin:end])
    h.update(json.dumps({k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True).encode())
    assert meta["sha256"] == h.hexdigest() and meta["format"] == export.FORMAT


def test_a_file_repacked_by_the_safetensors_package_still_verifies(tmp_path):
    """The checksum covers content, not layout: the package's own writer (sorted tensors, metadata
    first) gives other bytes and the same verified content; a changed value does not verify."""
    path = tmp_path / "m.sparse.safetensors"
    export.export_sparse(small_model(), path)
    original, meta = export.read_sparse_state(path)
    parts = safetensors.torch.load(path.read_bytes())
    repacked = tmp_path / "r.sparse.safetensors"
    repacked.write_bytes(safetensors.torch.save(parts, meta))
    assert repacked.read_bytes() != path.read_bytes()
    state, _ = export.read_sparse_state(repacked)
    assert all(torch.equal(state[k], original[k]) for k in original)
    key = next(k for k in parts if k.endswith("::values"))
    parts[key] = parts[key].clone()
    parts[key][0] += 1
    repacked.write_bytes(safetensors.torch.save(parts, meta))
    assert "SHA-256" in refuses_in_one_line(repacked, export.read_sparse_state)


def test_a_format_2_file_without_its_checksum_is_refused(tmp_path):
    path = tmp_path / "m.sparse.safetensors"
    export.export_sparse(small_model(), path)
    parts = safetensors.torch.load(path.read_bytes())
    _, meta = export.read_sparse_state(path)
    del meta["sha256"]
    path.write_bytes(safetensors.torch.save(parts, meta))
    assert "no sha256" in refuses_in_one_line(path, export.read_sparse_state)
    meta["format"] = export.OLD_FORMAT  # the old format had none: it reads unchecked
    path.write_bytes(safetensors.torch.save(parts, meta))
    export.read_sparse_state(path)


def test_the_checksum_is_reserved_metadata():
    with pytest.raises(Exception, match="reserved"):
        export.encode_state({"w": torch.ones(2)}, set(), metadata={"sha256": "0" * 64})


def test_load_sparse_and_read_metadata_check_the_checksum_before_building(tmp_path):
    """A flipped byte in the config metadata is caught before any model is built from it."""
    from sparsehalo import config as config_mod

    cfg = config_mod.load(None, ['model.name="lenet300"', 'data.name="synthetic"'])
    torch.manual_seed(0)
    from sparsehalo.training import build_model

    model = build_model(cfg, 10)
    prune(model, 0.9)
    path = tmp_path / "m.sparse.safetensors"
    export.export_sparse(model, path, metadata={"config": json.dumps(cfg.to_dict()), "num_classes": "10"})
    assert export.load_sparse(path) is not None
    data = path.read_bytes()
    at = data.index(b"lenet300")  # inside the config metadata
    damaged = bytearray(data)
    damaged[at + 7] = ord("1")  # "lenet301": still valid JSON, still a string
    path.write_bytes(bytes(damaged))
    for read in (export.read_metadata, export.load_sparse):
        assert "SHA-256" in refuses_in_one_line(path, read)


def test_a_sidecar_next_to_a_sparse_export_is_checked_too(tmp_path):
    path = tmp_path / "m.sparse.safetensors"
    export.export_sparse(small_model(), path)
    sidecar(path).write_text(f"{'0' * 64}  {path.name}\n")
    with pytest.raises(CheckpointError, match="corrupt"):
        export.read_sparse_state(path)
    sidecar(path).write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n")
    export.read_sparse_state(path)


def test_every_flip_of_a_dense_export_is_caught_by_its_sidecar(tmp_path):
    path = tmp_path / "m.pt"
    export.export_dense(small_model(), path)
    assert sidecar(path).read_text() == f"{hashlib.sha256(path.read_bytes()).hexdigest()}  m.pt\n"
    good = path.read_bytes()
    for at in offsets(len(good)):
        path.write_bytes(flip(good, at))
        with pytest.raises(CheckpointError, match="m.pt.*corrupt"):
            load_torch(path)
    path.write_bytes(good)
    assert set(load_torch(path)) == set(small_model().state_dict())


def test_eval_of_a_flipped_sparse_export_exits_2_in_one_line(tmp_path, capsys):
    path = tmp_path / "m.sparse.safetensors"
    export.export_sparse(small_model(), path)
    good = path.read_bytes()
    for at in offsets(len(good), n=12):
        path.write_bytes(flip(good, at))
        capsys.readouterr()
        assert main(["eval", str(path)]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("sparsehalo: error: ") and path.name in err[0], err


def crafted(tmp_path, model_name, kwargs, state):
    """A valid, correctly checksummed export whose config describes another model than its tensors."""
    from sparsehalo import config as config_mod

    d = config_mod.load(None, ['data.name="synthetic"']).to_dict()
    d["model"]["name"], d["model"]["kwargs"] = model_name, kwargs
    path = tmp_path / "crafted.sparse.safetensors"
    data, _ = export.encode_state(state, set(), metadata={"config": json.dumps(d), "num_classes": "10"})
    path.write_bytes(data)
    return path


def test_a_huge_model_description_fails_fast_before_anything_is_built(tmp_path):
    """A 1 KB file whose config says ResNet depth 180002 (90,000 blocks, minutes to build) is refused
    after a few hundred registrations on the meta device: the file's size bounds the work."""
    import time

    path = crafted(tmp_path, "resnet", {"depth": 180002}, {"w": torch.ones(3)})
    start = time.perf_counter()
    message = refuses_in_one_line(path, export.load_sparse)
    assert "far larger than the file" in message
    assert time.perf_counter() - start < 5  # the unbounded build took about 200 s here; the bound is loose


def test_a_description_that_differs_from_the_tensors_is_refused_before_the_real_build(tmp_path, monkeypatch):
    """Names and shapes are compared on the meta device: the real constructor never runs."""
    from sparsehalo.export import api

    model = small_model()
    path = crafted(tmp_path, "resnet", {"depth": 20}, model.state_dict())
    calls = []
    real = api.build_model
    monkeypatch.setattr(api, "build_model", lambda *a, **k: calls.append(torch.empty(0).device) or real(*a, **k))
    assert "do not match the model its config describes" in refuses_in_one_line(path, export.load_sparse)
    assert calls and all(d.type == "meta" for d in calls)  # only the meta probe was built
