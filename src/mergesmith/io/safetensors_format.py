"""The safetensors file format: header parsing and validation, dtype names and sizes.

A file is: 8 bytes little-endian header length N, N bytes of JSON header
({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}), then the data.
Offsets are relative to the end of the header. We parse headers ourselves (no torch) so
planning is fast, and validate them strictly so a corrupt file fails with a clear message
instead of a crash or a silent misread.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from mergesmith.errors import CheckpointError
from mergesmith.io.files import check_regular

DTYPE_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}
TORCH_NAMES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
    "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "U16": "uint16", "U32": "uint32",
    "U64": "uint64",
}
SAFETENSORS_NAMES = {v: k for k, v in TORCH_NAMES.items()}
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}
MAX_HEADER = 100 * 1024 * 1024


def tensor_nbytes(dtype: str, shape: tuple[int, ...] | list[int]) -> int:
    """Bytes of a tensor of safetensors dtype `dtype` and this shape."""
    return DTYPE_SIZES[dtype] * math.prod(shape)


@dataclass(frozen=True)
class TensorMeta:
    """Where one tensor lives and what it is, from the header alone."""

    name: str
    file: Path
    dtype: str  # safetensors name, e.g. "BF16"
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES


def read_header(path: Path) -> tuple[dict[str, TensorMeta], dict[str, str]]:
    """Parse and validate a safetensors header: (tensors by name, metadata)."""
    check_regular(path, "weights file")  # a FIFO would block the read below forever
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw_len = f.read(8)
            if len(raw_len) < 8:
                raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes, no header)",
                                      hint="the download or copy is incomplete; fetch the file again")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > min(MAX_HEADER, size - 8):
                raise CheckpointError(
                    f"{path}: header length {header_len} is beyond the file size {size}",
                    hint="the file is truncated or not a safetensors file; fetch it again")
            raw = f.read(header_len)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}",
                              hint="check that the file exists and is readable") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors header (not JSON: {exc})", hint="the file is damaged; fetch the model again") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)", hint="the file is damaged; fetch the model again")
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + header_len
    tensors = {name: _tensor_meta(path, name, info, data_start, size) for name, info in header.items()}
    _check_overlaps(path, tensors)
    return tensors, metadata if isinstance(metadata, dict) else {}


def _tensor_meta(path: Path, name: str, info: object, data_start: int, size: int) -> TensorMeta:
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise CheckpointError(f"{path}: tensor {name!r} has a malformed header entry: {info!r}", hint="the file is damaged; fetch the model again")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in DTYPE_SIZES:
        raise CheckpointError(f"{path}: tensor {name!r} has unknown dtype {dtype!r}",
                              hint=f"supported dtypes: {', '.join(sorted(DTYPE_SIZES))}")
    if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise CheckpointError(f"{path}: tensor {name!r} has an invalid shape {shape!r}", hint="the file is damaged; fetch the model again")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
        raise CheckpointError(f"{path}: tensor {name!r} has invalid data_offsets {offsets!r}", hint="the file is damaged; fetch the model again")
    begin, end = offsets
    expected = tensor_nbytes(dtype, shape)
    if begin < 0 or end - begin != expected or data_start + end > size:
        raise CheckpointError(
            f"{path}: tensor {name!r} has data_offsets {offsets} that do not fit its shape "
            f"{shape} ({expected} bytes) or the file size ({size} bytes)",
            hint="the file is truncated or damaged; fetch it again")
    return TensorMeta(name, path, dtype, tuple(shape), data_start + begin, data_start + end)


def _check_overlaps(path: Path, tensors: dict[str, TensorMeta]) -> None:
    spans = sorted((t.start, t.end, t.name) for t in tensors.values() if t.nbytes)
    for (_, end_a, name_a), (start_b, _, name_b) in zip(spans, spans[1:]):
        if start_b < end_a:
            raise CheckpointError(f"{path}: tensors {name_a!r} and {name_b!r} overlap in the file",
                                  hint="the file is damaged or crafted; do not use it")
