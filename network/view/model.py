"""A trace as the browser view reads it: validated lines, stake shares, fault windows, round marks, verdict.

Pure functions over the lines `posnet sim --trace` and `posnet testnet trace`
write (see network/sim/trace.py): the page replays the raw events itself,
but what only needs computing once, or must agree with the rest of the
project, is computed here, so there is one definition of it:

- the Nakamoto coefficient comes from the ledger's own rule
  (`node.core.ledger.nakamoto_coefficient`), applied to a genesis ledger
  built from the header's stakes, not from a second copy of the rule;
- the partition windows come from the header's fault spec, parsed by the
  simulator's own parser; `windows` says them in the shape a testnet's fault
  windows take (network/view/source.py), so the page draws both one way;
- the round marks say where the run first entered each (height, round), so
  "step by round" and `#round=H.R` links land where the cluster moved on.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from network.sim.plans import FaultSpecError, parse_fault_spec
from node.core.genesis import GenesisError, make_genesis
from node.core.keys import Keypair
from node.core.ledger import genesis_ledger, nakamoto_coefficient

Event = dict[str, Any]


class TraceError(ValueError):
    """Input that is not a trace; the message is one line naming the file and what is wrong."""


@dataclass
class Trace:
    """A trace's header line and its events, in file order (which is time order)."""

    header: Event
    events: list[Event] = field(default_factory=list)


def parse_header(line: str, name: str) -> Event:
    """The `{"ev":"run",...}` first line, or a TraceError saying why this is not a trace."""
    if not line.strip():
        raise TraceError(f"{name}: not a trace: it is empty")
    try:
        header = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TraceError(f"{name}: not a trace: line 1 is not JSON ({exc.msg})") from None
    if not isinstance(header, dict) or header.get("ev") != "run":
        raise TraceError(f'{name}: not a trace: line 1 is not a {{"ev":"run"}} header')
    validators = header.get("validators")
    if not isinstance(validators, list) or not all(
        isinstance(v, dict) and isinstance(v.get("name"), str) for v in validators
    ):
        raise TraceError(f"{name}: not a trace: its header has no validators list")
    return header


def parse_event(line: str, name: str, number: int) -> Event:
    """One event line (numbered from 1 like an editor), or a TraceError naming the line."""
    try:
        event = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TraceError(f"{name}: line {number} is not JSON ({exc.msg})") from None
    if not isinstance(event, dict) or not isinstance(event.get("ev"), str):
        raise TraceError(f'{name}: line {number} is not a trace event (no "ev")')
    return event


def parse_trace(text: str, name: str) -> Trace:
    """A whole trace file's text. A last line without its newline is a write in progress: skipped."""
    lines = text.split("\n")
    partial = lines.pop() if lines else ""
    if not lines:  # one line without a newline: a complete header still counts
        lines, partial = [partial], ""
    header = parse_header(lines[0], name)
    events = [parse_event(line, name, n) for n, line in enumerate(lines[1:], start=2) if line.strip()]
    if partial.strip():
        with contextlib.suppress(TraceError):  # half a line: the writer has not finished it
            events.append(parse_event(partial, name, len(lines) + 1))
    return Trace(header, events)


# ---------------------------------------------------------------- the header


def stakes_of(header: Mapping[str, Any]) -> dict[str, int]:
    """name -> stake, in the header's order (a missing stake counts as 0)."""
    return {str(v["name"]): int(v.get("stake") or 0) for v in header.get("validators", [])}


def nakamoto(stakes: Mapping[str, int]) -> int | None:
    """The ledger's Nakamoto coefficient of these stakes (None: not a stake set a genesis accepts).

    The keys are throwaway deterministic ones: only the stakes reach the rule.
    """
    positive = {name: stake for name, stake in stakes.items() if stake > 0}
    if not positive:
        return None
    try:
        genesis = make_genesis(
            "posnet-view", {name: Keypair.deterministic(name) for name in positive}, stakes=positive
        )
        return nakamoto_coefficient(genesis_ledger(genesis))
    except (GenesisError, ValueError):
        return None


