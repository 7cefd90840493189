"""The simulator as a protocol checker: invariants across many seeds and faults.

The sweep runs the real core (state machine, signer, admission, ledger)
under seeded faults and fewer than 1/3 Byzantine stake; it must never see a
safety violation and finality must resume after every heal. The cases with
1/3 or more Byzantine committee power show the checker itself can fail, and
that it says the run was outside the model instead of calling it a bug or
calling it fine; a fork names its culprits with proofs.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from network.sim.checks import ByzantineShare
from network.sim.config import SimConfig, random_run_config, replay_command
from network.sim.penalties import honest_jailings
from network.sim.plans import (
    MAX_HEAL_MS,
    STAKE_SHAPES,
    FaultSpecError,
    format_fault_spec,
    parse_fault_spec,
    random_fault_plan,
    random_setup,
)
from network.sim.runner import run_simulation
from node.core.genesis import Params, parse_params, validator_names

pytestmark = pytest.mark.sim

REPO = Path(__file__).resolve().parent.parent
SWEEP_SEEDS = int(os.environ.get("POSNET_SWEEP_SEEDS", "40"))
SLOW_SWEEP_SEEDS = int(os.environ.get("POSNET_SLOW_SWEEP_SEEDS", "400"))


def _sweep_failures(seeds: range) -> list[str]:
    """Runs of the whole drawn space (random_run_config) that broke an invariant inside the bound."""
    failures = []
    for seed in seeds:
        result = run_simulation(random_run_config(seed))
        if not result.ok:
            failures.append(f"{[v.message for v in result.inside_bound][:2]}; replay: {result.replay}")
    return failures


@pytest.mark.slow
@pytest.mark.parametrize("block", range(0, SWEEP_SEEDS, 20))
def test_sweep_of_seeds_with_faults_and_a_byzantine_minority_keeps_every_invariant(block: int) -> None:
    assert _sweep_failures(range(block, min(block + 20, SWEEP_SEEDS))) == []


@pytest.mark.slow
@pytest.mark.parametrize("block", range(SWEEP_SEEDS, SWEEP_SEEDS + SLOW_SWEEP_SEEDS, 50))
def test_a_few_hundred_more_seeds_of_the_whole_space_keep_every_invariant(block: int) -> None:
    """Uneven and power-law stakes up to just under 1/3 Byzantine, small committees, every fault kind."""
    assert _sweep_failures(range(block, min(block + 50, SWEEP_SEEDS + SLOW_SWEEP_SEEDS))) == []


@pytest.mark.slow
def test_every_fault_kind_together_heals_and_finality_resumes() -> None:
    plan = parse_fault_spec(
        "drop=0.1,delay=5-80,dup=0.05,reorder=0.1,partition=v1+v2|v3+v4@500-4000,crash=v3@4500-7000"
    )
    for seed in range(10):
        result = run_simulation(SimConfig(validators=4, heights=15, seed=seed, faults=plan))
        assert result.ok, (seed, result.to_json()["violations"])
        assert result.heights_finalized >= 15


def test_a_partition_without_quorum_stops_finality_until_it_heals() -> None:
    plan = parse_fault_spec("partition=v1+v2|v3+v4@200-6000")
    result = run_simulation(SimConfig(validators=4, heights=10, seed=1, faults=plan))
    assert result.ok, result.to_json()["violations"]
    # nothing can be final while neither side has more than 2/3: finality waited for the heal
    # only the height already in flight at the cut may complete (by votes that crossed before it):
    # the highest one some node had finalized by then (the others finishing it) or the next
    before = max(h for times in result.finalized_at.values() for t, h in times if t <= 200)
    during = {h for times in result.finalized_at.values() for t, h in times if 200 < t < 6000}
    assert during <= {before, before + 1}
    assert all(any(t >= 6000 for t, _ in times) for times in result.finalized_at.values())


def test_more_than_a_third_silent_stalls_and_the_checker_reports_it_as_outside_the_bound() -> None:
    result = run_simulation(SimConfig(validators=4, heights=10, seed=0, byzantine=2, byzantine_mode="silent"))
    assert result.heights_finalized == 0
    assert any("stalled" in v for v in result.liveness_violations)
    assert result.inside_bound == [] and result.ok  # expected outside the model, not a bug
    summary = result.to_json()
    assert summary["bound_exceeded_heights"] == [1] and summary["max_byzantine_share_ppm"] == 500_000
    assert summary["violations_outside_bound"] == result.liveness_violations


def test_more_than_a_third_split_brain_equivocators_fork_and_the_fork_names_its_culprits() -> None:
    result = run_simulation(SimConfig(validators=4, heights=5, seed=0, byzantine=2, byzantine_mode="split"))
    summary = result.to_json()
    assert result.safety_violations, summary["violations"]
    assert all(v.outside_bound for v in result.violations if v.kind in ("safety", "liveness"))
    assert summary["fork_culprits"] == ["v3", "v4"]
    (fork,) = summary["forks"]
    assert fork["culprits"] == {"v3": "double_sign", "v4": "double_sign"}
    assert 3 * fork["culprit_power"] > fork["committee_power"]  # accountable safety: more than 1/3 convicted
    assert result.ok, summary["violations_inside_bound"]


@pytest.mark.slow
def test_split_brain_equivocation_by_less_than_a_third_cannot_break_safety() -> None:
    for seed in range(20):
        result = run_simulation(
            SimConfig(validators=7, heights=8, seed=seed, byzantine=2, byzantine_mode="split")
        )
        assert result.safety_violations == [], seed
        assert result.heights_finalized >= 8, (seed, result.to_json()["violations"])


def test_one_equivocator_of_four_is_tombstoned_with_lower_stake_and_nobody_else_penalized() -> None:
    result = run_simulation(
        SimConfig(validators=4, heights=40, seed=3, byzantine=1, byzantine_mode="equivocate")
    )
    assert result.ok
    assert result.evidence >= 1
    v = result.validators
    assert v["v4"]["status"] == "tombstoned" and v["v4"]["stake"] < 1000
    assert all((v[name]["stake"], v[name]["status"]) == (1000, "active") for name in ("v1", "v2", "v3"))
    assert all(v[name]["balance"] > 0 for name in ("v1", "v2", "v3"))  # their operators earned rewards


def test_one_silent_validator_of_four_is_jailed_with_lower_stake_and_the_rest_finalize() -> None:
    result = run_simulation(SimConfig(validators=4, heights=40, seed=3, byzantine=1, byzantine_mode="silent"))
    assert result.ok
    assert result.heights_finalized >= 40
    v = result.validators
    assert v["v4"]["status"] == "jailed" and v["v4"]["stake"] < 1000
    assert all(v[name]["status"] == "active" for name in ("v1", "v2", "v3"))


def test_a_silent_validator_that_crashed_still_catches_up_with_the_chain() -> None:
    plan = parse_fault_spec("crash=v4@100-6000")
    result = run_simulation(
        SimConfig(validators=4, heights=20, seed=2, byzantine=1, byzantine_mode="silent", faults=plan)
    )
    assert result.ok, result.to_json()["violations"]
    assert result.node_heights["v4"] >= result.heights_finalized - 1


def test_committee_sampling_with_more_validators_than_seats_finalizes() -> None:
    result = run_simulation(SimConfig(validators=20, committee_size=7, heights=12, seed=4))
    assert result.ok, result.to_json()["violations"]


def _sim_json(args: list[str], hash_seed: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    proc = subprocess.run(
        [sys.executable, "-m", "network.cli", "sim", *args, "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    summary.pop("wall_s")
    return summary


@pytest.mark.integration
def test_same_seed_gives_the_same_run_bit_for_bit_across_processes() -> None:
    args = [
        "--validators",
        "5",
        "--heights",
        "12",
        "--seed",
        "7",
        "--byzantine",
        "1",
        "--faults",
        "drop=0.1,delay=5-60,crash=v2@300-2000",
    ]
    first = _sim_json(args, "1")
    second = _sim_json(args, "2")
    assert first == second  # including state_hash: every balance, pool and priority agrees
    assert first["heights_finalized"] >= 12
    assert len(str(first["state_hash"])) == 64


@pytest.mark.integration
def test_sim_cli_prints_the_documented_json_and_exits_0_when_only_outside_the_bound() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "network.cli",
            "sim",
            "--validators",
            "4",
            "--heights",
            "5",
            "--byzantine",
            "2",
            "--byzantine-mode",
            "silent",
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr  # the stall is outside the model: reported, not a failure
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in (
        "seed",
        "heights_finalized",
        "safety_violations",
        "evidence",
        "validators",
        "violations_inside_bound",
        "violations_outside_bound",
        "bound_exceeded_heights",
        "bound_exceeded_count",
        "fork_culprits",
        "replay",
    ):
        assert key in summary
    assert summary["ok"] is True and summary["violations_inside_bound"] == []
    assert summary["violations_outside_bound"] and summary["bound_exceeded_count"] >= 1
    assert set(summary["validators"]) == {"v1", "v2", "v3", "v4"}
    v1 = summary["validators"]["v1"]
    assert (v1["stake"], v1["status"]) == (1000, "active") and isinstance(v1["balance"], int)


@pytest.mark.integration
def test_sim_cli_warns_when_the_byzantine_share_reaches_a_third() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "network.cli", "sim", "--validators", "4", "--heights", "4", "--byzantine", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    warning = next(line for line in proc.stdout.splitlines() if "WARNING" in line)
    assert "1/3 or more of the committee's power" in warning and "outside the model" in warning


@pytest.mark.integration
def test_sim_cli_rejects_a_bad_fault_spec_with_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "network.cli", "sim", "--faults", "crash=v9@1-2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "v9" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.integration
def test_sim_cli_sweeps_seeds_and_counts_the_ones_outside_the_bound() -> None:
    held = subprocess.run(
        [sys.executable, "-m", "network.cli", "sim", "--validators", "7", "--byzantine", "2", "--seeds", "4", "--heights", "6", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert held.returncode == 0, held.stderr
    summary = json.loads(held.stdout.strip().splitlines()[-1])
    assert {
        k: summary[k] for k in ("seeds", "ran", "missing", "ok", "failed", "bound_exceeded", "lowest_height")
    } == {
        "seeds": 4,
        "ran": 4,
        "missing": 0,
        "ok": 4,
        "failed": [],
        "bound_exceeded": 0,
        "lowest_height": 6,
    }
    assert [run["seed"] for run in summary["runs"]] == [0, 1, 2, 3] and summary["executor"] == "this process"
    outside = subprocess.run(
        [sys.executable, "-m", "network.cli", "sim", "--byzantine", "2", "--byzantine-mode", "split", "--seeds", "2", "--heights", "4"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert outside.returncode == 0, outside.stdout
    assert (
        "2 of 2 seeds (0..1): 2 held every invariant inside the 1/3 bound, 0 broke one; 2 ran outside"
        in outside.stdout
    )


# ------------------------------------------------------------ the 1/3 bound, per committee


def test_three_of_seven_equivocating_with_loss_is_reported_outside_the_bound() -> None:
    """The review's case: 3/7 of the stake is not less than 1/3, so the run was outside the model."""
    plan = parse_fault_spec("drop=0.1")
    result = run_simulation(SimConfig(validators=7, heights=6, seed=0, byzantine=3, faults=plan))
    summary = result.to_json()
    assert summary["bound_exceeded_count"] >= 1 and summary["bound_exceeded_heights"][0] == 1
    assert summary["max_byzantine_share_ppm"] == 3 * 1_000_000 // 7
    assert all(v.outside_bound == result.byzantine_share.exceeded(v.height) for v in result.violations)


