"""Tests for sparsehalo.data.pickle_archive: the official CIFAR archives, read without running code."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from sparsehalo.data import load_dataset
from sparsehalo.data.pickle_archive import restricted_load
from sparsehalo.errors import DataError

pytestmark = pytest.mark.usefixtures("fresh_caches")


def evil_pickle(marker: Path) -> bytes:
    # Protocol 0 by hand, so the global is literally "os.system": {'data': os.system('touch MARKER')}
    return b"(dp0\nS'data'\np1\ncos\nsystem\np2\n(S'touch " + str(marker).encode() + b"'\np3\ntp4\nRp5\ns."


def test_pickle_with_forbidden_global_never_runs(tmp_path, cifar10_content, write_cifar10, write_tar, one_line):
    marker = tmp_path / "pwned"
    payload = evil_pickle(marker)
    content = cifar10_content()
    path = write_cifar10(tmp_path / "d" / "cifar-10-python.tar.gz", content)
    # Replace one batch with the malicious pickle.
    with tarfile.open(path) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    files["cifar-10-batches-py/data_batch_3"] = payload
    write_tar(path, files)

    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", data_dir=tmp_path / "d")
    msg = one_line(exc)
    assert "os.system" in msg and "data_batch_3" in msg
    assert not marker.exists()

    # The payload is live: a plain unpickler runs it (so the check above could have failed).
    pickle.loads(payload)
    assert marker.exists()


def test_restricted_unpickler_refuses_object_arrays_and_junk():
    obj = pickle.dumps({b"data": np.array([1, "x"], dtype=object)}, protocol=3)
    with pytest.raises(DataError, match="object dtype"):
        restricted_load(io.BytesIO(obj))
    with pytest.raises(DataError, match="builtins.eval"):
        restricted_load(io.BytesIO(b"cbuiltins\neval\n(S'1+1'\ntR."))
    with pytest.raises(DataError, match="not a valid pickle"):
        restricted_load(io.BytesIO(b"\x80\x02}q\x00(U"), "f")
    # Plain numeric arrays still load.
    back = restricted_load(io.BytesIO(pickle.dumps(np.arange(5, dtype=np.uint8), protocol=4)))
    assert back.tolist() == [0, 1, 2, 3, 4]


def test_python_archive_errors(tmp_path, cifar10_content, write_cifar10, write_tar, one_line):
    content = cifar10_content()
    content["data_batch_2"] = (content["data_batch_2"][0], [0, 1, 10])  # label out of range
    write_cifar10(tmp_path / "a" / "cifar-10-python.tar.gz", content)
    with pytest.raises(DataError, match=r"expected \[0, 9\]"):
        load_dataset("cifar10", data_dir=tmp_path / "a")

    path = write_cifar10(tmp_path / "b" / "cifar-10-python.tar.gz")
    with tarfile.open(path) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    del files["cifar-10-batches-py/test_batch"]
    write_tar(path, files)
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", data_dir=tmp_path / "b")
    assert "test_batch" in one_line(exc)

    truncated = tmp_path / "c" / "cifar-10-python.tar.gz"
    truncated.parent.mkdir()
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", data_dir=tmp_path / "c")
    assert "cannot read archive" in one_line(exc)
