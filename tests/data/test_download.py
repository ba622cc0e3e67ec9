"""Tests for sparsehalo.data.download (and download by name): verified fetching, nothing half-saved.

Everything is served by a local HTTP server from files the tests build; no test touches the network.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest
import torch

from sparsehalo.data import DatasetEntry, download_dataset, load_dataset, registry
from sparsehalo.data.download import download_spec, mirror_for
from sparsehalo.data.mnist import load_idx_dataset
from sparsehalo.data.specs import CIFAR10, CIFAR100, FASHION_MNIST, IDX_FILES, MNIST
from sparsehalo.errors import DataError


class _Server:
    def __init__(self, root: Path):
        self.root = root
        self.requests: list[str] = []
        log = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                log.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # keep test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    srv = _Server(tmp_path / "served")
    srv.root.mkdir()
    yield srv
    srv.close()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# ------------------------------------------------------------------------------------- IDX files


@pytest.fixture
def tiny(use_dataset, tiny_tensors, tiny_spec):
    tensors = tiny_tensors()
    spec = tiny_spec(tensors)
    use_dataset("tiny", DatasetEntry(functools.partial(load_idx_dataset, spec), 10, "tiny", spec))
    return spec, tensors


def test_download_success_and_skip_present(tiny, server, tmp_path, write_tiny):
    spec, tensors = tiny
    write_tiny(server.root, tensors)
    target = download_spec(spec, tmp_path / "root", server.url)
    assert target == tmp_path / "root" / "tiny"
    assert leftovers(target) == sorted(f"{s}.gz" for s in IDX_FILES)  # no temp files left
    assert len(server.requests) == 4

    splits = load_dataset("tiny", data_dir=tmp_path / "root", val_size=5, seed=1)
    assert torch.equal(splits.test.images[:, 0], tensors["t10k-images-idx3-ubyte"])
    assert len(splits.train) == 15 and len(splits.val) == 5

    # Everything present and valid: nothing is fetched again.
    download_spec(spec, tmp_path / "root", server.url)
    assert len(server.requests) == 4


def test_load_dataset_download_uses_mirror_env(tiny, server, tmp_path, monkeypatch, write_tiny):
    spec, tensors = tiny
    write_tiny(server.root, tensors)
    with pytest.raises(DataError, match="not found"):
        load_dataset("tiny", data_dir=tmp_path / "d")
    monkeypatch.setenv(spec.mirror_env, server.url)
    splits = load_dataset("tiny", data_dir=tmp_path / "d", download=True)
    assert (tmp_path / "d" / "tiny" / "train-images-idx3-ubyte.gz").is_file()
    assert torch.equal(splits.train.labels, tensors["train-labels-idx1-ubyte"].long())

    # Without data_dir the files go to the XDG cache.
    splits = load_dataset("tiny", download=True)
    assert (tmp_path / "xdg-cache" / "sparsehalo" / "tiny" / "t10k-labels-idx1-ubyte.gz").is_file()
    assert len(splits.test) == 10

    # Present now: download=True fetches nothing more.
    before = len(server.requests)
    load_dataset("tiny", data_dir=tmp_path / "d", download=True)
    assert len(server.requests) == before == 8


def test_download_wrong_content_leaves_nothing(tiny, server, tmp_path, write_tiny, one_line):
    spec, tensors = tiny
    wrong = dict(tensors)
    wrong["train-labels-idx1-ubyte"] = (tensors["train-labels-idx1-ubyte"] + 1) % 10
    write_tiny(server.root, wrong)
    with pytest.raises(DataError) as exc:
        download_spec(spec, tmp_path, server.url)
    msg = one_line(exc)
    assert f"{server.url}train-labels-idx1-ubyte.gz" in msg and "corrupt" in msg
    assert leftovers(tmp_path / "tiny") == ["train-images-idx3-ubyte.gz"]  # only the good file before it


def test_download_never_replaces_good_file(tiny, server, tmp_path, write_tiny):
    spec, tensors = tiny
    wrong = {stem: t.flip(0) for stem, t in tensors.items()}
    write_tiny(server.root, wrong)
    write_tiny(tmp_path / "tiny", tensors, compress=False)  # good raw copies already in place
    before = {p.name: p.read_bytes() for p in (tmp_path / "tiny").iterdir()}
    download_spec(spec, tmp_path, server.url)
    assert server.requests == []
    assert {p.name: p.read_bytes() for p in (tmp_path / "tiny").iterdir()} == before


def test_download_replaces_corrupt_file(tiny, server, tmp_path, write_tiny):
    spec, tensors = tiny
    write_tiny(server.root, tensors)
    write_tiny(tmp_path / "tiny", tensors, compress=False)
    stale = tmp_path / "tiny" / "t10k-images-idx3-ubyte"
    stale.write_bytes(stale.read_bytes()[:-1])
    download_spec(spec, tmp_path, server.url)
    assert server.requests == ["/t10k-images-idx3-ubyte.gz"]
    assert not stale.exists()  # removed so the loader (raw first) cannot pick it
    assert torch.equal(load_idx_dataset(spec, tmp_path).test.images[:, 0], tensors["t10k-images-idx3-ubyte"])


def test_download_raw_bytes_named_by_content(tiny, server, tmp_path, write_tiny):
    # A mirror serving raw IDX bytes under the .gz name: the saved file is named by what it holds.
    spec, tensors = tiny
    write_tiny(server.root, tensors, compress=False)
    for stem in IDX_FILES:
        (server.root / stem).rename(server.root / f"{stem}.gz")
    target = download_spec(spec, tmp_path, server.url)
    assert leftovers(target) == sorted(IDX_FILES)
    assert torch.equal(load_idx_dataset(spec, tmp_path).train.labels, tensors["train-labels-idx1-ubyte"].long())


def test_download_404(tiny, server, tmp_path, one_line):
    spec, _ = tiny
    with pytest.raises(DataError) as exc:
        download_spec(spec, tmp_path, server.url)
    msg = one_line(exc)
    assert f"{server.url}train-images-idx3-ubyte.gz" in msg and "404" in msg
    assert leftovers(tmp_path / "tiny") == []


def test_download_connection_refused(tiny, tmp_path, one_line):
    spec, _ = tiny
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(DataError) as exc:
        download_dataset("tiny", tmp_path, url, timeout=5)
    assert f"{url}/train-images-idx3-ubyte.gz" in one_line(exc)
    assert leftovers(tmp_path / "tiny") == []


def test_download_name_and_mirror_resolution(monkeypatch):
    with pytest.raises(DataError, match="fashion-mnist"):
        download_dataset("synthetic")
    assert mirror_for(MNIST) == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    monkeypatch.setenv("SPARSEHALO_MNIST_MIRROR", "http://127.0.0.1:1/m")
    assert mirror_for(MNIST) == "http://127.0.0.1:1/m/"
    assert mirror_for(MNIST, "http://x/y/") == "http://x/y/"
    assert mirror_for(FASHION_MNIST).startswith("http://fashion-mnist.")


# ---------------------------------------------------------------------------------- CIFAR archives


def digests(path: Path) -> dict[str, str]:
    raw = path.read_bytes()
    return {"sha256": hashlib.sha256(raw).hexdigest(), "md5": hashlib.md5(raw).hexdigest()}


def use_cifar10_pins(use_dataset, **pins) -> None:
    """Register cifar10 with its download spec's checksums replaced by ``pins``."""
    entry = registry.DATASETS["cifar10"]
    use_dataset("cifar10", dataclasses.replace(entry, spec=dataclasses.replace(CIFAR10, **pins)))


