"""Canonical msgpack: one object has one encoding, and decode accepts only that encoding."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.codec import MAX_MESSAGE_BYTES, DecodeError, decode, encode

I64_MIN = -(1 << 63)
U64_MAX = (1 << 64) - 1

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(I64_MIN, U64_MAX),
    st.binary(max_size=300),
    st.text(max_size=80),
)
values = st.recursive(scalars, lambda children: st.lists(children, max_size=6).map(tuple), max_leaves=40)


def same(a: Any, b: Any) -> bool:
    """Equality that also tells True from 1 and bytes from str."""
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def reason(data: bytes, **kwargs: Any) -> str:
    with pytest.raises(DecodeError) as info:
        decode(data, **kwargs)
    return info.value.reason


# ------------------------------------------------------------- round trips


@pytest.mark.slow
@given(values)
def test_decode_inverts_encode_for_nested_tuples_of_allowed_types(obj: Any) -> None:
    assert same(decode(encode(obj)), obj)


@pytest.mark.slow
@given(values)
def test_encoding_is_a_function_of_the_value(obj: Any) -> None:
    """Re-encoding what was decoded gives back the very same bytes (hashes are stable)."""
    data = encode(obj)
    assert encode(decode(data)) == data


def test_lists_encode_like_tuples_and_decode_as_tuples() -> None:
    assert encode([1, [b"x"]]) == encode((1, (b"x",)))
    assert decode(encode([1, [b"x"]])) == (1, (b"x",))


@pytest.mark.parametrize("bad", [1.5, {"a": 1}, {1, 2}, (1, 2.0), object()], ids=repr)
def test_encode_refuses_floats_maps_and_other_types(bad: Any) -> None:
    with pytest.raises(TypeError):
        encode(bad)


# ------------------------------------------------------------ rejections


@pytest.mark.parametrize(
    "data",
    [
        b"\xca" + struct.pack(">f", 1.5),  # float32
        b"\xcb" + struct.pack(">d", 1.5),  # float64
        b"\x92\x01\xcb" + struct.pack(">d", 0.0),  # a float inside an array
    ],
    ids=["float32", "float64", "nested-float"],
)
def test_decode_rejects_floats_as_malformed(data: bytes) -> None:
    assert reason(data) == "malformed"


@pytest.mark.parametrize(
    "data",
    [b"\x80", b"\x81\x01\x02", b"\x81\xa1a\x01", b"\xde\x00\x01\x01\x02", b"\x91\x81\x01\x02"],
    ids=["empty-fixmap", "fixmap-int-key", "fixmap-str-key", "map16", "nested-map"],
)
def test_decode_rejects_maps_as_malformed(data: bytes) -> None:
    assert reason(data) == "malformed"


@pytest.mark.parametrize(
    "data",
    [
        b"\xd4\x05\x00",  # fixext1
        b"\xd6\xff\x00\x00\x00\x00",  # fixext4, type -1: a msgpack timestamp
        b"\xc7\x01\x05\x00",  # ext8
    ],
    ids=["fixext1", "timestamp", "ext8"],
)
def test_decode_rejects_ext_types_as_malformed(data: bytes) -> None:
    assert reason(data) == "malformed"


@pytest.mark.parametrize("data", [b"\xc7\x00\x05", b"\x92\x01\xc7\x00\x05"], ids=["ext8-empty", "nested"])
def test_decode_rejects_empty_ext_types(data: bytes) -> None:
    assert reason(data) == "malformed"


@pytest.mark.parametrize(
    "data",
    [b"\xc1", b"\xa2\xff\xfe", b""],
    ids=["never-used-byte", "invalid-utf8-str", "empty"],
)
def test_decode_rejects_garbage_as_malformed(data: bytes) -> None:
    assert reason(data) == "malformed"


@pytest.mark.slow
@given(values, st.binary(min_size=1, max_size=8))
def test_decode_rejects_trailing_bytes(obj: Any, extra: bytes) -> None:
    assert reason(encode(obj) + extra) == "malformed"


@pytest.mark.slow
@given(values, st.data())
def test_decode_rejects_every_truncation(obj: Any, data: st.DataObject) -> None:
    encoded = encode(obj)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    assert reason(encoded[:cut]) == "malformed"


def test_decode_rejects_input_over_the_size_limit_before_parsing() -> None:
    assert reason(encode(b"x" * 100), max_size=50) == "oversize"
    big = encode(b"\x00" * MAX_MESSAGE_BYTES)  # valid bytes, but header + payload > limit
    assert len(big) > MAX_MESSAGE_BYTES
    assert reason(big) == "oversize"


def test_input_at_the_size_limit_is_accepted() -> None:
    data = encode(b"x" * 100)
    assert decode(data, max_size=len(data)) == b"x" * 100


def test_decode_rejects_strings_over_the_text_limit() -> None:
    # Canonical (str16) but longer than MAX_STR_LEN: a denial-of-service guard.
    assert reason(encode("x" * 5000)) == "malformed"


def test_decode_rejects_non_bytes_input() -> None:
    assert reason("abc") == "malformed"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"\xcc\x01", 1),  # uint8 where a positive fixint fits
        (b"\xcd\x00\x05", 5),  # uint16 where a positive fixint fits
        (b"\xcd\x00\xc8", 200),  # uint16 where uint8 fits
        (b"\xce\x00\x00\x01\x00", 256),  # uint32 where uint16 fits
        (b"\xcf" + (1 << 20).to_bytes(8, "big"), 1 << 20),  # uint64 where uint32 fits
        (b"\xd0\x05", 5),  # int8 for a non-negative value
        (b"\xd0\xff", -1),  # int8 where a negative fixint fits
        (b"\xd1\xff\x80", -128),  # int16 where int8 fits
        (b"\xd9\x01a", "a"),  # str8 where fixstr fits
        (b"\xda\x00\x01a", "a"),  # str16 where fixstr fits
        (b"\xc5\x00\x01x", b"x"),  # bin16 where bin8 fits
        (b"\xdc\x00\x01\x01", (1,)),  # array16 where fixarray fits
        (b"\xdd\x00\x00\x00\x00", ()),  # array32 for an empty array
        (b"\x92\xcc\x01\x02", (1, 2)),  # a wide int nested in an array
    ],
    ids=lambda x: x.hex() if isinstance(x, bytes) else None,
)
def test_decode_rejects_wider_than_needed_encodings_as_non_canonical(data: bytes, value: Any) -> None:
    assert encode(value) != data  # the canonical form exists and differs
    assert reason(data) == "non_canonical"


def test_a_str_raw_is_not_accepted_for_bytes() -> None:
    """Bytes and text are different types: a str cannot stand in for bin (and vice versa)."""
    assert decode(b"\xa1x") == "x"
    assert decode(b"\xc4\x01x") == b"x"
    assert decode(b"\xa1x") != decode(b"\xc4\x01x")


@pytest.mark.slow
@settings(max_examples=400)
@given(st.binary(max_size=64))
def test_random_bytes_raise_nothing_but_decode_error(data: bytes) -> None:
    try:
        obj = decode(data)
    except DecodeError as exc:
        assert exc.reason in {"malformed", "non_canonical"}
    else:
        assert encode(obj) == data


@pytest.mark.slow
@given(values, st.data())
def test_corrupted_encodings_raise_nothing_but_decode_error(obj: Any, data: st.DataObject) -> None:
    encoded = bytearray(encode(obj))
    index = data.draw(st.integers(0, len(encoded) - 1))
    encoded[index] ^= data.draw(st.integers(1, 255))
    try:
        decoded = decode(bytes(encoded))
    except DecodeError:
        return
    assert encode(decoded) == bytes(encoded)


def test_deeply_nested_arrays_are_rejected_with_decode_error() -> None:
    data = b"\x91" * 1020 + b"\xc0"  # 1020 nested one-element arrays: 1 KiB
    with pytest.raises(DecodeError):
        decode(data)


def test_nesting_beyond_the_unpacker_stack_is_malformed() -> None:
    assert reason(b"\x91" * 5000 + b"\xc0") == "malformed"
