"""Canonical msgpack: one object, one byte string, on every machine.

Hashes and signatures are taken over these bytes, so two honest nodes must
produce identical encodings for identical objects. We therefore allow only
integers, byte strings, text, booleans, None and arrays (tuples) on the wire:
no floats (their encodings vary), no maps (their key order varies). Decoding
is strict: size limits are enforced by the unpacker, and the input must be
exactly the canonical re-encoding of what it decodes to, so that a message
has one valid encoding and cannot be malleated into another.
"""

from __future__ import annotations

from typing import Any

import msgpack

MAX_MESSAGE_BYTES = 1 << 20
MAX_ARRAY_LEN = 100_000
MAX_BIN_LEN = MAX_MESSAGE_BYTES
MAX_STR_LEN = 4096
U64_MAX = (1 << 64) - 1


class DecodeError(ValueError):
    """A byte string that is not a well-formed posnet object.

    `reason` is a short machine-readable code, used as a metric label
    (`malformed`, `oversize`, `non_canonical`, ...).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def encode(obj: Any) -> bytes:
    """Encode `obj` canonically; raises TypeError on floats or maps."""
    _check_encodable(obj)
    return msgpack.packb(obj, use_bin_type=True)


MAX_DEPTH = 32


_SCALARS = frozenset({type(None), bool, int, bytes, str})


def _check_encodable(obj: Any, depth: int = 0) -> None:
    """Exact types only: an ExtType is a tuple subclass and must not pass as an array.

    Scalars inside an array are checked in the loop, not by a call each: a
    state hash encodes hundreds of thousands of them.
    """
    kind = type(obj)
    if kind in _SCALARS:
        return
    if kind in (tuple, list):
        if depth >= MAX_DEPTH:
            raise TypeError(f"nested deeper than {MAX_DEPTH} levels")
        for item in obj:
            if type(item) not in _SCALARS:
                _check_encodable(item, depth + 1)
        return
    raise TypeError(f"type {kind.__name__} is not allowed in canonical encoding")


def decode(data: bytes, max_size: int = MAX_MESSAGE_BYTES) -> Any:
    """Decode canonical bytes into nested tuples, or raise DecodeError."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("malformed", "not bytes")
    if len(data) > max_size:
        raise DecodeError("oversize", f"{len(data)} > {max_size} bytes")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=False,
            strict_map_key=True,
            max_bin_len=MAX_BIN_LEN,
            max_str_len=MAX_STR_LEN,
            max_array_len=MAX_ARRAY_LEN,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise DecodeError("malformed", str(exc)[:120]) from None
    except (RecursionError, Exception) as exc:  # msgpack raises a few untyped errors on garbage
        raise DecodeError("malformed", type(exc).__name__) from None
    try:
        canonical = encode(obj)
    except TypeError as exc:
        raise DecodeError("malformed", str(exc)) from None
    if canonical != bytes(data):
        raise DecodeError("non_canonical", "not the canonical encoding")
    return obj


# Field checks used by every from_wire: each names the field it rejects.


def want_tuple(obj: Any, name: str, length: int | None = None) -> tuple[Any, ...]:
    if not isinstance(obj, tuple):
        raise DecodeError("malformed", f"{name}: expected array")
    if length is not None and len(obj) != length:
        raise DecodeError("malformed", f"{name}: expected {length} items, got {len(obj)}")
    return obj


def want_int(obj: Any, name: str, lo: int = 0, hi: int = U64_MAX) -> int:
    if not isinstance(obj, int) or isinstance(obj, bool):
        raise DecodeError("malformed", f"{name}: expected integer")
    if not lo <= obj <= hi:
        raise DecodeError("malformed", f"{name}: {obj} outside [{lo}, {hi}]")
    return obj


def want_bytes(obj: Any, name: str, length: int | None = None, max_len: int = MAX_BIN_LEN) -> bytes:
    if not isinstance(obj, bytes):
        raise DecodeError("malformed", f"{name}: expected bytes")
    if length is not None and len(obj) != length:
        raise DecodeError("malformed", f"{name}: expected {length} bytes, got {len(obj)}")
    if len(obj) > max_len:
        raise DecodeError("malformed", f"{name}: longer than {max_len} bytes")
    return obj


def want_str(obj: Any, name: str, max_len: int = 256) -> str:
    if not isinstance(obj, str):
        raise DecodeError("malformed", f"{name}: expected text")
    if len(obj) > max_len:
        raise DecodeError("malformed", f"{name}: longer than {max_len} characters")
    return obj
