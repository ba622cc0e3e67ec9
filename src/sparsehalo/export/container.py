"""The sparse-export file: a standard safetensors file, behind strict checks of our own.

The layout is the safetensors one::

    8 bytes   little-endian unsigned header length N
    N bytes   UTF-8 JSON: {name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
                           "__metadata__": {str: str}}
    rest      raw little-endian tensor bytes; offsets are relative to the start of this section

A state entry ``NAME`` stored dense is the tensor ``NAME``; a compact one is the tensors
``NAME::<part>`` of its encoding (:mod:`.encodings`).  The metadata holds ``format``
(:data:`FORMAT`), ``encodings`` (a JSON object: for every state entry its encoding, original dtype,
shape and, if compact, number of non-zeros), ``sha256`` (:func:`content_sha256`, a checksum of
every tensor and every other metadata entry) and whatever the caller adds (``config``,
``num_classes``, ``source`` for :func:`~sparsehalo.export.export_run`).  Files of format
:data:`OLD_FORMAT` (written before the checksum) carry no ``sha256`` and still read.

:func:`serialize` writes the file deterministically, byte for byte as sparse exports have always
been written; ``safetensors.safe_open`` reads it.  Reading goes through the ``safetensors`` package
(``safetensors.torch.load``), but only after :func:`parse_header` has checked what the package lets
through or does not know about: duplicate JSON keys (it silently keeps one), a header above
:data:`MAX_HEADER_BYTES`, dtypes and ranks outside ours, byte spans that do not tile the data
section; :func:`decode_state` then refuses more elements than a limit and every inconsistent
encoding, and a file whose checksum differs from its content.  Files the package itself writes
(tensors sorted by dtype, metadata first) read the same: the checksum covers the content, not the
layout.  A corrupt or crafted file gives a :class:`~sparsehalo.errors.CheckpointError` in one line, never a
crash, an out-of-range write or code execution (the file holds no pickle).
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from ..errors import CheckpointError, SparsehaloError
from ..io import verify
from . import encodings as enc

FORMAT = "sparsehalo-sparse-2"
#: The format before the checksum: read, never written unless asked for (``checksum=False``).
OLD_FORMAT = "sparsehalo-sparse-1"
CHECKSUM_KEY = "sha256"
#: Refuse headers above this size: a real one is a few kilobytes, and JSON parsing is not free.
MAX_HEADER_BYTES = 16 << 20
#: :func:`read_sparse_state` refuses to decode more elements than this without a model to check
#: shapes against (1 GiB of float32), so a crafted shape cannot make it allocate without bound.
MAX_ELEMENTS = 1 << 28
MAX_RANK = 8
SEP = "::"
RESERVED_METADATA = ("format", "encodings", CHECKSUM_KEY)
_CODES = {dtype: code for code, dtype in enc.DTYPES.items()}


# ---------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------


def encode_state(
    state: Mapping[str, torch.Tensor],
    compact: set[str],
    values_dtype: torch.dtype = torch.float32,
    metadata: Mapping[str, str] | None = None,
    allowed: tuple[str, ...] = enc.COMPACT_ENCODINGS,
    checksum: bool = True,
) -> tuple[bytes, dict]:
    """Serialize a state dict to the sparse file format.

    Args:
        state: ``{name: tensor}`` to store.
        compact: names that may be stored compactly if at least ``COMPACT_MIN_ZEROS`` zeros.
        values_dtype: dtype of the non-zero values of compactly stored tensors.
        metadata: extra ``{str: str}`` entries for the header (``format`` and ``encodings`` are ours).
        allowed: encodings a compact candidate may take (the smallest wins); restricting it is for
            tests and experiments.
        checksum: add the ``sha256`` metadata (format :data:`FORMAT`); False writes the older
            format :data:`OLD_FORMAT` without it, byte for byte as before.

    Returns:
        (file bytes, ``{name: {"encoding", "shape", "nonzero", "bytes"}}``).

    Raises:
        SparsehaloError: bad ``values_dtype`` or metadata, non-tensor state, clashing names, or
            values that overflow ``values_dtype``.
    """
    if values_dtype not in enc.VALUE_DTYPES:
        raise SparsehaloError(f"values_dtype must be one of {', '.join(map(str, enc.VALUE_DTYPES))}, got {values_dtype}")
    meta: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise SparsehaloError(f"metadata must map str to str, got {key!r}: {type(value).__name__}")
        if key in RESERVED_METADATA:
            raise SparsehaloError(f"metadata key {key!r} is reserved")
        meta[key] = value
    tensors: dict[str, torch.Tensor] = {}
    records: dict[str, dict] = {}
    report: dict[str, dict] = {}
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise SparsehaloError(f"state entry {name!r} is a {type(t).__name__}, not a tensor; cannot export it")
        if SEP in name or name == "__metadata__":
            raise SparsehaloError(f"state entry name {name!r} clashes with the file format's reserved names")
        encoded = enc.encode(t, name in compact, values_dtype, allowed)
        for suffix, part in encoded.parts.items():
            # No clash with another state entry is possible: their names cannot contain SEP.
            tensors[f"{name}{SEP}{suffix}" if suffix else name] = part
        records[name] = enc.record(encoded, t)
        report[name] = {"encoding": encoded.encoding, "shape": list(t.shape), "nonzero": encoded.nnz, "bytes": encoded.nbytes}
    meta["format"] = FORMAT if checksum else OLD_FORMAT
    meta["encodings"] = json.dumps(records, separators=(",", ":"))
    if checksum:
        raws = {k: _le_bytes(t.detach().cpu().contiguous()) for k, t in tensors.items() if t.dtype in _CODES}
        if len(raws) == len(tensors):  # else serialize names the bad dtype
            meta[CHECKSUM_KEY] = content_sha256(((k, _CODES[t.dtype], list(t.shape), raws[k]) for k, t in tensors.items()), meta)
    return serialize(tensors, meta), report


def content_sha256(entries, metadata: Mapping[str, str]) -> str:
    """SHA-256 of a file's content, independent of its layout.

    ``entries`` yields ``(name, dtype code, shape, little-endian bytes)`` per stored tensor; the hash
    covers, in name order, each tensor's name, dtype, shape and bytes, then every metadata entry
    but ``sha256`` itself (JSON, sorted keys).  Re-packing the file (another tensor order, metadata
    first) keeps it; changing any value, name, shape or metadata entry changes it.
    """
    h = hashlib.sha256()
    for name, code, shape, raw in sorted(entries, key=lambda e: e[0]):
        h.update(json.dumps([name, code, list(shape), len(raw)]).encode())
        h.update(raw)
    h.update(json.dumps({k: v for k, v in metadata.items() if k != CHECKSUM_KEY}, sort_keys=True).encode())
    return h.hexdigest()


def _le_bytes(t: torch.Tensor) -> bytes:
    """The little-endian bytes of a contiguous CPU tensor."""
    if t.dtype == torch.bfloat16:  # no numpy type: the same 16 bits as int16
        t = t.view(torch.int16)
    elif t.dtype == torch.bool:
        t = t.view(torch.uint8)
    arr = t.numpy()
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def serialize(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """The safetensors bytes of ``tensors``, deterministic: the same input gives the same bytes.

    Tensors are laid out in the order given and ``__metadata__`` comes last, as every sparse export
    has been written; the header is padded with spaces so the data starts 8-byte aligned.  (The
    package's own writer is not used: it orders the metadata keys differently from one process to
    the next, and sorts the tensors, so its files could not match these byte for byte.)

    Raises:
        SparsehaloError: a tensor of a dtype a sparse export cannot hold.
    """
    header: dict[str, Any] = {}
    chunks: list[bytes] = []
    offset = 0
    for key, t in tensors.items():
        if t.dtype not in _CODES:
            raise SparsehaloError(f"cannot export a tensor of dtype {t.dtype}")
        raw = _le_bytes(t.detach().cpu().contiguous())
        header[key] = {"dtype": _CODES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    header["__metadata__"] = dict(metadata)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # JSON whitespace
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


# ---------------------------------------------------------------------------------------------------
# Reading and validation
# ---------------------------------------------------------------------------------------------------


def _fail(path: Path | str, message: str) -> CheckpointError:
    return CheckpointError(f"sparse export {str(path)!r} is invalid: {message}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError(f"duplicate key {k!r}")
        obj[k] = v
    return obj


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _shape_of(path: Path | str, where: str, shape: object) -> tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(_is_int(d) and 0 <= d < 2**62 for d in shape):
        raise _fail(path, f"{where}: shape must be a list of at most {MAX_RANK} non-negative integers")
    return tuple(shape)


def parse_header(path: Path | str, data: bytes) -> tuple[dict[str, dict], dict[str, str]]:
    """Check the safetensors layout of ``data`` strictly: ``({name: entry}, metadata)``.

    Raises:
        CheckpointError: a short file, a header above the size limit or past the end, JSON that is
            invalid or has duplicate keys, entries with extra fields, dtypes other than ours, bad
            shapes or offsets, or tensor bytes that overlap, leave gaps or leave bytes at the end.
    """
    if len(data) < 8:
        raise _fail(path, "shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES or n > len(data) - 8:
        raise _fail(path, f"header length {n} does not fit a {len(data)}-byte file")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _fail(path, f"header is not valid JSON ({str(exc).splitlines()[0][:100]})") from None
    if not isinstance(header, dict):
        raise _fail(path, "header is not a JSON object")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise _fail(path, "__metadata__ must map strings to strings")
    size = len(data) - 8 - n
    spans = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise _fail(path, f"tensor {name!r} needs exactly dtype, shape and data_offsets")
        if not isinstance(entry["dtype"], str) or entry["dtype"] not in enc.DTYPES:
            raise _fail(path, f"tensor {name!r} has dtype {str(entry['dtype'])[:20]!r}, not one of {', '.join(enc.DTYPES)}")
        shape = _shape_of(path, f"tensor {name!r}", entry["shape"])
        offsets = entry["data_offsets"]
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
            raise _fail(path, f"tensor {name!r}: data_offsets must be two integers")
        begin, end = offsets
        if not 0 <= begin <= end <= size:
            raise _fail(path, f"tensor {name!r}: data_offsets {offsets} outside the {size}-byte data section")
        if end - begin != math.prod(shape) * enc.DTYPES[entry["dtype"]].itemsize:
            raise _fail(path, f"tensor {name!r}: {end - begin} bytes do not hold shape {list(shape)} of {entry['dtype']}")
        spans.append((begin, end, name))
    # The tensors must tile the data section exactly: no overlap (two names aliasing the same bytes),
    # no gap and no trailing bytes (where hidden content could ride along).
    spans.sort()
    position = 0
    for begin, end, name in spans:
        if begin != position:
            what = "overlaps the previous tensor" if begin < position else "leaves a gap before it"
            raise _fail(path, f"tensor {name!r} {what}")
        position = end
    if position != size:
        raise _fail(path, f"{size - position} bytes after the last tensor")
    return header, meta


def _records(path: Path | str, meta: Mapping[str, str]) -> dict:
    if meta.get("format") not in (FORMAT, OLD_FORMAT):
        raise _fail(path, f"format {meta.get('format', 'missing')!r}, expected {FORMAT!r}")
    if meta["format"] == FORMAT and CHECKSUM_KEY not in meta:
        raise _fail(path, f"no {CHECKSUM_KEY} metadata, which format {FORMAT!r} always carries")
    try:
        records = json.loads(meta.get("encodings", ""), object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError):
        raise _fail(path, "the encodings metadata is not valid JSON") from None
    if not isinstance(records, dict):
        raise _fail(path, "the encodings metadata is not a JSON object")
    return records


def _plan(path: Path | str, header: dict, records: dict, expected: Mapping[str, torch.Size] | None, max_elements: int) -> list[tuple]:
    """Check every record against the header before decoding anything: ``[(name, kind, code, shape, keys)]``."""
    if expected is not None:
        missing = [n for n in expected if n not in records]
        unexpected = [n for n in records if n not in expected]
        if missing or unexpected:
            detail = f"missing {', '.join(missing[:5])}" if missing else f"unexpected {', '.join(unexpected[:5])}"
            raise _fail(path, f"tensors do not match the model ({detail})")
    used: set[str] = set()
    plans = []
    total = 0
    for name, record in records.items():
        if not isinstance(record, dict) or record.get("encoding") not in enc.ENCODINGS:
            raise _fail(path, f"tensor {name!r} has no known encoding")
        kind = record["encoding"]
        code = record.get("dtype")
        if not isinstance(code, str) or code not in enc.CODE_OF.values():
            raise _fail(path, f"tensor {name!r} has dtype {str(code)[:20]!r}")
        shape = _shape_of(path, f"tensor {name!r}", record.get("shape"))
        if expected is not None and tuple(expected[name]) != shape:
            raise _fail(path, f"tensor {name!r} has shape {list(shape)}, the model expects {list(expected[name])}")
        total += math.prod(shape)
        if total > max_elements:
            raise _fail(path, f"decoding would need more than {max_elements:,} elements")
        if kind == "dense":
            entry = header.get(name)
            if entry is None or entry["dtype"] != code or tuple(entry["shape"]) != shape:
                raise _fail(path, f"dense tensor {name!r} is missing or does not match its encoding record")
            keys = {"": name}
        else:
            keys = {suffix: f"{name}{SEP}{suffix}" for suffix in enc.PARTS[kind]}
            for suffix, key in keys.items():
                if key not in header or len(header[key]["shape"]) != 1:
                    raise _fail(path, f"tensor {name!r} lacks its 1-D {suffix} part")
        try:
            enc.check_layout(name, kind, code, shape, {s: header[k]["dtype"] for s, k in keys.items()})
        except enc.EncodingError as exc:
            raise _fail(path, str(exc)) from None
        used.update(keys.values())
        plans.append((name, kind, code, shape, keys))
    extra = set(header) - used
    if extra:
        raise _fail(path, f"tensors not referenced by any encoding: {', '.join(sorted(extra)[:5])}")
    return plans


def decode_state(path: Path | str, data: bytes, *, expected: Mapping[str, torch.Size] | None = None, max_elements: int = MAX_ELEMENTS) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Validate and decode the bytes of a sparse export (``path`` only names it in messages).

    Returns:
        (``{name: dense tensor}`` in the file's original dtypes and state-dict order, metadata).

    Raises:
        CheckpointError: any violation of the format (one line).
    """
    header, meta = parse_header(path, data)
    records = _records(path, meta)
    plans = _plan(path, header, records, expected, max_elements)
    try:
        tensors = safetensors.torch.load(data)
    except (safetensors.SafetensorError, ValueError, RuntimeError) as exc:
        raise _fail(path, f"unreadable by safetensors ({str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__})") from None
    state = {}
    for name, kind, code, shape, keys in plans:
        parts = {suffix: tensors[key] for suffix, key in keys.items()}
        try:
            state[name] = enc.decode(name, kind, code, shape, parts, records[name].get("nnz", enc.NOT_RECORDED))
        except enc.EncodingError as exc:
            raise _fail(path, str(exc)) from None
    _check_sum(path, data, header, meta)
    return state, dict(meta)


