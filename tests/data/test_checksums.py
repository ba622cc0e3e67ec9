"""Tests for sparsehalo.data.checksums: file digests and the digest of uncompressed content."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from sparsehalo.data import checksums
from sparsehalo.errors import DataError


def test_sha256_uncompressed_is_the_same_for_raw_and_gzipped_copies(tmp_path):
    payload = bytes(range(256)) * 5000  # over one read chunk
    raw, packed = tmp_path / "raw.gz", tmp_path / "packed"  # names say nothing: the bytes decide
    raw.write_bytes(payload)
    packed.write_bytes(gzip.compress(payload))
    expected = hashlib.sha256(payload).hexdigest()
    assert checksums.sha256_uncompressed(raw) == checksums.sha256_uncompressed(packed) == expected
    assert checksums.is_gzip(packed) and not checksums.is_gzip(raw)


def test_sha256_uncompressed_errors(tmp_path, one_line):
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(b"x" * 10_000)[:20])
    with pytest.raises(DataError) as exc:
        checksums.sha256_uncompressed(cut)
    assert str(cut) in one_line(exc) and "gzip" in str(exc.value)
    with pytest.raises(DataError, match="cannot read file"):
        checksums.sha256_uncompressed(tmp_path / "missing")


def test_hash_file_and_remembered_sha256(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    digests = checksums.hash_file(path, "sha256", "md5")
    assert digests == {"sha256": hashlib.sha256(b"abc").hexdigest(), "md5": hashlib.md5(b"abc").hexdigest()}
    assert checksums.file_sha256(path) == digests["sha256"]
    path.write_bytes(b"abcd")  # another size: hashed again, not taken from memory
    assert checksums.file_sha256(path) == hashlib.sha256(b"abcd").hexdigest()
    with pytest.raises(DataError, match="cannot read file"):
        checksums.file_sha256(tmp_path / "missing")


def test_corrupt_message():
    msg = checksums.corrupt_message("/d/f", "a" * 64, "b" * 64, "mnist")
    assert msg == (
        "/d/f is corrupt: sha256 of its uncompressed data is aaaaaaaaaaaa..., expected bbbbbbbbbbbb...; "
        "delete it and run 'sparsehalo download mnist'"
    )
