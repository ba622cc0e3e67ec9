"""Export networks: a compact sparse safetensors file, a plain dense state dict, or an ONNX graph.

- :mod:`.encodings`: dense / bitmask / CSR / delta encodings of one tensor, the choice of the
  smallest, and their checked decoding (pure functions, no files);
- :mod:`.container`: the safetensors file (the ``safetensors`` package) and the strict checks of a
  file that the package does not make;
- :mod:`.onnx`: :func:`export_onnx` (``torch.onnx`` with a dynamic batch; the ``onnx`` extra);
- :mod:`.writing`: the no-overwrite write and the size report every format shares;
- :mod:`.api`: :func:`export_sparse`, :func:`export_dense`, :func:`load_sparse`, :func:`export_run`
  (a run directory's final or pruned weights) and :func:`format_report`.
"""

from .api import (
    export_dense,
    export_run,
    export_sparse,
    find_source,
    format_report,
    load_sparse,
)
from .container import (
    CHECKSUM_KEY,
    FORMAT,
    MAX_ELEMENTS,
    MAX_HEADER_BYTES,
    MAX_RANK,
    OLD_FORMAT,
    RESERVED_METADATA,
    SEP,
    content_sha256,
    decode_state,
    encode_state,
    read_metadata,
    read_sparse_state,
)
from .encodings import COMPACT_ENCODINGS, COMPACT_MIN_ZEROS, ENCODINGS
from .onnx import export_onnx

__all__ = [
    "COMPACT_ENCODINGS",
    "COMPACT_MIN_ZEROS",
    "CHECKSUM_KEY",
    "ENCODINGS",
    "FORMAT",
    "MAX_ELEMENTS",
    "MAX_HEADER_BYTES",
    "MAX_RANK",
    "OLD_FORMAT",
    "RESERVED_METADATA",
    "SEP",
    "content_sha256",
    "decode_state",
    "encode_state",
    "export_dense",
    "export_onnx",
    "export_run",
    "export_sparse",
    "find_source",
    "format_report",
    "load_sparse",
    "read_metadata",
    "read_sparse_state",
]
