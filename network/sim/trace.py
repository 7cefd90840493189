"""A run's trace: every delivery, drop, step, lock, timeout, decision, fault and penalty, as JSON lines.

`posnet sim --trace FILE` streams one JSON object per line as the run goes
(bounded by the run: nothing is held back), in virtual-time order:

    {"ev":"run", ...}                                        the header: seed, validators and stakes, faults, replay,
                                                             and with --zones the file, its digest and who sits where
    {"t":12,"ev":"deliver","from":"v1","to":"v2","msg":"prevote","h":3,"r":0,"block":"9f2c01ab"}
    {"t":12,"ev":"drop","from":"v1","to":"v4","msg":"prevote","h":3,"r":0,"block":null,"why":"partition"}
    {"t":13,"ev":"step","node":"v2","h":3,"r":0,"step":"precommit","locked":0,"lock":"9f2c01ab"}
    {"t":15,"ev":"decide","node":"v2","h":3,"r":0,"block":"9f2c01ab"}
    {"t":900,"ev":"timeout","node":"v4","h":4,"r":0,"step":"propose"}
    {"t":5000,"ev":"crash","node":"v3"}        and "boot" when it comes back
    {"t":20,"ev":"slashed","node":"v1","validator":"v4", ...}   penalties, as the nodes log them

`msg` is the envelope's kind (proposal, prevote, precommit, evidence,
sync_request, sync_response, status, tx); votes and proposals carry their
height, round and the first 4 bytes of their block id (null: nil). A drop
says why: `loss` (the plan's drop rate), `partition`, or `down` (a crashed
end). A `step` line is written whenever a node's height, round, step or
lock changed since its last one. The field names are the nodes' own log
fields where both have the event (node, height as h, round as r, step).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TextIO

from node.core.codec import DecodeError
from node.core.consensus import ConsensusMachine
from node.core.messages import Kind, Proposal, Vote, parse_envelope

MESSAGE_CACHE = 20_000  # decoded envelopes kept: a broadcast is decoded once for all its recipients


def short(block_id: bytes | None) -> str | None:
    return block_id[:4].hex() if block_id else None


class Trace:
    """Writes one run's events to `out` as they happen."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._messages: dict[bytes, dict[str, Any]] = {}
        self._steps: dict[str, tuple[int, int, str, int, str | None]] = {}

    def emit(self, t: int | None, ev: str, **fields: Any) -> None:
        line = {"ev": ev, **fields} if t is None else {"t": t, "ev": ev, **fields}
        self.out.write(json.dumps(line, separators=(",", ":")) + "\n")

    def header(self, **fields: Any) -> None:
        self.emit(None, "run", **fields)

    # ---------------------------------------------------------------- the network

    def message(self, data: bytes) -> dict[str, Any]:
        """What an envelope is, for a trace line (decoded once per distinct envelope)."""
        known = self._messages.get(data)
        if known is not None:
            return known
        if len(self._messages) >= MESSAGE_CACHE:
            self._messages.clear()
        try:
            envelope = parse_envelope(data)
        except DecodeError:
            known = {"msg": "malformed"}
        else:
            known = {"msg": envelope.kind.name.lower()}
            try:
                if envelope.kind in (Kind.PREVOTE, Kind.PRECOMMIT):
                    vote = Vote.from_body(envelope.kind, envelope.body, envelope.signature)
                    known.update(h=vote.height, r=vote.round, block=short(vote.block_id))
                elif envelope.kind == Kind.PROPOSAL:
                    proposal = Proposal.from_body(envelope.body, envelope.signature)
                    known.update(h=proposal.height, r=proposal.round, block=short(proposal.block_id))
            except DecodeError:
                known["msg"] = "malformed"
        self._messages[data] = known
        return known

    def delivered(self, t: int, sender: str, recipient: str, data: bytes) -> None:
        self.emit(t, "deliver", **{"from": sender, "to": recipient}, **self.message(data))

    def dropped(self, t: int, sender: str, recipient: str, data: bytes, why: str) -> None:
        self.emit(t, "drop", **{"from": sender, "to": recipient}, **self.message(data), why=why)

    # ---------------------------------------------------------------- the nodes

    def step(self, t: int, node: str, machine: ConsensusMachine | None) -> None:
        """A `step` line when the node's height, round, step or lock moved since its last one."""
        if machine is None:
            return
        lock = short(machine.locked_block.hash) if machine.locked_block is not None else None
        now = (machine.height, machine.round, machine.phase.name.lower(), machine.locked_round, lock)
        if self._steps.get(node) != now:
            self._steps[node] = now
            h, r, step, locked, lock_id = now
            self.emit(t, "step", node=node, h=h, r=r, step=step, locked=locked, lock=lock_id)

    def node_event(self, t: int, node: str, event: Mapping[str, Any]) -> None:
        """A node's own log event (timeouts, penalties, evidence), in the trace's shape."""
        fields = {k: v for k, v in event.items() if k not in ("event", "node", "ts", "t_ms")}
        kind = str(event["event"])
        if kind == "round_timeout":
            self.emit(
                t,
                "timeout",
                node=node,
                h=fields.get("height"),
                r=fields.get("round"),
                step=fields.get("step"),
            )
        else:
            self.emit(t, kind, node=node, **fields)