def test_the_bound_is_judged_per_committee_not_over_the_whole_set() -> None:
    """Byzantine stake under 1/3 of the set can still hold 1/3 of a sampled committee's seats.

    3 of 12 equal pools is 1/4 of the stake; with 4 seats re-drawn every two
    heights, height 3's committee gave them a third of its seats.
    """
    config = SimConfig(
        validators=12, committee_size=4, heights=6, seed=0, byzantine=3, params=Params(epoch_length=2)
    )
    result = run_simulation(config)
    assert result.byzantine_share.exceeded_heights[0] == 3
    assert result.byzantine_share.max_share_ppm >= 333_333
    assert all(v.outside_bound == result.byzantine_share.exceeded(v.height) for v in result.violations)


def test_violations_past_a_fork_outside_the_bound_are_outside_it_too() -> None:
    """Honest nodes left on two chains cannot finish a height: that stall is the fork's doing."""
    share = ByzantineShare((1,), 500_000, forked_outside=1)
    assert share.exceeded(1) and share.exceeded(5) and not share.exceeded(None)
    assert not ByzantineShare((1,), 500_000).exceeded(5)


# ------------------------------------------------------------ fork accountability


@pytest.mark.slow
def test_split_fork_culprits_carry_proofs_and_none_of_them_is_honest() -> None:
    for validators, byzantine in ((4, 2), (5, 3)):
        config = SimConfig(
            validators=validators, heights=5, seed=0, byzantine=byzantine, byzantine_mode="split"
        )
        result = run_simulation(config)
        assert result.forks, "the split attack with at least 1/3 should fork"
        assert set(result.fork_culprits()) <= set(config.byzantine_names())
        for fork in result.forks:
            assert 3 * fork["culprit_power"] > fork["committee_power"]
        # every culprit is proven, and those in both certificates are known to some honest node
        assert result.accountability_violations == [], result.accountability_violations


