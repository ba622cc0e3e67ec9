"""The safetensors container: strict validation of crafted files, files of the old writer, safe_open."""

import json
import random
import struct
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch

from sparsehalo import export, models
from sparsehalo.errors import CheckpointError
from sparsehalo.pruning import prune

DATA = Path(__file__).parent / "data"


def pruned_lenet(sparsity, seed=0, scope="layer"):
    torch.manual_seed(seed)
    model = models.build("lenet300").eval()
    prune(model, sparsity, scope=scope)
    return model


def split(data):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


# --- strict validation --------------------------------------------------------------------------------


def write_raw(path, header, body=b"", raw_header=None):
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)
    return path


def good_file(tmp_path):
    w = torch.zeros(3, 5)
    w[0, 1], w[2, 4] = 1.0, 2.0
    data, _ = export.encode_state({"w": w, "b": torch.ones(3)}, {"w"}, allowed=("csr",))
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def tamper(tmp_path, edit):
    header, body = good_file(tmp_path)
    body = edit(header, body) or body
    return write_raw(tmp_path / "bad.safetensors", header, body)


def set_encoding(header, name, **fields):
    enc = json.loads(header["__metadata__"]["encodings"])
    enc[name].update(fields)
    header["__metadata__"]["encodings"] = json.dumps(enc)


def patch_part(header, body, key, values):
    begin, end = header[key]["data_offsets"]
    dtype = {"U8": "<u1", "U16": "<u2"}[header[key]["dtype"]]
    import numpy as np

    return body[:begin] + np.asarray(values, dtype=dtype).tobytes() + body[end:]


def move_last_to_start(header, body):
    """Make the last tensor's bytes alias the first one's (whatever order the writer chose)."""
    last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    begin, end = header[last]["data_offsets"]
    header[last]["data_offsets"] = [0, end - begin]