def test_pinned_urls_and_checksums():
    assert mirror_for(CIFAR10) + CIFAR10.filename == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert mirror_for(CIFAR100) + CIFAR100.filename == "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    assert CIFAR10.sha256 == "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
    assert CIFAR100.sha256 == "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"
    assert (CIFAR10.md5, CIFAR100.md5) == ("c58f30108f718f92721af3b95e74349a", "eb9058c3a382ffc7106e4002c42a8d85")


def test_download_verifies_then_places_file(tmp_path, server, use_dataset, write_cifar10, fresh_caches):
    root, url, requests = server.root, server.url, server.requests
    served = write_cifar10(root / "cifar-10-python.tar.gz")
    use_cifar10_pins(use_dataset, **digests(served))

    target = download_dataset("cifar10", tmp_path / "dl", url)
    assert target == tmp_path / "dl" / "cifar10"
    assert sorted(p.name for p in target.iterdir()) == ["cifar-10-python.tar.gz"]  # no temp file left
    assert (target / "cifar-10-python.tar.gz").read_bytes() == served.read_bytes()
    assert requests == ["/cifar-10-python.tar.gz"]
    assert len(load_dataset("cifar10", data_dir=tmp_path / "dl").train) == 15

    download_dataset("cifar10", tmp_path / "dl", url)  # present and valid: not fetched again
    assert len(requests) == 1


@pytest.mark.parametrize("wrong", ["sha256", "md5"])
def test_download_wrong_checksum_leaves_nothing(tmp_path, server, use_dataset, write_cifar10, one_line, wrong):
    root, url = server.root, server.url
    served = write_cifar10(root / "cifar-10-python.tar.gz")
    pins = digests(served)
    pins[wrong] = "0" * len(pins[wrong])
    use_cifar10_pins(use_dataset, **pins)
    with pytest.raises(DataError) as exc:
        download_dataset("cifar10", tmp_path / "dl", url)
    msg = one_line(exc)
    assert "corrupt" in msg and wrong in msg and f"{url}cifar-10-python.tar.gz" in msg
    assert list((tmp_path / "dl" / "cifar10").iterdir()) == []


def test_load_dataset_download_enforces_real_checksum(tmp_path, server, monkeypatch, write_cifar10):
    # load_dataset(download=True) goes through the mirror variable and the real pinned sha256, which
    # a fake archive cannot match: the download is refused and nothing is saved.
    root, url, requests = server.root, server.url, server.requests
    write_cifar10(root / "cifar-10-python.tar.gz")
    monkeypatch.setenv(CIFAR10.mirror_env, url)
    with pytest.raises(DataError, match="corrupt"):
        load_dataset("cifar10", data_dir=tmp_path / "d", download=True)
    assert requests == ["/cifar-10-python.tar.gz"]
    assert list((tmp_path / "d" / "cifar10").iterdir()) == []


def test_load_dataset_download_skips_jpeg_fallback(
    tmp_path, server, monkeypatch, use_dataset, write_cifar10, write_tar, folder_files, fresh_caches
):
    # With download=True the official archive is fetched even though the JPEG fallback is present.
    root, url, requests = server.root, server.url, server.requests
    served = write_cifar10(root / "cifar-10-python.tar.gz")
    use_cifar10_pins(use_dataset, **digests(served))
    (tmp_path / "d").mkdir()
    write_tar(tmp_path / "d" / "cifar10-jpeg.tar.xz", folder_files(), "w:xz")
    monkeypatch.setenv(CIFAR10.mirror_env, url)
    splits = load_dataset("cifar10", data_dir=tmp_path / "d", download=True)
    assert requests == ["/cifar-10-python.tar.gz"]
    assert splits.name == "cifar10" and splits.source == str(tmp_path / "d" / "cifar10" / "cifar-10-python.tar.gz")
