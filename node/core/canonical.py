"""The canonical form of state values, and digests of them: what a block's `state_hash` is made of.

Kept apart from the state transition: how a value is written down for
hashing (every field in order, sets sorted, fields added later left out
while they hold their default) is one question, answered once here, and
the pending participation's digests are remembered here between blocks.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Mapping
from dataclasses import Field, fields, is_dataclass
from functools import cache
from operator import attrgetter
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


RUN_HEIGHTS = 64  # pending heights h with the same h // RUN_HEIGHTS form one run of the participation digest

_DIGESTS: dict[int, bytes] = {}  # by id(): hashing a record means its whole committee
_HELD: dict[int, L.Participation] = {}  # the records remembered, held so no other object takes their id
_RUNS: dict[int, tuple[tuple[L.Participation, ...], bytes]] = {}  # by id() of a run's first record
_MAX_DIGESTS = 1 << 16
_HEIGHT = attrgetter("height")


def participation_digest(pending: tuple[L.Participation, ...]) -> bytes:
    """How the pending participation (ascending heights) enters the state digest: a two-level hash.

    SHA-256 over the digests of its runs (the records of heights h with one
    h // RUN_HEIGHTS), each run's the SHA-256 of its records' digests in
    order. A fast chain keeps thousands of heights pending and every block
    asks this; a block changes the runs at both ends and the few a late
    precommit touched, so only those are hashed again, and a run is
    recognised as unchanged by comparing its records by identity.
    """
    runs = []
    start = 0
    while start < len(pending):
        run_of = pending[start].height // RUN_HEIGHTS
        end = bisect_left(pending, (run_of + 1) * RUN_HEIGHTS, lo=start, key=_HEIGHT)
        runs.append(_run_digest(pending[start:end]))
        start = end
    return sha256(b"".join(runs))


def _run_digest(run: tuple[L.Participation, ...]) -> bytes:
    kept = _RUNS.get(id(run[0]))
    if kept is not None and kept[0] == run:  # identical records compare without being looked into
        return kept[1]
    if len(_RUNS) >= _MAX_DIGESTS // RUN_HEIGHTS:
        _RUNS.clear()
    digest = sha256(b"".join(participation_digests(run)))
    _RUNS[id(run[0])] = (run, digest)  # the run is held, so its first record keeps its id
    return digest


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
