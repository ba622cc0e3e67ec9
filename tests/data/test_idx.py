"""Tests for sparsehalo.data.idx: IDX reading and writing, gzipped or raw."""

from __future__ import annotations

import gzip

import pytest
import torch

from sparsehalo.data import read_idx, write_idx
from sparsehalo.data.idx import encode_idx
from sparsehalo.errors import DataError


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.float32, torch.float64]
)
def test_idx_round_trip(tmp_path, dtype, compress):
    g = torch.Generator().manual_seed(1)
    t = (torch.randn(3, 5, 7, generator=g) * 100).to(dtype)
    # No ".gz" in the name: compression must be detected from the magic bytes.
    path = tmp_path / "x.idx"
    write_idx(path, t, gzip=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    back = read_idx(path)
    assert back.dtype == dtype and back.shape == t.shape
    assert torch.equal(back, t)


def test_idx_header_is_big_endian(tmp_path):
    t = torch.tensor([1, 256], dtype=torch.int16)
    raw = encode_idx(t)
    assert raw == bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x00, 0x01, 0x01, 0x00])
    # A .gz name on raw bytes still reads.
    path = tmp_path / "raw.gz"
    path.write_bytes(raw)
    assert torch.equal(read_idx(path), t)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_truncated_payload(tmp_path, compress, one_line):
    raw = encode_idx(torch.arange(100, dtype=torch.uint8).view(10, 10))[:-3]
    path = tmp_path / "short-idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    with pytest.raises(DataError) as exc:
        read_idx(path)
    msg = one_line(exc)
    assert str(path) in msg and "97" in msg and "100" in msg


def test_idx_truncated_gzip_stream(tmp_path, one_line):
    blob = gzip.compress(encode_idx(torch.arange(1000, dtype=torch.int32)))
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError) as exc:
        read_idx(path)
    assert str(path) in one_line(exc)


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "magic"),
        (b"\x00\x00\x0a\x01\x00\x00\x00\x01\x05", "type code 0x0a"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "header"),
        (b"\x00\x00", "header"),
    ],
)
def test_idx_bad_header(tmp_path, raw, fragment, one_line):
    path = tmp_path / "bad"
    path.write_bytes(raw)
    with pytest.raises(DataError) as exc:
        read_idx(path)
    msg = one_line(exc)
    assert str(path) in msg and fragment in msg


def test_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path / "nope")
