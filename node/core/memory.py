"""Protocol memory: what penalties depend on, kept across a validator's crash.

Some of what a validator holds decides what the chain will punish:
others' precommits, for the open height or late ones for closed heights
(a proposer puts them on chain; without them a validator that was online
is charged as absent), its own precommits no block has counted yet, and
equivocation evidence not yet included (without it a fork's culprits go
free). Kept only in memory, all of it died with the
process. So the consensus machine notes each change as a `Note`, the driver
hands the notes to its environment after every input (`ProtocolMemory`:
SQLite, fsynced, in a real node; `MemoryNotes` in the simulator, whose
"disk" survives a simulated crash) and gets them back at boot. The machine
never trusts what comes back: each note is decoded and checked against the
recovered state like a message off the network, and dropped if it no
longer fits.

Notes are keyed (kind, key) per validator; a note with value None forgets
its key. The memory is bounded by the machine's own bounds on what it keeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Generic, Protocol, TypeVar

from node.core.codec import decode
from node.core.messages import Evidence, Vote

NOTE_LATE = 1  # a late precommit kept for a later block
NOTE_OWN = 2  # one of our own precommits no block has counted yet
NOTE_EVIDENCE = 3  # evidence waiting for a block
NOTE_OPEN = 4  # another validator's precommit for the height still open

Note = tuple[int, bytes, bytes | None]
"""(kind, key, value): keep `value` under (kind, key), or forget the key when value is None."""


class ProtocolMemory(Protocol):
    def keep_notes(self, validator: bytes, notes: Sequence[Note]) -> None:
        """Durably apply `notes` for `validator`, all together."""

    def notes(self, validator: bytes) -> list[tuple[int, bytes, bytes]]:
        """Every (kind, key, value) kept for `validator`."""


class MemoryNotes:
    """Protocol memory kept in a dict: for the simulator, where 'disk' survives a simulated crash."""

    def __init__(self) -> None:
        # validator -> kind -> key -> value: no (kind, key) pair made and kept per note, where a
        # simulator's thousands of nodes each keep a committee's late precommits per height
        self.kept: dict[bytes, dict[int, dict[bytes, bytes]]] = {}

    def keep_notes(self, validator: bytes, notes: Sequence[Note]) -> None:
        kinds = self.kept.setdefault(validator, {})
        for kind, key, value in notes:
            kept = kinds.get(kind)
            if kept is None:
                kept = kinds[kind] = {}
            if value is None:
                kept.pop(key, None)
            else:
                kept[key] = value

    def notes(self, validator: bytes) -> list[tuple[int, bytes, bytes]]:
        kinds = self.kept.get(validator, {})
        return [(kind, key, value) for kind in sorted(kinds) for key, value in sorted(kinds[kind].items())]


K = TypeVar("K")
V = TypeVar("V")


class NotedDict(Generic[K, V]):
    """A dict whose changes since the last `changes()` are noted, to be kept by a `ProtocolMemory`.

    Only the keys are noted as they change; values are encoded once, when
    the changes are collected, so an entry added and dropped between two
    collections costs one forget and no encoding.
    """

    def __init__(self, kind: int, key_bytes: Callable[[K], bytes], value_bytes: Callable[[V], bytes]) -> None:
        self.kind = kind
        self._key_bytes = key_bytes
        self._value_bytes = value_bytes
        self._items: dict[K, V] = {}
        self._changed: set[K] = set()

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def items(self) -> list[tuple[K, V]]:
        return list(self._items.items())

    def values(self) -> list[V]:
        return list(self._items.values())

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._changed.add(key)

    def setdefault(self, key: K, value: V) -> None:
        if key not in self._items:
            self.put(key, value)

    def pop(self, key: K) -> None:
        if key in self._items:
            del self._items[key]
            self._changed.add(key)

    def keep_only(self, keep: Callable[[K, V], bool]) -> None:
        """Forget every entry `keep` turns down."""
        for key in [key for key, value in self._items.items() if not keep(key, value)]:
            self.pop(key)

    def changes(self) -> list[Note]:
        """The notes that bring a memory up to date with this dict, once each."""
        if not self._changed:
            return []
        notes: list[Note] = []
        for key in self._changed:
            value = self._items.get(key)
            notes.append(
                (self.kind, self._key_bytes(key), None if value is None else self._value_bytes(value))
            )
        self._changed.clear()
        notes.sort(key=lambda note: note[1])  # one order on every run (sets of bytes hash per process)
        return notes


def recalled_item(kind: int, value: bytes) -> Vote | Evidence | None:
    """A kept note's vote or evidence, decoded; None when it does not decode (a damaged store).

    Only the shape is checked here: whether it still fits and is signed is
    the machine's to judge against the state it recovered.
    """
    try:
        wire = decode(value)
        if kind in (NOTE_LATE, NOTE_OWN, NOTE_OPEN):
            return Vote.from_wire(wire)
        if kind == NOTE_EVIDENCE:
            return Evidence.from_wire(wire)
    except (ValueError, TypeError, IndexError, KeyError):  # DecodeError is a ValueError
        return None
    return None
