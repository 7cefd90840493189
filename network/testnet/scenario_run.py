"""Running a scenario on a real testnet: `up` plus a clock that fires the steps, then the verdict.

`ScenarioRun` is the supervisor's `RunHooks`: the supervisor calls it once
every process is up (the clock starts) and at each poll (due steps fire),
so steps and process supervision never race. Each step is logged to the step
log; after the run the checks are evaluated from the node logs alone and
folded into the exit code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from network.testnet import ansi, perturb
from network.testnet.ansi import Echo, style
from network.testnet.errors import TestnetError
from network.testnet.layout import DIED, KILLED, Layout
from network.testnet.logcheck import Event, read_log
from network.testnet.placement import hosted_note
from network.testnet.scenario import Scenario, ScenarioError, TimelineStep, parse_scenario
from network.testnet.scenario_checks import CheckResult, check_safety, evaluate, in_validator_terms, since
from network.testnet.scenario_log import SCENARIO_LOG, append_event, step_event
from network.testnet.supervisor import RunHooks, Supervisor, UpConfig
from node.core.genesis import GenesisError, Params, load_genesis


def run_step(layout: Layout, step: TimelineStep) -> None:
    """Apply one step to the running testnet (TestnetError when it cannot)."""
    node = step.node or ""
    if step.action == "kill":
        perturb.kill_node(layout, node)
    elif step.action == "restart":
        perturb.restart_node(layout, node)
    elif step.action == "pause":
        perturb.pause_node(layout, node)
    elif step.action == "resume":
        perturb.resume_node(layout, node)
    elif step.action == "partition":
        assert step.groups is not None
        perturb.partition(layout, [list(g) for g in step.groups])
    elif step.action == "heal":
        perturb.heal(layout)
    elif step.action == "delay":
        assert step.ms is not None
        perturb.delay(layout, node, step.ms)
    elif step.action == "drop":
        assert step.rate is not None
        perturb.drop(layout, node, step.rate)
    elif step.action == "behave":
        assert step.mode is not None
        perturb.behave(layout, node, step.mode)


def apply_to_config(
    config: UpConfig, scenario: Scenario, explicit: Iterable[str], time_scale: float
) -> tuple[UpConfig, Scenario]:
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


class ScenarioRun(RunHooks):
    """`up` plus a timeline: fires the scenario's steps at their times, then judges the run.

    It hooks the supervisor's poll loop (every 0.25 s) rather than running
    a thread, so steps and process supervision never race: a kill is
    recorded in testnet.json before the loop looks for dead nodes again.
    """

    def __init__(
        self, config: UpConfig, scenario: Scenario, time_scale: float = 1.0, echo: Echo = ansi.echo
    ) -> None:
        self.supervisor = Supervisor(config, echo, hooks=self)
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
    def layout(self) -> Layout:
        return self.supervisor.layout

    @property
    def step_log(self) -> Path:
        return self.layout.logs / SCENARIO_LOG

    def _log(self, event: Event) -> None:
        self.timeline.append(event)
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        append_event(self.step_log, event)

    def run(self) -> int:
        """Run the testnet with the timeline, then the checks; the exit code (1 when anything failed)."""
        relayed = sorted(self.scenario.actions() & {"partition", "heal", "delay", "drop"})
        if relayed and not self.supervisor.config.netfaults:
            raise TestnetError(
                f"scenario {self.scenario.name!r} uses {', '.join(relayed)}, which needs the fault relay: "
                "drop --no-netfaults"
            )
        self.run_start_ts = time.time()
        code = self.supervisor.run()
        return self._verdict(code)

    def started(self, supervisor: Supervisor) -> None:
        """The clock starts once every process is up: step times count from here."""
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
        supervisor.note(
            f"scenario {self.scenario.name}: {len(self.pending)} step(s) over "
            f"{supervisor.config.duration:g} s{scale}"
        )

    def tick(self, supervisor: Supervisor) -> None:
        """Fire every step that is due (several when a poll came late), unless a stop was asked for."""
        if self.t0 is None:
            return
        elapsed = time.monotonic() - self.t0_mono
        while self.pending and self.pending[0].at_s <= elapsed and not supervisor.signals:
            step = self.pending.pop(0)
            where = hosted_note(supervisor.state.hosts, step.node) if step.node and supervisor.state else ""
            where = f" ({where.removesuffix(': ')})" if where else ""  # `(v3 runs in p2 with v4)`
            supervisor.echo(  # the timeline's steps print even with --quiet: they are what the run did
                style(f"== scenario {elapsed:6.1f} s: {step.describe()}{where}", fg="cyan", bold=True)
            )
            ts = time.time()
            try:
                run_step(self.layout, step)
            except TestnetError as exc:
                self._log(
                    {**step_event(step, ts, self.scenario.name), "event": "step_failed", "error": str(exc)}
                )
                supervisor.echo(
                    style(f"!! scenario step {step.describe()} failed: {exc}", fg="red", bold=True)
                )
            else:
                self._log(step_event(step, ts, self.scenario.name))
            elapsed = time.monotonic() - self.t0_mono

    def _verdict(self, code: int) -> int:
        """Evaluate the checks from the logs, print them, and fold them into the exit code."""
        state, echo = self.supervisor.state, self.supervisor.echo
        if self.t0 is None or state is None:
            return code or 1
        end_ts = time.time()
        self._log({"event": "scenario_finished", "ts": round(end_ts, 6), "name": self.scenario.name})
        try:
            params = load_genesis(self.layout.genesis).params
        except GenesisError:
            params = Params()
        full = {name: read_log(self.layout.log(name)).events for name in state.nodes}
        this_run = {name: since(events, self.run_start_ts) for name, events in full.items()}
        running = [n.name for n in state.nodes.values() if n.status not in (KILLED, DIED)]
        # processes hosting several validators: judged as the scenario names them, by validator
        scenario, this_run, running_v = in_validator_terms(
            self.timeline_scenario, this_run, running, state.hosts
        )
        _, full, _ = in_validator_terms(self.timeline_scenario, full, None, state.hosts)
        self.results = evaluate(scenario, this_run, self.timeline, self.t0, end_ts, params, running_v)
        # safety over the whole history: the chain continues across runs of one directory
        self.results = [
            check_safety(full, scenario.honest()) if r.name == "safety" else r for r in self.results
        ]
        ok = all(r.ok for r in self.results)
        echo(f"scenario {self.scenario.name}: {len(self.results)} check(s)")
        for result in self.results:
            echo(style(result.line(), fg="green" if result.ok else "red"))
        echo(style(f"verdict: {'PASS' if ok else 'FAIL'}", fg="green" if ok else "red", bold=True))
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
    config: UpConfig, scenario: Scenario, time_scale: float = 1.0, echo: Echo = ansi.echo
) -> int:
    """`posnet testnet up --scenario`: the exit code (1 when the testnet or any check failed)."""
    return ScenarioRun(config, scenario, time_scale, echo).run()
