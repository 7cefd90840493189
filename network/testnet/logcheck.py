"""Analysis of node finality logs: safety, progress, latency, penalties.

Every node writes one JSON object per line (`event, node, ts`, and for
`finalized`: `height, round, hash, proposer, latency_ms`). The testnet's
verdict is computed from those files alone, after the fact, so it holds no
matter how the run was driven (the `up` command, a script, a crashed
orchestrator). Everything here except `read_log` is a pure function over
parsed events, so the verdict logic is unit-tested without processes.

A node killed mid-write leaves a truncated last line; that is expected and
skipped. A malformed line anywhere else is counted and reported, never fatal.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.core.events import ACCOUNTABILITY_EVENTS, FINALIZED
from node.core.verdicts import conflicting_finality

Event = dict[str, Any]


@dataclass(frozen=True)
class ParsedLog:
    """The events of one log file, and how many lines could not be used."""

    events: list[Event]
    malformed: int = 0
    truncated_tail: bool = False


def parse_lines(lines: Iterable[str]) -> ParsedLog:
    """Parse JSON lines; a broken *last* line is a truncated write, any other broken line is malformed."""
    events: list[Event] = []
    malformed = 0
    pending_bad = False  # a bad line only counts as malformed once a later line proves it was not the last
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if pending_bad:
            malformed += 1
            pending_bad = False
        try:
            value = json.loads(line)
        except ValueError:
            pending_bad = True
            continue
        if isinstance(value, dict) and isinstance(value.get("event"), str):
            events.append(value)
        else:
            malformed += 1
    return ParsedLog(events, malformed, truncated_tail=pending_bad)


def read_log(path: Path) -> ParsedLog:
    """Read one node's log file; a missing file is an empty log (the node never started)."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ParsedLog([])
    return parse_lines(text.splitlines())


NOT_NODE_LOGS = ("scenario.jsonl",)  # the scenario runner's step log lives beside the node logs


def read_log_dir(log_dir: Path) -> dict[str, ParsedLog]:
    """Every `<node>.jsonl` in a directory, keyed by node name (the file stem)."""
    return {
        path.stem: read_log(path)
        for path in sorted(Path(log_dir).glob("*.jsonl"))
        if path.name not in NOT_NODE_LOGS
    }


# ------------------------------------------------------------------ analysis


@dataclass(frozen=True)
class Conflict:
    """Two or more different hashes finalized at one height: a safety violation."""

    height: int
    hashes: dict[str, list[str]]  # hash -> nodes that finalized it

    def describe(self) -> str:
        parts = "; ".join(
            f"{h[:16]} by {', '.join(sorted(nodes))}" for h, nodes in sorted(self.hashes.items())
        )
        return f"height {self.height}: different blocks finalized: {parts}"


@dataclass(frozen=True)
class NodeSummary:
    """What one node's log says about it."""

    name: str
    max_height: int  # 0 when it finalized nothing
    last_round: int | None
    last_event: str | None
    last_ts: float | None
    median_latency_ms: float | None
    finalized: int
    counts: dict[str, int]
    penalties: list[Event]


@dataclass
class Report:
    """The verdict over a set of node logs."""

    nodes: dict[str, NodeSummary]
    conflicts: list[Conflict]
    checked_nodes: list[str]
    common_height: int  # highest height every checked node finalized
    median_latency_ms: float | None
    penalties: list[Event] = field(default_factory=list)
    malformed: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.conflicts


def _height(event: Event) -> int | None:
    value = event.get("height")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def finalized_hashes(events: Iterable[Event]) -> dict[int, set[str]]:
    """height -> hashes one node logged as finalized (more than one is a violation on its own)."""
    out: dict[int, set[str]] = defaultdict(set)
    for event in events:
        height = _height(event)
        if event.get("event") == FINALIZED and height is not None and isinstance(event.get("hash"), str):
            out[height].add(event["hash"])
    return out


def find_conflicts(logs: Mapping[str, Iterable[Event]]) -> list[Conflict]:
    """Heights at which the given nodes (together, or one of them alone) finalized different hashes."""
    finalized = {node: finalized_hashes(events) for node, events in logs.items()}
    return [Conflict(height, nodes) for height, nodes in conflicting_finality(finalized).items()]


def _latency(event: Event) -> float | None:
    """Latency of a block this node decided itself; blocks fetched by sync measure the outage, not finality."""
    value = event.get("latency_ms")
    if event.get("via_sync") or not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return float(value)


