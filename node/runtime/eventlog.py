"""A node's event log: JSON lines for machines, one colored line per event for people.

Every event is one JSON object on one line with at least ``event``, ``node``
and ``ts`` (unix time in seconds, a float) plus the fields the driver or the
runtime attached (a ``finalized`` event has ``height, round, hash, proposer,
latency_ms``). One object per line keeps the files greppable, appendable by a
process killed at any instant (readers such as `network.testnet.logcheck` skip a
torn last line), and mergeable across nodes by ``ts``.

Lines are flushed as they are written, not fsynced: the log is an
observation of the run, while durability lives in the store (a finalized
block reaches the store before its event is logged).

:func:`format_pretty` renders an event as one readable line for terminals
(``posnet testnet up`` streams every node through it); color is used only
when the output stream is a TTY.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from node.core.events import FINALIZED, LEDGER_PENALTIES, ROUND_TIMEOUT, SYNCED

RESET = "\x1b[0m"
COLORS = {
    FINALIZED: "\x1b[32m",  # green
    ROUND_TIMEOUT: "\x1b[33m",  # yellow
    "jailed": "\x1b[33m",
    "unjailed": "\x1b[36m",  # cyan
    "evidence": "\x1b[35m",  # magenta
    "slashed": "\x1b[31m",  # red
    "tombstoned": "\x1b[1;31m",  # bold red
    "broker_disconnected": "\x1b[31m",
    "error": "\x1b[1;31m",
    "fatal": "\x1b[1;31m",
    "started": "\x1b[36m",
    "stopped": "\x1b[36m",
    SYNCED: "\x1b[34m",  # blue
    "broker_connected": "\x1b[34m",
}
DIM = "\x1b[2m"
_STANDARD = ("event", "node", "ts")


def make_event(node: str, fields: Mapping[str, Any], ts: float | None = None) -> dict[str, Any]:
    """The logged object: ``event, node, ts`` first, then the other fields in their order."""
    event = {"event": fields["event"], "node": node, "ts": round(time.time() if ts is None else ts, 6)}
    event.update((key, value) for key, value in fields.items() if key not in _STANDARD)
    return event


def to_json_line(event: Mapping[str, Any]) -> str:
    """One compact JSON line (bytes and other oddities become strings rather than crash a node)."""
    return json.dumps(event, separators=(",", ":"), default=_jsonable) + "\n"


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class EventLog:
    """Writes one node's events: JSON lines to a file, or to a stream (pretty when it is a TTY).

    With ``path`` the file gets JSON lines (appended, so a restarted node
    continues its own log). Without it, events go to ``stream`` (stdout by
    default): pretty colored lines when the stream is a terminal, JSON lines
    otherwise, so piping a node into ``jq`` works.
    """

    def __init__(self, node: str, path: Path | None = None, stream: IO[str] | None = None) -> None:
        self.node = node
        self.path = path
        self._file: IO[str] | None = None
        self._stream: IO[str] | None = None
        self._pretty = False
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the node
        else:
            self._stream = stream if stream is not None else sys.stdout
            self._pretty = _is_tty(self._stream)

    def emit(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Log one event (``fields`` must have ``event``); returns the object written."""
        event = make_event(self.node, fields)
        if self._file is not None:
            self._file.write(to_json_line(event))
            self._file.flush()
        elif self._stream is not None:
            line = format_pretty(event, color=True) + "\n" if self._pretty else to_json_line(event)
            self._stream.write(line)
            self._stream.flush()
        return event

    def close(self) -> None:
        """Close the log file (idempotent); a stream we were given is left open."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _is_tty(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed stream
        return False


def format_pretty(event: Mapping[str, Any], color: bool = False) -> str:
    """One readable line for an event, e.g. ``12:00:01.234 v1  finalized  h=12 r=0 3fa2c1d0 by v3 41ms``.

    ``color`` adds ANSI colors by event kind; callers pass ``stream.isatty()``
    (see :func:`pretty_stream_color`) so files and pipes stay plain.
    """
    kind = str(event.get("event", "?"))
    ts = event.get("ts")
    clock = (
        time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}" if ts else "--:--:--"
    )
    node = str(event.get("node", "?"))
    detail = _detail(kind, event)
    label = f"{kind:<12}"
    if color:
        clock = f"{DIM}{clock}{RESET}"
        tint = COLORS.get(kind)
        if tint:
            label = f"{tint}{label}{RESET}"
    return f"{clock} {node:<6} {label} {detail}".rstrip()


def pretty_stream_color(stream: IO[str]) -> bool:
    """Whether :func:`format_pretty` output to ``stream`` should be colored."""
    return _is_tty(stream)


def _detail(kind: str, event: Mapping[str, Any]) -> str:
    """The kind-specific part of a pretty line; unknown kinds show their extra fields as k=v."""
    get = event.get
    if kind == FINALIZED:
        via = " (sync)" if get("via_sync") else ""
        return (
            f"h={get('height')} r={get('round')} {str(get('hash', ''))[:8]} by {get('proposer')} "
            f"{get('latency_ms')}ms{via}"
        )
    if kind == ROUND_TIMEOUT:
        return f"h={get('height')} r={get('round')} in {get('step')}"
    if kind == "evidence":
        return f"h={get('height')} against {get('offender')}"
    if kind in LEDGER_PENALTIES:
        amount = f" -{get('amount')}" if get("amount") else ""
        reason = f" ({get('reason')})" if get("reason") else ""
        return f"{get('validator')} at h={get('height')}{amount}{reason}"
    if kind == SYNCED:
        return f"h={get('from_height')}..{get('to_height')} ({get('blocks')} blocks from peers)"
    rest = {k: v for k, v in event.items() if k not in _STANDARD}
    return " ".join(f"{k}={v}" for k, v in rest.items())
