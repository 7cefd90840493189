"""The checks of a scenario: whether a run kept its promises, judged from the node logs and the step log.

Pure functions over parsed log events (no processes, no files), so each check
is unit-tested on hand-written events; `scenario_run` and the report feed
them a real run's logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from network.testnet.logcheck import Event, find_conflicts
from network.testnet.placement import host_of
from network.testnet.scenario import PenaltyExpectation, Scenario, down_at_end, is_int, is_number
from node.core.genesis import Params


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
        if e.get("event") == "finalized" and is_int(e.get("height")) and is_number(e.get("ts"))
    ]


def last_recovery_ts(timeline: Sequence[Event], t0: float) -> tuple[float, str]:
    """When the liveness clock starts: the last heal, else the last fault, else the start; and why."""
    for kind in ("heal", "fault"):
        steps = [e for e in timeline if e.get("event") == kind and is_number(e.get("ts"))]
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
    return [e for e in events if is_number(e.get("ts")) and e["ts"] >= start_ts]


def in_validator_terms(
    scenario: Scenario,
    logs: Mapping[str, list[Event]],
    running: Iterable[str] | None,
    hosts: Mapping[str, Sequence[str]],
) -> tuple[Scenario, dict[str, list[Event]], list[str] | None]:
    """A run of processes hosting several validators each, as the scenario (written in validators) reads it.

    Each validator is judged by its process's log (a process logs the one
    chain all its keys follow); a validator runs while its process runs; and
    a validator sharing a process with a Byzantine one is Byzantine too (the
    process runs all its keys one way), so it is not judged as honest. With
    one process per validator this changes nothing.
    """
    if all(list(validators) == [process] for process, validators in hosts.items()):
        return scenario, dict(logs), None if running is None else list(running)
    by_validator = {v: logs.get(process, []) for process, vs in hosts.items() for v in vs}
    alive = None if running is None else [v for p in running for v in hosts.get(p, [p])]
    behaviours = dict(scenario.behaviours)
    for bad in scenario.byzantine():
        process = host_of(hosts, bad)
        mode = scenario.behaviours.get(bad) or next(
            (s.mode for s in scenario.steps if s.action == "behave" and s.node == bad and s.mode), "silent"
        )
        for validator in hosts.get(process, []) if process else []:
            behaviours.setdefault(validator, mode)
    return replace(scenario, behaviours=behaviours), by_validator, alive