def summarize_node(name: str, events: list[Event]) -> NodeSummary:
    """Max height, last round, last event, latency and penalties seen by one node."""
    finalized = [e for e in events if e.get("event") == FINALIZED and _height(e) is not None]
    latencies = [lat for lat in map(_latency, finalized) if lat is not None]
    last = events[-1] if events else None
    rounds = [e["round"] for e in events if isinstance(e.get("round"), int)]
    ts = last.get("ts") if last else None
    return NodeSummary(
        name=name,
        max_height=max((_height(e) or 0 for e in finalized), default=0),
        last_round=rounds[-1] if rounds else None,
        last_event=str(last["event"]) if last else None,
        last_ts=float(ts) if isinstance(ts, int | float) else None,
        median_latency_ms=statistics.median(latencies) if latencies else None,
        finalized=len(finalized),
        counts=dict(Counter(str(e["event"]) for e in events)),
        penalties=[e for e in events if e.get("event") in ACCOUNTABILITY_EVENTS],
    )


def analyse(logs: Mapping[str, list[Event]], exclude: Iterable[str] = ()) -> Report:
    """The verdict: safety over every node not in `exclude` (Byzantine nodes make no promise), plus summaries.

    Penalties are de-duplicated across nodes: every honest node logs the same
    slash when it applies the same block, and the user wants to see it once.
    """
    excluded = set(exclude)
    checked = {n: ev for n, ev in logs.items() if n not in excluded}
    nodes = {name: summarize_node(name, events) for name, events in sorted(logs.items())}
    latencies = [
        lat
        for events in checked.values()
        for event in events
        if event.get("event") == FINALIZED and (lat := _latency(event)) is not None
    ]
    common = min((nodes[n].max_height for n in checked), default=0)
    return Report(
        nodes=nodes,
        conflicts=find_conflicts(checked),
        checked_nodes=sorted(checked),
        common_height=common,
        median_latency_ms=statistics.median(latencies) if latencies else None,
        penalties=unique_penalties(logs.values()),
    )


def unique_penalties(logs: Iterable[Iterable[Event]]) -> list[Event]:
    """Penalty events seen anywhere, once each, in height order (node, ts ignored for identity)."""
    seen: dict[tuple[Any, ...], Event] = {}
    for events in logs:
        for event in events:
            if event.get("event") not in ACCOUNTABILITY_EVENTS:
                continue
            key = (
                event.get("event"),
                _height(event),
                event.get("validator") or event.get("offender"),
                event.get("reason"),
            )
            seen.setdefault(key, event)
    return sorted(seen.values(), key=lambda e: (_height(e) or 0, str(e.get("event"))))


def analyse_dir(log_dir: Path, exclude: Iterable[str] = ()) -> Report:
    """`analyse` over the `*.jsonl` files of a directory, with malformed-line counts attached."""
    parsed = read_log_dir(log_dir)
    report = analyse({name: log.events for name, log in parsed.items()}, exclude)
    report.malformed = {name: log.malformed for name, log in parsed.items() if log.malformed}
    return report


# ------------------------------------------------------------------ text


def describe_penalty(event: Event) -> str:
    """One line for one penalty event, e.g. `height 12: slashed v4 50 (double_sign)`."""
    who = event.get("validator") or event.get("offender") or "?"
    text = f"height {_height(event) if _height(event) is not None else '?'}: {event.get('event')} {who}"
    if event.get("amount"):
        text += f" {event['amount']}"
    if event.get("reason"):
        text += f" ({event['reason']})"
    return text


def format_report(report: Report, notes: Mapping[str, str] | None = None) -> list[str]:
    """The lines `posnet testnet check` prints; the first says whether safety held.

    `notes` adds a word per node (e.g. its process status in the `up` summary).
    """
    lines: list[str] = []
    if not report.nodes:
        return ["no node logs found"]
    if report.ok:
        lines.append(
            f"safety OK: no conflicting finalized blocks across {len(report.checked_nodes)} nodes "
            f"(all reached height {report.common_height})"
        )
    else:
        lines.append(f"SAFETY VIOLATED at {len(report.conflicts)} height(s)")
        lines.extend(f"  {c.describe()}" for c in report.conflicts[:20])
    latency = "-" if report.median_latency_ms is None else f"{report.median_latency_ms:.0f} ms"
    lines.append(f"median finality latency {latency}")
    for name, node in report.nodes.items():
        note = f"  {notes[name]}" if notes and name in notes else ""
        if name not in report.checked_nodes:
            note += "  (byzantine: not checked)"
        node_latency = "-" if node.median_latency_ms is None else f"{node.median_latency_ms:.0f} ms"
        timeouts = node.counts.get("round_timeout", 0)
        lines.append(
            f"  {name:<6} height {node.max_height:>5}  median latency {node_latency:>7}  "
            f"round timeouts {timeouts}{note}"
        )
    seen: Counter[str] = Counter()
    for node in report.nodes.values():
        seen.update(node.counts)
    lines.append("events: " + ", ".join(f"{k} {v}" for k, v in sorted(seen.items())))
    if report.penalties:
        lines.append("penalties:")
        lines.extend(f"  {describe_penalty(e)}" for e in report.penalties)
    else:
        lines.append("penalties: none")
    for name, count in sorted(report.malformed.items()):
        lines.append(f"warning: {name}: {count} malformed line(s) skipped")
    return lines
