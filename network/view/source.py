"""Where the view's events come from: a trace file read once, or a testnet directory followed as it grows.

A file is a finished run, so it is parsed once and served from memory. A
testnet directory is read through `network.testnet.tracefile` (the same
merge `posnet testnet trace` prints); its logs keep growing while the
testnet runs, so the source re-reads them when their sizes change and
keeps its event list append-only: the page asks for "everything from
index N on" and must never see an index it already holds change under it.
A line that appears out of time order (one node's log flushed late) is
appended at the end rather than inserted.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

from network.testnet.layout import Layout
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


class TestnetSource:
    """A testnet directory's logs as a trace that grows while the testnet runs."""

    __test__ = False  # not a pytest class, whatever its name
    live = True

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

    def summary(self) -> dict[str, Any]:
        return self._summary

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
            next(lines)  # the header: it comes from the genesis, which does not change
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
