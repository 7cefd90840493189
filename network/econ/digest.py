"""The ledger hash an epoch record carries, built without the general walk over every value.

`node.core.canonical.canonical` asks of each value what it is (int, bytes,
dataclass, mapping, ...) and visits each dataclass field by name; an economy
of 10,000 delegators hashes tens of thousands of accounts and shares every
epoch, and that walk was a seventh of an epoch. Here the two shapes that
make up nearly all of a ledger go straight to their canonical form: a
mapping of bytes to ints (a pool's shares, the accrued rewards) is its
sorted items, and a dataclass (an account, a pool) is its fields read in one
C call, dropping those `hashed_fields` drops. Anything else is handed to
`canonical` itself, so the form is the same value for value (the tests hold
it to `canonical` on random ledgers and on every epoch of a run). It is
packed as `node.core.codec.encode` packs, without `encode`'s walk checking
every value's type again: `canonical` builds only the types it allows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields, is_dataclass
from functools import cache
from operator import attrgetter, itemgetter
from typing import Any

import msgpack

from node.core import ledger as L
from node.core.canonical import canonical
from node.core.genesis import HASHED_WHEN_SET
from node.core.messages import sha256


def ledger_hash(ledger: L.Ledger) -> bytes:
    """Every balance, pool, share and running total, hashed: what both modes must agree on each epoch.

    The chain's position (block hashes, timestamps, seeds) is left out: the
    message-level run has real signatures and network time, fast-forward has
    neither, and the economy is the same either way.
    """
    return sha256(msgpack.packb(fast_canonical(ledger), use_bin_type=True))


def fast_canonical(value: Any) -> Any:
    """`canonical(value)`, the same nested tuples, with a ledger's bulk taken by the shortcuts above."""
    kind = type(value)
    if kind is int or kind is bytes:
        return value
    plan = _plan(kind)
    if plan is not None:
        return _canonical_fields(value, plan)
    if isinstance(value, Mapping):
        return _canonical_mapping(value)
    return canonical(value)


def _canonical_mapping(mapping: Mapping[Any, Any]) -> tuple[Any, ...]:
    items = mapping.items()
    if all(type(k) is bytes and type(v) is int for k, v in items):
        return tuple(sorted(items, key=_key))  # each key and value is its own canonical form
    if all(type(k) is bytes for k in mapping) and (rows := _plain_rows(mapping.values())) is not None:
        return tuple(sorted(zip(mapping.keys(), rows, strict=True), key=_key))
    return tuple(sorted((fast_canonical(k), fast_canonical(v)) for k, v in items))


_key = itemgetter(0)  # a mapping's keys differ, so they alone order its items as the whole pairs would


def _plain_rows(values: Iterable[Any]) -> list[tuple[Any, ...]] | None:
    """The canonical forms of dataclass values of one type whose fields all hold ints or bytes (the
    accounts), read a whole row per C call; None when the values are not all such."""
    values = list(values)
    kinds = {type(value) for value in values}
    plan = _plan(kinds.pop()) if len(kinds) == 1 else None
    if plan is None:
        return None
    read, left_out_when_default = plan
    rows = list(map(read, values))
    if not {type(item) for row in rows for item in row} <= {int, bytes}:
        return None
    optional = [i for i, (when_set, _) in enumerate(left_out_when_default) if when_set]
    if not optional:
        return rows
    head = len(left_out_when_default) - len(optional)
    if optional != list(range(head, len(left_out_when_default))):  # not all trailing: field by field
        return [_kept(row, left_out_when_default) for row in rows]
    defaults = tuple(default for _, default in left_out_when_default[head:])
    return [row[:head] if row[head:] == defaults else _kept(row, left_out_when_default) for row in rows]


def _kept(row: tuple[Any, ...], left_out_when_default: tuple[tuple[bool, Any], ...]) -> tuple[Any, ...]:
    return tuple(
        item
        for item, (when_set, default) in zip(row, left_out_when_default, strict=True)
        if not (when_set and item == default)
    )


Plan = tuple[Callable[[Any], tuple[Any, ...]], tuple[tuple[bool, Any], ...]]


def _canonical_fields(value: Any, plan: Plan) -> tuple[Any, ...]:
    read, left_out_when_default = plan
    kept = []
    for item, (when_set, default) in zip(read(value), left_out_when_default, strict=True):
        if when_set and item == default:
            continue
        kind = type(item)
        kept.append(item if kind is int or kind is bytes else fast_canonical(item))
    return tuple(kept)


@cache
def _plan(cls: type) -> Plan | None:
    """For a dataclass type: a reader of every field at once, and per field whether it is left out
    while it holds its default (None for any other type)."""
    if not is_dataclass(cls):
        return None
    names = tuple(f.name for f in fields(cls))
    flags = tuple((bool(f.metadata.get(HASHED_WHEN_SET)), f.default) for f in fields(cls))
    if len(names) > 1:
        return attrgetter(*names), flags
    return (lambda value: tuple(getattr(value, name) for name in names)), flags
