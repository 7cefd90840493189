"""Which validators are jailed or tombstoned, and whether the ones online can still finalize.

Every honest node logs each penalty when it applies the block, so counting
events per node says what that node saw, not who is out. Folded in height
order across all nodes (`jailed` until `unjailed`; `tombstoned` for good),
the events say which validators are out of the active set now. The active
validators whose process runs (not paused, not dead) then either hold more
than 2/3 of the active stake, or the chain cannot finalize: the one line a
user looking at a stalled testnet needs.

Stake is the newest `epoch` event's distribution when a node logged one,
else the genesis; with a committee smaller than the active set (sampled by
stake) the line is an estimate of the same rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from network.testnet.logcheck import Event
from node.core.events import EPOCH

JAILED, TOMBSTONED = "jailed", "tombstoned"


def penalised(logs: Iterable[Sequence[Event]]) -> dict[str, set[str]]:
    """Validator -> {"jailed", "tombstoned"} as of the newest penalty events in any node's log."""
    events = [
        e
        for events in logs
        for e in events
        if e.get("event") in ("jailed", "unjailed", "tombstoned") and isinstance(e.get("validator"), str)
    ]
    events.sort(key=lambda e: (_num(e.get("height")), _num(e.get("ts"))))
    marks: dict[str, set[str]] = {}
    for event in events:
        who = marks.setdefault(str(event["validator"]), set())
        if event["event"] == "jailed":
            who.add(JAILED)
        elif event["event"] == "unjailed":
            who.discard(JAILED)
        else:
            who.add(TOMBSTONED)
    return {name: m for name, m in marks.items() if m}


def newest_stake(logs: Iterable[Sequence[Event]]) -> dict[str, int] | None:
    """The stake distribution of the newest epoch any node logged (None when none did)."""
    best: tuple[int, dict[str, int]] | None = None
    for events in logs:
        for e in events:
            epoch, stake = e.get("epoch"), e.get("stake")
            fresher = isinstance(epoch, int) and (best is None or epoch > best[0])
            if e.get("event") == EPOCH and fresher and isinstance(stake, dict):
                assert isinstance(epoch, int)
                best = (epoch, {str(k): int(v) for k, v in stake.items() if isinstance(v, int)})
    return None if best is None else best[1]


@dataclass(frozen=True)
class Quorum:
    """The active validators, those of them online, and whether these hold more than 2/3 of the stake."""

    active: list[str]
    online: list[str]
    out: dict[str, str]  # validator -> why it does not count: jailed, tombstoned, paused, dead, ...
    ok: bool

    def line(self) -> str:
        """`2 of 3 active validators online (v3 jailed, v2 paused): no quorum, the chain cannot finalize`."""
        why = ", ".join(f"{name} {reason}" for name, reason in self.out.items())
        head = f"{len(self.online)} of {len(self.active)} active validators online" + (
            f" ({why})" if why else ""
        )
        if self.ok:
            return f"{head}: more than 2/3 of the active stake, the chain can finalize"
        return f"{head}: no quorum, the chain cannot finalize"


def quorum(stake: Mapping[str, int], marks: Mapping[str, set[str]], offline: Mapping[str, str]) -> Quorum:
    """Judge `stake`'s validators: out when penalised (`marks`), not online when in `offline` (name -> why)."""
    out: dict[str, str] = {}
    for name in stake:
        if TOMBSTONED in marks.get(name, set()):
            out[name] = TOMBSTONED
        elif JAILED in marks.get(name, set()):
            out[name] = JAILED
    active = [name for name in stake if name not in out]
    for name in active:
        if name in offline:
            out[name] = offline[name]
    online = [name for name in active if name not in offline]
    total = sum(stake[name] for name in active)
    held = sum(stake[name] for name in online)
    return Quorum(active, online, out, ok=total > 0 and 3 * held > 2 * total)


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
