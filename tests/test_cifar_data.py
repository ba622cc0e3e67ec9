"""Tests for CIFAR loading (python and image-folder archives), downloads and batched augmentation.

Everything runs on small archives the tests build in tmp_path, except one check of the shared JPEG
archive's checksum and member listing.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import pickle
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sparsehalo.data as data
from sparsehalo.data import ArrayDataset, DatasetEntry, clear_cache, load_dataset, split_validation
from sparsehalo.data import cifar
from sparsehalo.data.augment import crop_flip, random_crop_flip
from sparsehalo.data.cifar import (
    CIFAR10,
    CIFAR10_CLASSES,
    CIFAR10_JPEG,
    CIFAR100,
    CIFAR_MEAN,
    CIFAR_STD,
    image_cache_path,
    load_cifar,
    load_image_folder,
    restricted_load,
)
from sparsehalo.data.download import download_dataset, mirror_for
from sparsehalo.errors import DataError

SHARED_JPEG = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpeg" / "cifar10-jpeg.tar.xz"
UNPINNED_JPEG = dataclasses.replace(CIFAR10_JPEG, sha256=None)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Keep the user's data dir, cache and mirror out of every test; start with empty in-memory caches."""
    monkeypatch.delenv("SPARSEHALO_DATA_DIR", raising=False)
    monkeypatch.delenv(CIFAR10.mirror_env, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    clear_cache()
    yield
    clear_cache()


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


# ------------------------------------------------------------------------------------ fake archives


class _Py2Pickler(pickle._Pickler):
    """Writes strings the way Python 2's cPickle wrote its ``str``: as byte strings (BINSTRING).

    The official CIFAR pickles were made that way, so this exercises the same opcodes, including
    the numpy dtype state given as byte strings.
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        n = len(raw)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + raw)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 1 (which made the real files) lives at numpy.core; numpy 2 pickles name numpy._core.
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_tar(path: Path, files: dict[str, bytes], mode: str = "w:gz", dirs: tuple[str, ...] = ()) -> Path:
    with tarfile.open(path, mode) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def layout_image() -> np.ndarray:
    """One CIFAR row (3072 bytes): red = 8 * row, green = 8 * column, blue = 7."""
    y, x = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    return np.concatenate([(8 * y).ravel(), (8 * x).ravel(), np.full(1024, 7)]).astype(np.uint8)


def cifar10_content(n=3, n_test=4, seed=0):
    rng = np.random.default_rng(seed)
    batches = {}
    for i in range(1, 6):
        batches[f"data_batch_{i}"] = (rng.integers(0, 256, (n, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, n)])
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test[0] = layout_image()
    batches["test_batch"] = (test, [int(v) for v in rng.integers(0, 10, n_test)])
    return batches


def write_cifar10(path: Path, content=None) -> Path:
    content = content or cifar10_content()
    files = {}
    for member, (x, y) in content.items():
        d = {"batch_label": f"batch {member}", "labels": y, "data": x, "filenames": [f"img{i}.png" for i in range(len(y))]}
        files[f"cifar-10-batches-py/{member}"] = py2_pickle(d)
    files["cifar-10-batches-py/batches.meta"] = py2_pickle(
        {"num_cases_per_batch": 3, "label_names": list(CIFAR10_CLASSES), "num_vis": 3072}
    )
    files["cifar-10-batches-py/readme.html"] = b"<html></html>"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_tar(path, files, dirs=("cifar-10-batches-py",))


def write_cifar100(path: Path):
    # Python 3 pickles with bytes keys, as the brief's b"data"/b"fine_labels" layout.
    rng = np.random.default_rng(1)
    content = {}
    files = {}
    for member, n in (("train", 6), ("test", 3)):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        coarse = [f // 5 for f in fine]
        content[member] = (x, fine, coarse)
        d = {b"filenames": [b"a.png"] * n, b"batch_label": b"x", b"fine_labels": fine, b"coarse_labels": coarse, b"data": x}
        files[f"cifar-100-python/{member}"] = pickle.dumps(d, protocol=3)
    names = [f"class{i:02d}".encode() for i in range(100)]
    files["cifar-100-python/meta"] = pickle.dumps({b"fine_label_names": names, b"coarse_label_names": names[:20]}, protocol=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_tar(path, files)
    return content


# ------------------------------------------------------------------------------- python archives


def test_cifar10_round_trip_and_layout(tmp_path):
    content = cifar10_content()
    write_cifar10(tmp_path / "d" / "cifar-10-python.tar.gz", content)
    splits = load_dataset("cifar10", data_dir=tmp_path / "d")

    assert splits.name == "cifar10" and splits.num_classes == 10 and splits.classes == CIFAR10_CLASSES
    assert splits.source == str(tmp_path / "d" / "cifar-10-python.tar.gz")
    train_x = np.concatenate([content[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_y = sum((content[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert splits.train.images.shape == (15, 3, 32, 32) and splits.train.images.dtype == torch.uint8
    assert splits.train.labels.dtype == torch.int64
    assert splits.train.labels.tolist() == train_y
    assert splits.test.labels.tolist() == content["test_batch"][1]
    # Every pixel, from the 3072-byte rows: R plane, G plane, B plane, each row-major.
    for n in (0, 7, 14):
        for c, y, x in ((0, 0, 0), (1, 5, 31), (2, 31, 3), (0, 17, 9)):
            assert int(splits.train.images[n, c, y, x]) == int(train_x[n, c * 1024 + y * 32 + x])
    # Semantic layout check on a known image: red varies along rows, green along columns.
    img = splits.test.images[0]
    assert torch.equal(img[0, :, 0], torch.arange(32, dtype=torch.uint8) * 8)
    assert torch.equal(img[0, 3], torch.full((32,), 24, dtype=torch.uint8))
    assert torch.equal(img[1, 0], torch.arange(32, dtype=torch.uint8) * 8)
    assert bool((img[2] == 7).all())
    assert splits.train.mean == CIFAR_MEAN and splits.train.std == CIFAR_STD
    assert splits.test.mean == CIFAR_MEAN and splits.test.std == CIFAR_STD


def test_cifar100_uses_fine_labels(tmp_path):
    content = write_cifar100(tmp_path / "cifar100" / "cifar-100-python.tar.gz")
    splits = load_dataset("cifar100", data_dir=tmp_path)  # found in the <name> sub-directory
    assert splits.num_classes == 100 and len(splits.classes) == 100 and splits.classes[7] == "class07"
    x, fine, coarse = content["train"]
    assert splits.train.labels.tolist() == fine != coarse
    assert np.array_equal(splits.train.images.numpy().reshape(6, 3072), x)
    assert splits.test.labels.tolist() == content["test"][1]


def evil_pickle(marker: Path) -> bytes:
    # Protocol 0 by hand, so the global is literally "os.system": {'data': os.system('touch MARKER')}
    return b"(dp0\nS'data'\np1\ncos\nsystem\np2\n(S'touch " + str(marker).encode() + b"'\np3\ntp4\nRp5\ns."


def test_pickle_with_forbidden_global_never_runs(tmp_path):
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


def test_python_archive_errors(tmp_path):
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


def test_missing_files_message(tmp_path, monkeypatch):
    where = tmp_path / "nowhere"
    for name, files in (
        ("cifar10", ["cifar-10-python.tar.gz", "cifar10-jpeg.tar.xz", "sparsehalo download cifar10"]),
        ("cifar100", ["cifar-100-python.tar.gz", "sparsehalo download cifar100"]),
        ("cifar10-jpeg", ["cifar10-jpeg.tar.xz"]),
    ):
        with pytest.raises(DataError) as exc:
            load_dataset(name, data_dir=where)
        msg = one_line(exc)
        for part in (*files, str(where), "--data-dir", "SPARSEHALO_DATA_DIR"):
            assert part in msg, (name, part)
    monkeypatch.setenv("SPARSEHALO_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DataError) as exc:
        load_dataset("cifar100")
    msg = one_line(exc)
    assert str(tmp_path / "env" / "cifar100") in msg and str(tmp_path / "xdg-cache" / "sparsehalo" / "cifar100") in msg


# ---------------------------------------------------------------------------- image-folder archives

COLORS = {"airplane": (200, 30, 40), "cat": (20, 180, 60), "truck": (40, 60, 220)}


def jpeg(color, size=(32, 32), seed=0) -> bytes:
    # A solid colour plus a little texture: JPEG keeps solid colours almost exactly, so the channel
    # order can be checked, and the texture makes images differ.
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(color)[None, None, :] + rng.integers(-3, 4, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="JPEG")
    return buf.getvalue()


def folder_files(extra_train=0) -> dict[str, bytes]:
    files = {}
    seed = 0
    for cls, color in COLORS.items():
        for i in range(2 + extra_train):
            files[f"train/{cls}/{i:04d}.jpg"] = jpeg(color, seed=(seed := seed + 1))
        files[f"test/{cls}/0000.jpg"] = jpeg(color, seed=(seed := seed + 1))
    return files


def decode_ref(payload: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(payload)).convert("RGB")).transpose(2, 0, 1)


def test_image_folder_decode_labels_and_order(tmp_path):
    files = folder_files()
    # Written in reverse order: the loader sorts by path, so the tar's order must not matter.
    path = write_tar(tmp_path / "imgs.tar.xz", dict(reversed(list(files.items()))), "w:xz", dirs=("train", "test/cat"))
    arrays = cifar.decode_image_folder_archive(path, UNPINNED_JPEG)
    train_x, train_y = arrays["train"]
    names = sorted(n for n in files if n.startswith("train/"))
    assert train_x.shape == (6, 3, 32, 32) and train_x.dtype == np.uint8
    assert train_y.tolist() == [CIFAR10_CLASSES.index(n.split("/")[1]) for n in names] == [0, 0, 3, 3, 9, 9]
    for i, n in enumerate(names):
        assert np.array_equal(train_x[i], decode_ref(files[n]))
        # Channels in R, G, B order (JPEG error on near-solid colours is a few levels).
        mean = train_x[i].reshape(3, -1).mean(axis=1)
        assert np.allclose(mean, COLORS[n.split("/")[1]], atol=4)
    assert arrays["test"][1].tolist() == [0, 3, 9]


def test_image_folder_cache_created_reused_and_rebuilt(tmp_path, monkeypatch):
    src = tmp_path / "data" / "cifar10-jpeg" / "cifar10-jpeg.tar.xz"
    src.parent.mkdir(parents=True)
    write_tar(src, folder_files(), "w:xz")
    monkeypatch.setitem(data.DATASETS, "cifar10-jpeg", DatasetEntry(functools.partial(load_image_folder, UNPINNED_JPEG), 10, "t"))

    calls = []
    real_decode = cifar._decode_image

    def counting(*args):
        calls.append(args[1])
        return real_decode(*args)

    monkeypatch.setattr(cifar, "_decode_image", counting)
    first = load_dataset("cifar10-jpeg", data_dir=tmp_path / "data")
    assert len(calls) == 9
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    cache = image_cache_path(UNPINNED_JPEG, sha)
    assert cache.is_file() and cache.parent == tmp_path / "xdg-cache" / "sparsehalo" / "cifar10-jpeg"
    assert first.name == "cifar10-jpeg" and first.train.mean == CIFAR_MEAN and first.test.std == CIFAR_STD

    # Second load in a fresh process state: from the .npz, no image decoded.
    clear_cache()

    def fail(*args):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(cifar, "_decode_image", fail)
    second = load_dataset("cifar10-jpeg", data_dir=tmp_path / "data")
    assert torch.equal(second.train.images, first.train.images) and torch.equal(second.test.labels, first.test.labels)

    # A changed archive has another sha256: it is decoded again, into a new cache file.
    write_tar(src, folder_files(extra_train=1), "w:xz")
    clear_cache()
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset("cifar10-jpeg", data_dir=tmp_path / "data")
    monkeypatch.setattr(cifar, "_decode_image", real_decode)
    third = load_dataset("cifar10-jpeg", data_dir=tmp_path / "data")
    assert len(third.train) == 9
    assert image_cache_path(UNPINNED_JPEG, hashlib.sha256(src.read_bytes()).hexdigest()).is_file()

    # A damaged cache file is ignored and rewritten, not fatal.
    cache.write_bytes(b"not an npz")
    write_tar(src, folder_files(), "w:xz")  # back to the first archive (its sha256 names `cache`)
    assert hashlib.sha256(src.read_bytes()).hexdigest() == sha
    clear_cache()
    again = load_dataset("cifar10-jpeg", data_dir=tmp_path / "data")
    assert torch.equal(again.train.images, first.train.images)
    assert cache.stat().st_size > 1000


def test_image_folder_errors(tmp_path):
    files = folder_files()
    files["train/kangaroo/0000.jpg"] = jpeg((1, 2, 3))
    path = write_tar(tmp_path / "a.tar.xz", files, "w:xz")
    with pytest.raises(DataError) as exc:
        cifar.decode_image_folder_archive(path, UNPINNED_JPEG)
    assert "kangaroo" in one_line(exc) and "airplane" in str(exc.value)

    files = folder_files()
    files["test/cat/0001.jpg"] = jpeg((1, 2, 3), size=(32, 30))
    path = write_tar(tmp_path / "b.tar", files, "w")
    with pytest.raises(DataError, match="expected 32x32"):
        cifar.decode_image_folder_archive(path, UNPINNED_JPEG)

    files = folder_files()
    files["train/cat/0009.jpg"] = b"not a jpeg"
    path = write_tar(tmp_path / "c.tar.gz", files, "w:gz")
    with pytest.raises(DataError, match="cannot decode image"):
        cifar.decode_image_folder_archive(path, UNPINNED_JPEG)

    # The pinned checksum applies to a file with the pinned name.
    pinned = tmp_path / "d" / "cifar10-jpeg.tar.xz"
    pinned.parent.mkdir()
    write_tar(pinned, folder_files(), "w:xz")
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10-jpeg", data_dir=tmp_path / "d")
    assert "corrupt" in one_line(exc) and "sha256" in str(exc.value)


def test_cifar10_falls_back_to_jpeg_and_prefers_python(tmp_path, monkeypatch):
    monkeypatch.setitem(
        data.DATASETS, "cifar10", DatasetEntry(functools.partial(load_cifar, CIFAR10, fallback=UNPINNED_JPEG), 10, "t")
    )
    root = tmp_path / "root"
    (root / "cifar10-jpeg").mkdir(parents=True)
    jpeg_path = write_tar(root / "cifar10-jpeg" / "cifar10-jpeg.tar.xz", folder_files(), "w:xz")
    monkeypatch.setenv("SPARSEHALO_DATA_DIR", str(root))
    splits = load_dataset("cifar10")
    assert splits.name == "cifar10-jpeg" and splits.source == str(jpeg_path) and len(splits.train) == 6

    write_cifar10(root / "cifar10" / "cifar-10-python.tar.gz")
    splits = load_dataset("cifar10")
    assert splits.name == "cifar10" and len(splits.train) == 15


# ------------------------------------------------------------------------------------ augmentation


def crop_flip_ref(img: torch.Tensor, top: int, left: int, flip: bool, padding: int) -> torch.Tensor:
    """Slow reference for one image [C, H, W]: copy the window pixel by pixel."""
    c, h, w = img.shape
    padded = torch.zeros(c, h + 2 * padding, w + 2 * padding, dtype=img.dtype)
    padded[:, padding : padding + h, padding : padding + w] = img
    out = torch.empty_like(img)
    for i in range(h):
        for j in range(w):
            out[:, i, j] = padded[:, top + i, left + (w - 1 - j if flip else j)]
    return out


def rand_images(b=8, c=3, h=32, w=32, seed=0):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_crop_flip_matches_reference():
    x = rand_images(6, 2, 7, 5)
    top = torch.tensor([0, 8, 3, 5, 8, 0])
    left = torch.tensor([0, 8, 6, 1, 0, 4])
    flip = torch.tensor([False, True, True, False, False, True])
    out = crop_flip(x, top, left, flip, padding=4)
    for b in range(6):
        assert torch.equal(out[b], crop_flip_ref(x[b], int(top[b]), int(left[b]), bool(flip[b]), 4))
    with pytest.raises(ValueError, match="offsets"):
        crop_flip(x, top + 1, left, flip, padding=4)


def identify(out_img, img, padding):
    """All (top, left, flip) whose window of the zero-padded image equals out_img.

    Uses slicing (not the pixel loop above) so searching all windows of many images stays fast; it
    is still independent of the gather-based implementation.
    """
    c, h, w = img.shape
    padded = torch.zeros(c, h + 2 * padding, w + 2 * padding, dtype=img.dtype)
    padded[:, padding : padding + h, padding : padding + w] = img
    found = []
    for t in range(2 * padding + 1):
        for l in range(2 * padding + 1):
            window = padded[:, t : t + h, l : l + w]
            found += [(t, l, f) for f in (False, True) if torch.equal(out_img, window.flip(-1) if f else window)]
    return found


def test_random_crop_flip_identity_and_mirror():
    x = rand_images()
    assert torch.equal(random_crop_flip(x, torch.Generator().manual_seed(0), padding=0, flip=False), x)

    x = rand_images(64)
    out = random_crop_flip(x, torch.Generator().manual_seed(1), padding=0)
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    same = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(a != b for a, b in zip(flipped, same))  # each is exactly one of the two
    assert 0 < sum(flipped) < 64


def test_random_crop_flip_windows_and_determinism():
    x = rand_images(256, 3, 8, 8, seed=2)
    out = random_crop_flip(x, torch.Generator().manual_seed(3), padding=4)
    assert out.shape == x.shape and out.dtype == x.dtype
    found = []
    for b in range(0, 256):
        matches = identify(out[b], x[b], 4)
        # Random pixels make the window unique, except fully-padded crops which don't occur here.
        assert len(matches) == 1, (b, matches)
        found.append(matches[0])
    assert {t for t, _, _ in found} == set(range(9)) and {l for _, l, _ in found} == set(range(9))
    assert {f for _, _, f in found} == {False, True}

    again = random_crop_flip(x, torch.Generator().manual_seed(3), padding=4)
    other = random_crop_flip(x, torch.Generator().manual_seed(4), padding=4)
    assert torch.equal(out, again) and not torch.equal(out, other)


def augmented_dataset(n=40, **kwargs):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    return ArrayDataset(images, torch.arange(n), augment=random_crop_flip, **kwargs)


def collect(ds, **kwargs):
    xs, ys = zip(*ds.batches(16, **kwargs))
    return torch.cat(xs), torch.cat(ys)


def test_batches_augmentation_is_function_of_seed_and_epoch():
    ds = augmented_dataset()
    plain = ds.with_augment(None)
    x1, y1 = collect(ds, shuffle=True, seed=1, epoch=2)
    x2, y2 = collect(ds, shuffle=True, seed=1, epoch=2)
    x3, y3 = collect(ds, shuffle=True, seed=1, epoch=3)
    _, y_plain = collect(plain, shuffle=True, seed=1, epoch=2)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    assert torch.equal(y1, y_plain)  # augmentation does not change the shuffle order
    # Each sample is a crop/flip of its own image.
    for i in (0, 17, 39):
        assert identify(x1[i], ds.images[int(y1[i])].float() / 255, 4)
    assert ds.to("cpu").augment is random_crop_flip and ds.subset(torch.arange(3)).augment is random_crop_flip


def test_augment_runs_after_scaling_and_before_normalization():
    seen = []

    def zero(x, g):
        seen.append((float(x.min()), float(x.max())))
        return torch.zeros_like(x)

    images = torch.full((4, 3, 2, 2), 255, dtype=torch.uint8)
    ds = ArrayDataset(images, torch.arange(4), mean=CIFAR_MEAN, std=CIFAR_STD, augment=zero)
    (x, _), = ds.batches(4)
    assert seen == [(1.0, 1.0)]
    expected = -torch.tensor(CIFAR_MEAN) / torch.tensor(CIFAR_STD)
    assert torch.allclose(x[0, :, 0, 0], expected)


def test_load_dataset_augment_only_on_train(tmp_path):
    write_cifar10(tmp_path / "cifar-10-python.tar.gz")
    splits = load_dataset("cifar10", data_dir=tmp_path, augment=True, val_size=5, seed=0)
    assert splits.train.augment is random_crop_flip
    assert splits.val.augment is None and splits.test.augment is None
    # Validation batches are the stored images, normalized, unaltered.
    (xv, yv), = splits.val.batches(5)
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    assert torch.allclose(xv, (splits.val.images.float() / 255 - mean) / std)
    assert load_dataset("cifar10", data_dir=tmp_path).train.augment is None
    assert load_dataset("synthetic").train.augment is None
    with pytest.raises(DataError, match="no standard augmentation"):
        load_dataset("synthetic", augment=True)
    _, val = split_validation(splits.train, 3, 0)
    assert val.augment is None


# -------------------------------------------------------------------------------------- downloads


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/", requests
    httpd.shutdown()
    httpd.server_close()


def digests(path: Path) -> dict[str, str]:
    raw = path.read_bytes()
    return {"sha256": hashlib.sha256(raw).hexdigest(), "md5": hashlib.md5(raw).hexdigest()}


def test_pinned_urls_and_checksums():
    assert mirror_for(CIFAR10) + CIFAR10.filename == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert mirror_for(CIFAR100) + CIFAR100.filename == "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    assert CIFAR10.sha256 == "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
    assert CIFAR100.sha256 == "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"
    assert (CIFAR10.md5, CIFAR100.md5) == ("c58f30108f718f92721af3b95e74349a", "eb9058c3a382ffc7106e4002c42a8d85")


def test_download_verifies_then_places_file(tmp_path, server, monkeypatch):
    root, url, requests = server
    served = write_cifar10(root / "cifar-10-python.tar.gz")
    monkeypatch.setitem(cifar.ARCHIVE_DATASETS, "cifar10", dataclasses.replace(CIFAR10, **digests(served)))

    target = download_dataset("cifar10", tmp_path / "dl", url)
    assert target == tmp_path / "dl" / "cifar10"
    assert sorted(p.name for p in target.iterdir()) == ["cifar-10-python.tar.gz"]  # no temp file left
    assert (target / "cifar-10-python.tar.gz").read_bytes() == served.read_bytes()
    assert requests == ["/cifar-10-python.tar.gz"]
    assert len(load_dataset("cifar10", data_dir=tmp_path / "dl").train) == 15

    download_dataset("cifar10", tmp_path / "dl", url)  # present and valid: not fetched again
    assert len(requests) == 1


@pytest.mark.parametrize("wrong", ["sha256", "md5"])
def test_download_wrong_checksum_leaves_nothing(tmp_path, server, monkeypatch, wrong):
    root, url, _ = server
    served = write_cifar10(root / "cifar-10-python.tar.gz")
    pins = digests(served)
    pins[wrong] = "0" * len(pins[wrong])
    monkeypatch.setitem(cifar.ARCHIVE_DATASETS, "cifar10", dataclasses.replace(CIFAR10, **pins))
    with pytest.raises(DataError) as exc:
        download_dataset("cifar10", tmp_path / "dl", url)
    msg = one_line(exc)
    assert "corrupt" in msg and wrong in msg and f"{url}cifar-10-python.tar.gz" in msg
    assert list((tmp_path / "dl" / "cifar10").iterdir()) == []


def test_load_dataset_download_enforces_real_checksum(tmp_path, server, monkeypatch):
    # load_dataset(download=True) goes through the mirror variable and the real pinned sha256, which
    # a fake archive cannot match: the download is refused and nothing is saved.
    root, url, requests = server
    write_cifar10(root / "cifar-10-python.tar.gz")
    monkeypatch.setenv(CIFAR10.mirror_env, url)
    with pytest.raises(DataError, match="corrupt"):
        load_dataset("cifar10", data_dir=tmp_path / "d", download=True)
    assert requests == ["/cifar-10-python.tar.gz"]
    assert list((tmp_path / "d" / "cifar10").iterdir()) == []


# ---------------------------------------------------------------------------- shared JPEG archive


def test_shared_jpeg_archive_checksum_and_listing():
    assert cifar.file_sha256(SHARED_JPEG) == CIFAR10_JPEG.sha256
    counts = {"train": {}, "test": {}}
    with tarfile.open(SHARED_JPEG, "r:xz") as tar:
        for member in tar:  # headers only; no image is decoded
            if member.isfile():
                split, cls, name = member.name.split("/")
                assert name.endswith(".jpg")
                counts[split][cls] = counts[split].get(cls, 0) + 1
    assert sorted(counts["train"]) == sorted(counts["test"]) == sorted(CIFAR10_CLASSES)
    assert sum(counts["train"].values()) == 50_000 and sum(counts["test"].values()) == 10_000
    assert set(counts["train"].values()) == {5000} and set(counts["test"].values()) == {1000}
