"""Scenario files: a timeline of faults for a local testnet, and the checks that judge the run.

A scenario is a TOML file::

    name = "partition-heal"
    validators = 4
    duration_s = 60
    slot_ms = 200                      # optional: genesis pacing for a new --dir
    behaviours = { v4 = "equivocate" } # optional: misbehaving validators from the start

    [[step]]
    at_s = 10
    action = "partition"               # kill | restart | pause | resume | partition | heal | delay | drop | behave
    groups = [["v1", "v2"], ["v3", "v4"]]

    [[step]]
    at_s = 25
    action = "heal"

    [checks]
    safety = true
    resumed_within_rounds = 10
    expect_penalties = [{ event = "slashed", validator = "v4" }]
    stalled_during = [[12, 25]]
    min_height = 5

Parsing is strict: an unknown field, a wrong type, a node that does not
exist or a step that cannot happen (resuming a node that is not paused) is
refused with one line naming the field, before any process starts, because a
typo discovered forty seconds into a run costs forty seconds and proves nothing.

The module has three layers. Parsing and the checks are pure functions (over
dicts and parsed log events), so they are unit-tested without processes.
`ScenarioSupervisor` drives a real testnet: it is the `up` orchestrator
plus a clock that fires the steps, logs each one to DIR/logs/scenario.jsonl
and, after the run, evaluates the checks from the node logs alone.
"""

from __future__ import annotations

import json
import math
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import click

from network.testnet import supervisor as tn
from network.testnet.logcheck import Event, find_conflicts, read_log
from node.core.behaviours import BEHAVIOURS
from node.core.events import ACCOUNTABILITY_EVENTS
from node.core.genesis import GenesisError, Params, load_genesis, validator_names

ACTIONS = ("kill", "restart", "pause", "resume", "partition", "heal", "delay", "drop", "behave")
SCENARIO_LOG = "scenario.jsonl"
MAX_VALIDATORS = 64

# Which fields each action takes (besides at_s and action); all of them are required.
_ACTION_FIELDS: dict[str, tuple[str, ...]] = {
    "kill": ("node",),
    "restart": ("node",),
    "pause": ("node",),
    "resume": ("node",),
    "partition": ("groups",),
    "heal": (),
    "delay": ("node", "ms"),
    "drop": ("node", "rate"),
    "behave": ("node", "mode"),
}
_STEP_FIELDS = ("at_s", "action", "node", "groups", "ms", "rate", "mode")
_TOP_FIELDS = ("name", "description", "validators", "duration_s", "slot_ms", "behaviours", "step", "checks")
_CHECK_FIELDS = ("safety", "resumed_within_rounds", "expect_penalties", "stalled_during", "min_height")


class ScenarioError(ValueError):
    """A scenario that cannot be run; the message is one line naming the field."""


# ------------------------------------------------------------------ model


@dataclass(frozen=True)
class Step:
    """One fault (or its repair) at a time since the start of the run."""

    at_s: float
    action: str
    node: str | None = None
    groups: tuple[tuple[str, ...], ...] | None = None
    ms: int | None = None
    rate: float | None = None
    mode: str | None = None

    @property
    def heals(self) -> bool:
        """Whether this step repairs a fault rather than causing one (the liveness clock starts at the last)."""
        return (
            self.action in ("heal", "restart", "resume")
            or (self.action == "delay" and self.ms == 0)
            or (self.action == "drop" and self.rate == 0)
            or (self.action == "behave" and self.mode == "honest")
        )

    def args(self) -> dict[str, Any]:
        """The action's arguments, as logged and as shown to people."""
        out: dict[str, Any] = {}
        if self.node is not None:
            out["node"] = self.node
        if self.groups is not None:
            out["groups"] = [list(g) for g in self.groups]
        if self.ms is not None:
            out["ms"] = self.ms
        if self.rate is not None:
            out["rate"] = self.rate
        if self.mode is not None:
            out["mode"] = self.mode
        return out

    def describe(self) -> str:
        """E.g. `partition v1,v2 | v3,v4`, `delay v2 200 ms`, `kill v3`."""
        if self.groups is not None:
            return f"{self.action} " + " | ".join(",".join(g) for g in self.groups)
        text = f"{self.action} {self.node}" if self.node else self.action
        if self.ms is not None:
            text += f" {self.ms} ms"
        if self.rate is not None:
            text += f" {self.rate:g}"
        if self.mode is not None:
            text += f" {self.mode}"
        return text


