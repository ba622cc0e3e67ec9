"""Export trained or pruned networks: a compact sparse file and a plain dense state dict.

The sparse file uses the *safetensors* layout, written and read by the code here (no extra
dependency)::

    8 bytes   little-endian unsigned header length N
    N bytes   UTF-8 JSON: {name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]},
                           "__metadata__": {str: str}}
    rest      raw little-endian tensor bytes; offsets are relative to the start of this section

Every tensor of the model's state dict is stored.  A Conv2d/Linear weight that is at least
``COMPACT_MIN_ZEROS`` (10%) zeros is stored in whichever of these encodings is smallest; everything else
(biases, BatchNorm statistics, integer buffers) is stored dense:

``dense``
    the tensor itself, key ``NAME``.
``bitmask``
    ``NAME::bitmask`` (U8, one bit per entry, little bit order, row-major) + ``NAME::values``.
``csr``
    the tensor viewed as ``[shape[0], numel // shape[0]]``: ``NAME::crow`` (row pointers),
    ``NAME::col`` (column indices), each in the narrowest of U8/U16/I32/I64 that holds it,
    + ``NAME::values``.
``delta``
    relative indices: ``NAME::gaps`` (U8 or U16) + ``NAME::values``, row-major.  A gap ``g`` below
    the escape code ``E`` (255 or 65535) means "skip ``g`` zeros, then the next value"; ``E`` means
    "skip ``E`` zeros" and takes no value, so a long run of zeros costs one index byte per 255
    zeros and no value bytes (unlike Deep Compression's zero-valued filler entries).

The metadata holds ``format`` (:data:`FORMAT`), ``encodings`` (a JSON object: for every state-dict
key its encoding, original dtype, shape and number of non-zeros) and, when the caller provides them,
``config`` (the run's config as JSON) and ``num_classes``, from which :func:`load_sparse` rebuilds the
model.  The reader validates the header and every encoding strictly before decoding: a corrupt or
crafted file gives a :class:`~sparsehalo.errors.CheckpointError`, never a crash, an out-of-range
write or code execution (the file holds no pickle).

Entries equal to zero, including ``-0.0``, are what gets dropped, so a ``-0.0`` weight comes back as
``+0.0``; the decoded tensors are otherwise bit-identical with ``values_dtype=torch.float32`` for a
float32 model.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from . import checkpoint
from .errors import CheckpointError, SparsehaloError
from .pruning import prunable_parameters

FORMAT = "sparsehalo-sparse-1"
SPARSE_NAME = "model.sparse.safetensors"
DENSE_NAME = "model.pt"
#: A prunable weight with at least this fraction of zeros is considered for a compact encoding (and
#: stored so only if that is smaller).  Not 50%: after global pruning a small last layer can keep half
#: its weights, and a bitmask still saves ~40% of it at 45% zeros; unpruned weights have no zeros.
COMPACT_MIN_ZEROS = 0.1
#: Refuse headers above this size: a real one is a few kilobytes, and JSON parsing is not free.
MAX_HEADER_BYTES = 16 << 20
#: :func:`read_sparse_state` refuses to decode more elements than this without a model to check
#: shapes against (1 GiB of float32), so a crafted shape cannot make it allocate without bound.
MAX_ELEMENTS = 1 << 28
MAX_RANK = 8
SEP = "::"
RESERVED_METADATA = ("format", "encodings")

# safetensors dtype code -> (torch dtype, little-endian numpy dtype used for the bytes).
# bfloat16 has no numpy type: its bytes travel as int16 and are re-viewed in torch.
_DTYPES: dict[str, tuple[torch.dtype, str]] = {
    "F64": (torch.float64, "<f8"),
    "F32": (torch.float32, "<f4"),
    "F16": (torch.float16, "<f2"),
    "BF16": (torch.bfloat16, "<i2"),
    "I64": (torch.int64, "<i8"),
    "I32": (torch.int32, "<i4"),
    "I16": (torch.int16, "<i2"),
    "I8": (torch.int8, "<i1"),
    "U8": (torch.uint8, "<u1"),
    "U16": (None, "<u2"),  # index arrays only; decoded to int64
    "BOOL": (torch.bool, "<u1"),
}
_CODE_OF = {torch_dtype: code for code, (torch_dtype, _) in _DTYPES.items() if torch_dtype is not None}
_VALUE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_INDEX_CODES = ("U8", "U16", "I32", "I64")
_INDEX_LIMITS = {"U8": 0xFF, "U16": 0xFFFF, "I32": 2**31 - 1, "I64": 2**63 - 1}
_ENCODINGS = ("dense", "bitmask", "csr", "delta")
COMPACT_ENCODINGS = ("bitmask", "csr", "delta", "dense")


# ---------------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------------


def _itemsize(code: str) -> int:
    return np.dtype(_DTYPES[code][1]).itemsize


def _tensor_bytes(t: torch.Tensor) -> tuple[str, bytes]:
    """(dtype code, little-endian bytes) of a CPU tensor."""
    t = t.detach().cpu().contiguous()
    if t.dtype not in _CODE_OF:
        raise SparsehaloError(f"cannot export a tensor of dtype {t.dtype}")
    code = _CODE_OF[t.dtype]
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    elif t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return code, t.numpy().astype(_DTYPES[code][1], copy=False).tobytes()


def _index_array(values: np.ndarray, limit: int) -> tuple[str, bytes]:
    """The narrowest of U8/U16/I32/I64 holding every value in ``[0, limit]``."""
    code = next(c for c in _INDEX_CODES if limit <= _INDEX_LIMITS[c])
    return code, values.astype(_DTYPES[code][1]).tobytes()


def _delta_gaps(positions: np.ndarray, bits: int) -> np.ndarray:
    """Relative indices with escapes for sorted flat ``positions`` (see the module docs)."""
    escape = (1 << bits) - 1
    skips = np.diff(positions, prepend=-1) - 1
    escapes = skips // escape
    counts = escapes + 1
    gaps = np.full(int(counts.sum()), escape, dtype=np.int64)
    gaps[np.cumsum(counts) - 1] = skips - escapes * escape  # each real entry follows its escapes
    return gaps


def _encode_compact(
    t: torch.Tensor, values_dtype: torch.dtype, allowed: tuple[str, ...] = COMPACT_ENCODINGS
) -> tuple[str, dict[str, tuple[str, bytes]], int]:
    """The smallest allowed encoding of a mostly-zero tensor: (encoding, {suffix: (code, bytes)}, nnz)."""
    flat = t.detach().cpu().reshape(-1)
    keep = (flat != 0).numpy()
    positions = np.flatnonzero(keep)
    nnz = len(positions)
    kept = flat[torch.from_numpy(positions)]
    values = kept.to(values_dtype)
    if bool(torch.isfinite(kept).all()) and not bool(torch.isfinite(values).all()):
        raise SparsehaloError(f"weights overflow {values_dtype} (largest |w| is {flat.abs().max().item():.3g}); export with fp32 values")
    vcode, vbytes = _tensor_bytes(values)

    Parts = dict[str, tuple[str, bytes]]
    candidates: list[tuple[str, Parts]] = []
    if "bitmask" in allowed:
        bitmask = np.packbits(keep, bitorder="little").tobytes()
        candidates.append(("bitmask", {"bitmask": ("U8", bitmask), "values": (vcode, vbytes)}))
    if "csr" in allowed:
        rows = t.shape[0]
        cols = flat.numel() // rows if rows else 0
        row_of = positions // cols if cols else positions
        crow = np.zeros(rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(row_of, minlength=rows), out=crow[1:])
        col = positions - row_of * cols
        candidates.append(("csr", {"crow": _index_array(crow, nnz), "col": _index_array(col, max(cols - 1, 0)), "values": (vcode, vbytes)}))
    if "delta" in allowed:
        for bits, code in ((8, "U8"), (16, "U16")):
            gaps = _delta_gaps(positions, bits).astype(_DTYPES[code][1])
            candidates.append(("delta", {"gaps": (code, gaps.tobytes()), "values": (vcode, vbytes)}))

    def size(parts: Parts) -> int:
        return sum(len(raw) for _, raw in parts.values())

    # Ties go to the earlier candidate (the simpler decode); dense is the reference to beat.
    best = min(candidates, key=lambda c: size(c[1]), default=None)
    if best is None or ("dense" in allowed and size(best[1]) >= t.numel() * t.element_size()):
        return "dense", {"": _tensor_bytes(t)}, nnz
    return best[0], best[1], nnz


def _compact_candidates(model: nn.Module) -> set[str]:
    """State-dict keys of Conv2d/Linear weights (the tensors pruning acts on)."""
    return set(prunable_parameters(model))


def encode_state(
    state: Mapping[str, torch.Tensor],
    compact: set[str],
    values_dtype: torch.dtype = torch.float32,
    metadata: Mapping[str, str] | None = None,
    allowed: tuple[str, ...] = COMPACT_ENCODINGS,
) -> tuple[bytes, dict]:
    """Serialize a state dict to the sparse file format.

    Args:
        state: ``{name: tensor}`` to store.
        compact: names that may be stored compactly if at least ``COMPACT_MIN_ZEROS`` zeros.
        values_dtype: dtype of the non-zero values of compactly stored tensors.
        metadata: extra ``{str: str}`` entries for the header (``format`` and ``encodings`` are ours).
        allowed: encodings a compact candidate may take (the smallest wins); restricting it is for
            tests and experiments.

    Returns:
        (file bytes, ``{name: {"encoding", "shape", "nonzero", "bytes"}}``).

    Raises:
        SparsehaloError: bad ``values_dtype`` or metadata, non-tensor state, clashing names, or
            values that overflow ``values_dtype``.
    """
    if values_dtype not in _VALUE_DTYPES:
        raise SparsehaloError(f"values_dtype must be one of {', '.join(map(str, _VALUE_DTYPES))}, got {values_dtype}")
    meta: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise SparsehaloError(f"metadata must map str to str, got {key!r}: {type(value).__name__}")
        if key in RESERVED_METADATA:
            raise SparsehaloError(f"metadata key {key!r} is reserved")
        meta[key] = value
    header: dict[str, Any] = {}
    chunks: list[bytes] = []
    offset = 0
    encodings: dict[str, dict] = {}
    report: dict[str, dict] = {}
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise SparsehaloError(f"state entry {name!r} is a {type(t).__name__}, not a tensor; cannot export it")
        if SEP in name or name == "__metadata__":
            raise SparsehaloError(f"state entry name {name!r} clashes with the file format's reserved names")
        if t.layout != torch.strided:
            t = t.to_dense()
        encoding, parts, nnz = "dense", None, None
        zeros_ok = t.dtype.is_floating_point and t.dim() >= 2 and t.numel() > 0
        if name in compact and zeros_ok:
            nonzero = int(torch.count_nonzero(t))
            if nonzero <= (1 - COMPACT_MIN_ZEROS) * t.numel():
                encoding, parts, nnz = _encode_compact(t, values_dtype, allowed)
        if parts is None or encoding == "dense":
            parts = {"": _tensor_bytes(t)}
        size = 0
        for suffix, (code, raw) in parts.items():
            # No clash with another state entry is possible: their names cannot contain SEP.
            key = f"{name}{SEP}{suffix}" if suffix else name
            count = len(raw) // _itemsize(code)
            shape = list(t.shape) if not suffix else [count]
            header[key] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
            chunks.append(raw)
            offset += len(raw)
            size += len(raw)
        code = _CODE_OF.get(t.dtype)
        entry = {"encoding": encoding, "dtype": code, "shape": list(t.shape)}
        if encoding != "dense":
            entry["nnz"] = nnz
        encodings[name] = entry
        report[name] = {
            "encoding": encoding,
            "shape": list(t.shape),
            "nonzero": int(torch.count_nonzero(t)) if nnz is None else nnz,
            "bytes": size,
        }
    meta["format"] = FORMAT
    meta["encodings"] = json.dumps(encodings, separators=(",", ":"))
    header["__metadata__"] = meta
    text = json.dumps(header, separators=(",", ":")).encode()
    # Pad with spaces (valid JSON whitespace) so the tensor bytes start 8-byte aligned, as safetensors does.
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks), report


# ---------------------------------------------------------------------------------------------------
# Reading and validation
# ---------------------------------------------------------------------------------------------------


def _fail(path: Path | str, message: str) -> CheckpointError:
    return CheckpointError(f"sparse export {str(path)!r} is invalid: {message}")


def _no_duplicates(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError(f"duplicate key {k!r}")
        obj[k] = v
    return obj


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _shape_of(path, where: str, shape: object) -> tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(_is_int(d) and 0 <= d < 2**62 for d in shape):
        raise _fail(path, f"{where}: shape must be a list of at most {MAX_RANK} non-negative integers")
    return tuple(shape)


def _parse_header(path: Path, data: bytes) -> tuple[dict[str, dict], dict[str, str], memoryview]:
    """Validate the safetensors layout: ({name: entry}, metadata, tensor byte section)."""
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
    body = memoryview(data)[8 + n :]
    spans = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise _fail(path, f"tensor {name!r} needs exactly dtype, shape and data_offsets")
        if not isinstance(entry["dtype"], str) or entry["dtype"] not in _DTYPES:
            raise _fail(path, f"tensor {name!r} has dtype {str(entry['dtype'])[:20]!r}, not one of {', '.join(_DTYPES)}")
        shape = _shape_of(path, f"tensor {name!r}", entry["shape"])
        offsets = entry["data_offsets"]
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
            raise _fail(path, f"tensor {name!r}: data_offsets must be two integers")
        begin, end = offsets
        if not 0 <= begin <= end <= len(body):
            raise _fail(path, f"tensor {name!r}: data_offsets {offsets} outside the {len(body)}-byte data section")
        if end - begin != math.prod(shape) * _itemsize(entry["dtype"]):
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
    if position != len(body):
        raise _fail(path, f"{len(body) - position} bytes after the last tensor")
    return header, meta, body


def _array(body: memoryview, entry: dict) -> np.ndarray:
    begin, end = entry["data_offsets"]
    return np.frombuffer(body[begin:end], dtype=_DTYPES[entry["dtype"]][1])


def _to_tensor(arr: np.ndarray, code: str, shape) -> torch.Tensor:
    torch_dtype = _DTYPES[code][0]
    if code == "U16":
        return torch.from_numpy(arr.astype(np.int64))
    t = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True))
    if code == "BF16":
        t = t.view(torch.bfloat16)
    elif code == "BOOL":
        t = t.to(torch.bool)
    else:
        t = t.to(torch_dtype)
    return t.reshape(shape)


def _decode(path, header: dict, meta: dict, body: memoryview, expected: Mapping[str, torch.Size] | None, max_elements: int) -> dict[str, torch.Tensor]:
    if meta.get("format") != FORMAT:
        raise _fail(path, f"format {meta.get('format', 'missing')!r}, expected {FORMAT!r}")
    try:
        encodings = json.loads(meta.get("encodings", ""), object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError):
        raise _fail(path, "the encodings metadata is not valid JSON") from None
    if not isinstance(encodings, dict):
        raise _fail(path, "the encodings metadata is not a JSON object")
    if expected is not None:
        missing = [n for n in expected if n not in encodings]
        unexpected = [n for n in encodings if n not in expected]
        if missing or unexpected:
            detail = f"missing {', '.join(missing[:5])}" if missing else f"unexpected {', '.join(unexpected[:5])}"
            raise _fail(path, f"tensors do not match the model ({detail})")

    used: set[str] = set()
    plans = []
    total = 0
    for name, enc in encodings.items():
        if not isinstance(enc, dict) or enc.get("encoding") not in _ENCODINGS:
            raise _fail(path, f"tensor {name!r} has no known encoding")
        kind = enc["encoding"]
        code = enc.get("dtype")
        if not isinstance(code, str) or code not in _DTYPES or code == "U16":
            raise _fail(path, f"tensor {name!r} has dtype {str(code)[:20]!r}")
        shape = _shape_of(path, f"tensor {name!r}", enc.get("shape"))
        if expected is not None and tuple(expected[name]) != shape:
            raise _fail(path, f"tensor {name!r} has shape {list(shape)}, the model expects {list(expected[name])}")
        numel = math.prod(shape)
        total += numel
        if total > max_elements:
            raise _fail(path, f"decoding would need more than {max_elements:,} elements")
        if kind == "dense":
            entry = header.get(name)
            if entry is None or entry["dtype"] != code or tuple(entry["shape"]) != shape:
                raise _fail(path, f"dense tensor {name!r} is missing or does not match its encoding record")
            used.add(name)
            plans.append((name, kind, code, shape, {"": entry}))
            continue
        if not _DTYPES[code][0].is_floating_point or len(shape) < 2:
            raise _fail(path, f"tensor {name!r}: only floating tensors of rank >= 2 are stored compactly")
        parts_needed = {"bitmask": ("bitmask", "values"), "csr": ("crow", "col", "values"), "delta": ("gaps", "values")}[kind]
        parts = {}
        for suffix in parts_needed:
            key = f"{name}{SEP}{suffix}"
            entry = header.get(key)
            if entry is None or len(entry["shape"]) != 1:
                raise _fail(path, f"tensor {name!r} lacks its 1-D {suffix} part")
            parts[suffix] = entry
            used.add(key)
        if parts["values"]["dtype"] not in ("F32", "F16", "BF16", "F64"):
            raise _fail(path, f"tensor {name!r}: values must be floating point")
        plans.append((name, kind, code, shape, parts))
    extra = set(header) - used
    if extra:
        raise _fail(path, f"tensors not referenced by any encoding: {', '.join(sorted(extra)[:5])}")

    state = {}
    for name, kind, code, shape, parts in plans:
        if kind == "dense":
            state[name] = _to_tensor(_array(body, parts[""]), code, shape)
            continue
        dtype = _DTYPES[code][0]
        numel = math.prod(shape)
        values = _to_tensor(_array(body, parts["values"]), parts["values"]["dtype"], (-1,)).to(dtype)
        if encodings[name].get("nnz", len(values)) != len(values):
            raise _fail(path, f"tensor {name!r} records {encodings[name]['nnz']} non-zeros but stores {len(values)} values")
        positions = _positions(path, name, kind, shape, numel, parts, body, len(values))
        flat = torch.zeros(numel, dtype=dtype)
        flat[torch.from_numpy(positions)] = values
        state[name] = flat.reshape(shape)
    return state


def _positions(path, name: str, kind: str, shape, numel: int, parts: dict, body: memoryview, nvalues: int) -> np.ndarray:
    """Flat positions of the stored values, after checking every index is in range."""
    if kind == "bitmask":
        if parts["bitmask"]["dtype"] != "U8" or parts["bitmask"]["shape"][0] != (numel + 7) // 8:
            raise _fail(path, f"tensor {name!r}: bitmask must be {(numel + 7) // 8} U8 bytes")
        bits = np.unpackbits(_array(body, parts["bitmask"]), bitorder="little")
        if bits[numel:].any():
            raise _fail(path, f"tensor {name!r}: bitmask padding bits are set")
        positions = np.flatnonzero(bits[:numel])
        if len(positions) != nvalues:
            raise _fail(path, f"tensor {name!r}: bitmask marks {len(positions)} entries but {nvalues} values are stored")
        return positions
    if kind == "csr":
        rows = shape[0]
        cols = numel // rows if rows else 0
        crow_e, col_e = parts["crow"], parts["col"]
        if crow_e["dtype"] not in _INDEX_CODES or col_e["dtype"] not in _INDEX_CODES:
            raise _fail(path, f"tensor {name!r}: CSR indices must be one of {', '.join(_INDEX_CODES)}")
        crow = _array(body, crow_e).astype(np.int64)
        col = _array(body, col_e).astype(np.int64)
        if len(crow) != rows + 1 or crow[0] != 0 or crow[-1] != nvalues or len(col) != nvalues or np.any(np.diff(crow) < 0):
            raise _fail(path, f"tensor {name!r}: CSR row pointers are inconsistent")
        if nvalues and (col.min() < 0 or col.max() >= cols):
            raise _fail(path, f"tensor {name!r}: CSR column index out of range")
        positions = np.repeat(np.arange(rows, dtype=np.int64), np.diff(crow)) * cols + col
        # Canonical CSR (columns increasing within each row): a repeated entry would make the result
        # depend on write order.
        if np.any(np.diff(positions) <= 0):
            raise _fail(path, f"tensor {name!r}: CSR columns are not strictly increasing within a row")
        return positions
    gaps_e = parts["gaps"]
    if gaps_e["dtype"] not in ("U8", "U16"):
        raise _fail(path, f"tensor {name!r}: gaps must be U8 or U16")
    escape = 0xFF if gaps_e["dtype"] == "U8" else 0xFFFF
    gaps = _array(body, gaps_e).astype(np.int64)
    real = gaps != escape
    if int(real.sum()) != nvalues:
        raise _fail(path, f"tensor {name!r}: {int(real.sum())} gaps for {nvalues} values")
    if len(gaps) and not real[-1]:
        raise _fail(path, f"tensor {name!r}: gaps end with an escape")
    # A real entry advances past its skipped zeros and itself; an escape only past the zeros.
    positions = (np.cumsum(np.where(real, gaps + 1, escape)) - 1)[real]
    if nvalues and positions[-1] >= numel:
        raise _fail(path, f"tensor {name!r}: gaps run past the end of the tensor")
    return positions


def read_sparse_state(path: str | Path, *, max_elements: int = MAX_ELEMENTS, expected: Mapping[str, torch.Size] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read and decode a sparse export to a dense state dict.

    Args:
        path: a file written by :func:`export_sparse`.
        max_elements: refuse files that would decode to more elements than this.
        expected: ``{name: shape}`` the file must match exactly (the target model's state dict).

    Returns:
        (``{name: dense tensor}`` in the file's original dtypes, the header metadata ``{str: str}``).

    Raises:
        CheckpointError: missing file, or any violation of the format (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"sparse export {str(path)!r} not found")
    data = path.read_bytes()
    header, meta, body = _parse_header(path, data)
    return _decode(path, header, meta, body, expected, max_elements), dict(meta)


# ---------------------------------------------------------------------------------------------------
# Public export API
# ---------------------------------------------------------------------------------------------------


def _dense_fp32_bytes(state: Mapping[str, torch.Tensor]) -> int:
    return 4 * sum(t.numel() for t in state.values() if isinstance(t, torch.Tensor))


def _report(fmt: str, path: Path, dense_bytes: int, **extra) -> dict:
    size = path.stat().st_size
    return {"format": fmt, "path": str(path), "dense_fp32_bytes": dense_bytes, "file_bytes": size, "ratio": size / dense_bytes if dense_bytes else None, **extra}


def export_sparse(model: nn.Module, path: str | Path, *, values_dtype: torch.dtype = torch.float32, metadata: dict | None = None) -> dict:
    """Write ``model``'s state dict in the compact sparse format (atomically).

    Args:
        model: the network; its Conv2d/Linear weights with at least ``COMPACT_MIN_ZEROS`` (10%)
            zeros are stored in the smallest of bitmask, CSR, delta indices and dense; the rest dense.
        path: the output file (conventionally ``*.sparse.safetensors``).
        values_dtype: dtype of the stored non-zero values (``torch.float16`` halves them; decoding
            casts back to the original dtype).
        metadata: extra ``{str: str}`` header entries; give ``config`` (a config JSON string) and
            ``num_classes`` so that :func:`load_sparse` can rebuild the model on its own.

    Returns:
        ``{"format", "path", "dense_fp32_bytes", "file_bytes", "ratio", "values_dtype", "tensors"}``;
        ``dense_fp32_bytes`` is 4 bytes per stored entry (a plain fp32 state dict's payload),
        ``ratio`` is file bytes over that, ``tensors`` maps each name to its encoding, shape, number
        of non-zeros and payload bytes.

    Raises:
        SparsehaloError: a bad ``values_dtype`` or metadata, or values that overflow ``float16``.
    """
    path = Path(path)
    state = model.state_dict()
    data, tensors = encode_state(state, _compact_candidates(model), values_dtype, metadata)
    checkpoint.atomic_write_bytes(path, lambda f: f.write(data))
    return _report("sparse", path, _dense_fp32_bytes(state), values_dtype=str(values_dtype).removeprefix("torch."), tensors=tensors)


def export_dense(model: nn.Module, path: str | Path) -> dict:
    """Write ``model.state_dict()`` with ``torch.save`` (atomically).

    The file loads with ``torch.load(path, weights_only=True)`` into the unmodified model class.

    Returns:
        ``{"format", "path", "dense_fp32_bytes", "file_bytes", "ratio"}``.
    """
    path = Path(path)
    state = model.state_dict()
    checkpoint.save(path, state)
    return _report("dense", path, _dense_fp32_bytes(state))


def _build_from_metadata(path: Path, meta: Mapping[str, str]) -> nn.Module:
    from .config import from_dict
    from .engine import build_model
    from .errors import ConfigError

    if "config" not in meta:
        raise CheckpointError(f"sparse export {str(path)!r} holds no model config; pass model= to load_sparse")
    try:
        config = from_dict(json.loads(meta["config"]))
        num_classes = int(meta["num_classes"]) if "num_classes" in meta else None
    except (TypeError, ValueError, AttributeError, KeyError, RecursionError, ConfigError) as exc:
        raise CheckpointError(f"sparse export {str(path)!r} holds an unreadable config: {str(exc).splitlines()[0][:200]}") from None
    if num_classes is not None and num_classes <= 0:
        raise CheckpointError(f"sparse export {str(path)!r} has num_classes {num_classes}")
    # Build on the meta device first: a crafted config asking for a huge model costs nothing there,
    # and its shapes are checked against the file before any real memory is allocated.
    try:
        with torch.device("meta"):
            probe = build_model(config, num_classes)
        numel = sum(t.numel() for t in probe.state_dict().values())
    except ConfigError as exc:
        raise CheckpointError(f"sparse export {str(path)!r}: {exc}") from None
    except (NotImplementedError, RuntimeError):
        numel = 0  # a model whose constructor cannot run on meta: built directly below
    if numel > MAX_ELEMENTS:
        raise CheckpointError(f"sparse export {str(path)!r} describes a model of {numel:,} elements, above the {MAX_ELEMENTS:,} limit")
    return build_model(config, num_classes)


def load_sparse(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Load a sparse export into ``model``, or into a model rebuilt from the stored config.

    Args:
        path: a file written by :func:`export_sparse` / :func:`export_run`.
        model: the network to load into; None rebuilds it with
            :func:`sparsehalo.engine.build_model` from the ``config`` and ``num_classes`` metadata.

    Returns:
        The model with the decoded weights loaded strictly, in eval mode.

    Raises:
        CheckpointError: invalid file, no stored config when ``model`` is None, or tensors that do
            not match the model.
    """
    path = Path(path)
    if model is None:
        if not path.is_file():
            raise CheckpointError(f"sparse export {str(path)!r} not found")
        _, meta, _ = _parse_header(path, path.read_bytes())
        model = _build_from_metadata(path, meta)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    state, _ = read_sparse_state(path, expected=expected, max_elements=max(MAX_ELEMENTS, sum(math.prod(s) for s in expected.values())))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"sparse export {str(path)!r} does not fit the model: {str(exc).splitlines()[0]}") from None
    return model.eval()


