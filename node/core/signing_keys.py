"""Which key a validator signs with at a height, when owners rotate their signing keys.

A pool's address is its owner's and never changes; the key its votes and
proposals verify under does, at an epoch start (`node.core.ledger.rotate_keys`).
Nodes keep the current keys plus a short history of the ones rotated out,
so a message is checked against the key in force at its own height: a
certificate, late precommit or evidence from just before a rotation still
verifies, and a rotated-out key (perhaps stolen, the reason to rotate) can
sign nothing new. Admission and the chain state both ask this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

KeyHistory = tuple[tuple[bytes, int, bytes], ...]
"""Rotated-out keys, oldest first: (address, last height the key signed, key)."""


def key_at(current: Mapping[bytes, bytes], history: KeyHistory, address: bytes, height: int) -> bytes | None:
    """The key `address` signs `height` with (None: not a known validator)."""
    for holder, last_height, key in history:
        if holder == address and height <= last_height:
            return key
    return current.get(address)


def keys_at(current: Mapping[bytes, bytes], history: KeyHistory, height: int) -> Mapping[bytes, bytes]:
    """Every validator's key for `height` as one mapping (`current` itself when none rotated since)."""
    older = {address: key for address, last, key in reversed(history) if height <= last}
    return {**current, **older} if older else current


def recent_keys(current: Mapping[bytes, bytes], history: KeyHistory, address: bytes) -> tuple[bytes, ...]:
    """Every key `address` may still use for messages without a height: the current one first."""
    now = current.get(address)
    older = tuple(key for holder, _, key in reversed(history) if holder == address)
    return ((now,) if now else ()) + older


def rotate(
    current: Mapping[bytes, bytes],
    history: KeyHistory,
    pool_keys: Iterable[tuple[bytes, bytes]],
    height: int,
    keep_from: int,
) -> tuple[Mapping[bytes, bytes], KeyHistory]:
    """(current keys, history) once the pools' keys `pool_keys` are in force after `height`.

    A known validator whose key changed signed up to `height` with the old
    one; new pools become known signers; history whose heights end before
    `keep_from` (nothing of them is verified any more) is dropped.
    """
    changed = {address: key for address, key in pool_keys if current.get(address) != key}
    kept = tuple(entry for entry in history if entry[1] >= keep_from)
    if not changed:
        return current, kept
    retired = tuple((address, height, current[address]) for address in sorted(changed) if address in current)
    return {**current, **changed}, kept + retired