@dataclass(frozen=True)
class PenaltyExpectation:
    event: str
    validator: str


@dataclass(frozen=True)
class Checks:
    """What must hold after the run; None/empty means the check is not asked for."""

    safety: bool = True
    resumed_within_rounds: int | None = None
    expect_penalties: tuple[PenaltyExpectation, ...] = ()
    stalled_during: tuple[tuple[float, float], ...] = ()
    min_height: int | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    validators: int
    duration_s: float
    steps: tuple[Step, ...]
    checks: Checks
    behaviours: Mapping[str, str] = field(default_factory=dict)
    slot_ms: int | None = None
    description: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def names(self) -> list[str]:
        return validator_names(self.validators)

    def byzantine(self) -> set[str]:
        """Validators that misbehave at any time: they make no promises and are not judged."""
        bad = {name for name, mode in self.behaviours.items() if mode != "honest"}
        bad |= {s.node for s in self.steps if s.action == "behave" and s.mode != "honest" and s.node}
        return bad

    def honest(self) -> list[str]:
        bad = self.byzantine()
        return [name for name in self.names if name not in bad]

    def scaled(self, factor: float) -> Scenario:
        """The same timeline compressed (or stretched) by `factor`: every time, the duration and windows."""
        if factor <= 0:
            raise ScenarioError(f"time scale must be positive, not {factor:g}")
        checks = replace(
            self.checks, stalled_during=tuple((a * factor, b * factor) for a, b in self.checks.stalled_during)
        )
        return replace(
            self,
            duration_s=self.duration_s * factor,
            steps=tuple(replace(s, at_s=s.at_s * factor) for s in self.steps),
            checks=checks,
        )

    def actions(self) -> set[str]:
        return {s.action for s in self.steps}


# ------------------------------------------------------------------ parsing