def test_the_reviewed_split_attack_leaves_no_culprit_unpunished() -> None:
    """3 of 7 split-brain equivocators: it forked at height 4 with v6 in both certificates, v6 unpunished."""
    result = run_simulation(SimConfig(validators=7, heights=8, seed=0, byzantine=3, byzantine_mode="split"))
    assert result.accountability_violations == []
    assert {result.validators[name]["status"] for name in ("v5", "v6", "v7")} == {"tombstoned"}


# ------------------------------------------------------------ penalties


def _jailed(validator: str, height: int) -> dict[str, object]:
    return {"event": "jailed", "validator": validator, "height": height, "node": "v1", "t_ms": 0}


def test_every_honest_jailing_on_an_honest_chain_is_judged_whatever_the_faults() -> None:
    """No fault switches the penalty check off for a whole run: a crash elsewhere excuses nobody."""
    quiet = SimConfig(validators=4, byzantine=1, faults=parse_fault_spec("drop=0.2"))
    jailings = [_jailed("v2", 9), _jailed("v2", 9), _jailed("v4", 5)]
    assert honest_jailings(quiet, jailings) == [(9, "v2", "v1")]
    crashed = replace(quiet, faults=parse_fault_spec("crash=v3@100-5000"))
    assert honest_jailings(crashed, [_jailed("v2", 9)]) == [(9, "v2", "v1")]