@pytest.mark.parametrize(
    "edit, message",
    [
        (move_last_to_start, "overlaps"),
        (lambda h, b: b + b"\0" * 4, "after the last tensor"),
        (lambda h, b: h["b"].update(dtype="F128"), "dtype"),
        (lambda h, b: h["b"].update(dtype="U8"), "do not hold"),
        (lambda h, b: h["b"].update(dtype=["F32"]), "dtype"),
        (lambda h, b: set_encoding(h, "w", dtype={"x": 1}), "dtype"),
        (lambda h, b: set_encoding(h, "w", nnz=3), "records 3 non-zeros"),
        (lambda h, b: h["b"].update(shape=[4]), "do not hold"),
        (lambda h, b: h["b"].update(shape=[-3]), "shape"),
        (lambda h, b: h["b"].update(shape=[1.5, 2]), "shape"),
        (lambda h, b: h["b"].update(data_offsets=[0, 10**12]), "outside"),
        (lambda h, b: h["b"].update(extra=1), "exactly"),
        (lambda h, b: h.update(ghost={"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}), "not referenced"),
        (lambda h, b: h["__metadata__"].update(format="other-9"), "format"),
        (lambda h, b: h["__metadata__"].update(encodings="{"), "not valid JSON"),
        (lambda h, b: h["__metadata__"].update(num_classes=10), "strings"),
        (lambda h, b: set_encoding(h, "w", encoding="zip"), "no known encoding"),
        (lambda h, b: set_encoding(h, "w", shape=[3, 2]), "column index out of range"),
        (lambda h, b: set_encoding(h, "w", shape=[5, 3]), "row pointers"),
        (lambda h, b: set_encoding(h, "w", shape=[1 << 40, 1 << 40]), "elements"),
        (lambda h, b: set_encoding(h, "b", shape=[4]), "does not match"),
        (lambda h, b: patch_part(h, b, "w::col", [7, 4]), "out of range"),
        (lambda h, b: patch_part(h, b, "w::col", [4, 1]), "SHA-256"),  # a valid but different matrix: only the checksum sees it
        (lambda h, b: patch_part(h, b, "w::crow", [0, 2, 1, 2]), "row pointers"),
        (lambda h, b: patch_part(h, patch_part(h, b, "w::crow", [0, 2, 2, 2]), "w::col", [4, 1]), "strictly increasing"),
    ],
)
def test_corrupt_files_give_checkpoint_error(tmp_path, edit, message):
    path = tamper(tmp_path, edit)
    with pytest.raises(CheckpointError, match=message) as info:
        export.read_sparse_state(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x01\x02", struct.pack("<Q", 1 << 60) + b"{}", struct.pack("<Q", 4) + b"\xff\xfe{}", struct.pack("<Q", 2) + b"[]"],
)
def test_truncated_or_garbled_files(tmp_path, raw):
    path = tmp_path / "g.safetensors"
    path.write_bytes(raw)
    with pytest.raises(CheckpointError):
        export.read_sparse_state(path)


def test_duplicate_keys_and_deep_nesting_are_rejected(tmp_path):
    header, body = good_file(tmp_path)
    text = json.dumps(header)
    dup = text[:-1] + ', "b": ' + json.dumps(header["b"]) + "}"
    with pytest.raises(CheckpointError, match="duplicate"):
        export.read_sparse_state(write_raw(tmp_path / "d.safetensors", None, body, dup.encode()))
    with pytest.raises(CheckpointError, match="JSON"):
        export.read_sparse_state(write_raw(tmp_path / "n.safetensors", None, b"", b"[" * 100_000))


def test_duplicate_key_the_package_would_accept_is_refused(tmp_path):
    """A repeated tensor name that the safetensors package reads (keeping one of the two) is refused."""
    header, body = good_file(tmp_path)
    text = json.dumps(header)
    # Both "b" entries are well-formed; the first points at the bytes of "w::values" (8 bytes, F32).
    decoy = dict(header["b"], shape=[2], data_offsets=header["w::values"]["data_offsets"])
    dup = ('{"b": ' + json.dumps(decoy) + ", " + text[1:]).encode()
    path = write_raw(tmp_path / "d.safetensors", None, body, dup)
    with pytest.raises(CheckpointError, match="duplicate key 'b'"):
        export.read_sparse_state(path)
    with pytest.raises(CheckpointError, match="duplicate"):
        export.read_metadata(path)
    with pytest.raises(CheckpointError, match="duplicate"):
        export.load_sparse(path)


@pytest.mark.parametrize("encoding", ["bitmask", "csr", "delta"])
def test_random_corruption_never_escapes_as_another_error(tmp_path, encoding):
    """Flip random bytes anywhere (header included): the reader either decodes or says CheckpointError."""
    model = pruned_lenet(0.9)
    data, _ = export.encode_state(model.state_dict(), {"fc1.weight", "fc2.weight", "fc3.weight"}, allowed=(encoding,))
    rng = random.Random(0)
    path = tmp_path / "f.safetensors"
    n = struct.unpack("<Q", data[:8])[0]
    for trial in range(150):
        raw = bytearray(data)
        # Half the trials hit the header, where a flip changes structure rather than a value.
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(8 + n) if trial % 2 else rng.randrange(len(raw))
            raw[i] = rng.randrange(256)
        if trial % 7 == 0:
            raw = raw[: rng.randrange(len(raw))]
        path.write_bytes(bytes(raw))
        try:
            export.read_sparse_state(path)
        except CheckpointError:
            pass


def test_limits_on_header_size_and_rank(tmp_path):
    header, body = good_file(tmp_path)
    header["b"]["shape"] = [1] * (export.MAX_RANK + 1)
    with pytest.raises(CheckpointError, match=f"at most {export.MAX_RANK}"):
        export.read_sparse_state(write_raw(tmp_path / "r.safetensors", header, body))
    big = struct.pack("<Q", export.MAX_HEADER_BYTES + 1) + b"{" + b" " * export.MAX_HEADER_BYTES
    (tmp_path / "h.safetensors").write_bytes(big)
    with pytest.raises(CheckpointError, match="header length"):
        export.read_sparse_state(tmp_path / "h.safetensors")
    data, _ = export.encode_state({"w": torch.zeros(4, 4)}, set())
    (tmp_path / "e.safetensors").write_bytes(data)
    with pytest.raises(CheckpointError, match="more than 15 elements"):
        export.read_sparse_state(tmp_path / "e.safetensors", max_elements=15)
    assert torch.equal(export.read_sparse_state(tmp_path / "e.safetensors", max_elements=16)[0]["w"], torch.zeros(4, 4))


def test_reserved_and_foreign_dtypes_are_refused(tmp_path):
    header, body = good_file(tmp_path)
    # U16 is an index dtype only: a state entry recorded as U16 is refused, even where bytes fit.
    set_encoding(header, "b", dtype="U16")
    with pytest.raises(CheckpointError, match="has dtype 'U16'"):
        export.read_sparse_state(write_raw(tmp_path / "u.safetensors", header, body))
    header, body = good_file(tmp_path)
    header["b"]["dtype"] = "F8_E4M3"  # a dtype safetensors knows but an export never holds
    with pytest.raises(CheckpointError, match="not one of"):
        export.read_sparse_state(write_raw(tmp_path / "f.safetensors", header, body))


# --- the old writer's files and the package's reader ----------------------------------------------------


def fixture_state():
    """The state dict the committed ``data/old-*.safetensors`` files were written from.

    They were written by the hand-written container this package had before it used the
    ``safetensors`` package (``export.encode_state(fixture_state(), {"a.weight"}, values_dtype,
    metadata={"note": ...}, allowed=(encoding,))``, state-dict order, ``__metadata__`` last).
    Values are multiples of 1/8 (exact in fp16 and bf16) computed without a random generator.
    """
    w = torch.zeros(6, 40)
    flat = w.view(-1)
    idx = torch.arange(0, 240, 7)
    flat[idx] = idx.float() / 8 - 12
    w[2, :] = 0  # a row with no value
    w[0, 0] = -0.0
    return {
        "a.weight": w,
        "a.bias": torch.arange(6, dtype=torch.float32) / 3,
        "bn.count": torch.tensor(7, dtype=torch.int64),
        "flag": torch.tensor([True, False, True]),
        "h.weight": (torch.arange(6, dtype=torch.float32) / 4).to(torch.bfloat16).reshape(2, 3),
    }


OLD = {"bitmask": torch.float32, "csr": torch.float16, "delta": torch.bfloat16}
NOTE = "written by sparsehalo 0.x export.py"


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(-1).view(torch.uint8), b.view(-1).view(torch.uint8)) if a.numel() else a.dtype == b.dtype


@pytest.mark.parametrize("encoding", sorted(OLD))
def test_files_of_the_old_writer_load_bit_identically(encoding):
    path = DATA / f"old-{encoding}.safetensors"
    header, _ = split(path.read_bytes())
    # The old layout: tensors in state-dict order, metadata last.
    assert list(header)[-1] == "__metadata__" and next(iter(header)).startswith("a.weight::")
    state, meta = export.read_sparse_state(path)
    expected = fixture_state()
    expected["a.weight"] = torch.where(expected["a.weight"] == 0, 0.0, expected["a.weight"])  # -0.0 comes back +0.0
    assert list(state) == list(expected) and meta["note"] == NOTE and meta["format"] == export.OLD_FORMAT
    assert export.CHECKSUM_KEY not in meta
    for name, t in expected.items():
        assert same_bits(state[name], t), name
    assert json.loads(meta["encodings"])["a.weight"] == {"encoding": encoding, "dtype": "F32", "shape": [6, 40], "nnz": 28}


@pytest.mark.parametrize("encoding", sorted(OLD))
def test_writer_reproduces_the_old_files_byte_for_byte(encoding):
    old = (DATA / f"old-{encoding}.safetensors").read_bytes()
    new, report = export.encode_state(fixture_state(), {"a.weight"}, OLD[encoding], metadata={"note": NOTE}, allowed=(encoding,), checksum=False)
    assert new == old and report["a.weight"]["encoding"] == encoding
    # The current format is the old one plus the checksum of the same content.
    now, _ = export.encode_state(fixture_state(), {"a.weight"}, OLD[encoding], metadata={"note": NOTE}, allowed=(encoding,))
    old_header, old_body = split(old)
    new_header, new_body = split(now)
    meta = new_header["__metadata__"]
    assert new_body == old_body and meta.pop(export.CHECKSUM_KEY) and meta.pop("format") == export.FORMAT
    assert old_header["__metadata__"].pop("format") == export.OLD_FORMAT and meta == old_header["__metadata__"]


@pytest.mark.parametrize("encoding", sorted(OLD))
def test_files_written_by_the_package_read_the_same(tmp_path, encoding):
    """The package's own writer sorts the tensors (aligning each) and puts the metadata first: same content."""
    old = (DATA / f"old-{encoding}.safetensors").read_bytes()
    parts = safetensors.torch.load(old)
    with safetensors.safe_open(str(DATA / f"old-{encoding}.safetensors"), framework="pt") as f:
        meta = f.metadata()
    repacked = safetensors.torch.save(parts, meta)
    header, _ = split(repacked)
    assert next(iter(header)) == "__metadata__" and repacked != old
    (tmp_path / "p.safetensors").write_bytes(repacked)
    state, meta_back = export.read_sparse_state(tmp_path / "p.safetensors")
    expected, _ = export.read_sparse_state(DATA / f"old-{encoding}.safetensors")
    assert meta_back == meta and list(state) == list(expected)
    assert all(same_bits(state[k], expected[k]) for k in expected)


def test_writer_is_deterministic_and_aligns_the_data_section():
    model = pruned_lenet(0.95)
    meta = {"config": "{}", "num_classes": "10", "source": "x.pt"}
    a, _ = export.encode_state(model.state_dict(), {"fc1.weight", "fc2.weight"}, metadata=meta)
    b, _ = export.encode_state(model.state_dict(), {"fc1.weight", "fc2.weight"}, metadata=dict(reversed(meta.items())))
    n = struct.unpack("<Q", a[:8])[0]
    assert n % 8 == 0 and a[8 + n - 1 : 8 + n] in (b" ", b"}")
    header, _ = split(a)
    assert list(header)[-1] == "__metadata__" and list(header["__metadata__"])[-3:] == ["format", "encodings", export.CHECKSUM_KEY]
    assert split(a)[1] == split(b)[1] and len(a) == len(b)  # metadata order follows the caller's


@pytest.mark.parametrize("source", ["old", "new"])
def test_files_are_standard_safetensors(tmp_path, source):
    """``safetensors.safe_open`` reads old and new files: every part and the metadata."""
    if source == "old":
        path = DATA / "old-csr.safetensors"
    else:
        path = tmp_path / "m.safetensors"
        export.export_sparse(pruned_lenet(0.95), path, values_dtype=torch.float16, metadata={"note": NOTE})
    state, meta = export.read_sparse_state(path)
    records = json.loads(meta["encodings"])
    with safetensors.safe_open(str(path), framework="pt") as f:
        assert f.metadata() == meta
        keys = set(f.keys())
        for name, record in records.items():
            if record["encoding"] == "dense":
                assert same_bits(f.get_tensor(name), state[name]), name
            else:
                assert {f"{name}::values"} <= keys
                values = f.get_tensor(f"{name}::values")
                assert len(values) == record["nnz"] and torch.equal(values.to(state[name].dtype), state[name][state[name] != 0])
    assert keys == set(split(path.read_bytes())[0]) - {"__metadata__"}


def test_tensors_sharing_memory_are_written(tmp_path):
    """Tied weights (one storage, two names) are stored twice, as the old writer did."""
    shared = torch.arange(12.0).reshape(3, 4)
    state = {"a": shared, "b": shared, "c": shared[1]}
    data, _ = export.encode_state(state, set())
    (tmp_path / "t.safetensors").write_bytes(data)
    back, _ = export.read_sparse_state(tmp_path / "t.safetensors")
    assert torch.equal(back["a"], shared) and torch.equal(back["b"], shared) and torch.equal(back["c"], shared[1])
    assert back["a"].data_ptr() != back["b"].data_ptr()
    assert set(safetensors.torch.load(data)) == {"a", "b", "c"}
