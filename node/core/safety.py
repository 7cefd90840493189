"""Slashing protection: the rule that decides whether a validator may sign.

A validator that signs two different block ids at one (height, round, step)
has equivocated and will be slashed and tombstoned. Bugs, restarts and
operator mistakes are how honest validators equivocate, so every signature
passes through :func:`may_sign` against the last mark the validator signed
(kept durably by ``node.runtime.store``), in the discipline of Tendermint's
``priv_validator_state`` and Ethereum's slashing-protection database: only
move forward in (height, round, step), and at the same position only ever
sign the identical message again.

This module is pure (no I/O, no clock) so the rule can be tested
exhaustively and reused by the simulator and the real node alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class SigningRecordError(Exception):
    """A signing record could not durably keep a mark: the signer must not sign."""


class DoubleSignRefused(SigningRecordError):
    """The requested signature would conflict with what this validator already signed."""


class Step(IntEnum):
    """The signed steps of a round, in protocol order.

    The numeric values are protocol constants (they are signed over and
    stored), and their order is what makes (height, round, step) a total
    order of everything a validator signs in a height.
    """

    PROPOSAL = 1
    PREVOTE = 2
    PRECOMMIT = 3


Position = tuple[int, int, int]
"""(height, round, step) as a plain tuple, compared lexicographically."""


def _require_count(name: str, value: object) -> int:
    """Accept only non-negative ints (not bools), so marks cannot be garbled silently."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class SignMark:
    """What a validator signed last: enough to refuse anything conflicting.

    ``block_id`` is ``None`` for a nil vote. An empty ``bytes`` block id is
    refused: nil has exactly one spelling, otherwise a codec turning ``None``
    into ``b""`` would make a re-sign of the same nil vote look like a
    different message.
    """

    height: int
    round: int
    step: Step
    block_id: bytes | None

    def __post_init__(self) -> None:
        _require_count("height", self.height)
        _require_count("round", self.round)
        if isinstance(self.step, bool) or not isinstance(self.step, int):
            raise TypeError(f"step must be a Step, got {type(self.step).__name__}")
        # Coerce plain ints (e.g. read back from storage) to the enum; unknown
        # values raise ValueError rather than becoming an unordered step.
        object.__setattr__(self, "step", Step(self.step))
        block_id = self.block_id
        if block_id is not None:
            if not isinstance(block_id, bytes | bytearray | memoryview):
                raise TypeError(f"block_id must be bytes or None, got {type(block_id).__name__}")
            block_id = bytes(block_id)
            if not block_id:
                raise ValueError("block_id must be non-empty bytes; use None for a nil vote")
            object.__setattr__(self, "block_id", block_id)


def position(mark: SignMark) -> Position:
    """The mark's place in the signing order: (height, round, step)."""
    return (mark.height, mark.round, int(mark.step))


def refusal_reason(last: SignMark | None, new: SignMark) -> str | None:
    """Why signing ``new`` after ``last`` is refused, or ``None`` if it is allowed.

    Kept separate from :func:`may_sign` so a refusal can be logged and raised
    with its cause, which is what an operator needs to debug a stuck signer.
    """
    if last is None:
        return None
    new_pos, last_pos = position(new), position(last)
    if new_pos > last_pos:
        return None
    if new_pos < last_pos:
        return f"{new_pos} is behind the last signed {last_pos}"
    if new.block_id == last.block_id:
        # Ed25519 is deterministic: the same message yields the same
        # signature, so re-signing it (e.g. after a restart) reveals nothing new.
        return None
    return f"at {new_pos} already signed {_describe(last.block_id)}, refusing {_describe(new.block_id)}"


def may_sign(last: SignMark | None, new: SignMark) -> bool:
    """True iff a validator whose last signature is ``last`` may sign ``new``.

    Allowed: nothing signed yet; strictly later (height, round, step); or the
    identical mark again. Refused: going back, or a different block id
    (including nil versus a block) at the same (height, round, step).
    """
    return refusal_reason(last, new) is None


def _describe(block_id: bytes | None) -> str:
    """Short human form of a block id for refusal messages."""
    return "nil" if block_id is None else block_id[:8].hex()