def test_a_jailing_seen_only_on_a_byzantine_nodes_private_chain_is_not_judged() -> None:
    quiet = SimConfig(validators=4, byzantine=1, faults=parse_fault_spec("drop=0.2"))
    on_v4 = {**_jailed("v2", 9), "node": "v4"}  # v4 is the Byzantine one
    assert honest_jailings(quiet, [on_v4]) == []


def test_sweep_seed_27546_silent_seats_past_two_thirds_jail_nobody_on_the_honest_chain() -> None:
    """Two silent validators held the whole committee's quorum at height 1: they finalized a private
    chain (where v5 was jailed) while the honest nodes stalled, outside the bound. The checker read
    the silent node's log as if it were the chain and called it a bug inside the bound."""
    config = SimConfig(
        validators=7,
        heights=10,
        seed=27546,
        committee_size=4,
        byzantine=2,
        byzantine_mode="silent",
        stakes=(4498, 3655, 1586, 1140, 3914, 1154, 4447),
        params=parse_params({"downtime_window": 10, "max_missed_in_window": 7}),
        faults=parse_fault_spec("drop=0.1,delay=25-175,dup=0.1,reorder=0.05"),
    )
    result = run_simulation(config)
    assert result.ok and result.penalty_violations == [], result.inside_bound
    assert result.outside_bound  # the stall: Byzantine seats held 1/3 or more at height 1


