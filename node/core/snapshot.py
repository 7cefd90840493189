"""A chain state as bytes and back: what lets a node restart without replaying its whole chain.

A restarted node used to rebuild its state by applying every stored block
from genesis, so its startup grew with the chain. It now starts from a
snapshot of the state taken every so many blocks and replays only what came
after. The snapshot is trusted no further than the chain lets it be: the
runtime accepts it only when its digest equals the `state_hash` that the next
stored block carries (a hash every node agreed on when it finalized that
block), and otherwise replays from genesis.

The encoding follows the state's own types rather than a hand-written
schema: a dataclass is the list of its fields in order, a map the list of its
(key, value) pairs in iteration order (order can matter to code that walks
a map, so it is kept), a set its sorted items. Decoding is driven by the
field annotations, so a new field needs no codec change, and anything that
does not fit the types is a `SnapshotError`, never a half-built state.
Snapshots never go on the wire: they use msgpack without the wire codec's
size limits (a ledger of 10,000 accounts is far past them).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import msgpack

from node.core.ledger import FrozenMap
from node.core.state import ChainState

# Bumped when a snapshot written before can no longer be read. 2: seats and committees carry the stake
# snapshot reward sharing reads (a field more each, so a format-1 body no longer fits).
FORMAT = 2


class SnapshotError(ValueError):
    """Bytes that are not a snapshot of this version's chain state."""


def encode_state(state: ChainState) -> bytes:
    """The state as bytes `decode_state` turns back into an equal state."""
    return msgpack.packb([FORMAT, _plain(state)], use_bin_type=True)


def decode_state(data: bytes) -> ChainState:
    """The state `data` holds, or SnapshotError saying what does not fit."""
    try:
        version, body = msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise SnapshotError(f"not a snapshot: {str(exc)[:80]}") from None
    if version != FORMAT:
        raise SnapshotError(f"snapshot format {version!r}, this node reads {FORMAT}")
    state = _typed(ChainState, body, "state")
    assert isinstance(state, ChainState)
    return state


# ------------------------------------------------------------------ to plain values


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | bytes | str):
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return [_plain(getattr(value, f.name)) for f in fields(value)]
    if isinstance(value, Mapping):
        return [[_plain(k), _plain(v)] for k, v in value.items()]
    if isinstance(value, frozenset | set):
        return sorted(_plain(item) for item in value)
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    raise TypeError(f"{type(value).__name__} cannot be in a snapshot")


# ------------------------------------------------------------------ back, by the annotations


@cache
def _hints(cls: type) -> tuple[tuple[str, Any], ...]:
    hints = get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in fields(cls))


def _typed(kind: Any, value: Any, where: str) -> Any:
    """`value` (plain) as an instance of the annotation `kind`."""
    origin = get_origin(kind)
    if kind is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(kind)
        if value is None and type(None) in options:
            return None
        for option in (o for o in options if o is not type(None)):
            return _typed(option, value, where)
    if origin is Literal:
        if value not in get_args(kind):
            raise SnapshotError(f"{where}: {value!r} is not one of {get_args(kind)}")
        return value
    if isinstance(kind, type) and is_dataclass(kind):
        return _dataclass(kind, value, where)
    if kind in (int, bytes, str, bool):
        if type(value) is not kind:
            raise SnapshotError(f"{where}: expected {kind.__name__}, got {type(value).__name__}")
        return value
    if isinstance(kind, type) and issubclass(kind, int):  # an IntEnum
        return kind(_typed(int, value, where))
    if origin is tuple:
        return _tuple(get_args(kind), _sequence(value, where), where)
    if origin is frozenset:
        (item,) = get_args(kind)
        return frozenset(_typed(item, v, f"{where}[]") for v in _sequence(value, where))
    if origin in (FrozenMap, Mapping, dict, typing.Mapping) or kind is FrozenMap:
        key, val = get_args(kind) or (Any, Any)
        pairs = [_pair(p, where) for p in _sequence(value, where)]
        items = {_typed(key, k, f"{where} key"): _typed(val, v, f"{where} value") for k, v in pairs}
        return FrozenMap(items) if origin is FrozenMap or kind is FrozenMap else items
    raise SnapshotError(f"{where}: cannot read a {kind!r}")


def _dataclass(cls: type, value: Any, where: str) -> Any:
    hints = _hints(cls)
    values = _sequence(value, where)
    if len(values) != len(hints):
        raise SnapshotError(f"{where}: {cls.__name__} has {len(hints)} fields, the snapshot {len(values)}")
    try:
        return cls(
            **{
                name: _typed(kind, v, f"{where}.{name}")
                for (name, kind), v in zip(hints, values, strict=True)
            }
        )
    except SnapshotError:
        raise
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"{where}: {exc}") from None


def _tuple(args: tuple[Any, ...], values: tuple[Any, ...], where: str) -> tuple[Any, ...]:
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_typed(args[0], v, f"{where}[{i}]") for i, v in enumerate(values))
    if len(args) != len(values):
        raise SnapshotError(f"{where}: expected {len(args)} items, got {len(values)}")
    return tuple(_typed(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, values, strict=True)))


def _sequence(value: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(value, tuple):
        raise SnapshotError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _pair(value: Any, where: str) -> tuple[Any, Any]:
    pair = _sequence(value, where)
    if len(pair) != 2:
        raise SnapshotError(f"{where}: a map entry is a (key, value) pair")
    return pair[0], pair[1]
