"""Encodings of one tensor, choosing the smallest, and decoding them with every index checked.

Pure functions on tensors: no files and no headers (:mod:`.container` lays the parts out in a
safetensors file).  A Conv2d/Linear weight that is at least :data:`COMPACT_MIN_ZEROS` (10%) zeros is
stored in whichever of these encodings is smallest; everything else (biases, BatchNorm statistics,
integer buffers) is stored dense.  Each encoding is a set of named 1-D *parts* (suffix -> tensor):

``dense``
    the tensor itself (suffix ``""``, any shape).
``bitmask``
    ``bitmask`` (U8, one bit per entry, little bit order, row-major) + ``values``.
``csr``
    the tensor viewed as ``[shape[0], numel // shape[0]]``: ``crow`` (row pointers) and ``col``
    (column indices), each in the narrowest of U8/U16/I32/I64 that holds it, + ``values``.
``delta``
    relative indices: ``gaps`` (U8 or U16) + ``values``, row-major.  A gap ``g`` below the escape
    code ``E`` (255 or 65535) means "skip ``g`` zeros, then the next value"; ``E`` means "skip ``E``
    zeros" and takes no value, so a long run of zeros costs one index byte per 255 zeros and no
    value bytes (unlike Deep Compression's zero-valued filler entries).

Entries equal to zero, including ``-0.0``, are what gets dropped, so a ``-0.0`` weight comes back as
``+0.0``; decoding is otherwise bit-identical when the values keep the tensor's dtype.

Dtypes are named by their safetensors codes (``"F32"``, ``"U16"``, ...), the names the file uses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SparsehaloError
from ..measure import count_nonzero

#: A prunable weight with at least this fraction of zeros is considered for a compact encoding (and
#: stored so only if that is smaller).  Not 50%: after global pruning a small last layer can keep half
#: its weights, and a bitmask still saves ~40% of it at 45% zeros; unpruned weights have no zeros.
COMPACT_MIN_ZEROS = 0.1

#: safetensors dtype code -> torch dtype, for the dtypes a sparse export may hold.
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "U16": torch.uint16,  # index parts only: never the dtype of a state entry
    "BOOL": torch.bool,
}
CODE_OF: dict[torch.dtype, str] = {dtype: code for code, dtype in DTYPES.items() if code != "U16"}
VALUE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
VALUE_CODES = ("F32", "F16", "BF16", "F64")
INDEX_CODES = ("U8", "U16", "I32", "I64")
_INDEX_LIMITS = {"U8": 0xFF, "U16": 0xFFFF, "I32": 2**31 - 1, "I64": 2**63 - 1}
_NUMPY = {"U8": np.uint8, "U16": np.uint16, "I32": np.int32, "I64": np.int64}

ENCODINGS = ("dense", "bitmask", "csr", "delta")
#: The encodings a compact candidate may take by default (the smallest wins, ties to the earlier).
COMPACT_ENCODINGS = ("bitmask", "csr", "delta", "dense")
#: The parts of each encoding, by suffix.
PARTS: dict[str, tuple[str, ...]] = {
    "dense": ("",),
    "bitmask": ("bitmask", "values"),
    "csr": ("crow", "col", "values"),
    "delta": ("gaps", "values"),
}


#: ``nnz`` of :func:`decode` when the record states none.
NOT_RECORDED = object()


class EncodingError(ValueError):
    """Stored parts that do not form a valid encoding (the container adds which file)."""


@dataclass(frozen=True)
class Encoded:
    """One tensor in one encoding.

    Attributes:
        encoding: a key of :data:`PARTS`.
        parts: ``{suffix: contiguous CPU tensor}``: the dense tensor under ``""`` (possibly sharing
            memory with the tensor encoded), else new 1-D tensors.
        nnz: the number of stored non-zero values (the tensor's non-zeros for a dense one).
    """

    encoding: str
    parts: dict[str, torch.Tensor]
    nnz: int

    @property
    def nbytes(self) -> int:
        """Payload bytes of all parts."""
        return sum(p.numel() * p.element_size() for p in self.parts.values())


def code_of(dtype: torch.dtype) -> str:
    """The safetensors code of a state entry's dtype.

    Raises:
        SparsehaloError: a dtype a sparse export cannot hold (complex, float8, unsigned > 8 bits).
    """
    if dtype not in CODE_OF:
        raise SparsehaloError(f"cannot export a tensor of dtype {dtype}")
    return CODE_OF[dtype]


def dense(t: torch.Tensor) -> Encoded:
    """``t`` stored as it is (contiguous, on the CPU; no copy when it already is)."""
    code_of(t.dtype)
    part = t.detach().cpu().contiguous()
    return Encoded("dense", {"": part}, count_nonzero([part])[1])


def _index_part(values: np.ndarray, limit: int) -> torch.Tensor:
    """``values`` (all in ``[0, limit]``) in the narrowest of U8/U16/I32/I64 that holds ``limit``."""
    code = next(c for c in INDEX_CODES if limit <= _INDEX_LIMITS[c])
    return torch.from_numpy(values.astype(_NUMPY[code]))


def _delta_gaps(positions: np.ndarray, bits: int) -> np.ndarray:
    """Relative indices with escapes for sorted flat ``positions`` (see the module docs)."""
    escape = (1 << bits) - 1
    skips = np.diff(positions, prepend=-1) - 1
    escapes = skips // escape
    counts = escapes + 1
    gaps = np.full(int(counts.sum()), escape, dtype=np.int64)
    gaps[np.cumsum(counts) - 1] = skips - escapes * escape  # each real entry follows its escapes
    return gaps


def encode_compact(t: torch.Tensor, values_dtype: torch.dtype = torch.float32, allowed: tuple[str, ...] = COMPACT_ENCODINGS) -> Encoded:
    """The smallest allowed encoding of a floating tensor of rank >= 2.

    Args:
        t: the tensor (any floating dtype, at least 2 dimensions).
        values_dtype: dtype of the stored non-zero values.
        allowed: encodings to choose from; ``"dense"`` among them means a compact encoding must be
            strictly smaller than the dense tensor to be chosen.

    Returns:
        The chosen :class:`Encoded`; dense when nothing allowed beats it (or nothing is allowed).

    Raises:
        SparsehaloError: finite weights that overflow ``values_dtype``.
    """
    flat = t.detach().cpu().reshape(-1)
    keep = (flat != 0).numpy()
    positions = np.flatnonzero(keep)
    nnz = len(positions)
    kept = flat[torch.from_numpy(positions)]
    values = kept.to(values_dtype).contiguous()
    if bool(torch.isfinite(kept).all()) and not bool(torch.isfinite(values).all()):
        raise SparsehaloError(f"weights overflow {values_dtype} (largest |w| is {flat.abs().max().item():.3g}); export with fp32 values")

    candidates: list[Encoded] = []
    if "bitmask" in allowed:
        bitmask = torch.from_numpy(np.packbits(keep, bitorder="little"))
        candidates.append(Encoded("bitmask", {"bitmask": bitmask, "values": values}, nnz))
    if "csr" in allowed:
        rows = t.shape[0]
        cols = flat.numel() // rows if rows else 0
        row_of = positions // cols if cols else positions
        crow = np.zeros(rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(row_of, minlength=rows), out=crow[1:])
        col = positions - row_of * cols
        parts = {"crow": _index_part(crow, nnz), "col": _index_part(col, max(cols - 1, 0)), "values": values}
        candidates.append(Encoded("csr", parts, nnz))
    if "delta" in allowed:
        for bits, code in ((8, "U8"), (16, "U16")):
            gaps = torch.from_numpy(_delta_gaps(positions, bits).astype(_NUMPY[code]))
            candidates.append(Encoded("delta", {"gaps": gaps, "values": values}, nnz))

    # Ties go to the earlier candidate (the simpler decode); dense is the reference to beat.
    best = min(candidates, key=lambda c: c.nbytes, default=None)
    if best is None or ("dense" in allowed and best.nbytes >= t.numel() * t.element_size()):
        return dense(t)
    return best


def encode(t: torch.Tensor, compact: bool, values_dtype: torch.dtype = torch.float32, allowed: tuple[str, ...] = COMPACT_ENCODINGS) -> Encoded:
    """How one state entry is stored.

    Args:
        t: the tensor (a sparse layout is densified first).
        compact: whether ``t`` may be stored compactly (a prunable weight); it then is, when it is
            floating, of rank >= 2, at least :data:`COMPACT_MIN_ZEROS` zeros, and an allowed
            encoding is smaller.
        values_dtype: dtype of the stored non-zero values of a compact encoding.
        allowed: see :func:`encode_compact`.

    Raises:
        SparsehaloError: an unsupported dtype, or values that overflow ``values_dtype``.
    """
    if t.layout != torch.strided:
        t = t.to_dense()
    code_of(t.dtype)
    eligible = compact and t.dtype.is_floating_point and t.dim() >= 2 and t.numel() > 0
    if eligible and count_nonzero([t])[1] <= (1 - COMPACT_MIN_ZEROS) * t.numel():
        return encode_compact(t, values_dtype, allowed)
    return dense(t)


def record(encoded: Encoded, t: torch.Tensor) -> dict:
    """The metadata record of an encoded state entry: encoding, original dtype, shape (+ nnz)."""
    entry = {"encoding": encoded.encoding, "dtype": code_of(t.dtype), "shape": list(t.shape)}
    if encoded.encoding != "dense":
        entry["nnz"] = encoded.nnz
    return entry


# ---------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------


def check_layout(name: str, kind: str, code: str, shape: tuple[int, ...], part_codes: Mapping[str, str]) -> None:
    """Check an encoding record against the dtypes of its parts, before any decoding.

    Args:
        name: the state entry (for messages).
        kind: a key of :data:`PARTS`.
        code: the entry's original dtype code.
        shape: the entry's shape.
        part_codes: ``{suffix: dtype code}`` of the stored parts of ``kind``.

    Raises:
        EncodingError: a compact encoding of a non-floating or rank < 2 tensor, or non-floating values.
    """
    if kind == "dense":
        return
    if not DTYPES[code].is_floating_point or len(shape) < 2:
        raise EncodingError(f"tensor {name!r}: only floating tensors of rank >= 2 are stored compactly")
    if part_codes["values"] not in VALUE_CODES:
        raise EncodingError(f"tensor {name!r}: values must be floating point")


def _ints(part: torch.Tensor) -> np.ndarray:
    return part.to(torch.int64).numpy()


def positions(name: str, kind: str, shape: tuple[int, ...], parts: Mapping[str, torch.Tensor], nvalues: int) -> np.ndarray:
    """Flat positions of the stored values of a compact encoding, after checking every index.

    Raises:
        EncodingError: index parts of the wrong dtype or length, out of range, or not canonical.
    """
    numel = math.prod(shape)
    if kind == "bitmask":
        mask = parts["bitmask"]
        if mask.dtype != torch.uint8 or mask.numel() != (numel + 7) // 8:
            raise EncodingError(f"tensor {name!r}: bitmask must be {(numel + 7) // 8} U8 bytes")
        bits = np.unpackbits(mask.numpy(), bitorder="little")
        if bits[numel:].any():
            raise EncodingError(f"tensor {name!r}: bitmask padding bits are set")
        found = np.flatnonzero(bits[:numel])
        if len(found) != nvalues:
            raise EncodingError(f"tensor {name!r}: bitmask marks {len(found)} entries but {nvalues} values are stored")
        return found
    if kind == "csr":
        rows = shape[0]
        cols = numel // rows if rows else 0
        index_dtypes = tuple(DTYPES[c] for c in INDEX_CODES)
        if parts["crow"].dtype not in index_dtypes or parts["col"].dtype not in index_dtypes:
            raise EncodingError(f"tensor {name!r}: CSR indices must be one of {', '.join(INDEX_CODES)}")
        crow, col = _ints(parts["crow"]), _ints(parts["col"])
        if len(crow) != rows + 1 or crow[0] != 0 or crow[-1] != nvalues or len(col) != nvalues or np.any(np.diff(crow) < 0):
            raise EncodingError(f"tensor {name!r}: CSR row pointers are inconsistent")
        if nvalues and (col.min() < 0 or col.max() >= cols):
            raise EncodingError(f"tensor {name!r}: CSR column index out of range")
        found = np.repeat(np.arange(rows, dtype=np.int64), np.diff(crow)) * cols + col
        # Canonical CSR (columns increasing within each row): a repeated entry would make the result
        # depend on write order.
        if np.any(np.diff(found) <= 0):
            raise EncodingError(f"tensor {name!r}: CSR columns are not strictly increasing within a row")
        return found
    gaps_part = parts["gaps"]
    if gaps_part.dtype not in (torch.uint8, torch.uint16):
        raise EncodingError(f"tensor {name!r}: gaps must be U8 or U16")
    escape = 0xFF if gaps_part.dtype == torch.uint8 else 0xFFFF
    gaps = _ints(gaps_part)
    real = gaps != escape
    if int(real.sum()) != nvalues:
        raise EncodingError(f"tensor {name!r}: {int(real.sum())} gaps for {nvalues} values")
    if len(gaps) and not real[-1]:
        raise EncodingError(f"tensor {name!r}: gaps end with an escape")
    # A real entry advances past its skipped zeros and itself; an escape only past the zeros.
    found = (np.cumsum(np.where(real, gaps + 1, escape)) - 1)[real]
    if nvalues and found[-1] >= numel:
        raise EncodingError(f"tensor {name!r}: gaps run past the end of the tensor")
    return found


def decode(name: str, kind: str, code: str, shape: tuple[int, ...], parts: Mapping[str, torch.Tensor], nnz: object = NOT_RECORDED) -> torch.Tensor:
    """Rebuild a state entry from its parts (checked with :func:`check_layout` first).

    Args:
        name: the state entry (for messages).
        kind: a key of :data:`PARTS`.
        code: the entry's original dtype code; compact values are cast back to it.
        shape: the entry's shape.
        parts: ``{suffix: tensor}`` for every part of ``kind``.
        nnz: the number of non-zeros the record states (any JSON value), checked against the
            stored values; :data:`NOT_RECORDED` when it states none.

    Returns:
        A new dense tensor of dtype ``DTYPES[code]`` and ``shape``, sharing no memory with ``parts``.

    Raises:
        EncodingError: parts that contradict each other or the record.
    """
    dtype = DTYPES[code]
    if kind == "dense":
        t = parts[""]
        # A crafted BOOL byte other than 0/1 must not become a bool tensor holding it.
        t = t.view(torch.uint8) != 0 if dtype == torch.bool else t.to(dtype).clone()
        return t.reshape(shape)
    values = parts["values"].to(dtype)
    if nnz is not NOT_RECORDED and nnz != len(values):
        raise EncodingError(f"tensor {name!r} records {nnz} non-zeros but stores {len(values)} values")
    where = positions(name, kind, shape, parts, len(values))
    flat = torch.zeros(math.prod(shape), dtype=dtype)
    flat[torch.from_numpy(where)] = values
    return flat.reshape(shape)
