"""Operators as agents, the paper's equilibrium as an experiment, and runs that the seed alone decides."""

from __future__ import annotations

import tomllib
from fractions import Fraction
from pathlib import Path

import pytest

from network.econ.config import EconError, load_economy, parse_economy
from network.econ.engine import FastForward
from network.econ.full import MessageLevel
from network.econ.nonmyopic import Rules, Terms
from network.econ.operators import competitive_margin_ppm, new_margin_ppm, pays, pledge_for, would_enter
from network.econ.runs import epoch_lines
from node.core.genesis import PPM

REPO_ROOT = Path(__file__).resolve().parent.parent
EQUILIBRIUM = REPO_ROOT / "scenarios" / "economy" / "equilibrium.toml"

# Two dear founding pools hold everyone; three cheaper potential operators wait. k = 3.
AGENTS = """
[run]
epochs = 8
epoch_length = 10
seed = 3

[params]
block_reward = 100000
saturation_k = 3
unbonding_epochs = 1
committee_size = 64
epoch_rewards = 1

[market]
retire_after = 2

[[pools]]
name = "old"
count = 2
pledge = 2000
fixed_cost = 150000

[[operators]]
name = "op"
count = 3
total = 30000
fixed_cost = 50000
fixed_cost_max = 100000

[[delegators]]
name = "seekers"
count = 40
policy = "nonmyopic"
wealth = "equal"
total = 60000
switching_cost_ppm = 20000
start = "random"
"""


def economy(text: str = AGENTS) -> object:
    return parse_economy(tomllib.loads(text), "agents", Path("."))


# ------------------------------------------------------------------ the rules, by hand

RULES = Rules(pot=100, payouts=1, k=2, a0_ppm=0, total=1000)  # saturation at 500; 50 there


def test_a_pool_pays_when_its_expected_reward_covers_its_cost() -> None:
    assert pays(RULES, Terms(b"a", "a", stake=200, pledge=50, fixed_cost=20))  # 100 * 0.2 = 20
    assert not pays(RULES, Terms(b"a", "a", stake=199, pledge=50, fixed_cost=20))
    assert pays(RULES, Terms(b"a", "a", stake=900, pledge=50, fixed_cost=50))  # saturated: 50


def test_an_operator_enters_only_strictly_into_the_top_k() -> None:
    cheap = Terms(b"n", "n", stake=100, pledge=100, fixed_cost=10)  # desirability 40
    assert would_enter(RULES, cheap, [Fraction(45)])  # one pool above: room in the top 2
    assert would_enter(RULES, cheap, [Fraction(45), Fraction(39)])
    assert not would_enter(RULES, cheap, [Fraction(45), Fraction(40)])  # an equal incumbent keeps its place
    assert not would_enter(RULES, Terms(b"n", "n", 100, 100, fixed_cost=60), [])  # never pays
    assert not would_enter(Rules(100, 1, 0, 0, 1000), cheap, [])  # k = 0: no top k to join


def test_pledge_stops_at_half_the_saturation_point() -> None:
    assert pledge_for(RULES, 100) == 100
    assert pledge_for(RULES, 400) == 250
    assert pledge_for(Rules(100, 1, 0, 0, 1000), 400) == 400


def test_a_top_operator_charges_the_margin_that_keeps_it_level_with_its_rival() -> None:
    cheap = Terms(b"c", "c", stake=300, pledge=50, fixed_cost=10, margin_ppm=0)  # 40 with no margin
    assert competitive_margin_ppm(RULES, cheap, Fraction(30), 0) == 250_000  # 40 * 0.75 = 30
    assert competitive_margin_ppm(RULES, cheap, Fraction(30), 300_000) == 300_000  # never below its own
    assert competitive_margin_ppm(RULES, cheap, Fraction(45), 0) == 0  # the rival is better: no margin
    assert new_margin_ppm(RULES, cheap, Fraction(30), 0) == 250_000
    near = Terms(b"c", "c", stake=300, pledge=50, fixed_cost=10, margin_ppm=248_000)
    assert new_margin_ppm(RULES, near, Fraction(30), 0) is None  # within a step: left alone


# ------------------------------------------------------------------ in a run


def test_cheaper_operators_enter_set_margins_and_the_dear_pools_retire_through_transactions() -> None:
    records = list(FastForward(economy()).run())  # type: ignore[arg-type]
    actions = [a for r in records for a in r["operators"]]
    assert sorted(a for a in actions if a.endswith("registers")) == [f"op-{n} registers" for n in (1, 2, 3)]
    assert any(" margin " in a for a in actions)
    assert {"old-1 retires", "old-2 retires"} <= set(actions)
    penalties = [p for r in records for p in r["penalties"]]
    assert "old-1 retired" in penalties and "old-2 retired" in penalties  # the ledger's own retirement
    last = records[-1]
    assert last["half_saturated"] == 3 and last["largest_of_saturation_ppm"] <= 1_100_000
    assert all(r["supply_conserved"] for r in records) and sum(r["policy_misses"] for r in records) == 0
    assert all(last["pools"][f"op-{n}"][2] == "active" for n in (1, 2, 3))


