"""Fault-injection hooks a test sets in a node's environment; unset, they do nothing.

They let tests stop a node at the most delicate instant (right after a
signing mark is durable, before its signature exists) or run its clock
wrong, without any of it being an option a user could set by accident.
"""

from __future__ import annotations

import os

CRASH_AFTER_SIGN_RECORD_ENV = "POSNET_CRASH_AFTER_SIGN_RECORD"
"""SIGKILL the node right after its n-th signing mark is on disk, before the signature exists."""

CLOCK_OFFSET_ENV = "POSNET_CLOCK_OFFSET_MS"
"""Run this node's wall clock that many milliseconds ahead (negative: behind), as a bad NTP would."""


class HookError(ValueError):
    """A hook variable that is set to something it cannot mean: one line naming it."""


def crash_after() -> int | None:
    """The signing mark after which to SIGKILL the node, or None."""
    raw = os.environ.get(CRASH_AFTER_SIGN_RECORD_ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise HookError(f"{CRASH_AFTER_SIGN_RECORD_ENV}={raw!r}: expected a positive integer")
    return value


def clock_offset_ms() -> int:
    """How far this node's clock runs ahead, in milliseconds (0: a true clock)."""
    raw = os.environ.get(CLOCK_OFFSET_ENV, "").strip()
    try:
        return int(raw) if raw else 0
    except ValueError:
        raise HookError(f"{CLOCK_OFFSET_ENV}={raw!r}: expected an integer (milliseconds)") from None
