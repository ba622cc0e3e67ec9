"""Tests for sparsehalo.data: IDX I/O, dataset location and checksums, batching, splits, downloads."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest
import torch

import sparsehalo.data as data
from sparsehalo.data import ArrayDataset, DatasetEntry, Splits, load_dataset, read_idx, split_validation, write_idx
from sparsehalo.data import mnist as mnist_mod
from sparsehalo.data.download import download_dataset, download_spec, mirror_for
from sparsehalo.data.idx import encode_idx
from sparsehalo.data.mnist import (
    FASHION_MNIST,
    IDX_FILES,
    MNIST,
    VENDORED_DIR,
    VENDORED_GZ_SHA256,
    IdxDatasetSpec,
    load_idx_dataset,
    locate,
)
from sparsehalo.errors import DataError, SparsehaloError

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
FASHION_DIR = SHARED / "fashion-mnist"
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]



@pytest.fixture(autouse=True)
def _isolated_locations(tmp_path, monkeypatch):
    """Keep the user's data dir, cache and mirror settings out of every test."""
    monkeypatch.delenv("SPARSEHALO_DATA_DIR", raising=False)
    monkeypatch.delenv(MNIST.mirror_env, raising=False)
    monkeypatch.delenv(FASHION_MNIST.mirror_env, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


# --------------------------------------------------------------------------------------------- IDX


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
def test_idx_truncated_payload(tmp_path, compress):
    raw = encode_idx(torch.arange(100, dtype=torch.uint8).view(10, 10))[:-3]
    path = tmp_path / "short-idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    with pytest.raises(DataError) as exc:
        read_idx(path)
    msg = one_line(exc)
    assert str(path) in msg and "97" in msg and "100" in msg


def test_idx_truncated_gzip_stream(tmp_path):
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
def test_idx_bad_header(tmp_path, raw, fragment):
    path = tmp_path / "bad"
    path.write_bytes(raw)
    with pytest.raises(DataError) as exc:
        read_idx(path)
    msg = one_line(exc)
    assert str(path) in msg and fragment in msg


def test_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path / "nope")


# ----------------------------------------------------------------------------------- real datasets


def test_vendored_gz_checksums():
    assert set(VENDORED_GZ_SHA256) == {f"{stem}.gz" for stem in IDX_FILES}
    assert sorted(p.name for p in VENDORED_DIR.glob("*.gz")) == sorted(VENDORED_GZ_SHA256)
    for name, expected in VENDORED_GZ_SHA256.items():
        assert hashlib.sha256((VENDORED_DIR / name).read_bytes()).hexdigest() == expected, name


@pytest.fixture(scope="module")
def mnist() -> Splits:
    return load_dataset("mnist", data_dir=VENDORED_DIR)


