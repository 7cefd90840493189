"""Scenario files: strict parsing, the checks as pure functions, and real runs of the shipped scenarios.

The parsing and check tests are cheap and exhaustive on hand-written input;
the end-to-end tests (`broker` mark) run `posnet testnet up --scenario` with
real processes at half time scale and assert only on its verdict and exit
code, never on timings.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from network.cli import cli
from network.testnet import scenario as sc
from network.testnet import scenario_checks as sc_checks
from network.testnet import scenario_log as sc_log
from network.testnet import scenario_run as sc_run
from network.testnet.errors import TestnetError
from network.testnet.layout import Layout, read_state
from network.testnet.logcheck import analyse_dir
from network.testnet.processes import stop_processes
from network.testnet.supervisor import UpConfig
from node.core.genesis import Params

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((REPO_ROOT / "scenarios").glob("*.toml"))
T0 = 1000.0

BASE: dict[str, Any] = {"name": "t", "validators": 4, "duration_s": 60}


def parse(**changes: Any) -> sc.Scenario:
    return sc.parse_scenario({**BASE, **changes})


def fin(node: str, height: int, ts: float, block_hash: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "event": "finalized",
        "node": node,
        "ts": ts,
        "height": height,
        "round": 0,
        "hash": block_hash or f"h{height}",
        "proposer": "v1",
        "latency_ms": 200,
        **extra,
    }


def steady(
    node: str, start: float, end: float, first_height: int = 1, every: float = 1.0
) -> list[dict[str, Any]]:
    """One finalized height per `every` seconds from `start` to `end` (relative to T0)."""
    out = []
    height, t = first_height, start
    while t <= end:
        out.append(fin(node, height, T0 + t))
        height, t = height + 1, t + every
    return out


# ------------------------------------------------------------------ parsing


def test_the_documented_example_parses() -> None:
    scenario = sc.parse_scenario(
        {
            "name": "partition-heal",
            "validators": 4,
            "duration_s": 60,
            "step": [
                {"at_s": 10, "action": "partition", "groups": [["v1", "v2"], ["v3", "v4"]]},
                {"at_s": 25, "action": "heal"},
            ],
            "checks": {
                "safety": True,
                "resumed_within_rounds": 10,
                "expect_penalties": [{"event": "slashed", "validator": "v4"}],
                "stalled_during": [[10, 25]],
            },
        }
    )
    assert [s.action for s in scenario.steps] == ["partition", "heal"]
    assert scenario.steps[0].groups == (("v1", "v2"), ("v3", "v4"))
    assert scenario.steps[1].heals and not scenario.steps[0].heals
    assert scenario.checks.expect_penalties == (sc.PenaltyExpectation("slashed", "v4"),)
    assert scenario.checks.stalled_during == ((10.0, 25.0),)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_each_shipped_scenario_parses(path: Path) -> None:
    scenario = sc.load_scenario(path)
    assert scenario.name == path.stem
    assert scenario.duration_s > max((s.at_s for s in scenario.steps), default=0)
    assert scenario.checks.safety


def test_the_six_promised_scenarios_ship() -> None:
    assert {p.stem for p in SHIPPED} >= {
        "crash-restart",
        "partition-heal",
        "minority-partition",
        "equivocator",
        "rolling-restart",
        "silent-validator",
    }


def test_shipped_scenarios_expect_what_their_faults_cause() -> None:
    equivocator = sc.load_scenario(REPO_ROOT / "scenarios/equivocator.toml")
    assert equivocator.behaviours == {"v4": "equivocate"} and equivocator.honest() == ["v1", "v2", "v3"]
    assert {(p.event, p.validator) for p in equivocator.checks.expect_penalties} == {
        ("slashed", "v4"),
        ("tombstoned", "v4"),
    }
    silent = sc.load_scenario(REPO_ROOT / "scenarios/silent-validator.toml")
    assert ("jailed", "v4") in {(p.event, p.validator) for p in silent.checks.expect_penalties}
    split = sc.load_scenario(REPO_ROOT / "scenarios/partition-heal.toml")
    assert split.steps[0].groups == (("v1", "v2"), ("v3", "v4")) and split.checks.stalled_during


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"nmae": "x"}, "nmae: unknown field"),
        ({"name": ""}, "name: expected a non-empty string"),
        ({"validators": 0}, "validators: must be between 1 and 64"),
        ({"validators": "4"}, "validators: expected an integer"),
        ({"validators": True}, "validators: expected an integer"),
        ({"duration_s": 0}, "duration_s: must be > 0"),
        ({"slot_ms": -1}, "slot_ms: must be between"),
        ({"behaviours": {"v9": "silent"}}, "behaviours.v9: unknown validator 'v9'"),
        ({"behaviours": {"v4": "evil"}}, "behaviours.v4: 'evil' is not one of"),
        ({"step": {"at_s": 1}}, "step: expected an array of tables"),
        ({"step": [{"action": "kill", "node": "v1"}]}, "step[0].at_s: missing"),
        ({"step": [{"at_s": 1}]}, "step[0].action: missing"),
        ({"step": [{"at_s": -1, "action": "heal"}]}, "step[0].at_s: must be >= 0"),
        ({"step": [{"at_s": 1, "action": "explode"}]}, "step[0].action: 'explode' is not one of kill"),
        ({"step": [{"at_s": 1, "action": "kill"}]}, "step[0].node: missing (kill needs node)"),
        ({"step": [{"at_s": 1, "action": "kill", "node": "v7"}]}, "step[0].node: unknown validator 'v7'"),
        (
            {"step": [{"at_s": 1, "action": "kill", "node": "v1", "ms": 3}]},
            "step[0].ms: not an argument of kill",
        ),
        ({"step": [{"at_s": 1, "action": "kill", "node": "v1", "nod": 3}]}, "step[0].nod: unknown field"),
        ({"step": [{"at_s": 99, "action": "kill", "node": "v1"}]}, "step[0].at_s: 99 is after the end"),
        (
            {"step": [{"at_s": 1, "action": "delay", "node": "v1", "ms": 2.5}]},
            "step[0].ms: expected an integer",
        ),
        ({"step": [{"at_s": 1, "action": "drop", "node": "v1", "rate": 2}]}, "step[0].rate: a probability"),
        ({"step": [{"at_s": 1, "action": "behave", "node": "v1", "mode": "x"}]}, "step[0].mode: 'x' is not"),
        (
            {"step": [{"at_s": 1, "action": "partition", "groups": [["v1"]]}]},
            "step[0].groups: expected at least two",
        ),
        (
            {"step": [{"at_s": 1, "action": "partition", "groups": [["v1"], ["v1", "v2"]]}]},
            "step[0].groups[1][0]: v1 is in more than one group",
        ),
        (
            {"step": [{"at_s": 1, "action": "partition", "groups": [["v1"], []]}]},
            "step[0].groups[1]: expected",
        ),
        (
            {"step": [{"at_s": 1, "action": "resume", "node": "v2"}]},
            "step[0] (resume v2 at 1 s): v2 is running",
        ),
        ({"step": [{"at_s": 1, "action": "heal"}]}, "there is no partition to heal"),
        (
            {
                "step": [
                    {"at_s": 5, "action": "kill", "node": "v2"},
                    {"at_s": 1, "action": "kill", "node": "v2"},
                ]
            },
            "step[0] (kill v2 at 5 s): v2 is already killed",
        ),
        (
            {
                "step": [
                    {"at_s": 1, "action": "kill", "node": "v2"},
                    {"at_s": 2, "action": "pause", "node": "v2"},
                ]
            },
            "v2 is killed, only a running node can be paused",
        ),
        ({"checks": []}, "checks: expected a table"),
        ({"checks": {"safe": True}}, "checks.safe: unknown field"),
        ({"checks": {"safety": "yes"}}, "checks.safety: expected true or false"),
        ({"checks": {"resumed_within_rounds": 0}}, "checks.resumed_within_rounds: must be between 1"),
        (
            {"checks": {"expect_penalties": [{"event": "fined", "validator": "v4"}]}},
            "expect_penalties[0].event",
        ),
        ({"checks": {"expect_penalties": [{"event": "slashed"}]}}, "expect_penalties[0].validator: missing"),
        ({"checks": {"expect_penalties": [{"event": "jailed", "validator": "x"}]}}, "unknown validator 'x'"),
        ({"checks": {"stalled_during": [[10]]}}, "checks.stalled_during[0]: expected [start_s, end_s]"),
        ({"checks": {"stalled_during": [[10, 5]]}}, "checks.stalled_during[0]: end 5 is not after start 10"),
        ({"checks": {"stalled_during": [[10, 70]]}}, "end 70 is after the end of the run"),
        ({"checks": {"min_height": 0}}, "checks.min_height: must be >= 1"),
    ],
)
def test_bad_scenarios_are_refused_in_one_line_naming_the_field(changes: dict[str, Any], needle: str) -> None:
    with pytest.raises(sc.ScenarioError) as info:
        parse(**changes)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_missing_name_and_duration_are_named() -> None:
    with pytest.raises(sc.ScenarioError, match=r"^name: missing"):
        sc.parse_scenario({"duration_s": 5})
    with pytest.raises(sc.ScenarioError, match=r"^duration_s: missing"):
        sc.parse_scenario({"name": "x"})


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nduration_s = [')
    with pytest.raises(sc.ScenarioError, match=r"bad\.toml: not valid TOML"):
        sc.load_scenario(bad)
    bad.write_text('name = "x"\nduration_s = 10\n[[step]]\nat_s = 1\naction = "kil"\n')
    with pytest.raises(sc.ScenarioError, match=r"bad\.toml: step\[0\]\.action: 'kil'"):
        sc.load_scenario(bad)
    with pytest.raises(sc.ScenarioError, match="no such file"):
        sc.load_scenario(tmp_path / "absent.toml")


def test_steps_are_ordered_by_time_and_file_order_breaks_ties() -> None:
    scenario = parse(
        step=[
            {"at_s": 20, "action": "restart", "node": "v1"},
            {"at_s": 5, "action": "kill", "node": "v1"},
            {"at_s": 5, "action": "pause", "node": "v2"},
        ]
    )
    assert [s.describe() for s in scenario.steps] == ["kill v1", "pause v2", "restart v1"]
    assert sc.down_at_end(scenario) == {"v2"}


def test_which_steps_heal() -> None:
    def step(action: str, **args: Any) -> sc.TimelineStep:
        return sc.TimelineStep(at_s=0, action=action, **args)

    assert step("delay", node="v1", ms=0).heals and not step("delay", node="v1", ms=50).heals
    assert step("drop", node="v1", rate=0.0).heals and not step("drop", node="v1", rate=0.2).heals
    assert (
        step("behave", node="v1", mode="honest").heals and not step("behave", node="v1", mode="silent").heals
    )
    assert all(step(a, node="v1").heals for a in ("restart", "resume")) and step("heal").heals
    assert not any(step(a, node="v1").heals for a in ("kill", "pause"))


def test_behave_makes_a_validator_byzantine_for_the_whole_run() -> None:
    scenario = parse(step=[{"at_s": 5, "action": "behave", "node": "v2", "mode": "silent"}])
    assert scenario.byzantine() == {"v2"} and scenario.honest() == ["v1", "v3", "v4"]


def test_time_scale_compresses_every_time() -> None:
    scenario = parse(
        step=[{"at_s": 10, "action": "kill", "node": "v1"}],
        checks={"stalled_during": [[12, 20]], "min_height": 41},
    ).scaled(0.5)
    assert scenario.duration_s == 30 and scenario.steps[0].at_s == 5
    assert scenario.checks.stalled_during == ((6.0, 10.0),)
    assert (
        scenario.checks.min_height == 21
    )  # half the time at the same slot length: half the blocks, rounded up
    with pytest.raises(sc.ScenarioError):
        scenario.scaled(0)


def test_apply_to_config_lets_the_command_line_win() -> None:
    scenario = parse(validators=5, slot_ms=200, behaviours={"v5": "silent"})
    config = UpConfig(directory=Path("x"), validators=4, behaviours={"v1": "equivocate"})
    merged, plan = sc_run.apply_to_config(config, scenario, explicit=[], time_scale=0.5)
    assert (merged.validators, merged.duration, merged.slot_ms) == (5, 30, 200)
    assert merged.behaviours == {"v5": "silent", "v1": "equivocate"}
    assert plan.honest() == ["v2", "v3", "v4"]  # made Byzantine on the command line: not judged either
    kept, plan = sc_run.apply_to_config(
        UpConfig(directory=Path("x"), validators=7, duration=9, slot_ms=0),
        scenario,
        ["validators", "duration"],
        1,
    )
    assert (kept.validators, kept.duration, kept.slot_ms) == (7, 9, 0) and plan.names[-1] == "v7"
    with pytest.raises(sc.ScenarioError, match=r"behaviours\.v6: unknown validator 'v6'.*command line"):
        sc_run.apply_to_config(
            UpConfig(directory=Path("x"), validators=4, behaviours={"v6": "silent"}), scenario, [], 1
        )
    killer = parse(step=[{"at_s": 1, "action": "kill", "node": "v4"}])
    with pytest.raises(sc.ScenarioError, match=r"step\[0\]\.node: unknown validator 'v4'"):
        sc_run.apply_to_config(UpConfig(directory=Path("x"), validators=3), killer, ["validators"], 1)


# ------------------------------------------------------------------ checks


def timeline(*steps: tuple[str, str, float]) -> list[dict[str, Any]]:
    return [{"event": kind, "action": action, "ts": T0 + at} for kind, action, at in steps]


def test_recovery_bound_is_r_rounds_of_growing_timeouts_plus_a_slot() -> None:
    params = Params(commit_wait_ms=200)
    # round r: propose 1000+500r, prevote 500+250r, precommit 500+250r
    assert sc_checks.recovery_bound_s(params, 1) == pytest.approx(2.2)
    assert sc_checks.recovery_bound_s(params, 3) == pytest.approx(0.2 + 2 + 3 + 4)


def test_safety_check_ignores_byzantine_nodes_and_catches_forks() -> None:
    logs = {"v1": [fin("v1", 1, T0, "a")], "v2": [fin("v2", 1, T0, "a")], "v4": [fin("v4", 1, T0, "b")]}
    assert sc_checks.check_safety(logs, ["v1", "v2"]).ok
    result = sc_checks.check_safety(logs, ["v1", "v2", "v4"])
    assert not result.ok and "height 1" in result.detail


def test_resumed_passes_when_every_node_finalizes_a_new_height_in_time() -> None:
    logs = {n: steady(n, 0, 10) + steady(n, 27, 40, first_height=12) for n in ("v1", "v2", "v3", "v4")}
    events = timeline(("fault", "partition", 10), ("heal", "heal", 25))
    result = sc_checks.check_resumed(logs, list(logs), events, T0, T0 + 40, Params(), 3)
    assert result.ok, result.detail
    assert "heal at 25.0 s" in result.detail and "2.0 s" in result.detail


def test_resumed_fails_naming_the_node_that_did_not_come_back() -> None:
    logs = {n: steady(n, 0, 40) for n in ("v1", "v2", "v3")}
    logs["v4"] = steady("v4", 0, 9) + steady("v4", 40, 41, first_height=50)  # back only after 15 s
    events = timeline(("fault", "kill", 10), ("heal", "restart", 25))
    result = sc_checks.check_resumed(logs, list(logs), events, T0, T0 + 41, Params(), 2)  # bound 5 s
    assert not result.ok and result.detail.startswith("v4 finalized no new height within 5.0 s")


def test_resumed_counts_only_heights_above_the_one_held_at_the_heal() -> None:
    logs = {
        "v1": steady("v1", 0, 10),
        "v2": [*steady("v2", 0, 10), fin("v2", 5, T0 + 26)],
    }  # old height logged again
    events = timeline(("heal", "heal", 25))
    assert not sc_checks.check_resumed(logs, ["v2"], events, T0, T0 + 60, Params(), 10).ok


def test_resumed_says_when_the_run_ended_before_the_bound() -> None:
    logs = {"v1": steady("v1", 0, 10)}
    result = sc_checks.check_resumed(logs, ["v1"], timeline(("heal", "heal", 25)), T0, T0 + 28, Params(), 10)
    assert not result.ok and "the run ended first" in result.detail and "within 3.0 s" in result.detail


def test_resumed_starts_at_the_last_fault_without_heals_and_at_the_start_without_steps() -> None:
    assert sc_checks.last_recovery_ts(timeline(("fault", "kill", 5), ("fault", "pause", 8)), T0)[0] == T0 + 8
    assert sc_checks.last_recovery_ts([], T0) == (T0, "the start")


def test_stalled_passes_when_no_new_height_lands_in_the_window() -> None:
    logs = {n: steady(n, 0, 10) + steady(n, 26, 30, first_height=12) for n in ("v1", "v2")}
    logs["v2"].append(fin("v2", 4, T0 + 15, via_sync=True))  # an old height synced late is not progress
    result = sc_checks.check_stalled(logs, ["v1", "v2"], T0, (12, 25))
    assert result.ok and "stuck at 11" in result.detail


def test_stalled_fails_on_the_first_new_height_in_the_window() -> None:
    logs = {"v1": steady("v1", 0, 30)}
    result = sc_checks.check_stalled(logs, ["v1"], T0, (12, 25))
    assert (
        not result.ok
        and result.detail == "v1 finalized height 13 at 12.0 s (height was 12 before the window)"
    )


def test_penalty_must_be_in_every_judged_nodes_log() -> None:
    slash = {"event": "slashed", "validator": "v4", "height": 7, "ts": T0}
    logs = {"v1": [{**slash, "node": "v1"}], "v2": [{**slash, "node": "v2"}], "v3": []}
    expected = sc.PenaltyExpectation("slashed", "v4")
    assert sc_checks.check_penalty(logs, ["v1", "v2"], expected).ok
    result = sc_checks.check_penalty(logs, ["v1", "v2", "v3"], expected)
    assert not result.ok and result.detail == "missing from the log of v3"
    assert not sc_checks.check_penalty(logs, ["v1"], sc.PenaltyExpectation("tombstoned", "v4")).ok


def test_evaluate_judges_only_running_honest_nodes_and_reports_failed_steps() -> None:
    scenario = parse(
        behaviours={"v4": "equivocate"},
        step=[{"at_s": 10, "action": "kill", "node": "v3"}],
        checks={"min_height": 5, "expect_penalties": [{"event": "slashed", "validator": "v4"}]},
    )
    slash = {"event": "slashed", "validator": "v4", "height": 3, "ts": T0 + 3}
    logs = {
        "v1": [*steady("v1", 0, 20), slash],
        "v2": [*steady("v2", 0, 20), slash],
        "v3": steady("v3", 0, 2),  # killed at 10 and never restarted: not judged on progress or penalties
        "v4": [fin("v4", 1, T0, "evil")],  # byzantine: not judged at all
    }
    events = timeline(("fault", "kill", 10))
    results = sc_checks.evaluate(scenario, logs, events, T0, T0 + 20, Params())
    assert [r.name for r in results] == ["steps", "safety", "expect_penalties slashed v4", "min_height 5"]
    assert all(r.ok for r in results), [r.line() for r in results]
    failed = [{"event": "step_failed", "action": "kill", "error": "v3 is not running", "ts": T0 + 10}]
    results = sc_checks.evaluate(scenario, logs, failed, T0, T0 + 20, Params())
    assert results[0] == sc_checks.CheckResult(
        "steps", False, "1 step(s) failed, first kill: v3 is not running"
    )
    died = sc_checks.evaluate(scenario, logs, events, T0, T0 + 20, Params(), running=["v1", "v3", "v4"])
    assert [r.detail for r in died if r.name == "min_height 5"] == ["lowest running honest node at 21"]


def test_read_timeline_returns_the_last_run(tmp_path: Path) -> None:
    path = tmp_path / "scenario.jsonl"
    runs = [
        {"event": "scenario_started", "ts": 1.0, "name": "a"},
        {"event": "fault", "ts": 2.0, "action": "kill", "node": "v1"},
        {"event": "scenario_started", "ts": 10.0, "name": "b"},
        {"event": "heal", "ts": 11.0, "action": "heal"},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in runs))
    assert [e["ts"] for e in sc_log.read_timeline(path)] == [10.0, 11.0]


def test_step_event_has_action_args_and_kind() -> None:
    step = sc.TimelineStep(at_s=10, action="partition", groups=(("v1", "v2"), ("v3", "v4")))
    event = sc_log.step_event(step, T0, "x")
    assert event["event"] == "fault" and event["action"] == "partition"
    assert event["groups"] == [["v1", "v2"], ["v3", "v4"]] and event["ts"] == T0 and event["at_s"] == 10


def test_the_step_log_is_not_mistaken_for_a_node_log(tmp_path: Path) -> None:
    (tmp_path / "v1.jsonl").write_text(json.dumps(fin("v1", 1, T0)) + "\n")
    (tmp_path / sc_log.SCENARIO_LOG).write_text(
        json.dumps({"event": "fault", "ts": T0, "action": "kill"}) + "\n"
    )
    assert list(analyse_dir(tmp_path).nodes) == ["v1"]


# ------------------------------------------------------------------ command line


def test_up_refuses_a_bad_scenario_in_one_line_before_starting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nduration_s = 10\n[[step]]\nat_s = 1\naction = "kill"\nnode = "v9"\n')
    result = CliRunner().invoke(cli, ["testnet", "up", "--scenario", str(bad), "--dir", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert "step[0].node: unknown validator 'v9'" in result.output
    assert not (tmp_path / "d").exists()


def test_time_scale_needs_a_scenario(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["testnet", "up", "--time-scale", "0.5", "--dir", str(tmp_path / "d")])
    assert result.exit_code == 2 and "--time-scale only applies to a --scenario run" in result.output


def test_relayed_faults_are_refused_without_the_relay(tmp_path: Path) -> None:
    config = UpConfig(directory=tmp_path / "d", validators=4)
    config.netfaults = False  # `up --no-netfaults`
    scenario = sc.load_scenario(REPO_ROOT / "scenarios/partition-heal.toml")
    with pytest.raises(TestnetError, match="uses heal, partition, which needs the fault relay"):
        sc_run.ScenarioRun(config, scenario).run()
    assert not (tmp_path / "d").exists()


# ------------------------------------------------------------------ end to end

ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


@pytest.fixture
def scenario_dir(tmp_path: Path) -> Iterator[Path]:
    """A testnet directory whose processes are all gone after the test, however it ended."""
    directory = tmp_path / "net"
    yield directory
    with contextlib.suppress(TestnetError):
        state = read_state(Layout.of(directory))
        procs = [(n.pid, n.command, None) for n in state.nodes.values()]
        stop_processes([*procs, (state.broker.pid, state.broker.command, None)], timeout=5)


def run_shipped(name: str, directory: Path, time_scale: float = 0.5) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "network.cli",
            "testnet",
            "up",
            "--scenario",
            str(REPO_ROOT / "scenarios" / f"{name}.toml"),
            "--time-scale",
            str(time_scale),
            "--dir",
            str(directory),
            "--quiet",
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


@pytest.mark.integration
@pytest.mark.broker
def test_crash_restart_scenario_passes_end_to_end(scenario_dir: Path) -> None:
    proc = run_shipped("crash-restart", scenario_dir)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "== scenario" in out and "kill v3" in out and "restart v3" in out
    assert "PASS resumed_within_rounds 5" in out and "verdict: PASS" in out
    steps = sc_log.read_timeline(scenario_dir / "logs" / sc_log.SCENARIO_LOG)
    assert [(e["event"], e.get("action")) for e in steps if e["event"] in ("fault", "heal")] == [
        ("fault", "kill"),
        ("heal", "restart"),
    ]
    assert steps[0]["time_scale"] == 0.5


@pytest.mark.integration
@pytest.mark.broker
def test_partition_heal_scenario_stalls_and_resumes_end_to_end(scenario_dir: Path) -> None:
    proc = run_shipped("partition-heal", scenario_dir)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "PASS stalled_during" in out and "PASS resumed_within_rounds 10" in out and "verdict: PASS" in out
    # the report reads the same run back from the directory and judges it the same way
    report = subprocess.run(
        [sys.executable, "-m", "network.cli", "testnet", "report", "--dir", str(scenario_dir)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert report.returncode == 0, report.stdout + report.stderr
    assert "partition v1,v2 | v3,v4" in report.stdout and "PASS stalled_during" in report.stdout
    assert (scenario_dir / "report.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.integration
@pytest.mark.broker
@pytest.mark.parametrize("name", ["equivocator", "minority-partition", "rolling-restart", "silent-validator"])
def test_every_other_shipped_scenario_passes_its_own_checks_end_to_end(name: str, scenario_dir: Path) -> None:
    # A restarted node listens before it signs (doppelganger protection, 4.5 s and its boot): compressed,
    # rolling-restart's 8 s spacing would put two nodes in their quiet period at once, and 2 of 4 stall.
    proc = run_shipped(name, scenario_dir, time_scale=1.0 if name == "rolling-restart" else 0.5)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "verdict: PASS" in out and "FAIL" not in out
