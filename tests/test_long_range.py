"""The long-range attack in the simulator, and the trusted checkpoint that defeats it (issue 29).

Former validators (more than 2/3 at genesis, since retired) forge a history
from genesis; a late node hears only them for a while. Without a
checkpoint it takes their history, at any chain length: certificates alone
cannot tell the two apart. With `--trust` it takes the real one, and the
double signs it reports are punished only inside the weak subjectivity
period.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from network.cli import cli
from network.sim.longrange import LongRangeConfig, LongRangeResult, run_long_range

FORMER = ["v1", "v2", "v3"]


def run(**changes: object) -> LongRangeResult:
    return run_long_range(LongRangeConfig(**changes))  # type: ignore[arg-type]


@pytest.mark.parametrize("heights", [12, 60])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_without_a_checkpoint_the_late_node_takes_the_forged_history(heights: int, seed: int) -> None:
    result = run(heights=heights, seed=seed)
    assert result.fork_height <= 4  # the histories part as soon as the retirements are in a block
    assert result.joiner_history == "forged" and result.joiner_height > result.fork_height
    assert not result.tombstoned  # nobody who knew the real chain saw the forgery


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_with_a_checkpoint_inside_the_period_it_follows_the_real_chain_and_the_forgers_are_slashed(
    seed: int,
) -> None:
    result = run(heights=12, trust=True, seed=seed)
    assert result.within_period
    assert result.joiner_history == "real" and result.joiner_height >= result.real_height - 2
    offenders = result.offenders()  # those whose two signatures met at one height and round
    assert offenders and set(offenders) <= set(FORMER)
    assert sorted(result.tombstoned) == offenders
    assert all(result.slashed.get(name, 0) > 0 for name in offenders), result.slashed


@pytest.mark.parametrize("seed", [1, 2])
def test_with_a_checkpoint_outside_the_period_it_is_safe_but_nobody_can_be_punished(seed: int) -> None:
    result = run(heights=60, trust=True, seed=seed)
    assert not result.within_period
    assert result.joiner_history == "real"
    assert result.offenders() and set(result.offenders()) <= set(FORMER)  # it still sees who forged
    assert not result.inside and not result.tombstoned
    assert not any(result.slashable.values())  # their stake left: nothing to take
    reasons = result.why_unpunished()
    assert any("evidence_max_age" in r for r in reasons) and any("released" in r for r in reasons)


def test_the_period_is_the_shorter_of_evidence_age_and_unbonding() -> None:
    assert run(heights=12).period == 40  # evidence_max_age 40, 10 epochs of 4 heights


def test_the_command_prints_which_it_was_and_fails_only_when_the_defence_does() -> None:
    runner = CliRunner()
    fooled = runner.invoke(cli, ["long-range"])
    assert fooled.exit_code == 0, fooled.output
    assert (
        "inside the weak subjectivity period" in fooled.output and "took the forged history" in fooled.output
    )
    defended = runner.invoke(cli, ["long-range", "--trust", "8", "--json"])
    assert defended.exit_code == 0, defended.output
    outcome = json.loads(defended.output)
    assert outcome["joiner_history"] == "real" and outcome["punished"] and outcome["within_period"]
    late = runner.invoke(cli, ["long-range", "--heights", "60", "--trust", "8"])
    assert "outside the weak subjectivity period" in late.output and "nobody was punished" in late.output
    refused = runner.invoke(cli, ["long-range", "--trust", "13"])
    assert refused.exit_code == 2 and "past the real chain's 12 heights" in refused.output