def test_mnist_shapes_counts_and_mean(mnist):
    assert mnist.name == "mnist" and mnist.num_classes == 10 and mnist.val is None
    assert mnist.train.images.shape == (60000, 1, 28, 28) and mnist.train.images.dtype == torch.uint8
    assert mnist.train.labels.shape == (60000,) and mnist.train.labels.dtype == torch.int64
    assert mnist.test.images.shape == (10000, 1, 28, 28) and mnist.test.labels.shape == (10000,)
    assert torch.bincount(mnist.train.labels, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    mean = mnist.train.images.sum(dtype=torch.int64).item() / mnist.train.images.numel() / 255
    assert mean == pytest.approx(0.1307, abs=1e-3)


def test_mnist_vendored_fallback_and_in_process_cache(mnist):
    # Nothing in $SPARSEHALO_DATA_DIR or the cache (fixture), so the package copy is used.
    again = load_dataset("mnist")
    assert again.train.images.data_ptr() == mnist.train.images.data_ptr()  # decoded once per process
    assert torch.equal(again.test.labels, mnist.test.labels)


def test_search_order(tmp_path, monkeypatch):
    env = tmp_path / "env"
    (env / "mnist").mkdir(parents=True)
    for stem in IDX_FILES:
        (env / "mnist" / f"{stem}.gz").symlink_to(VENDORED_DIR / f"{stem}.gz")
    monkeypatch.setenv("SPARSEHALO_DATA_DIR", str(env))
    assert data.data_root() == env
    assert [p.parent for p in locate(MNIST)] == [env / "mnist"] * 4
    dirs = mnist_mod.search_dirs(MNIST)
    assert dirs == [env, env / "mnist", tmp_path / "xdg-cache" / "sparsehalo" / "mnist", VENDORED_DIR]
    assert mnist_mod.search_dirs(FASHION_MNIST, "/d") == [Path("/d"), Path("/d/fashion-mnist")]
    monkeypatch.setenv("SPARSEHALO_DATA_DIR", "")
    assert data.data_root() is None


def test_fashion_mnist_via_data_dir_and_env(monkeypatch):
    # data_dir as the parent (looked up in <data_dir>/fashion-mnist) and as the folder itself.
    for data_dir in (REPO / ".." / "shared" / "datasets", FASHION_DIR):
        fm = load_dataset("fashion-mnist", data_dir=data_dir)
        assert fm.train.images.shape == (60000, 1, 28, 28) and fm.test.images.shape == (10000, 1, 28, 28)
        assert torch.bincount(fm.train.labels).tolist() == [6000] * 10
        assert torch.bincount(fm.test.labels).tolist() == [1000] * 10
    monkeypatch.setenv("SPARSEHALO_DATA_DIR", str(SHARED))
    fm_env = load_dataset("Fashion_MNIST")
    assert torch.equal(fm_env.train.labels, fm.train.labels)


def test_missing_dataset_message(tmp_path, monkeypatch):
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", data_dir=tmp_path / "nowhere")
    msg = one_line(exc)
    for stem in IDX_FILES:
        assert stem in msg
    for part in (str(tmp_path / "nowhere"), "--data-dir", "SPARSEHALO_DATA_DIR", "sparsehalo download mnist"):
        assert part in msg

    # Without data_dir: env dirs and the cache are listed; Fashion-MNIST has no vendored copy.
    monkeypatch.setenv("SPARSEHALO_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(SparsehaloError) as exc:
        load_dataset("fashion-mnist")
    msg = one_line(exc)
    assert str(tmp_path / "env" / "fashion-mnist") in msg
    assert str(tmp_path / "xdg-cache" / "sparsehalo" / "fashion-mnist") in msg


def test_partial_directory_is_not_used(tmp_path):
    (tmp_path / "t10k-labels-idx1-ubyte.gz").symlink_to(VENDORED_DIR / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="not found"):
        load_dataset("mnist", data_dir=tmp_path)


def test_corrupt_copy_fails_checksum(tmp_path):
    for stem in IDX_FILES[:3]:
        (tmp_path / f"{stem}.gz").symlink_to(VENDORED_DIR / f"{stem}.gz")
    raw = bytearray(gzip.decompress((VENDORED_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # still a valid label, so only the checksum can notice
    bad = tmp_path / "t10k-labels-idx1-ubyte"
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", data_dir=tmp_path)
    msg = one_line(exc)
    assert str(bad) in msg and "corrupt" in msg
    assert MNIST.sha256["t10k-labels-idx1-ubyte"][:12] in msg
    assert hashlib.sha256(bytes(raw)).hexdigest()[:12] in msg


def test_unknown_dataset():
    with pytest.raises(DataError) as exc:
        load_dataset("cifar-1000")
    assert "mnist" in one_line(exc)


# --------------------------------------------------------------------------------- tiny IDX dataset


def tiny_tensors(n_train=20, n_test=10):
    g = torch.Generator().manual_seed(7)
    return {
        "train-images-idx3-ubyte": torch.randint(0, 256, (n_train, 28, 28), generator=g, dtype=torch.uint8),
        "train-labels-idx1-ubyte": torch.arange(n_train, dtype=torch.uint8) % 10,
        "t10k-images-idx3-ubyte": torch.randint(0, 256, (n_test, 28, 28), generator=g, dtype=torch.uint8),
        "t10k-labels-idx1-ubyte": torch.arange(n_test, dtype=torch.uint8) % 10,
    }


def tiny_spec(tensors, name="tiny") -> IdxDatasetSpec:
    sha = {stem: hashlib.sha256(encode_idx(t)).hexdigest() for stem, t in tensors.items()}
    return IdxDatasetSpec(
        name=name, sha256=sha, default_mirror="http://127.0.0.1:9/", mirror_env="SPARSEHALO_TINY_MIRROR"
    )


def write_tiny(directory: Path, tensors, compress=True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stem, t in tensors.items():
        write_idx(directory / (f"{stem}.gz" if compress else stem), t, gzip=compress)


@pytest.fixture
def tiny(monkeypatch):
    tensors = tiny_tensors()
    spec = tiny_spec(tensors)
    monkeypatch.setitem(mnist_mod.IDX_DATASETS, "tiny", spec)
    entry = DatasetEntry(functools.partial(load_idx_dataset, spec), 10, "tiny", True)
    monkeypatch.setitem(data.DATASETS, "tiny", entry)
    return spec, tensors


def test_label_and_count_validation(tmp_path):
    tensors = tiny_tensors()
    tensors["t10k-labels-idx1-ubyte"] = torch.arange(9, dtype=torch.uint8)  # 9 labels for 10 images
    write_tiny(tmp_path / "a", tensors)
    with pytest.raises(DataError, match="10 images but .* 9 labels"):
        load_idx_dataset(tiny_spec(tensors), tmp_path / "a")

    tensors = tiny_tensors()
    tensors["train-labels-idx1-ubyte"][3] = 10
    write_tiny(tmp_path / "b", tensors, compress=False)
    with pytest.raises(DataError, match=r"expected \[0, 9\]"):
        load_idx_dataset(tiny_spec(tensors), tmp_path / "b")


# ------------------------------------------------------------------------------------------ download


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


def test_download_success_and_skip_present(tiny, server, tmp_path):
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


def test_load_dataset_download_uses_mirror_env(tiny, server, tmp_path, monkeypatch):
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


def test_download_wrong_content_leaves_nothing(tiny, server, tmp_path):
    spec, tensors = tiny
    wrong = dict(tensors)
    wrong["train-labels-idx1-ubyte"] = (tensors["train-labels-idx1-ubyte"] + 1) % 10
    write_tiny(server.root, wrong)
    with pytest.raises(DataError) as exc:
        download_spec(spec, tmp_path, server.url)
    msg = one_line(exc)
    assert f"{server.url}train-labels-idx1-ubyte.gz" in msg and "corrupt" in msg
    assert leftovers(tmp_path / "tiny") == ["train-images-idx3-ubyte.gz"]  # only the good file before it


def test_download_never_replaces_good_file(tiny, server, tmp_path):
    spec, tensors = tiny
    wrong = {stem: t.flip(0) for stem, t in tensors.items()}
    write_tiny(server.root, wrong)
    write_tiny(tmp_path / "tiny", tensors, compress=False)  # good raw copies already in place
    before = {p.name: p.read_bytes() for p in (tmp_path / "tiny").iterdir()}
    download_spec(spec, tmp_path, server.url)
    assert server.requests == []
    assert {p.name: p.read_bytes() for p in (tmp_path / "tiny").iterdir()} == before


def test_download_replaces_corrupt_file(tiny, server, tmp_path):
    spec, tensors = tiny
    write_tiny(server.root, tensors)
    write_tiny(tmp_path / "tiny", tensors, compress=False)
    stale = tmp_path / "tiny" / "t10k-images-idx3-ubyte"
    stale.write_bytes(stale.read_bytes()[:-1])
    download_spec(spec, tmp_path, server.url)
    assert server.requests == ["/t10k-images-idx3-ubyte.gz"]
    assert not stale.exists()  # removed so the loader (raw first) cannot pick it
    assert torch.equal(load_idx_dataset(spec, tmp_path).test.images[:, 0], tensors["t10k-images-idx3-ubyte"])


def test_download_404(tiny, server, tmp_path):
    spec, _ = tiny
    with pytest.raises(DataError) as exc:
        download_spec(spec, tmp_path, server.url)
    msg = one_line(exc)
    assert f"{server.url}train-images-idx3-ubyte.gz" in msg and "404" in msg
    assert leftovers(tmp_path / "tiny") == []


def test_download_connection_refused(tiny, tmp_path):
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


# ------------------------------------------------------------------------------------ arrays/batches


def indexed_dataset(n=50, **kwargs) -> ArrayDataset:
    # Labels are sample indices, so batches reveal exactly which samples they hold.
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8)
    return ArrayDataset(images, torch.arange(n), **kwargs)


def collect(ds, bs, **kwargs):
    xs, ys = zip(*ds.batches(bs, **kwargs))
    return torch.cat(xs), torch.cat(ys), [len(y) for y in ys]


def test_batches_values_and_order():
    ds = indexed_dataset()
    x, y, sizes = collect(ds, 16)
    assert torch.equal(y, torch.arange(50)) and sizes == [16, 16, 16, 2]
    assert x.dtype == torch.float32 and x.shape == (50, 1, 4, 4)
    assert torch.allclose(x, ds.images.float() / 255)


def test_shuffle_is_function_of_seed_and_epoch():
    ds = indexed_dataset()
    _, a, _ = collect(ds, 16, shuffle=True, seed=3, epoch=2)
    torch.manual_seed(12345)  # global RNG state must not matter
    x, b, _ = collect(ds, 16, shuffle=True, seed=3, epoch=2)
    assert torch.equal(a, b)
    assert torch.equal(x, ds.images[b].float() / 255)  # images stay paired with their labels
    _, c, _ = collect(ds, 16, shuffle=True, seed=3, epoch=3)
    _, d, _ = collect(ds, 16, shuffle=True, seed=4, epoch=2)
    assert not torch.equal(a, c) and not torch.equal(a, d)
    for order in (a, c, d):
        assert torch.equal(order.sort().values, torch.arange(50))  # every sample exactly once
    assert not torch.equal(a, torch.arange(50))


def test_drop_last():
    ds = indexed_dataset(10)
    assert ds.num_batches(4) == 3 and ds.num_batches(4, drop_last=True) == 2
    _, y, sizes = collect(ds, 4, shuffle=True, drop_last=True)
    assert sizes == [4, 4] and len(set(y.tolist())) == 8
    assert ds.num_batches(5, drop_last=True) == 2 and collect(ds, 5, drop_last=True)[2] == [5, 5]
    assert list(indexed_dataset(3).batches(4, drop_last=True)) == []
    with pytest.raises(DataError):
        ds.num_batches(0)


def test_normalization():
    ds = indexed_dataset(8, mean=(0.5,), std=(0.25,))
    x, _, _ = collect(ds, 3)
    assert torch.allclose(x, (ds.images.float() / 255 - 0.5) / 0.25)
    sub = ds.subset(torch.tensor([1, 3]))
    assert sub.mean == (0.5,) and torch.equal(sub.labels, torch.tensor([1, 3]))
    with pytest.raises(DataError, match="one per channel"):
        indexed_dataset(8, mean=(0.5, 0.5), std=(1.0, 1.0))


def test_dataset_validation_and_to():
    with pytest.raises(DataError):
        ArrayDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long))  # float images
    with pytest.raises(DataError):
        ArrayDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.long))
    splits = Splits(indexed_dataset(4), indexed_dataset(2), None, 10, "x")
    moved = splits.to("cpu")
    assert moved is not splits and moved.val is None and moved.name == "x"
    assert torch.equal(moved.train.images, splits.train.images)


def test_split_validation():
    ds = indexed_dataset(100)
    rest, val = split_validation(ds, 30, seed=5)
    assert len(rest) == 70 and len(val) == 30
    assert set(rest.labels.tolist()).isdisjoint(val.labels.tolist())
    assert sorted(rest.labels.tolist() + val.labels.tolist()) == list(range(100))
    assert torch.equal(val.labels, val.labels.sort().values)  # original order kept
    rest2, val2 = split_validation(ds, 30, seed=5)
    assert torch.equal(val.labels, val2.labels) and torch.equal(rest.images, rest2.images)
    assert not torch.equal(split_validation(ds, 30, seed=6)[1].labels, val.labels)
    assert len(split_validation(ds, 0.25, seed=0)[1]) == 25
    for bad in (0, 100, 1.5):
        with pytest.raises(DataError):
            split_validation(ds, bad, seed=0)


# ----------------------------------------------------------------------------------------- synthetic


def test_synthetic_deterministic_and_learnable():
    s = load_dataset("synthetic", val_size=64, seed=0)
    assert s.name == "synthetic" and s.num_classes == 10
    assert s.train.images.shape == (448, 1, 28, 28) and s.train.images.dtype == torch.uint8
    assert len(s.val) == 64 and len(s.test) == 256
    again = load_dataset("synthetic", val_size=64, seed=0)
    assert torch.equal(s.train.images, again.train.images) and torch.equal(s.test.labels, again.test.labels)
    other = data.make_synthetic(seed=1)
    assert not torch.equal(other.train.images, data.make_synthetic().train.images)
    assert torch.bincount(data.make_synthetic().train.labels).tolist() == [52, 52] + [51] * 8

    # Learnable: a nearest-class-mean classifier fit on train does well on test.
    x_tr = s.train.images.flatten(1).float()
    centroids = torch.stack([x_tr[s.train.labels == k].mean(0) for k in range(10)])
    pred = torch.cdist(s.test.images.flatten(1).float(), centroids).argmin(1)
    assert (pred == s.test.labels).float().mean() > 0.9
