"""Where the view's events come from: a trace file read once, or a testnet directory followed as it grows.

A file is a finished run, so it is parsed once and served from memory. A
testnet directory is read through `network.testnet.tracefile` (the same
merge `posnet testnet trace` prints); its logs keep growing while the
testnet runs, so the source re-reads them when their sizes change and
keeps its event list append-only: the page asks for "everything from
index N on" and must never see an index it already holds change under it.
A line that appears out of time order (one node's log flushed late) is
appended at the end rather than inserted.

A testnet's faults are not in its nodes' logs (a killed node logs nothing,
a partition happens in the relay): they are the steps of DIR/logs/scenario.jsonl,
a scenario's or those run by hand, read by the report's own reading
(`report.read_steps`, `report.fault_windows`) and put on the trace's clock,
so the view and the PNG can never disagree about when a fault was.

"Live" means the `up` that owns the testnet still runs (its pid and command
line in testnet.json, checked as `testnet down` checks them). Neither
alternative says it reliably: nodes log `stopped` on a clean stop but
nothing when killed, and a quiet log is what a stalled but running testnet
looks like, the moment a live view matters most.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

from network.testnet.errors import TestnetError
from network.testnet.layout import Layout, TestnetState, read_state
from network.testnet.processes import process_state
from network.testnet.report import FaultSpan, fault_windows, read_steps
from network.testnet.tracefile import testnet_trace
from network.view.model import Event, Trace, TraceError, has_steps, parse_trace, round_marks, summary
from node.core.genesis import GenesisError, load_genesis


class Source(Protocol):
    """What the server needs: a name, the header's summary, and the events from an index on."""

    name: str
    live: bool

    def summary(self) -> dict[str, Any]: ...

    def since(self, index: int) -> tuple[list[Event], list[dict[str, int]], int]:
        """(events from `index` on, round marks at or after `index`, total events)."""
        ...


class FileSource:
    """A trace file (`posnet sim --trace`, `posnet testnet trace --out`), parsed once."""

    live = False

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise TraceError(f"{path}: not a trace: not UTF-8 text") from None
        except OSError as exc:
            raise TraceError(f"{path}: cannot read ({exc.strerror or exc})") from None
        self.trace: Trace = parse_trace(text, str(path))
        self._summary = summary(self.trace.header)
        self._marks = round_marks(self.trace.events, self._summary["steps"])

    def summary(self) -> dict[str, Any]:
        return self._summary

    def since(self, index: int) -> tuple[list[Event], list[dict[str, int]], int]:
        events = self.trace.events
        return events[index:], [m for m in self._marks if m["i"] >= index], len(events)


def window_of(span: FaultSpan, t0_ts: float) -> dict[str, Any]:
    """A fault window in the page's shape, its times in ms on the trace's clock (end None: still in force)."""

    def ms(ts: float) -> int:
        return round((ts - t0_ts) * 1000)

    return {
        "kind": span.kind,
        "label": span.label,
        "start": ms(span.start),
        "end": None if span.end is None else ms(span.end),
        "node": span.node,
        "groups": [list(g) for g in span.groups] if span.groups else None,
    }


class TestnetSource:
    """A testnet directory's logs as a trace that grows while the testnet runs."""

    __test__ = False  # not a pytest class, whatever its name

    def __init__(self, directory: Path) -> None:
        self.name = str(directory)
        self.layout = Layout.of(directory)
        try:
            self.genesis = load_genesis(self.layout.genesis)
        except (GenesisError, OSError) as exc:
            raise TraceError(f"{directory} is not a testnet directory: {exc}") from None
        self._lock = threading.Lock()
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self._events: list[Event] = []
        self._seen: Counter[str] = Counter()
        header = next(testnet_trace(self.layout, self.genesis))
        self._summary = summary(header)
        self._steps = has_steps(header)
        self._marks: list[dict[str, int]] = []
        self._t0_ts: float | None = header.get("t0_ts")

    def _state(self) -> TestnetState | None:
        try:
            return read_state(self.layout)
        except TestnetError:
            return None

    @property
    def live(self) -> bool:
        """Whether the `up` that owns this testnet still runs (see the module's docstring for why that)."""
        state = self._state()
        return state is not None and process_state(state.supervisor_pid, state.supervisor_command) != "dead"

    def windows(self) -> list[dict[str, Any]]:
        """The last run's fault windows, from the step log as the report reads it, on the trace's clock."""
        if self._t0_ts is None:
            return []
        steps = read_steps(self.layout, self._state())
        return [window_of(span, self._t0_ts) for span in fault_windows(steps.timeline, 0.0)]

    def summary(self) -> dict[str, Any]:
        """The header's summary with the fault windows as they stand now (a fault may open or heal any time)."""
        self.refresh()
        windows = self.windows()
        partitions = [
            {"start": w["start"], "end": w["end"], "groups": w["groups"]}
            for w in windows
            if w["kind"] == "partition" and w["groups"]
        ]
        return {**self._summary, "windows": windows, "partitions": partitions}

    def _logs_signature(self) -> tuple[tuple[str, int, int], ...]:
        files = sorted(self.layout.logs.glob("*.jsonl")) if self.layout.logs.is_dir() else []
        stats = []
        for path in files:
            try:
                stat = path.stat()
            except OSError:
                continue
            stats.append((path.name, stat.st_size, stat.st_mtime_ns))
        return tuple(stats)

    def refresh(self) -> None:
        """Re-read the logs when any changed, appending the events not held yet."""
        with self._lock:
            signature = self._logs_signature()
            if signature == self._signature:
                return
            self._signature = signature
            fresh = Counter[str]()
            lines = testnet_trace(self.layout, self.genesis)
            # the header comes from the genesis, which does not change; its t0 once a log has a line
            header = next(lines)
            if self._t0_ts is None:
                self._t0_ts = header.get("t0_ts")
            for event in lines:
                key = json.dumps(event, sort_keys=True)
                fresh[key] += 1
                if fresh[key] > self._seen[key]:
                    self._seen[key] += 1
                    self._events.append(event)
            self._marks = round_marks(self._events, self._steps)

    def since(self, index: int) -> tuple[list[Event], list[dict[str, int]], int]:
        self.refresh()
        with self._lock:
            return (
                self._events[index:],
                [m for m in self._marks if m["i"] >= index],
                len(self._events),
            )


def open_source(path: Path) -> FileSource | TestnetSource:
    """A file is a trace; a directory is a testnet. Either raises TraceError naming what is wrong."""
    if path.is_dir():
        return TestnetSource(path)
    if not path.exists():
        raise TraceError(f"{path}: no such file or directory")
    return FileSource(path)