def partitions_of(header: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The header's partition windows: {start, end, groups} (none when its fault spec does not parse)."""
    spec = header.get("faults")
    if not isinstance(spec, str) or not spec or spec == "random":
        return []
    try:
        plan = parse_fault_spec(spec)
    except FaultSpecError:
        return []
    return [
        {
            "start": p.window.start_ms,
            "end": p.window.end_ms,
            "groups": [sorted(group, key=_node_order) for group in p.groups],
        }
        for p in plan.partitions
    ]


def partition_windows(partitions: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A simulator header's partitions as the page's fault windows (a testnet's come from its step log)."""
    return [
        {
            "kind": "partition",
            "label": "partition " + " | ".join("+".join(g) for g in p["groups"]),
            "start": p["start"],
            "end": p["end"],
            "node": None,
            "groups": p["groups"],
        }
        for p in partitions
    ]


def _node_order(name: str) -> tuple[int, str]:
    digits = name.lstrip("abcdefghijklmnopqrstuvwxyz")
    return (int(digits), name) if digits.isdigit() else (1 << 30, name)


def has_steps(header: Mapping[str, Any]) -> bool:
    """Whether the trace carries `step` lines (a simulator run) or only decisions and timeouts (a testnet)."""
    kinds = header.get("kinds")
    return not isinstance(kinds, list) or "step" in kinds


def summary(header: Mapping[str, Any]) -> dict[str, Any]:
    """What the page shows about the run as a whole, beside its events."""
    stakes = stakes_of(header)
    total = sum(stakes.values())
    partitions = partitions_of(header)
    return {
        "source": header.get("source", "sim"),
        "seed": header.get("seed"),
        "replay": header.get("replay"),
        "faults": header.get("faults"),
        "byzantine": header.get("byzantine") or {},
        "validators": [
            {"name": name, "stake": stake, "share": stake / total if total else 0.0}
            for name, stake in stakes.items()
        ],
        "nakamoto": nakamoto(stakes),
        "partitions": partitions,
        "windows": partition_windows(partitions),
        "steps": has_steps(header),
    }


# ---------------------------------------------------------------- the events


def position(event: Mapping[str, Any], steps: bool) -> tuple[str, int, int] | None:
    """(node, height, round) an event puts its node in, or None when it moves no node.

    With step lines only they count (a `decide` is followed by the step line of
    the next height). Without them (a testnet) a decision moves its node to
    round 0 of the next height and a precommit timeout to the next round.
    """
    ev, node, h, r = event.get("ev"), event.get("node"), event.get("h"), event.get("r")
    if not (isinstance(node, str) and isinstance(h, int) and isinstance(r, int)):
        return None
    if steps:
        return (node, h, r) if ev == "step" else None
    if ev == "decide":
        return node, h + 1, 0
    if ev == "timeout" and event.get("step") == "precommit":
        return node, h, r + 1
    return None


def round_marks(events: Iterable[Mapping[str, Any]], steps: bool) -> list[dict[str, int]]:
    """The index of each event where some node first went past every (height, round) seen before."""
    marks: list[dict[str, int]] = []
    frontier = (-1, -1)
    for index, event in enumerate(events):
        moved = position(event, steps)
        if moved is not None and (moved[1], moved[2]) > frontier:
            frontier = (moved[1], moved[2])
            marks.append({"i": index, "h": moved[1], "r": moved[2]})
    return marks


@dataclass(frozen=True)
class Verdict:
    """Safety (one block per decided height) and how far the run got."""

    conflicts: dict[int, dict[str, list[str]]]  # height -> block -> nodes, where more than one block
    heights: int  # the highest height any node decided
    decisions: int

    @property
    def safe(self) -> bool:
        return not self.conflicts

    def describe(self) -> str:
        if self.safe:
            return f"safe: {self.heights} heights decided, one block each"
        worst = min(self.conflicts)
        blocks = ", ".join(f"{b} by {'+'.join(n)}" for b, n in sorted(self.conflicts[worst].items()))
        return f"UNSAFE: {len(self.conflicts)} height(s) with two blocks, first {worst}: {blocks}"


def verdict(events: Iterable[Mapping[str, Any]]) -> Verdict:
    decided: dict[int, dict[str, list[str]]] = {}
    count = 0
    for event in events:
        if event.get("ev") == "decide" and isinstance(event.get("h"), int):
            count += 1
            by_block = decided.setdefault(event["h"], {})
            by_block.setdefault(str(event.get("block")), []).append(str(event.get("node")))
    conflicts = {h: blocks for h, blocks in decided.items() if len(blocks) > 1}
    return Verdict(conflicts, max(decided, default=0), count)
