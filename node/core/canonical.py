"""The canonical form of state values, and digests of them: what a block's `state_hash` is made of.

Kept apart from the state transition: how a value is written down for
hashing (every field in order, sets sorted, fields added later left out
while they hold their default) is one question, answered once here, and
the pending participation's digests are remembered here between blocks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import Field, fields, is_dataclass
from functools import cache
from typing import Any

from node.core import ledger as L
from node.core.codec import encode
from node.core.genesis import HASHED_WHEN_SET
from node.core.messages import sha256


def hashed_fields(value: Any) -> Iterator[Field[Any]]:
    """The fields of a dataclass value that enter the hash.

    A field marked HASHED_WHEN_SET (reward sharing's parameters, the ledger's
    reserve) is left out while it holds its default: it was added after
    chains existed, and leaving it out keeps every hash of a chain that does
    not use it exactly what it was before.
    """
    for f in fields(value):
        if not (f.metadata.get(HASHED_WHEN_SET) and getattr(value, f.name) == f.default):
            yield f


@cache
def _field_plan(cls: type) -> tuple[tuple[str, bool, Any], ...]:
    """(name, left out while default, default) per field of a dataclass type: `fields` once per type."""
    return tuple((f.name, bool(f.metadata.get(HASHED_WHEN_SET)), f.default) for f in fields(cls))


def _canonical_fields(value: Any) -> tuple[Any, ...]:
    """`canonical` of each field `hashed_fields` keeps, in field order.

    An int or bytes field is its own canonical form and is taken as it is:
    a ledger's hash visits tens of thousands of them.
    """
    kept = []
    for name, when_set, default in _field_plan(type(value)):
        item = getattr(value, name)
        if not (when_set and item == default):
            kept.append(item if type(item) in _OWN_FORM else canonical(item))
    return tuple(kept)


_OWN_FORM = frozenset({int, bytes})


def canonical(value: Any) -> Any:
    """A state value as nested tuples of ints, bytes, text and None, in one order, for hashing."""
    kind = type(value)
    if kind is int or kind is bytes:  # most of a state: checked first, exactly
        return value
    if value is None or isinstance(value, bytes | str):
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)  # IntEnum members hash as their values
    if is_dataclass(value) and not isinstance(value, type):
        return _canonical_fields(value)
    if isinstance(value, Mapping):
        return tuple(sorted((canonical(k), canonical(v)) for k, v in value.items()))
    if isinstance(value, frozenset | set):
        return tuple(sorted(canonical(item) for item in value))
    if isinstance(value, tuple | list):
        return tuple(canonical(item) for item in value)
    raise TypeError(f"{type(value).__name__} has no canonical form")


_DIGESTS: dict[int, bytes] = {}  # by id(): hashing a record means its whole committee
_HELD: dict[int, L.Participation] = {}  # the records remembered, held so no other object takes their id
_MAX_DIGESTS = 1 << 16


def participation_digests(pending: tuple[L.Participation, ...]) -> tuple[bytes, ...]:
    """SHA-256 of each pending height's record, remembered per object.

    A fast chain keeps thousands of heights pending and asks this once per
    block, so the look-up runs as one pass in C over the records' ids; an id
    found is the record's own, since `_HELD` keeps every remembered record
    alive until both maps are dropped together.
    """
    digests = list(map(_DIGESTS.get, map(id, pending)))
    if None in digests:
        for index, digest in enumerate(digests):
            if digest is None:
                digests[index] = _remember(pending[index])
    return tuple(digests)  # type: ignore[arg-type]


def _remember(entry: L.Participation) -> bytes:
    if len(_DIGESTS) >= _MAX_DIGESTS:
        _DIGESTS.clear()
        _HELD.clear()
    digest = _DIGESTS[id(entry)] = sha256(encode(canonical(entry)))
    _HELD[id(entry)] = entry
    return digest