# ------------------------------------------------------------ reproducible from one command line


def _posnet(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "network.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.integration
def test_sim_cli_takes_stakes_and_genesis_params_and_writes_them_into_the_replay_line() -> None:
    proc = _posnet(
        ["sim", "--stakes", "605,896,2053,1761", "--param", "downtime_window=8", "--heights", "3", "--json"]
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {name: v["stake"] for name, v in summary["validators"].items()} == {
        "v1": 605,
        "v2": 896,
        "v3": 2053,
        "v4": 1761,
    }
    assert "--stakes 605,896,2053,1761" in summary["replay"]
    assert "--param downtime_window=8" in summary["replay"]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--stakes", "1,2,3", "--validators", "4"], "3 stakes for --validators 4"),
        (["--stakes", "1,x"], "comma-separated"),
        (["--stakes", "5,0"], "at least 1"),
        (["--param", "no_such_param=1"], "params.no_such_param: unknown field"),
        (["--param", "downtime_window=0"], "params.downtime_window: 0 is outside"),
        (["--param", "slash_fraction_double_sign_ppm=2000000"], "params.slash_fraction_double_sign_ppm"),
        (["--param", "epoch_length=ten"], "params.epoch_length: expected an integer"),
        (["--param", "committee_size=5", "--committee-size", "6"], "contradicts --committee-size 6"),
    ],
)
def test_sim_cli_rejects_bad_stakes_and_params_with_one_line_naming_them(args: list[str], named: str) -> None:
    proc = _posnet(["sim", *args], timeout=60)
    assert proc.returncode == 2
    assert named in proc.stderr.strip().splitlines()[-1]


@pytest.mark.integration
def test_the_replay_line_of_a_drawn_run_replays_it_alone_and_exactly() -> None:
    drawn = ["sim", "--validators", "7", "--byzantine", "2", "--heights", "6", "--seed", "5"]
    drawn += ["--scenario", "random", "--faults", "random", "--json"]
    first = _posnet(drawn)
    assert first.returncode in (0, 1), first.stderr
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    replay = shlex.split(summary["replay"])
    assert replay[:2] == ["posnet", "sim"] and "random" not in replay  # drawn values written out
    assert {"--stakes", "--param", "--faults", "--committee-size"} <= set(replay)
    again = _posnet([*replay[1:], "--json"])
    assert again.returncode == first.returncode, again.stderr
    replayed = json.loads(again.stdout.strip().splitlines()[-1])
    summary.pop("wall_s")
    replayed.pop("wall_s")
    assert replayed == summary


def _with_a_bug_at_seed(monkeypatch: pytest.MonkeyPatch, bad_seed: int) -> None:
    """Make one seed's run report a violation inside the bound, as a real bug would."""
    import network.sim.runner
    import network.sim.sweep

    real = network.sim.runner.run_simulation

    def run(config: SimConfig) -> network.sim.runner.SimResult:
        result = real(config)
        if config.seed == bad_seed:
            result.violations.append(
                network.sim.runner.Violation("safety", "height 2: invented for the test", 2)
            )
        return result

    monkeypatch.setattr(network.sim.runner, "run_simulation", run)
    monkeypatch.setattr(network.sim.sweep, "run_simulation", run)  # what a sweep's seeds call


def test_a_failing_run_exits_1_and_prints_the_command_that_replays_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from network.cli import cli

    _with_a_bug_at_seed(monkeypatch, 3)
    result = CliRunner().invoke(cli, ["sim", "--seed", "3", "--heights", "3", "--faults", "random"])
    assert result.exit_code == 1
    assert "INVARIANT VIOLATED inside the 1/3 bound (a bug)" in result.output
    replay = next(line for line in result.output.splitlines() if "replay:" in line)
    config = SimConfig(validators=4, heights=3, seed=3, faults=random_fault_plan(3, validator_names(4)))
    assert replay.split("replay: ", 1)[1] == replay_command(config)


