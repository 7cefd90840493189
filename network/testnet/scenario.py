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

The work is split by job: this module is the model and the strict parser
(pure); `scenario_checks` judges a run from parsed log events (pure, so both
are unit-tested without processes); `scenario_log` is the step log,
DIR/logs/scenario.jsonl; `scenario_run` drives a real testnet: the `up`
supervisor plus a clock that fires the steps, logs each one and, after the
run, evaluates the checks from the node logs alone.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from node.core.behaviours import BEHAVIOURS
from node.core.events import ACCOUNTABILITY_EVENTS
from node.core.fields import FieldReader
from node.core.genesis import validator_names

# Scenarios stay at 64 validators (the limit their tests pin); `up` itself goes to placement.MAX_VALIDATORS.
MAX_VALIDATORS = 64

ACTIONS = ("kill", "restart", "pause", "resume", "partition", "heal", "delay", "drop", "behave")

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
class TimelineStep:
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
    steps: tuple[TimelineStep, ...]
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
        """The same timeline compressed (or stretched) by `factor`: every time, the duration and windows.

        A height floor scales too: at the same slot length, half the time makes half the blocks, so
        an unscaled `min_height` turns a faster run into a throughput test that fails on a loaded machine.
        """
        if factor <= 0:
            raise ScenarioError(f"time scale must be positive, not {factor:g}")
        floor = self.checks.min_height
        checks = replace(
            self.checks,
            stalled_during=tuple((a * factor, b * factor) for a, b in self.checks.stalled_during),
            min_height=None if floor is None else max(1, math.ceil(floor * factor)),
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


def is_int(value: object) -> bool:
    """An int that is not a bool (TOML and JSON both give bools that pass isinstance(int))."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A finite int or float, not a bool: what a time or a rate in a file or a log must be."""
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)  # type: ignore[arg-type]


_read = FieldReader(ScenarioError)


def _number(where: str, value: object, minimum: float = 0.0, strict: bool = False) -> float:
    if not is_number(value):
        raise ScenarioError(f"{where}: expected a number, got {value!r}")
    number = float(value)  # type: ignore[arg-type]
    if number < minimum or (strict and number == minimum):
        raise ScenarioError(f"{where}: must be {'>' if strict else '>='} {minimum:g}, got {number:g}")
    return number


def _integer(where: str, value: object, low: int, high: int | None = None) -> int:
    if not is_int(value):
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
    _read.table(table, where, known)


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


def _parse_step(index: int, raw: object, names: Sequence[str]) -> TimelineStep:
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
    step = TimelineStep(at_s=at_s, action=action)
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


def _check_feasible(steps: Iterable[tuple[int, TimelineStep]], behaviours: Mapping[str, str]) -> None:
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