def _check_sum(path: Path | str, data: bytes, header: Mapping[str, dict], meta: Mapping[str, str]) -> None:
    """Compare the ``sha256`` metadata with the content (after decoding, so a file that breaks the
    format's rules is named for the rule it breaks; a damaged one that keeps them is caught here)."""
    if CHECKSUM_KEY not in meta:
        return  # OLD_FORMAT: _records refuses a FORMAT file without one
    start = 8 + struct.unpack("<Q", data[:8])[0]
    entries = ((name, e["dtype"], e["shape"], data[start + e["data_offsets"][0] : start + e["data_offsets"][1]]) for name, e in header.items())
    actual = content_sha256(entries, meta)
    if actual != meta[CHECKSUM_KEY]:
        raise _fail(path, f"its content's SHA-256 {actual[:16]}... is not the {meta[CHECKSUM_KEY][:16]}... it records (the file is damaged)")


def _read(path: str | Path) -> tuple[Path, bytes]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"sparse export {str(path)!r} not found")
    verify(path)  # a sidecar (sha256sum format), where a user keeps one
    return path, path.read_bytes()


def read_metadata(path: str | Path) -> dict[str, str]:
    """The header metadata of a sparse export, after checking its layout and checksum (tensors are
    not decoded).

    Raises:
        CheckpointError: a missing file, an invalid layout or a checksum that differs.
    """
    path, data = _read(path)
    header, meta = parse_header(path, data)
    _records(path, meta)
    _check_sum(path, data, header, meta)
    return meta


def read_sparse_state(path: str | Path, *, max_elements: int = MAX_ELEMENTS, expected: Mapping[str, torch.Size] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read and decode a sparse export to a dense state dict.

    Args:
        path: a file written by :func:`~sparsehalo.export.export_sparse`.
        max_elements: refuse files that would decode to more elements than this.
        expected: ``{name: shape}`` the file must match exactly (the target model's state dict).

    Returns:
        (``{name: dense tensor}`` in the file's original dtypes, the header metadata ``{str: str}``).

    Raises:
        CheckpointError: missing file, or any violation of the format (one line).
    """
    path, data = _read(path)
    return decode_state(path, data, expected=expected, max_elements=max_elements)
