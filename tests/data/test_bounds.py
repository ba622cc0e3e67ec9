"""Small crafted inputs cannot make the data readers do unbounded work.

A gzip bomb in place of an MNIST file inflates no further than that file's pinned size; an archive
whose members declare more than a CIFAR archive can hold is refused from its headers; an archive of
random bytes is a one-line DataError.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import time
import tracemalloc

import pytest

from sparsehalo.data import archives, checksums, cifar
from sparsehalo.data.idx import read_idx_bytes
from sparsehalo.data.mnist import clear_cache, load_idx_dataset
from sparsehalo.data.specs import CIFAR10, CIFAR10_JPEG, IDX_FILES, IDX_SIZES, MNIST
from sparsehalo.errors import DataError

BOMB_BYTES = 256 << 20  # 256 MiB of zeros: about 250 KB gzipped


@pytest.fixture(scope="module")
def bomb():
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0) as gz:
        block = bytes(1 << 20)
        for _ in range(BOMB_BYTES >> 20):
            gz.write(block)
    return out.getvalue()


def test_the_pinned_sizes_are_those_of_the_real_files():
    """16-byte image header + 28 * 28 bytes per image; 8-byte label header + 1 byte per label."""
    assert dict(IDX_SIZES) == {
        "train-images-idx3-ubyte": 47_040_016,
        "train-labels-idx1-ubyte": 60_008,
        "t10k-images-idx3-ubyte": 7_840_016,
        "t10k-labels-idx1-ubyte": 10_008,
    }
    assert MNIST.sizes == IDX_SIZES and set(MNIST.sizes) == set(IDX_FILES)


def test_the_vendored_mnist_files_have_exactly_their_pinned_sizes():
    for stem in IDX_FILES:
        assert len(read_idx_bytes(MNIST.vendored_dir / f"{stem}.gz", MNIST.sizes[stem])) == MNIST.sizes[stem]


def test_a_gzip_bomb_stops_at_the_cap_in_bounded_memory(tmp_path, bomb, one_line):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(bomb)
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as exc:
            read_idx_bytes(path, 60_008)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "more than 60,008 bytes" in one_line(exc) and str(path) in str(exc.value)
    assert peak < 8 << 20  # at most a read chunk or two, not the 256 MiB the bomb holds


def test_the_streamed_checksum_is_capped_too(tmp_path, bomb):
    path = tmp_path / "x.gz"
    path.write_bytes(bomb)
    start = time.perf_counter()
    with pytest.raises(DataError, match="more than 1,000 bytes"):
        checksums.sha256_uncompressed(path, 1000)
    assert time.perf_counter() - start < 2  # inflating all 256 MiB takes longer; the bound is loose
    raw = tmp_path / "raw"
    raw.write_bytes(b"x" * 1001)  # the cap holds for uncompressed files as well
    with pytest.raises(DataError, match="holds more than 1,000 bytes"):
        checksums.sha256_uncompressed(raw, 1000)
    raw.write_bytes(b"x" * 1000)
    assert len(checksums.sha256_uncompressed(raw, 1000)) == 64


def test_a_bomb_in_an_mnist_folder_is_refused_by_the_loader(tmp_path, bomb, one_line):
    """Three good vendored files and a bomb for the fourth: one line naming the bomb."""
    root = tmp_path / "mnist"
    root.mkdir()
    for stem in IDX_FILES:
        (root / f"{stem}.gz").write_bytes((MNIST.vendored_dir / f"{stem}.gz").read_bytes())
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(bomb)
    clear_cache()
    with pytest.raises(DataError) as exc:
        load_idx_dataset(MNIST, tmp_path)
    assert "t10k-labels-idx1-ubyte.gz" in one_line(exc) and "more than 10,008 bytes" in str(exc.value)


def test_random_bytes_as_a_cifar_archive_are_one_line(tmp_path, one_line):
    import random

    rng = random.Random(0)
    for spec, loader in ((CIFAR10, cifar.load_cifar), (CIFAR10_JPEG, cifar.load_image_folder)):
        path = tmp_path / spec.name / spec.filename
        path.parent.mkdir()
        path.write_bytes(bytes(rng.randrange(256) for _ in range(30_000)))
        cifar.clear_cache()
        with pytest.raises(DataError) as exc:
            loader(spec, tmp_path)
        message = one_line(exc)
        # The JPEG archive has a pinned sha256, checked before it is opened.
        assert str(path) in message and ("not a tar archive" in message or "is corrupt: sha256" in message), message


def test_a_gzip_that_is_not_a_tar_is_one_line(tmp_path, one_line):
    path = tmp_path / "cifar10" / CIFAR10.filename
    path.parent.mkdir()
    path.write_bytes(gzip.compress(b"hello" * 1000))
    cifar.clear_cache()
    with pytest.raises(DataError) as exc:
        cifar.load_cifar(CIFAR10, tmp_path)
    assert "cannot read archive" in one_line(exc)


def test_an_archive_declaring_huge_members_is_refused_from_its_headers(tmp_path, one_line):
    """A tar header can claim gigabytes in a few hundred bytes; skipping such a member of a
    compressed tar would inflate it all, so the declared sizes are added up and refused first."""
    info = tarfile.TarInfo("cifar-10-batches-py/junk")
    info.size = archives.MAX_ARCHIVE_BYTES + 1
    path = tmp_path / "cifar10" / CIFAR10.filename
    path.parent.mkdir()
    path.write_bytes(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT) + bytes(4096)))
    cifar.clear_cache()
    start = time.perf_counter()
    with pytest.raises(DataError) as exc:
        cifar.load_cifar(CIFAR10, tmp_path)
    assert "more than" in one_line(exc) and "not a CIFAR archive" in str(exc.value)
    assert time.perf_counter() - start < 2


def test_bounded_members_counts_every_member(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(3):
            data = bytes(100)
            info = tarfile.TarInfo(f"m{i}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    with tarfile.open(fileobj=buf, mode="r") as tar:
        assert [m.name for m in archives.bounded_members("t.tar", tar, max_bytes=300)] == ["m0", "m1", "m2"]
    buf.seek(0)
    with tarfile.open(fileobj=buf, mode="r") as tar, pytest.raises(DataError, match="more than 299 bytes"):
        list(archives.bounded_members("t.tar", tar, max_bytes=299))


def test_a_bomb_served_by_a_mirror_is_not_saved(tmp_path, bomb, monkeypatch):
    """The download check inflates no further than the pinned size either."""
    import http.server
    import threading

    from sparsehalo.data.download import download_spec

    served = tmp_path / "served"
    served.mkdir()
    for stem in IDX_FILES:
        (served / f"{stem}.gz").write_bytes(bomb if stem == "train-labels-idx1-ubyte" else (MNIST.vendored_dir / f"{stem}.gz").read_bytes())

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        with pytest.raises(DataError, match="too large; nothing was saved"):
            download_spec(MNIST, tmp_path / "root", f"http://127.0.0.1:{httpd.server_address[1]}/")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert not (tmp_path / "root" / "mnist" / "train-labels-idx1-ubyte.gz").exists()
    assert not [p for p in (tmp_path / "root" / "mnist").iterdir() if p.name.startswith(".")]
