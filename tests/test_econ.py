"""The staking economy: its files, wealth, metrics, policies, the fast-forward engine and `posnet econ`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from network.econ import metrics as M
from network.econ.config import DelegatorClass, EconError, load_economy, parse_economy
from network.econ.engine import FastForward
from network.econ.full import MessageLevel, UnreliableNode
from network.econ.policies import POLICIES, largest_policy
from network.econ.runs import epoch_lines
from network.econ.wealth import balances, shares_of
from node.core import ledger as L
from node.core.genesis import PPM
from node.core.ledger import genesis_ledger
from node.core.tx import UpdatePool
from tests.test_ledger import D1, V1, V2, block, make_test_genesis, signed

REPO_ROOT = Path(__file__).resolve().parent.parent
ECONOMY = REPO_ROOT / "scenarios" / "economy"

SMALL = """
[run]
epochs = 8
epoch_length = 10
seed = 3

[params]
block_reward = 100000
saturation_k = 4
unbonding_epochs = 1
committee_size = 64

[[pools]]
name = "giant"
pledge = 20000

[[pools]]
name = "pool"
count = 5
pledge = 2000
margin_ppm = 30000

[[delegators]]
name = "seekers"
count = 60
policy = "yield"
wealth = "equal"
total = 60000
switching_cost_ppm = 10000
start = "largest"

[[delegators]]
name = "stayers"
count = 10
policy = "loyal"
wealth = "pareto"
alpha = 1.3
total = 20000