def test_a_sweep_prints_the_replay_line_of_each_failing_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    from network.cli import cli

    _with_a_bug_at_seed(monkeypatch, 2)
    result = CliRunner().invoke(cli, ["sim", "--seeds", "3", "--heights", "3", "--faults", "random"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == "seed 2: height 2: invented for the test"
    assert (
        lines[1].startswith("  replay: posnet sim ") and "--seed 2 " in lines[1] and "--seeds" not in lines[1]
    )
    assert "3 of 3 seeds (0..2): 2 held every invariant inside the 1/3 bound, 1 broke one" in lines[2]


# ------------------------------------------------------------ the random space


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**9), n=st.integers(2, 12), byzantine=st.integers(0, 4))
def test_a_random_fault_plan_is_written_out_in_full_and_heals_in_time(
    seed: int, n: int, byzantine: int
) -> None:
    names = validator_names(n)
    protected = frozenset(names[n - min(byzantine, n) :]) if byzantine else frozenset()
    plan = random_fault_plan(seed, names, protected)
    assert parse_fault_spec(format_fault_spec(plan)) == plan
    assert plan.last_heal_ms() <= MAX_HEAL_MS
    assert not {crash.node for crash in plan.crashes} & protected
    assert plan.names() <= set(names)


def test_random_fault_plans_cover_the_reviewed_space() -> None:
    names = validator_names(7)
    plans = [random_fault_plan(seed, names, frozenset({"v7"})) for seed in range(300)]
    assert any(p.drop for p in plans) and any(p.dup for p in plans) and any(p.reorder for p in plans)
    assert any(p.delay_ms[1] >= 150 for p in plans)
    assert any(len(part.groups) == 2 for p in plans for part in p.partitions)
    assert any(len(part.groups) == 3 for p in plans for part in p.partitions)
    assert any(len({c.node for c in p.crashes}) >= 2 for p in plans)
    assert any(len(p.crashes) > len({c.node for c in p.crashes}) for p in plans)  # one node crashing twice


def test_a_fault_spec_with_overlapping_crashes_of_one_node_is_refused() -> None:
    with pytest.raises(FaultSpecError, match="overlap"):
        parse_fault_spec("crash=v2@100-900,crash=v2@500-1200")
    assert len(parse_fault_spec("crash=v2@100-900,crash=v2@900-1200").crashes) == 2


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10**9), n=st.integers(4, 12), data=st.data())
def test_drawn_stakes_keep_the_byzantine_share_under_a_third(seed: int, n: int, data: st.DataObject) -> None:
    byzantine = data.draw(st.integers(1, n - 1))
    setup = random_setup(seed, n, byzantine)
    honest, byz = sum(setup.stakes[: n - byzantine]), sum(setup.stakes[n - byzantine :])
    assert len(setup.stakes) == n and min(setup.stakes) >= 1
    assert 3 * byz < honest + byz
    if setup.shape == "edge":
        assert byz == (honest - 1) // 2  # just under 1/3: one more unit would reach it
    assert setup.committee_size is None or setup.committee_size < n
    window, missed = dict(setup.params)["downtime_window"], dict(setup.params)["max_missed_in_window"]
    assert 1 <= missed < window


def test_drawn_setups_cover_every_stake_shape_and_smaller_committees() -> None:
    setups = [random_setup(seed, 7, 2) for seed in range(200)]
    assert {s.shape for s in setups} == set(STAKE_SHAPES)
    assert any(s.committee_size is not None for s in setups)


class _Captured(Exception):
    """Stops the CLI at the run, carrying the configuration it built."""


@pytest.mark.parametrize("seed", range(0, 60, 3))
def test_the_replay_line_of_any_drawn_run_rebuilds_exactly_its_configuration(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import network.sim.runner
    from network.cli import cli

    def capture(config: SimConfig) -> None:
        raise _Captured(config)

    monkeypatch.setattr(network.sim.runner, "run_simulation", capture)
    drawn = random_run_config(seed)
    result = CliRunner().invoke(cli, shlex.split(replay_command(drawn))[1:])
    assert isinstance(result.exception, _Captured), result.output
    assert result.exception.args[0] == drawn
