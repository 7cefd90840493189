"""The `grind` adversary: a boundary proposer choosing among valid blocks the one whose seed seats it most.

K = 1 is the honest proposer (the same chain on a seed); K = 256 seats its
coalition at least as much as the honest block at every boundary it
proposes, proposes only valid blocks, and keeps every invariant a run checks.
"""

from __future__ import annotations

import shlex
from itertools import pairwise

import pytest
from click.testing import CliRunner

from network.sim.config import SimConfig, replay_command
from network.sim.node import SimNode
from network.sim.runner import SimResult, run_simulation
from node.core.genesis import Params
from node.core.grinding import drawn_seats, ground_block, seats_of, timestamp_variants
from node.core.messages import Block
from node.core.state import ChainState, block_problem

pytestmark = pytest.mark.sim

STAKES = (1000,) * 9 + (3000,)  # the grinder, v10, holds 25%


def config(variants: int, *, byzantine: int = 1, seed: int = 1, heights: int = 45) -> SimConfig:
    return SimConfig(
        validators=10,
        heights=heights,
        seed=seed,
        byzantine=byzantine,
        byzantine_mode="grind",
        committee_size=8,
        params=Params(epoch_length=3),
        stakes=STAKES,
        grind_variants=variants,
    )


def chain_of(cfg: SimConfig) -> tuple[SimResult, list[tuple[Block, ChainState]]]:
    """The run and, for each block of an honest node's chain, the block with the state it applied to."""
    kept: list[list[SimNode]] = []
    result = run_simulation(cfg, inspect=kept.append)
    node = min(kept[0], key=lambda n: n.height)
    states = [node.genesis, *(state for _, _, state in node.chain)]
    return result, [(block, states[i]) for i, (block, _, _) in enumerate(node.chain)]


def grinder_of(state: ChainState) -> frozenset[bytes]:
    return frozenset(address for address, name in state.names.items() if name == "v10")


def test_one_variant_is_the_honest_proposer_the_same_chain() -> None:
    honest = run_simulation(config(1, byzantine=0))
    ground = run_simulation(config(1))
    assert ground.ok and honest.ok
    assert ground.state_hash == honest.state_hash


def test_variants_are_distinct_valid_timestamps_the_honest_one_first() -> None:
    _, chain = chain_of(config(1, heights=6))
    block, state = chain[5]
    for k in (1, 2, 256):
        variants = timestamp_variants(state, block, k)
        stamps = [v.timestamp_ms for v in variants]
        assert len(set(stamps)) == k and variants[0] is block
        assert min(stamps) >= state.last_timestamp_ms and max(stamps) <= block.timestamp_ms + k - 1
    assert all(block_problem(state, v) is None for v in timestamp_variants(state, block, 256))
    with pytest.raises(ValueError):
        timestamp_variants(state, block, 0)


def test_the_seats_a_variant_draws_are_those_applying_it_draws() -> None:
    from node.core.state import apply_block

    _, chain = chain_of(config(1, heights=9))
    block, state = chain[5]  # height 6 ends epoch 1
    variants = timestamp_variants(state, block, 8)
    drawn = [seats.members for seats in drawn_seats(state, variants)]
    assert drawn == [apply_block(state, v)[0].next_seats.members for v in variants]
    assert len(set(drawn)) > 1  # other hashes, other seats


def test_256_variants_seat_the_coalition_at_least_as_much_as_the_honest_block_at_every_boundary() -> None:
    """On one seed's chain, at each boundary: the ground block's seats against the honest block's."""
    _, chain = chain_of(config(1, heights=60))
    gains = []
    for block, state in chain:
        if block.height % state.params.epoch_length:
            continue
        coalition = grinder_of(state)
        ground = ground_block(state, block, coalition, 256)
        assert block_problem(state, ground) is None
        honest_seats, ground_seats = (
            seats_of(drawn_seats(state, (b,))[0], coalition) for b in (block, ground)
        )
        assert ground_seats >= honest_seats
        gains.append(ground_seats - honest_seats)
    assert len(gains) >= 20 and sum(gains) > 0


def test_a_grinder_keeps_every_invariant_and_wins_seats_over_its_stake() -> None:
    result, chain = chain_of(config(256, heights=90))
    assert result.ok, result.violations
    drawn = [
        seats_of(state_after.next_seats, grinder_of(state_after))
        for (block, _), (_, state_after) in pairwise(chain)
        if block.height % 3 == 0
    ]
    assert sum(drawn) / len(drawn) / 8 > 0.35  # 25% of the stake; honest runs average 0.25


def test_the_replay_line_of_a_grind_run_carries_its_variants(monkeypatch: pytest.MonkeyPatch) -> None:
    import network.sim.runner
    from network.cli import cli

    class Captured(Exception):
        pass

    def capture(cfg: SimConfig) -> None:
        raise Captured(cfg)

    monkeypatch.setattr(network.sim.runner, "run_simulation", capture)
    drawn = config(32)
    result = CliRunner().invoke(cli, shlex.split(replay_command(drawn))[1:])
    assert isinstance(result.exception, Captured), result.output
    assert result.exception.args[0] == drawn