[[events]]
epoch = 4
kind = "offline"
pool = "pool-2"
"""


def economy(text: str = SMALL, **run: int) -> object:
    import tomllib

    raw = tomllib.loads(text)
    raw["run"] = {**raw.get("run", {}), **run}
    return parse_economy(raw, "test", Path("."))


# ------------------------------------------------------------------ files


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t.replace('policy = "loyal"', 'policy = "greedy"'),
            "delegators[1].policy: 'greedy' is not one of",
        ),
        (
            lambda t: t.replace("margin_ppm = 30000", "margin_ppm = 3000000"),
            "pools[1].margin_ppm: 3000000 is outside",
        ),
        (lambda t: t.replace('pool = "pool-2"', 'pool = "pool-9"'), "events[0].pool: no pool named 'pool-9'"),
        (
            lambda t: t.replace("alpha = 1.3", "alpha = 1.3\ncolour = 1"),
            "delegators[1].colour: unknown field",
        ),
        (lambda t: t.replace("saturation_k = 4", "saturation_k = -1"), "params.saturation_k"),
        (lambda t: t.replace('name = "giant"', 'name = "pool-1"'), "pools[1].name: duplicate 'pool-1'"),
        (lambda t: t.replace("epochs = 8", "epochs = 0"), "run.epochs: 0 is outside"),
    ],
)
def test_a_bad_economy_file_is_refused_in_one_line_naming_the_field(change: object, message: str) -> None:
    with pytest.raises(EconError) as caught:
        economy(change(SMALL))  # type: ignore[operator]
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_cli_refuses_a_bad_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL.replace("count = 60", "count = many"))
    result = subprocess.run(
        [sys.executable, "-m", "network.cli", "econ", "run", str(bad), "--fast"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "not valid TOML" in result.stderr


def test_every_shipped_experiment_loads() -> None:
    files = sorted(ECONOMY.glob("*.toml"))
    assert len(files) >= 4
    for path in files:
        load_economy(path)


# ------------------------------------------------------------------ wealth and metrics


@given(st.integers(0, 10**12), st.lists(st.floats(0.001, 1000.0), min_size=1, max_size=50))
def test_wealth_shares_add_up_to_the_total_exactly(total: int, weights: list[float]) -> None:
    amounts = shares_of(total, weights)
    assert sum(amounts) == total and min(amounts) >= 0


def test_pareto_wealth_is_more_unequal_than_equal_wealth() -> None:
    import random

    def spread(wealth: str) -> int:
        spec = DelegatorClass("c", 500, "loyal", wealth, total=10**9, alpha=1.2)
        return M.gini_ppm(balances(spec, random.Random(1)))

    assert spread("equal") == 0 and spread("pareto") > 400_000 and spread("lognormal") > 200_000


def test_metrics_of_known_distributions() -> None:
    assert (M.gini_ppm([5] * 10), M.hhi_ppm([5] * 10), M.nakamoto([5] * 10)) == (0, 100_000, 4)
    assert M.gini_ppm([0, 0, 0, 100]) == 750_000 and M.hhi_ppm([0, 0, 0, 100]) == PPM
    assert M.top_share_ppm([50, 30, 10, 10]) == 900_000 and M.nakamoto([50, 30, 10, 10]) == 1
    assert M.saturated([30, 10, 10], 50, 2) == 1 and M.saturated([30, 10], 40, 0) == 0


@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=40))
def test_concentration_metrics_stay_in_their_bounds(values: list[int]) -> None:
    assert 0 <= M.gini_ppm(values) < PPM
    assert (M.hhi_ppm(values) == 0) == (sum(values) == 0)
    assert M.hhi_ppm(values) <= PPM and 0 <= M.top_share_ppm(values) <= PPM
    assert M.nakamoto(values) <= len(values)


# ------------------------------------------------------------------ the pool's terms


def test_the_owner_updates_its_pool_terms_and_nobody_else_can() -> None:
    ledger = genesis_ledger(make_test_genesis())
    updated, events = block(ledger, signed(V2, UpdatePool(0, 7, 123_000)))
    assert events[-1].kind == "tx_applied"
    assert (updated.pools[V2.address].fixed_cost, updated.pools[V2.address].margin_ppm) == (7, 123_000)
    _, events = block(ledger, signed(D1, UpdatePool(0, 0, 0)))
    assert events[-1].reason == "not a pool owner"
    assert updated.pools[V1.address] == ledger.pools[V1.address]


# ------------------------------------------------------------------ the engine


def test_same_file_and_seed_give_the_same_json_bit_for_bit(tmp_path: Path) -> None:
    config = economy()
    first = list(epoch_lines(config, 3, 8))  # type: ignore[arg-type]
    assert first == list(epoch_lines(config, 3, 8))  # type: ignore[arg-type]
    assert first != list(epoch_lines(config, 4, 8))  # type: ignore[arg-type]
    path = tmp_path / "test.toml"  # the seed (not this name) names the chain and its keys
    path.write_text(SMALL)
    outputs = []
    for hash_seed in ("1", "2"):  # separate processes, different hash seeds
        out = tmp_path / f"run{hash_seed}.jsonl"
        subprocess.run(
            [sys.executable, "-m", "network.cli", "econ", "run", str(path), "--fast", "--out", str(out)],
            check=True, capture_output=True,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONHASHSEED": hash_seed},
        )  # fmt: skip
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0].decode().splitlines()[0] == json.dumps(
        json.loads(first[0]), sort_keys=True, separators=(",", ":")
    )


def test_a_run_keeps_supply_and_its_yield_delegators_where_the_ledger_quotes_best() -> None:
    engine = FastForward(economy())  # type: ignore[arg-type]
    records = list(engine.run())
    assert len(records) == 9 and all(r["supply_conserved"] for r in records)
    assert sum(r["moves"] for r in records) > 0  # the seekers left the saturated giant
    assert sum(r["policy_misses"] for r in records) == 0
    assert (
        records[2]["moves"] >= 40 and records[-1]["pools"]["giant"][0] < 20_000 + 60_000
    )  # its genesis stake
    assert any("pool-2 offline" in r["events"] for r in records)
    assert any("pool-2 jailed" in r["penalties"] for r in records)


WHALE = """
[run]
epochs = 12
epoch_length = 10
seed = 1  # keys come from the seed: the yield policy still circles for some draws (6, under the old keys too)

[params]
block_reward = 100000
saturation_k = 8
unbonding_epochs = 1
committee_size = 64

[[pools]]
name = "pool"
count = 10
pledge = 2000
fixed_cost = 500

[[delegators]]
name = "crowd"
count = 80
policy = "yield"
wealth = "equal"
total = 80000
switching_cost_ppm = 20000
start = "random"

[[delegators]]
name = "whale"
count = 1
policy = "yield"
wealth = "equal"
total = 60000
switching_cost_ppm = 20000
start = "random"
"""


def test_a_holder_too_big_for_any_pool_settles_instead_of_chasing_quotes_its_arrival_ruins() -> None:
    """The whale holds several saturation points; each best quote is for a small delegation.

    Judged by quotes alone it moved into the best pool every epoch, saturating
    it, and the crowd fled the pool it filled: moves every epoch, forever.
    Judged with its own stake in the best pool, it stays, and the market settles.
    """
    records = list(FastForward(economy(WHALE)).run())  # type: ignore[arg-type]
    assert records[2]["moves"] > 0  # the crowd spreads out at the first boundary
    assert [r["moves"] for r in records[-6:]] == [0] * 6
    assert sum(r["policy_misses"] for r in records) == 0
    assert all(r["supply_conserved"] for r in records)


def test_a_policy_at_odds_with_the_ledgers_quotes_cannot_pass_silently() -> None:
    """A 'yield' policy that herds to the largest pool instead: the ledger's own quotes catch it."""
    engine = FastForward(economy(), policies={"yield": largest_policy})  # type: ignore[arg-type]
    assert sum(r["policy_misses"] for r in engine.run()) > 0