def load_scenario(path: Path | str) -> Scenario:
    """Read and parse a scenario file; ScenarioError names the file and the field."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such file") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse_scenario(raw)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)  # type: ignore[arg-type]


def _number(where: str, value: object, minimum: float = 0.0, strict: bool = False) -> float:
    if not _is_number(value):
        raise ScenarioError(f"{where}: expected a number, got {value!r}")
    number = float(value)  # type: ignore[arg-type]
    if number < minimum or (strict and number == minimum):
        raise ScenarioError(f"{where}: must be {'>' if strict else '>='} {minimum:g}, got {number:g}")
    return number


def _integer(where: str, value: object, low: int, high: int | None = None) -> int:
    if not _is_int(value):
        raise ScenarioError(f"{where}: expected an integer, got {value!r}")
    assert isinstance(value, int)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ScenarioError(f"{where}: must be {bound}, got {value}")
    return value


def _string(where: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ScenarioError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _unknown(where: str, table: Mapping[str, Any], known: Sequence[str]) -> None:
    extra = [key for key in table if key not in known]
    if extra:
        prefix = f"{where}." if where else ""
        raise ScenarioError(f"{prefix}{extra[0]}: unknown field (expected one of {', '.join(known)})")


def _node(where: str, value: object, names: Sequence[str]) -> str:
    name = _string(where, value)
    if name not in names:
        raise ScenarioError(f"{where}: unknown validator {name!r}; this scenario has {names[0]}..{names[-1]}")
    return name


def parse_scenario(raw: Mapping[str, Any]) -> Scenario:
    """A Scenario from a parsed TOML document (pure; every error names its field)."""
    if not isinstance(raw, Mapping):
        raise ScenarioError("expected a table at the top level")
    _unknown("", raw, _TOP_FIELDS)
    if "name" not in raw:
        raise ScenarioError("name: missing (every scenario needs a name)")
    name = _string("name", raw["name"])
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ScenarioError(f"description: expected a string, got {description!r}")
    validators = _integer("validators", raw.get("validators", 4), 1, MAX_VALIDATORS)
    names = validator_names(validators)
    if "duration_s" not in raw:
        raise ScenarioError("duration_s: missing (how long the run lasts, in seconds)")
    duration = _number("duration_s", raw["duration_s"], 0.0, strict=True)
    slot_ms = None if "slot_ms" not in raw else _integer("slot_ms", raw["slot_ms"], 0, 60_000)
    behaviours = _parse_behaviours(raw.get("behaviours", {}), names)
    steps_raw = raw.get("step", [])
    if not isinstance(steps_raw, list):
        raise ScenarioError("step: expected an array of tables ([[step]])")
    steps = [_parse_step(i, s, names) for i, s in enumerate(steps_raw)]
    for i, step in enumerate(steps):
        if step.at_s > duration:
            raise ScenarioError(
                f"step[{i}].at_s: {step.at_s:g} is after the end of the run (duration_s {duration:g})"
            )
    order = sorted(range(len(steps)), key=lambda i: steps[i].at_s)  # stable: equal times keep file order
    _check_feasible([(i, steps[i]) for i in order], behaviours)
    checks = _parse_checks(raw.get("checks", {}), names, duration)
    return Scenario(
        name=name,
        validators=validators,
        duration_s=duration,
        steps=tuple(steps[i] for i in order),
        checks=checks,
        behaviours=behaviours,
        slot_ms=slot_ms,
        description=description,
        raw=dict(raw),
    )


def _parse_behaviours(value: object, names: Sequence[str]) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ScenarioError(f'behaviours: expected a table like {{ v4 = "equivocate" }}, got {value!r}')
    out = {}
    for node, mode in value.items():
        _node(f"behaviours.{node}", node, names)
        if mode not in BEHAVIOURS:
            raise ScenarioError(f"behaviours.{node}: {mode!r} is not one of {', '.join(BEHAVIOURS)}")
        out[node] = mode
    return out


def _parse_step(index: int, raw: object, names: Sequence[str]) -> Step:
    where = f"step[{index}]"
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{where}: expected a table")
    _unknown(where, raw, _STEP_FIELDS)
    if "at_s" not in raw:
        raise ScenarioError(f"{where}.at_s: missing (seconds since the start of the run)")
    at_s = _number(f"{where}.at_s", raw["at_s"])
    if "action" not in raw:
        raise ScenarioError(f"{where}.action: missing (one of {', '.join(ACTIONS)})")
    action = raw["action"]
    if action not in ACTIONS:
        raise ScenarioError(f"{where}.action: {action!r} is not one of {', '.join(ACTIONS)}")
    wanted = _ACTION_FIELDS[action]
    for key in _STEP_FIELDS[2:]:
        if key in raw and key not in wanted:
            raise ScenarioError(
                f"{where}.{key}: not an argument of {action} (it takes {', '.join(wanted) or 'none'})"
            )
        if key not in raw and key in wanted:
            raise ScenarioError(f"{where}.{key}: missing ({action} needs {', '.join(wanted)})")
    step = Step(at_s=at_s, action=action)
    if "node" in raw:
        step = replace(step, node=_node(f"{where}.node", raw["node"], names))
    if "groups" in raw:
        step = replace(step, groups=_parse_groups(f"{where}.groups", raw["groups"], names))
    if "ms" in raw:
        step = replace(step, ms=_integer(f"{where}.ms", raw["ms"], 0, 600_000))
    if "rate" in raw:
        rate = _number(f"{where}.rate", raw["rate"])
        if rate > 1:
            raise ScenarioError(f"{where}.rate: a probability between 0 and 1, got {rate:g}")
        step = replace(step, rate=rate)
    if "mode" in raw:
        mode = raw["mode"]
        if mode not in BEHAVIOURS:
            raise ScenarioError(f"{where}.mode: {mode!r} is not one of {', '.join(BEHAVIOURS)}")
        step = replace(step, mode=mode)
    return step


def _parse_groups(where: str, value: object, names: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise ScenarioError(f'{where}: expected at least two groups, e.g. [["v1","v2"],["v3","v4"]]')
    seen: set[str] = set()
    groups = []
    for i, group in enumerate(value):
        if not isinstance(group, list) or not group:
            raise ScenarioError(f"{where}[{i}]: expected a non-empty list of validator names")
        for j, node in enumerate(group):
            name = _node(f"{where}[{i}][{j}]", node, names)
            if name in seen:
                raise ScenarioError(f"{where}[{i}][{j}]: {name} is in more than one group")
            seen.add(name)
        groups.append(tuple(group))
    return tuple(groups)


def _check_feasible(steps: Iterable[tuple[int, Step]], behaviours: Mapping[str, str]) -> None:
    """Walk the timeline and refuse steps that would fail when run (resume what is not paused, ...)."""
    state: dict[str, str] = {}  # node -> running | paused | killed (absent = running)
    partitioned = False
    for index, step in steps:
        where = f"step[{index}] ({step.describe()} at {step.at_s:g} s)"
        node = step.node or ""
        current = state.get(node, "running")
        if step.action == "kill":
            if current == "killed":
                raise ScenarioError(f"{where}: {node} is already killed")
            state[node] = "killed"
        elif step.action == "restart":
            state[node] = "running"
        elif step.action == "pause":
            if current != "running":
                raise ScenarioError(f"{where}: {node} is {current}, only a running node can be paused")
            state[node] = "paused"
        elif step.action == "resume":
            if current != "paused":
                raise ScenarioError(f"{where}: {node} is {current}, not paused")
            state[node] = "running"
        elif step.action == "partition":
            partitioned = True
        elif step.action == "heal":
            if not partitioned:
                raise ScenarioError(f"{where}: there is no partition to heal")
            partitioned = False


def _parse_checks(value: object, names: Sequence[str], duration: float) -> Checks:
    if not isinstance(value, Mapping):
        raise ScenarioError("checks: expected a table ([checks])")
    _unknown("checks", value, _CHECK_FIELDS)
    safety = value.get("safety", True)
    if not isinstance(safety, bool):
        raise ScenarioError(f"checks.safety: expected true or false, got {safety!r}")
    rounds = value.get("resumed_within_rounds")
    if rounds is not None:
        rounds = _integer("checks.resumed_within_rounds", rounds, 1, 1000)
    min_height = value.get("min_height")
    if min_height is not None:
        min_height = _integer("checks.min_height", min_height, 1)
    penalties_raw = value.get("expect_penalties", [])
    if not isinstance(penalties_raw, list):
        raise ScenarioError(
            'checks.expect_penalties: expected a list like [{ event = "slashed", validator = "v4" }]'
        )
    penalties = []
    for i, item in enumerate(penalties_raw):
        where = f"checks.expect_penalties[{i}]"
        if not isinstance(item, Mapping):
            raise ScenarioError(f'{where}: expected a table like {{ event = "slashed", validator = "v4" }}')
        _unknown(where, item, ("event", "validator"))
        for key in ("event", "validator"):
            if key not in item:
                raise ScenarioError(f"{where}.{key}: missing")
        if item["event"] not in ACCOUNTABILITY_EVENTS:
            raise ScenarioError(
                f"{where}.event: {item['event']!r} is not one of {', '.join(ACCOUNTABILITY_EVENTS)}"
            )
        penalties.append(
            PenaltyExpectation(item["event"], _node(f"{where}.validator", item["validator"], names))
        )
    windows_raw = value.get("stalled_during", [])
    if not isinstance(windows_raw, list):
        raise ScenarioError("checks.stalled_during: expected a list of [start_s, end_s] pairs")
    windows = []
    for i, item in enumerate(windows_raw):
        where = f"checks.stalled_during[{i}]"
        if not isinstance(item, list) or len(item) != 2:
            raise ScenarioError(f"{where}: expected [start_s, end_s], got {item!r}")
        start, end = _number(where, item[0]), _number(where, item[1])
        if end <= start:
            raise ScenarioError(f"{where}: end {end:g} is not after start {start:g}")
        if end > duration:
            raise ScenarioError(f"{where}: end {end:g} is after the end of the run (duration_s {duration:g})")
        windows.append((start, end))
    return Checks(
        safety=safety,
        resumed_within_rounds=rounds,
        expect_penalties=tuple(penalties),
        stalled_during=tuple(windows),
        min_height=min_height,
    )


def down_at_end(scenario: Scenario) -> set[str]:
    """Nodes the timeline leaves killed or paused: not expected to make progress at the end."""
    state: dict[str, str] = {}
    for step in scenario.steps:
        if step.action in ("kill", "restart", "pause", "resume") and step.node:
            state[step.node] = {"kill": "down", "pause": "down"}.get(step.action, "up")
    return {node for node, s in state.items() if s == "down"}


# ------------------------------------------------------------------ checks (pure)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"  {'PASS' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def recovery_bound_s(params: Params, rounds: int) -> float:
    """R rounds' worth of timeouts (each round's propose+prevote+precommit, growing per round) plus one slot.

    This is how long a height can take when R rounds in a row fail: the
    liveness promise "finality resumes within R rounds" in seconds.
    """
    return (params.commit_wait_ms + params.failed_rounds_ms(rounds)) / 1000


def _finalized(events: Iterable[Event]) -> list[Event]:
    return [
        e
        for e in events
        if e.get("event") == "finalized" and _is_int(e.get("height")) and _is_number(e.get("ts"))
    ]


def last_recovery_ts(timeline: Sequence[Event], t0: float) -> tuple[float, str]:
    """When the liveness clock starts: the last heal, else the last fault, else the start; and why."""
    for kind in ("heal", "fault"):
        steps = [e for e in timeline if e.get("event") == kind and _is_number(e.get("ts"))]
        if steps:
            last = steps[-1]
            return float(last["ts"]), f"the last {kind} ({last.get('action')} at {last['ts'] - t0:.1f} s)"
    return t0, "the start"


def check_safety(logs: Mapping[str, list[Event]], honest: Sequence[str]) -> CheckResult:
    conflicts = find_conflicts({n: logs.get(n, []) for n in honest})
    if conflicts:
        return CheckResult(
            "safety", False, f"{len(conflicts)} height(s) with different blocks: {conflicts[0].describe()}"
        )
    heights = [max((e["height"] for e in _finalized(logs.get(n, []))), default=0) for n in honest]
    return CheckResult(
        "safety",
        True,
        f"no conflicting finalized blocks across {len(honest)} honest node(s) (heights {min(heights, default=0)}"
        f"..{max(heights, default=0)})",
    )


def recovery_times(
    logs: Mapping[str, list[Event]], nodes: Iterable[str], since: float
) -> dict[str, float | None]:
    """Per node, seconds from `since` to its first finalized height above the one it held then (None: never)."""
    out: dict[str, float | None] = {}
    for node in nodes:
        finalized = _finalized(logs.get(node, []))
        before = max((e["height"] for e in finalized if e["ts"] <= since), default=0)
        after = [e["ts"] - since for e in finalized if e["ts"] > since and e["height"] > before]
        out[node] = min(after) if after else None
    return out


def check_resumed(
    logs: Mapping[str, list[Event]],
    nodes: Sequence[str],
    timeline: Sequence[Event],
    t0: float,
    end_ts: float,
    params: Params,
    rounds: int,
) -> CheckResult:
    """Every node in `nodes` finalizes a height above the one it had at the last heal, within the bound."""
    name = f"resumed_within_rounds {rounds}"
    since, why = last_recovery_ts(timeline, t0)
    bound = recovery_bound_s(params, rounds)
    times = recovery_times(logs, nodes, since)
    took = {node: t for node, t in times.items() if t is not None and t <= bound}
    missing = [node for node in nodes if node not in took]
    if not nodes:
        return CheckResult(name, False, "no running honest node to judge")
    if missing:
        window = min(bound, max(0.0, end_ts - since))
        return CheckResult(
            name,
            False,
            f"{', '.join(missing)} finalized no new height within {window:.1f} s of {why} "
            f"(bound {bound:.1f} s{'; the run ended first' if end_ts - since < bound else ''})",
        )
    slowest = max(took, key=lambda n: took[n])
    return CheckResult(
        name,
        True,
        f"{len(nodes)} running honest node(s) finalized again after {why}, slowest {slowest} in "
        f"{took[slowest]:.1f} s (bound {bound:.1f} s)",
    )


def check_penalty(
    logs: Mapping[str, list[Event]], nodes: Sequence[str], expected: PenaltyExpectation
) -> CheckResult:
    """The penalty is in the log of every node in `nodes` (each honest node applies the same block)."""
    name = f"expect_penalties {expected.event} {expected.validator}"
    missing = [
        node
        for node in nodes
        if not any(
            e.get("event") == expected.event and e.get("validator") == expected.validator
            for e in logs.get(node, [])
        )
    ]
    if not nodes:
        return CheckResult(name, False, "no running honest node to judge")
    if missing:
        return CheckResult(name, False, f"missing from the log of {', '.join(missing)}")
    heights = sorted(
        {
            e.get("height")
            for node in nodes
            for e in logs.get(node, [])
            if e.get("event") == expected.event and e.get("validator") == expected.validator
        },
        key=str,
    )
    return CheckResult(
        name, True, f"in the log of all {len(nodes)} running honest node(s), at height {heights[0]}"
    )


def check_stalled(
    logs: Mapping[str, list[Event]], honest: Sequence[str], t0: float, window: tuple[float, float]
) -> CheckResult:
    """No honest node finalizes a height above the highest one finalized before the window, inside it."""
    start, end = t0 + window[0], t0 + window[1]
    name = f"stalled_during {window[0]:g}-{window[1]:g} s"
    finalized = {node: _finalized(logs.get(node, [])) for node in honest}
    top = max((e["height"] for events in finalized.values() for e in events if e["ts"] < start), default=0)
    new = sorted(
        (
            (e["ts"], node, e["height"])
            for node, events in finalized.items()
            for e in events
            if start <= e["ts"] <= end and e["height"] > top
        ),
    )
    if new:
        ts, node, height = new[0]
        return CheckResult(
            name,
            False,
            f"{node} finalized height {height} at {ts - t0:.1f} s (height was {top} before the window)",
        )
    return CheckResult(name, True, f"no new height finalized (stuck at {top})")


def check_min_height(logs: Mapping[str, list[Event]], nodes: Sequence[str], minimum: int) -> CheckResult:
    heights = {node: max((e["height"] for e in _finalized(logs.get(node, []))), default=0) for node in nodes}
    low = sorted(node for node, h in heights.items() if h < minimum)
    if not nodes:
        return CheckResult(f"min_height {minimum}", False, "no running honest node to judge")
    if low:
        return CheckResult(
            f"min_height {minimum}", False, ", ".join(f"{n} reached only {heights[n]}" for n in low)
        )
    return CheckResult(
        f"min_height {minimum}", True, f"lowest running honest node at {min(heights.values())}"
    )


def evaluate(
    scenario: Scenario,
    logs: Mapping[str, list[Event]],
    timeline: Sequence[Event],
    t0: float,
    end_ts: float,
    params: Params,
    running: Iterable[str] | None = None,
) -> list[CheckResult]:
    """Every check the scenario asks for, from the node logs and the step log of this run.

    `logs` should hold only this run's events (the safety check is the
    exception worth making over the whole history, and the caller may pass
    it that way). `running` names the nodes alive at the end; progress and
    penalties are demanded of the honest ones among them, since a node the
    scenario left killed can neither finalize nor apply a slash.
    """
    honest = scenario.honest()
    alive = set(scenario.names if running is None else running) - down_at_end(scenario)
    judged = [n for n in honest if n in alive]
    results = []
    failed_steps = [e for e in timeline if e.get("event") == "step_failed"]
    if scenario.steps:
        if failed_steps:
            first = failed_steps[0]
            results.append(
                CheckResult(
                    "steps",
                    False,
                    f"{len(failed_steps)} step(s) failed, first {first.get('action')}: {first.get('error')}",
                )
            )
        else:
            done = sum(1 for e in timeline if e.get("event") in ("fault", "heal"))
            ok = done == len(scenario.steps)
            results.append(CheckResult("steps", ok, f"{done} of {len(scenario.steps)} step(s) ran"))
    checks = scenario.checks
    if checks.safety:
        results.append(check_safety(logs, honest))
    for window in checks.stalled_during:
        results.append(check_stalled(logs, honest, t0, window))
    if checks.resumed_within_rounds is not None:
        results.append(
            check_resumed(logs, judged, timeline, t0, end_ts, params, checks.resumed_within_rounds)
        )
    for expected in checks.expect_penalties:
        results.append(check_penalty(logs, judged, expected))
    if checks.min_height is not None:
        results.append(check_min_height(logs, judged, checks.min_height))
    return results


def since(events: Iterable[Event], start_ts: float) -> list[Event]:
    """The events of one run: a testnet directory's logs are appended across runs."""
    return [e for e in events if _is_number(e.get("ts")) and e["ts"] >= start_ts]