def _num_classes(config) -> int:
    from .data import DATASETS

    key = config.data.name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise SparsehaloError(f"unknown dataset {config.data.name!r} in the run's config")
    return DATASETS[key].num_classes


def export_run(run_dir: str | Path, fmt: str, out: str | Path | None = None, *, sparsity: float | None = None, fp16: bool = False) -> dict:
    """Export a run's weights: the final ``checkpoint.pt``, or ``pruned/sparsity-S.pt`` with ``sparsity``.

    Args:
        run_dir: a run directory.
        fmt: ``"sparse"`` (compact file, see module docs) or ``"dense"`` (plain ``torch.save`` state dict).
        out: output file; default ``RUN_DIR/export/model.sparse.safetensors`` or ``RUN_DIR/export/model.pt``.
        sparsity: export the pruned checkpoint written by ``sparsehalo prune RUN_DIR --sparsity S``.
        fp16: store the non-zero values as float16 (sparse format only).

    Returns:
        The report of :func:`export_sparse` / :func:`export_dense`, plus ``source`` (the checkpoint read)
        and ``prunable_sparsity`` (zeros among Conv2d/Linear weights).

    Raises:
        SparsehaloError: bad ``fmt``, ``fp16`` with the dense format.
        CheckpointError: missing or unreadable checkpoint (naming the prune command for a missing
            pruned one), or weights that do not fit the configured model.
    """
    from .engine import CHECKPOINT, build_model, config_of

    if fmt not in ("sparse", "dense"):
        raise SparsehaloError(f"export format must be sparse or dense, got {fmt!r}")
    if fp16 and fmt != "sparse":
        raise SparsehaloError("--fp16 applies to --format sparse only (the dense export is a plain fp32 state dict)")
    run_dir = Path(run_dir)
    if sparsity is None:
        source = run_dir / CHECKPOINT
    else:
        source = run_dir / "pruned" / f"sparsity-{sparsity:g}.pt"
        if not source.is_file():
            raise CheckpointError(f"{str(source)!r} not found; run `sparsehalo prune {run_dir} --sparsity {sparsity:g}` first")
    ckpt = checkpoint.load(source, required=("model", "config"))
    config = config_of(ckpt, source)
    num_classes = _num_classes(config)
    model = build_model(config, num_classes)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {str(source)!r} does not fit model {config.model.name!r}: {str(exc).splitlines()[0]}") from None
    if fmt == "sparse":
        path = Path(out) if out is not None else run_dir / "export" / SPARSE_NAME
        meta = {"config": json.dumps(config.to_dict(), separators=(",", ":")), "num_classes": str(num_classes), "source": source.name}
        report = export_sparse(model, path, values_dtype=torch.float16 if fp16 else torch.float32, metadata=meta)
    else:
        path = Path(out) if out is not None else run_dir / "export" / DENSE_NAME
        report = export_dense(model, path)
    prunable = prunable_parameters(model)
    total = sum(p.numel() for p in prunable.values())
    zeros = sum(int((p == 0).sum()) for p in prunable.values())
    report["source"] = str(source)
    report["prunable_sparsity"] = zeros / total if total else 0.0
    return report


def format_report(report: dict) -> str:
    """A few human-readable lines for the CLI."""
    lines = [
        f"wrote {report['path']} ({report['format']}"
        + (f", {report['values_dtype']} values" if "values_dtype" in report else "")
        + f") from {report.get('source', 'model')}",
        f"  {report['file_bytes']:,} bytes = {100 * report['ratio']:.2f}% of the {report['dense_fp32_bytes']:,}-byte dense fp32 payload",
    ]
    if "prunable_sparsity" in report:
        lines.append(f"  prunable weights sparsity {100 * report['prunable_sparsity']:.2f}%")
    for name, t in report.get("tensors", {}).items():
        if t["encoding"] != "dense":
            lines.append(f"  {name}: {t['encoding']}, {t['nonzero']:,}/{math.prod(t['shape']):,} non-zero, {t['bytes']:,} bytes")
    return "\n".join(lines)