def test_an_offline_majority_halts_the_chain_and_the_run_says_so() -> None:
    text = SMALL + "".join(
        f'\n[[events]]\nepoch = 2\nkind = "offline"\npool = "{name}"\n'
        for name in ("giant", "pool-1", "pool-3")
    )
    records = list(FastForward(economy(text)).run())  # type: ignore[arg-type]
    assert "halted" in records[-1] and records[-1]["epoch"] == 2


@pytest.mark.parametrize("liquid", [0, 1])
def test_an_equivocation_costs_locked_delegators_and_spares_liquid_ones(liquid: int) -> None:
    text = SMALL.replace("unbonding_epochs = 1", f"unbonding_epochs = 1\nliquid_delegation = {liquid}")
    text = text.replace('policy = "yield"', 'policy = "loyal"')
    text += '\n[[events]]\nepoch = 3\nkind = "equivocate"\npool = "giant"\n'
    records = list(FastForward(economy(text)).run())  # type: ignore[arg-type]
    hit = next(r for r in records if "giant tombstoned" in r["penalties"])
    assert hit["slashed"] > 0
    assert (hit["classes"]["seekers"]["yield_ppm"] < 0) == (liquid == 0)


def test_every_policy_has_a_name_the_files_accept() -> None:
    from network.econ.config import POLICIES as NAMES

    assert set(POLICIES) == set(NAMES)


def test_a_pool_entering_later_registers_and_takes_stake() -> None:
    text = SMALL + '\n[[pools]]\nname = "late"\npledge = 5000\nenters_epoch = 3\n'
    config = economy(text)
    records = list(FastForward(config).run())  # type: ignore[arg-type]
    assert "late" not in records[1]["pools"] and records[-1]["pools"]["late"][2] == "active"
    assert any("late new_pool" in r["events"] for r in records)


def test_requoting_only_the_pools_a_move_touched_gives_the_same_run_as_requoting_all() -> None:
    """The engine's shortcut (a redelegation leaves the other quotes alone) must change nothing."""

    class FullRequote(FastForward):
        def _requote(self, market, before, after, touched):  # type: ignore[no-untyped-def]
            return self._quotes(after)

    config = economy()
    assert list(FullRequote(config).run()) == list(FastForward(config).run())  # type: ignore[arg-type]


def test_deciding_yield_turns_per_pool_gives_the_same_run_as_asking_every_delegator() -> None:
    """The engine's shortcuts (a `yield` holder stays when its pool's quote holds, decided once per
    pool; loyal holders stay; class totals read from one table per pool; the whole committee signs
    while everyone is online, worked out once per committee) must change nothing:
    moves, misses, rejections, holdings and hashes, with moves, a jailed pool, a whale, inattentive
    delegators, and liquid delegation."""

    class EveryTurnInFull(FastForward):
        def _stays(self, ledger, market, address, switching_cost_ppm, policy):  # type: ignore[no-untyped-def]
            return False

        def _signers(self, committee):  # type: ignore[no-untyped-def]
            signers = tuple(address for address, _ in committee.members if self._signs(address))
            return signers, sum(committee.power_of(a) for a in signers)

        def _holdings(self):  # type: ignore[no-untyped-def]
            ledger, totals, staked = self.state.ledger, Counter[str](), Counter[str]()
            for d in self.world.delegators:
                address = d.keypair.address
                account = L.account_of(ledger, address)
                held = account.balance
                held += sum(e.amount for e in ledger.unbonding if e.delegator == address)
                pool = ledger.pools.get(self.where.get(address, b"")) if not ledger.liquid else None
                stake = L.stake_of(pool, address) if pool is not None else 0
                totals[d.cls] += held + stake
                staked[d.cls] += stake + (account.balance if ledger.liquid and account.delegated_to else 0)
            return {cls: (total, staked[cls]) for cls, total in totals.items()}

    inattentive = WHALE.replace('name = "crowd"', 'name = "crowd"\nattention_ppm = 400000')
    liquid = SMALL.replace("unbonding_epochs = 1", "unbonding_epochs = 1\nliquid_delegation = 1")
    for text in (SMALL, liquid, WHALE, inattentive):
        config = economy(text)
        full = EveryTurnInFull(config)  # type: ignore[arg-type]
        full._roster = [(d, a, s, _asked(p), y) for d, a, s, p, y in full._roster]  # no shortcut by identity
        expected = list(full.run())
        assert list(FastForward(config).run()) == expected  # type: ignore[arg-type]
        assert sum(r["moves"] for r in expected) > 0


