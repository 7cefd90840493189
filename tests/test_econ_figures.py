"""What the economy's figures mean: forgone issuance summed, yield over staked value, re-staking, the plot.

Each value is worked out by hand on one pool and one delegator: a block
reward of 4,000 units, a pledge of 1,000,000 and a delegation of 3,000,000,
no fixed cost or margin, so the member earns 3/4 of each block.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from network.econ.config import EconomyConfig, parse_economy
from network.econ.engine import FastForward
from network.econ.runs import SWEEP_HEADER, SweepRow, forgone_cell
from node.core.genesis import PPM

ONE = """
[run]
epochs = 3
epoch_length = 10
seed = 1

[params]
block_reward = 4000
saturation_k = 0
unbonding_epochs = 1
committee_size = 64

[[pools]]
name = "solo"
pledge = 1000000

[[delegators]]
name = "saver"
count = 1
policy = "loyal"
wealth = "equal"
total = 3000000
start = "random"
"""


def one(k: int = 0, restake: bool = False) -> EconomyConfig:
    raw = tomllib.loads(ONE)
    raw["params"]["saturation_k"] = k
    raw["delegators"][0]["restake"] = restake
    return parse_economy(raw, "one", Path("."))


def run(config: EconomyConfig) -> list[dict[str, Any]]:
    return list(FastForward(config).run())


def test_yield_is_rewards_over_staked_value_not_the_growth_of_holdings() -> None:
    """3,000 a block to the member (3/4 of 4,000), 10 blocks: 30,000 on 3,000,000 staked is 1% each epoch,
    though the paid-out rewards pile up in the balance (growth of holdings would fall: 0.990%, 0.980%)."""
    records = run(one())
    assert [r["classes"]["saver"]["holdings"] for r in records] == [
        3_000_000,
        3_030_000,
        3_060_000,
        3_090_000,
    ]
    assert [r["classes"]["saver"]["staked"] for r in records] == [3_000_000] * 4
    assert [r["classes"]["saver"]["yield_ppm"] for r in records[1:]] == [10_000] * 3


def test_re_staking_delegates_the_rewards_back_so_the_class_compounds() -> None:
    """Epoch 1 starts by delegating the 30,000 earned; its first block still pays on the stake before
    (3,000), the nine after on 3,030,000 of 4,030,000 (floor(4,000 * 303/403) = 3,007 each): 30,063
    over 3,030,000 staked."""
    records = run(one(restake=True))
    saver = [r["classes"]["saver"] for r in records]
    assert [s["staked"] for s in saver] == [3_000_000, 3_000_000, 3_030_000, 3_060_063]
    assert saver[2]["holdings"] - saver[1]["holdings"] == 3_000 + 9 * 3_007
    assert saver[2]["yield_ppm"] == 30_063 * PPM // 3_030_000
    assert saver[-1]["holdings"] > run(one())[-1]["classes"]["saver"]["holdings"]  # compounding pays


def test_forgone_issuance_is_what_saturation_withheld_summed_not_one_blocks_worth() -> None:
    """k = 2 with one pool holding everything: it is paid min(sigma, 1/2)/sigma = half of each block,
    2,000 withheld a block. The reserve holds one block's 2,000 (it pays the next block first); the
    forgone total grows by 20,000 an epoch."""
    records = run(one(k=2))
    assert [r["forgone"] for r in records] == [0, 20_000, 40_000, 60_000]
    assert [r["reserve"] for r in records[1:]] == [2_000] * 3
    assert [r["classes"]["saver"]["yield_ppm"] for r in records[1:]] == [5_000] * 3  # 1,500 a block
    assert forgone_cell(records[-1]) == "0 (50.0%)"  # 60,000 millionths of 120,000 possible
    assert "FORGONE" in SWEEP_HEADER and "RESERVE" not in SWEEP_HEADER
    assert SweepRow(2, records).cells()[SWEEP_HEADER.index("FORGONE")] == "0 (50.0%)"
    assert run(one())[-1]["forgone"] == 0  # no sharing, nothing withheld (no floor dust here either)


def _record(epoch: int, pools: dict[str, int], forgone: int) -> dict[str, Any]:
    return {
        "epoch": epoch, "nakamoto": 1, "saturated": 1, "half_saturated": 1, "gini_ppm": 0, "hhi_ppm": 0,
        "top3_ppm": 0, "paid_ppm": PPM // 2, "issued": 10 * PPM, "forgone": forgone, "reserve": PPM,
        "saturation_k": 4, "pledge_influence_ppm": 300_000, "events": [],
        "pools": {name: [stake, 0, "active"] for name, stake in pools.items()},
        "classes": {"crowd": {"holdings": 1, "staked": 1, "yield_ppm": 2_500}},
    }  # fmt: skip


def test_the_report_draws_shares_against_saturation_every_pool_and_the_issuance() -> None:
    pytest.importorskip("matplotlib")
    from network.econ.plot import figure_of

    pools = {"big": 500, "mid": 300, "tiny-1": 100, "tiny-2": 100}  # tiny ones never reach 1/(2k)
    records = [_record(e, pools, (e + 1) * 3 * PPM) for e in range(-1, 3)]
    fig = figure_of(records, "posnet economy: test")
    assert (
        "k = 4" in fig.get_suptitle()
        and "z0 = 1/k = 25.0%" in fig.get_suptitle()
        and "a0 = 0.3" in fig.get_suptitle()
    )
    _, shares_ax, _, yields_ax, issuance_ax = fig.axes[:5]
    lines = {line.get_label(): line for line in shares_ax.get_lines()}
    assert {"big", "mid"} <= set(lines) and "others (2 pools, summed)" in lines
    assert (
        list(lines["big"].get_ydata()) == [0.5] * 4
        and list(lines["others (2 pools, summed)"].get_ydata()) == [0.2] * 4
    )
    saturation = lines["saturation 1/k = 25.0%"]
    assert list(saturation.get_ydata()) == [0.25, 0.25]
    assert "k = 4" in shares_ax.get_title(loc="left") and "share" in shares_ax.get_title(loc="left")
    assert "staked value" in yields_ax.get_title(loc="left")
    assert list(yields_ax.get_lines()[0].get_ydata()) == [0.25] * 3  # genesis (epoch -1) left out
    issued = {line.get_label(): list(line.get_ydata()) for line in issuance_ax.get_lines()}
    assert issued["forgone so far (withheld, summed)"] == [0.0, 3.0, 6.0, 9.0]
    assert "issuance" in issuance_ax.get_title(loc="left")
