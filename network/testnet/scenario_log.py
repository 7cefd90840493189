"""The step log, DIR/logs/scenario.jsonl: what a scenario (or a fault command run by hand) did, and when.

One JSON line per event: `scenario_started` (with the scenario's spec), a
`fault` or `heal` per step that ran, `step_failed`, `scenario_finished` and
a `check` per verdict. It is appended across runs of one directory; the
report and `watch` read it back to shade faults and follow progress.
"""

from __future__ import annotations

import json
from pathlib import Path

from network.testnet.logcheck import Event, read_log
from network.testnet.scenario import TimelineStep

SCENARIO_LOG = "scenario.jsonl"


def read_timeline(path: Path) -> list[Event]:
    """The step log of the *last* scenario run in a directory (it is appended across runs)."""
    events = read_log(path).events
    starts = [i for i, e in enumerate(events) if e.get("event") == "scenario_started"]
    return events[starts[-1] :] if starts else events


def step_event(step: TimelineStep, ts: float, scenario: str) -> Event:
    """The line logged for a step that ran: `fault` for a fault, `heal` for a repair."""
    return {
        "event": "heal" if step.heals else "fault",
        "ts": round(ts, 6),
        "action": step.action,
        **step.args(),
        "at_s": round(step.at_s, 3),
        "scenario": scenario,
    }


def append_event(path: Path, event: Event) -> None:
    """Add one compact JSON line to the step log at `path` (its directory must exist)."""
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(event, separators=(",", ":")) + "\n")