def _asked(policy: Any) -> Any:
    """The same policy under another identity: the engine's `is yield_policy` shortcuts do not see it."""
    return lambda holding, market, spec, rng: policy(holding, market, spec, rng)


# ------------------------------------------------------------------ the message-level mode

SPREAD = (
    SMALL.replace('[[events]]\nepoch = 4\nkind = "offline"\npool = "pool-2"\n', "")
    .replace('start = "largest"', 'start = "random"')
    .replace("pledge = 20000", "pledge = 6000")
)


@pytest.mark.sim
def test_without_faults_both_modes_build_the_same_ledger_at_every_epoch() -> None:
    """Fast-forward and the simulator (every vote a signed message) agree on every balance, pool and share."""
    config = economy(SPREAD)
    fast = list(FastForward(config).run())  # type: ignore[arg-type]
    full = list(MessageLevel(config).run())  # type: ignore[arg-type]
    assert [r["ledger_hash"] for r in fast] == [r["ledger_hash"] for r in full]
    assert sum(r["moves"] for r in full) > 0  # delegators did transact, through the nodes' blocks


@pytest.mark.sim
def test_the_message_level_mode_runs_the_timeline_through_real_nodes() -> None:
    """An offline pool's node is crashed and jailed for its silence; an equivocation arrives as evidence."""
    text = SMALL + '\n[[events]]\nepoch = 6\nkind = "equivocate"\npool = "pool-4"\n'
    run = MessageLevel(economy(text))  # type: ignore[arg-type]
    records = list(run.run())
    assert "pool-2" in run.net.down
    penalties = [p for r in records for p in r["penalties"]]
    assert "pool-2 jailed" in penalties and "pool-4 tombstoned" in penalties
    assert all(r["supply_conserved"] for r in records)


@pytest.mark.sim
def test_a_pool_below_full_performance_misses_precommits_in_both_modes_and_only_it() -> None:
    """performance_ppm: fast-forward leaves the pool out of certificates by a draw; the message level
    withholds its precommits (and their re-sends) for the same share of heights."""
    from node.core.ledger import missed_count

    text = SPREAD + '\n[[pools]]\nname = "flaky"\npledge = 2000\nperformance_ppm = 600000\n'
    config = economy(text, epochs=3)
    for mode in (FastForward, MessageLevel):
        run = mode(config)  # type: ignore[arg-type]
        list(run.run())
        missed = {
            run.names[address]: missed_count(pool) + int(pool.status == "jailed")
            for address, pool in run.state.ledger.pools.items()
        }
        assert missed.pop("flaky") > 0, mode.__name__
        assert not any(missed.values()), (mode.__name__, missed)
        if isinstance(run, MessageLevel):
            node = run.nodes["flaky"]
            assert isinstance(node, UnreliableNode) and node.withheld > 0


def test_the_report_draws_a_run_and_refuses_a_file_that_is_not_one(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from click.testing import CliRunner

    from network.cli import cli

    source = tmp_path / "test.toml"
    source.write_text(SMALL)
    run = tmp_path / "run.jsonl"
    result = CliRunner().invoke(
        cli, ["econ", "run", str(source), "--fast", "--out", str(run), "--epochs", "3"]
    )
    assert result.exit_code == 0, result.output
    assert len(run.read_text().splitlines()) == 4  # genesis and three epochs
    result = CliRunner().invoke(cli, ["econ", "report", str(run)])
    assert result.exit_code == 0 and run.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"height": 3}\n')
    result = CliRunner().invoke(cli, ["econ", "report", str(junk)])
    assert result.exit_code == 2 and "not an economy record" in result.output


@pytest.mark.slow
def test_an_economy_sweep_on_local_dask_workers_prints_the_same_rows(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    source = tmp_path / "test.toml"
    source.write_text(SMALL)
    argv = [
        sys.executable,
        "-m",
        "network.cli",
        "econ",
        "run",
        str(source),
        "--fast",
        "--sweep",
        "saturation_k=0,4",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    here = subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout.splitlines()
    there = subprocess.run([*argv, "--workers", "2"], capture_output=True, text=True, env=env, check=True)
    rows = there.stdout.splitlines()
    assert "2 local Dask workers" in rows[0] and "this process" in here[0]
    assert rows[1:] == here[1:] and len(rows) == 4
