"""Read the official CIFAR "python version" archives: pickled dicts, unpickled without running code.

Unpickling runs whatever code a pickle names, so the batches are read with
:class:`RestrictedUnpickler`, which rebuilds numpy arrays and plain containers and nothing else: a
tampered archive fails with :class:`~sparsehalo.errors.DataError` instead of running its code.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path
from typing import Any, BinaryIO, Collection

import numpy as np

from ..errors import DataError
from .archives import READ_ERRORS, SplitArrays, bounded_members, member_name, read_error
from .specs import PickleArchiveSpec

# ------------------------------------------------------------------------------ restricted pickle


def _safe_dtype(*args: Any) -> np.dtype:
    # Object dtypes would let array data be built from arbitrary pickled objects; CIFAR has none.
    dt = np.dtype(*args)
    if dt.hasobject:
        raise DataError(f"pickle asks for a numpy object dtype ({dt}); refusing to load it")
    return dt


def _numpy_reconstruct() -> Any:
    # numpy 2 moved the function to numpy._core; the files name numpy.core (numpy 1).  Looking it up
    # directly avoids numpy 2's deprecation shim for numpy.core.
    try:
        from numpy._core.multiarray import _reconstruct as fn
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct as fn
    return fn


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and plain Python containers, and nothing else.

    Any other global (``os.system``, ``builtins.eval``, ...) is refused before it is looked up, so
    loading a tampered file never runs its code.  Decodes Python 2 strings as ``bytes``.
    """

    def __init__(self, file: BinaryIO, where: str = "pickle") -> None:
        super().__init__(file, encoding="bytes")
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        """Return the allowed object for ``module.name``; raise DataError for anything else."""
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"{self._where}: pickle refers to '{module}.{name}', which a CIFAR file never needs; "
                "refusing to load it (the file may be tampered with)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids (CIFAR pickles have none)."""
        raise DataError(f"{self._where}: pickle uses persistent ids; refusing to load it")


def restricted_load(file: BinaryIO, where: str = "pickle") -> Any:
    """Unpickle ``file`` with :class:`RestrictedUnpickler`.

    Raises:
        DataError: a forbidden global, or data that is not a valid pickle.
    """
    try:
        return RestrictedUnpickler(file, where).load()
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure on untrusted bytes means "corrupt"
        raise DataError(f"{where}: not a valid pickle ({type(exc).__name__}: {exc})") from None


# ------------------------------------------------------------------------------- python archives


def _text(value: Any) -> Any:
    return value.decode("latin1") if isinstance(value, bytes) else value


def _as_dict(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    # encoding="bytes" turns the Python 2 str keys into bytes; normalize them to str.
    return {_text(k): v for k, v in obj.items()}


def _read_pickles(path: Path, wanted: Collection[str]) -> dict[str, Any]:
    """Unpickle the archive members named in ``wanted`` in one pass over the tar (no seeking back)."""
    found: dict[str, Any] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in bounded_members(path, tar):
                name = member_name(member.name)
                if name not in wanted:
                    continue
                if name in found:
                    raise DataError(f"{path}: archive holds {name} twice")
                if not member.isfile():
                    raise DataError(f"{path}: {name} is not a regular file in the archive")
                stream = tar.extractfile(member)
                assert stream is not None  # regular files always have a stream
                # Read the whole member first so a damaged archive reports as such, not as a bad pickle.
                raw = stream.read()
                found[name] = restricted_load(io.BytesIO(raw), f"{path}:{name}")
    except READ_ERRORS as exc:
        raise read_error(path, exc) from None
    missing = [n for n in wanted if n not in found]
    if missing:
        raise DataError(f"{path}: archive lacks {', '.join(missing)}; is it the right file?")
    return found


def _images_labels(obj: Any, where: str, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = _as_dict(obj, where)
    data, labels = d.get("data"), d.get(label_key)
    if data is None or labels is None:
        raise DataError(f"{where}: expected keys 'data' and '{label_key}', found {sorted(map(str, d))}")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        desc = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{where}: 'data' must be a uint8 array [N, 3072], got {desc}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or (labels.size and labels.dtype.kind not in "iu"):
        raise DataError(
            f"{where}: '{label_key}' must be {data.shape[0]} integers, got {labels.dtype} {list(labels.shape)}"
        )
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{where}: labels span [{labels.min()}, {labels.max()}], expected [0, {num_classes - 1}]")
    # Each row is the red plane, then green, then blue, each 32x32 row-major: a plain reshape.
    return data.reshape(-1, 3, 32, 32), labels


def read_pickle_archive(path: Path, spec: PickleArchiveSpec) -> tuple[SplitArrays, tuple[str, ...]]:
    """Read an official CIFAR python archive without extracting it.

    Args:
        path: the ``.tar.gz`` file.
        spec: which archive it is.

    Returns:
        ``({"train": (images, labels), "test": (images, labels)}, class_names)`` with images uint8
        ``[N, 3, 32, 32]`` and labels int64 ``[N]``.

    Raises:
        DataError: unreadable archive, missing members, forbidden pickle content or malformed data.
    """
    full = {f"{spec.folder}/{m}": m for m in (*spec.train_members, *spec.test_members, spec.meta_member)}
    pickles = _read_pickles(path, full)
    by_member = {m: pickles[n] for n, m in full.items()}

    meta_where = f"{path}:{spec.folder}/{spec.meta_member}"
    meta = _as_dict(by_member[spec.meta_member], meta_where)
    names = meta.get(spec.names_key)
    if not isinstance(names, (list, tuple)) or len(names) != spec.num_classes:
        count = len(names) if isinstance(names, (list, tuple)) else "no"
        raise DataError(f"{meta_where}: expected {spec.num_classes} names under '{spec.names_key}', found {count}")
    classes = tuple(str(_text(n)) for n in names)

    out = {}
    for split, members in (("train", spec.train_members), ("test", spec.test_members)):
        parts = [
            _images_labels(by_member[m], f"{path}:{spec.folder}/{m}", spec.label_key, spec.num_classes) for m in members
        ]
        out[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return out, classes
