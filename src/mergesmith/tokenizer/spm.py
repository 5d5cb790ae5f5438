"""Just enough of the SentencePiece model format (a protobuf `ModelProto`) to read its pieces
and add user-defined pieces, without the sentencepiece or protobuf packages.

`ModelProto` keeps its vocabulary as `repeated SentencePiece pieces = 1`, each piece being
`{string piece = 1; float score = 2; Type type = 3}`; a piece's id is its position. New
pieces are inserted right after the last existing one, so every other field (trainer and
normalizer specs) stays byte-for-byte as it was.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from mergesmith.errors import CheckpointError

USER_DEFINED = 4  # SentencePiece.Type: matched as a whole, like an added token
_PIECES = 1
_PIECE, _SCORE, _TYPE = 1, 2, 3


@dataclass(frozen=True)
class SpmVocab:
    pieces: list[str]  # piece strings by id
    types: list[int]  # SentencePiece.Type of each piece (1 normal, 2 unknown, 3 control, ...)
    end_of_pieces: int  # byte offset just after the last piece record


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value start, value end) of each field in buf[start:end]."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value_start = pos
            _, pos = _varint(buf, pos)
        elif wire == 1:
            value_start, pos = pos, pos + 8
        elif wire == 2:
            length, value_start = _varint(buf, pos)
            pos = value_start + length
        elif wire == 5:
            value_start, pos = pos, pos + 4
        else:  # groups (3, 4) are not used by ModelProto
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("field runs past the end of its message")
        yield field, wire, value_start, pos


def read_spm(data: bytes, where: str) -> SpmVocab:
    """The pieces of a serialized SentencePiece model."""
    pieces: list[str] = []
    types: list[int] = []
    end_of_pieces = 0
    try:
        for field, wire, start, end in _fields(data, 0, len(data)):
            if field == _PIECES and wire == 2:
                piece, kind = _read_piece(data, start, end)
                pieces.append(piece)
                types.append(kind)
                end_of_pieces = end
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{where}: not a valid SentencePiece model ({exc})",
                              hint="fetch the tokenizer.model file again") from None
    if not pieces:
        raise CheckpointError(f"{where}: a SentencePiece model without pieces")
    return SpmVocab(pieces, types, end_of_pieces)


def _read_piece(data: bytes, start: int, end: int) -> tuple[str, int]:
    piece, kind = "", 1  # the proto's defaults
    for field, wire, value_start, value_end in _fields(data, start, end):
        if field == _PIECE and wire == 2:
            piece = data[value_start:value_end].decode("utf-8")
        elif field == _TYPE and wire == 0:
            kind, _ = _varint(data, value_start)
    return piece, kind


def _piece_record(piece: str) -> bytes:
    text = piece.encode("utf-8")
    body = (bytes([_PIECE << 3 | 2]) + _encode_varint(len(text)) + text
            + bytes([_SCORE << 3 | 5]) + struct.pack("<f", 0.0)
            + bytes([_TYPE << 3 | 0]) + _encode_varint(USER_DEFINED))
    return bytes([_PIECES << 3 | 2]) + _encode_varint(len(body)) + body


def add_pieces(data: bytes, vocab: SpmVocab, new: list[str]) -> bytes:
    """The model with `new` appended as user-defined pieces (ids len(pieces), +1, ...)."""
    records = b"".join(_piece_record(p) for p in new)
    return data[: vocab.end_of_pieces] + records + data[vocab.end_of_pieces:]