# ------------------------------------------------------------------ step log


def read_timeline(path: Path) -> list[Event]:
    """The step log of the *last* scenario run in a directory (it is appended across runs)."""
    events = read_log(path).events
    starts = [i for i, e in enumerate(events) if e.get("event") == "scenario_started"]
    return events[starts[-1] :] if starts else events


def step_event(step: Step, ts: float, scenario: str) -> Event:
    """The line logged for a step that ran: `fault` for a fault, `heal` for a repair."""
    return {
        "event": "heal" if step.heals else "fault",
        "ts": round(ts, 6),
        "action": step.action,
        **step.args(),
        "at_s": round(step.at_s, 3),
        "scenario": scenario,
    }


# ------------------------------------------------------------------ running


def run_step(layout: tn.Layout, step: Step) -> None:
    """Apply one step to the running testnet (TestnetError when it cannot)."""
    node = step.node or ""
    if step.action == "kill":
        tn.kill_node(layout, node)
    elif step.action == "restart":
        tn.restart_node(layout, node)
    elif step.action == "pause":
        tn.pause_node(layout, node)
    elif step.action == "resume":
        tn.resume_node(layout, node)
    elif step.action == "partition":
        assert step.groups is not None
        tn.partition(layout, [list(g) for g in step.groups])
    elif step.action == "heal":
        tn.heal(layout)
    elif step.action == "delay":
        assert step.ms is not None
        tn.delay(layout, node, step.ms)
    elif step.action == "drop":
        assert step.rate is not None
        tn.drop(layout, node, step.rate)
    elif step.action == "behave":
        assert step.mode is not None
        tn.behave(layout, node, step.mode)