def test_fixed_pools_turn_every_operator_off() -> None:
    config = economy().with_fixed_pools()  # type: ignore[attr-defined]
    records = list(FastForward(config).run())
    assert not any(r["operators"] for r in records)
    assert set(records[-1]["pools"]) == {"old-1", "old-2"}


def test_operator_names_may_not_clash_with_pools() -> None:
    with pytest.raises(EconError, match="'old-1' is also a pool's name"):
        economy(AGENTS.replace('name = "op"', 'name = "old"'))


@pytest.mark.sim
def test_operators_and_nonmyopic_delegators_build_the_same_ledger_in_both_modes() -> None:
    """Registrations, margin updates and retirements go through real transactions either way."""
    config = economy()
    fast = list(FastForward(config).run())  # type: ignore[arg-type]
    full = list(MessageLevel(config).run())  # type: ignore[arg-type]
    assert [r["ledger_hash"] for r in fast] == [r["ledger_hash"] for r in full]
    assert [r["operators"] for r in fast] == [r["operators"] for r in full]
    assert any(r["operators"] for r in full)


# ------------------------------------------------------------------ the seed alone decides


def test_a_renamed_copy_of_a_file_runs_the_same(tmp_path: Path) -> None:
    """Keys, chain id and every draw come from the seed and the parties' names, not the file's name."""
    runs = []
    for name in ("saturation.toml", "copy of it.toml"):
        path = tmp_path / name
        path.write_text(AGENTS)
        runs.append(list(epoch_lines(load_economy(path), 3, 8)))
    assert runs[0] == runs[1]
    other = tmp_path / "other.toml"
    other.write_text(AGENTS)
    assert list(epoch_lines(load_economy(other), 4, 8)) != runs[0]  # the seed does change it


# ------------------------------------------------------------------ the paper's equilibrium


def _bounds(k: int) -> dict[str, int]:
    last = list(FastForward(load_economy(EQUILIBRIUM).with_param("saturation_k", k)).run())[-1]
    return {key: last[key] for key in ("half_saturated", "largest_of_saturation_ppm", "paid_ppm")}


def _check(k: int, last: dict[str, int]) -> None:
    assert 0.8 * k <= last["half_saturated"] <= 1.2 * k, last
    assert last["largest_of_saturation_ppm"] <= 1_100_000, last
    assert last["paid_ppm"] >= 950_000, last


def test_free_entry_and_nonmyopic_delegators_reach_about_k_pools_of_about_1_over_k() -> None:
    """k = 5: within [0.8k, 1.2k] pools hold half of 1/k or more, none above 1.1/k, 95% paid."""
    _check(5, _bounds(5))


@pytest.mark.parametrize("k", [10, 20])  # about 5 s each: quick enough to run every time
def test_the_equilibrium_holds_for_larger_k(k: int) -> None:
    _check(k, _bounds(k))


def test_today_s_market_beside_it_stays_frozen_over_saturated() -> None:
    """The same file with `yield` and no operators: the issue's outcome (k = 5)."""
    config = load_economy(EQUILIBRIUM).with_param("saturation_k", 5).with_policy("yield").with_fixed_pools()
    last = list(FastForward(config).run())[-1]
    assert last["largest_of_saturation_ppm"] > 1_300_000 and last["paid_ppm"] < 800_000
    assert last["half_saturated"] < 0.8 * 5


def test_the_cli_sets_every_class_on_one_policy_and_can_turn_the_operators_off(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from network.cli.econ import econ

    path = tmp_path / "agents.toml"
    path.write_text(AGENTS)
    runs = {}
    for extra in ([], ["--policy", "yield", "--fixed-pools"]):
        out = tmp_path / f"run{len(extra)}.jsonl"
        result = CliRunner().invoke(econ, ["run", str(path), "--fast", "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        runs[len(extra)] = result.output
    assert "0 operator actions" not in runs[0] and "0 operator actions" in runs[3]
    bad = CliRunner().invoke(econ, ["run", str(path), "--fast", "--policy", "nope"])
    assert bad.exit_code == 2


def test_the_competitive_margin_counts_apparent_performance() -> None:
    """A pool that signs half its seats earns half at saturation: 25 - 10 = 15 before margin, below 30."""
    shaky = Terms(b"s", "s", stake=300, pledge=50, fixed_cost=10, performance_ppm=PPM // 2)
    assert competitive_margin_ppm(RULES, shaky, Fraction(30), 0) == 0
    assert competitive_margin_ppm(RULES, shaky, Fraction(12), 0) == 200_000  # 15 * 0.8 = 12