def apply_to_config(
    config: tn.UpConfig, scenario: Scenario, explicit: Iterable[str], time_scale: float
) -> tuple[tn.UpConfig, Scenario]:
    """The `up` configuration and the scenario to run: the file's settings, except options given on the command line.

    `--validators` and `--behaviour` change what the scenario means (which
    names exist, who is judged as honest), so the scenario is parsed again
    with them: a step naming a validator that no longer exists is refused
    here, and a validator made Byzantine on the command line is not judged.
    """
    given = set(explicit)
    raw = dict(scenario.raw)
    if "validators" in given:
        raw["validators"] = config.validators
    behaviours = {**scenario.behaviours, **config.behaviours}
    if behaviours:
        raw["behaviours"] = behaviours
    if raw != scenario.raw:
        try:
            scenario = parse_scenario(raw)
        except ScenarioError as exc:
            raise ScenarioError(f"{exc} (with --validators/--behaviour from the command line)") from None
    merged = replace(
        config,
        validators=scenario.validators,
        duration=config.duration if "duration" in given else scenario.duration_s * time_scale,
        slot_ms=config.slot_ms if config.slot_ms is not None else scenario.slot_ms,
        behaviours=dict(scenario.behaviours),
    )
    return merged, scenario


class ScenarioSupervisor(tn.Supervisor):
    """`up` plus a timeline: fires the scenario's steps at their times, then judges the run.

    It hooks the orchestrator's poll loop (every 0.25 s) rather than running
    a thread, so steps and process supervision never race: a kill is
    recorded in testnet.json before the loop looks for dead nodes again.
    """

    def __init__(
        self, config: tn.UpConfig, scenario: Scenario, time_scale: float = 1.0, echo: tn.Echo = click.echo
    ) -> None:
        super().__init__(config, echo)
        self.scenario = scenario
        self.timeline_scenario = scenario.scaled(time_scale)
        self.time_scale = time_scale
        self.pending = list(self.timeline_scenario.steps)
        self.timeline: list[Event] = []
        self.run_start_ts = 0.0
        self.t0: float | None = None
        self.t0_mono = 0.0
        self.results: list[CheckResult] = []

    @property
    def step_log(self) -> Path:
        return self.layout.logs / SCENARIO_LOG

    def _log(self, event: Event) -> None:
        self.timeline.append(event)
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        with open(self.step_log, "a", encoding="utf-8") as out:
            out.write(json.dumps(event, separators=(",", ":")) + "\n")

    def run(self) -> int:
        relayed = sorted(self.scenario.actions() & {"partition", "heal", "delay", "drop"})
        if relayed and not self.config.netfaults:
            raise tn.TestnetError(
                f"scenario {self.scenario.name!r} uses {', '.join(relayed)}, which needs the fault relay: "
                "drop --no-netfaults"
            )
        self.run_start_ts = time.time()
        code = super().run()
        return self._verdict(code)

    def _start(self) -> None:
        super()._start()
        self.t0, self.t0_mono = time.time(), time.monotonic()
        scale = f", time scale {self.time_scale:g}" if self.time_scale != 1 else ""
        self._log(
            {
                "event": "scenario_started",
                "ts": round(self.t0, 6),
                "name": self.scenario.name,
                "time_scale": self.time_scale,
                "run_start_ts": round(self.run_start_ts, 6),
                "spec": _jsonable(self.scenario.raw),
            }
        )
        self.echo(
            f"scenario {self.scenario.name}: {len(self.pending)} step(s) over {self.config.duration:g} s{scale}"
        )

    def _check_processes(self) -> None:
        super()._check_processes()
        self._fire_due_steps()

    def _fire_due_steps(self) -> None:
        if self.t0 is None:
            return
        elapsed = time.monotonic() - self.t0_mono
        while self.pending and self.pending[0].at_s <= elapsed and not self.signals:
            step = self.pending.pop(0)
            self.echo(click.style(f"== scenario {elapsed:6.1f} s: {step.describe()}", fg="cyan", bold=True))
            ts = time.time()
            try:
                run_step(self.layout, step)
            except tn.TestnetError as exc:
                self._log(
                    {**step_event(step, ts, self.scenario.name), "event": "step_failed", "error": str(exc)}
                )
                self.echo(
                    click.style(f"!! scenario step {step.describe()} failed: {exc}", fg="red", bold=True)
                )
            else:
                self._log(step_event(step, ts, self.scenario.name))
            elapsed = time.monotonic() - self.t0_mono

    def _verdict(self, code: int) -> int:
        """Evaluate the checks from the logs, print them, and fold them into the exit code."""
        if self.t0 is None or self.state is None:
            return code or 1
        end_ts = time.time()
        self._log({"event": "scenario_finished", "ts": round(end_ts, 6), "name": self.scenario.name})
        try:
            params = load_genesis(self.layout.genesis).params
        except GenesisError:
            params = Params()
        full = {name: read_log(self.layout.log(name)).events for name in self.state.nodes}
        this_run = {name: since(events, self.run_start_ts) for name, events in full.items()}
        running = [n.name for n in self.state.nodes.values() if n.status not in (tn.KILLED, tn.DIED)]
        self.results = evaluate(
            self.timeline_scenario, this_run, self.timeline, self.t0, end_ts, params, running
        )
        # safety over the whole history: the chain continues across runs of one directory
        self.results = [
            check_safety(full, self.timeline_scenario.honest()) if r.name == "safety" else r
            for r in self.results
        ]
        ok = all(r.ok for r in self.results)
        self.echo(f"scenario {self.scenario.name}: {len(self.results)} check(s)")
        for result in self.results:
            self.echo(click.style(result.line(), fg="green" if result.ok else "red"))
        self.echo(click.style(f"verdict: {'PASS' if ok else 'FAIL'}", fg="green" if ok else "red", bold=True))
        for result in self.results:
            self._log(
                {
                    "event": "check",
                    "ts": round(end_ts, 6),
                    "name": result.name,
                    "ok": result.ok,
                    "detail": result.detail,
                }
            )
        return code if ok else 1


def _jsonable(value: Any) -> Any:
    """TOML values as JSON (dates become strings): the scenario is recorded with its run."""
    return json.loads(json.dumps(value, default=str))


def run_scenario(
    config: tn.UpConfig, scenario: Scenario, time_scale: float = 1.0, echo: tn.Echo = click.echo
) -> int:
    """`posnet testnet up --scenario`: the exit code (1 when the testnet or any check failed)."""
    return ScenarioSupervisor(config, scenario, time_scale, echo).run()
