"""RANDAO by hash onion (node.core.randao): unique reveals, checked in blocks, mixed into the seed.

A reveal is the one value that hashes to its validator's last one, so a
block with any other (another epoch's, another validator's, random bytes, or
none) is invalid; the seed mixes reveals, so a proposer's block variants all
draw the same seats and its one choice is to withhold; runs stay safe and
live; and a grinder that withholds gains far less than one that grinds
block hashes.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from network.sim.runner import run_simulation
from network.sim.sweep import SweepSpec
from node.core import randao as R
from node.core.codec import DecodeError, encode
from node.core.genesis import GenesisError, Params, genesis_to_toml, parse_genesis
from node.core.grinding import seats_of, timestamp_variants
from node.core.messages import Block
from node.core.state import apply_block, block_problem
from tests.support.chain import ADDR, KEYS, genesis, make_block, proposer_name, state0

RANDAO = Params(randao=1)


def test_a_reveal_verifies_against_the_commitment_then_each_against_the_last() -> None:
    seed = KEYS["alice"].seed
    kept = (R.commitment(seed), -1)
    for epoch in (0, 1, 5, 6):
        value = R.reveal(seed, epoch)
        assert R.reveal_problem(kept, value, epoch) is None
        kept = (value, epoch)
    assert R.reveal_problem(kept, kept[0], 6) is None  # again in the same epoch: the same value


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(0, 50))
def test_no_value_but_the_reveal_verifies(value: bytes, epoch: int) -> None:
    seed = KEYS["bob"].seed
    kept = (R.commitment(seed), -1)
    assert (R.reveal_problem(kept, value, epoch) is None) == (value == R.reveal(seed, epoch))


def test_other_epochs_and_other_validators_reveals_fail() -> None:
    seed, other = KEYS["alice"].seed, KEYS["bob"].seed
    kept = (R.reveal(seed, 3), 3)
    assert R.reveal_problem(kept, R.reveal(seed, 5), 5) is None
    for value, epoch in [
        (R.reveal(seed, 4), 5),  # another epoch's
        (R.reveal(seed, 6), 5),
        (R.reveal(other, 5), 5),  # another validator's
        (kept[0], 5),  # the last one again, for a later epoch
        (R.reveal(seed, 2), 2),  # before the last reveal
        (R.reveal(seed, R.ONION_DEPTH - 1), R.ONION_DEPTH),  # past the onion
    ]:
        assert R.reveal_problem(kept, value, epoch) is not None, epoch


def test_checkpoints_give_the_same_layers_as_hashing_all_the_way() -> None:
    secret = R.onion_secret(KEYS["carol"].seed)
    for depth in (0, 1, R.CHECKPOINT_EVERY - 1, R.CHECKPOINT_EVERY, 3 * R.CHECKPOINT_EVERY + 7):
        assert R.layer(secret, depth) == R.hash_times(secret, depth)


def test_blocks_carry_their_proposers_reveal_and_no_other() -> None:
    state = state0(RANDAO)
    name = proposer_name(state)
    block = replace(make_block(state), reveal=R.reveal(KEYS[name].seed, 0))
    assert block_problem(state, block) is None
    other = next(n for n in KEYS if n != name)
    for wrong in (b"", R.reveal(KEYS[name].seed, 1), R.reveal(KEYS[other].seed, 0), bytes(32)):
        problem = block_problem(state, replace(block, reveal=wrong))
        assert problem is not None and problem.startswith("reveal:"), wrong
    assert block_problem(state0(), block) is not None  # a reveal on a block-hash chain
    assert block_problem(state0(), make_block(state0())) is None


def test_the_seed_mixes_the_reveal_so_block_variants_draw_the_same_seats() -> None:
    state = state0(replace(RANDAO, epoch_length=1))  # every block ends an epoch
    name = proposer_name(state)
    block = replace(make_block(state), reveal=R.reveal(KEYS[name].seed, 0))
    afters = [apply_block(state, variant)[0] for variant in timestamp_variants(state, block, 16)]
    assert len({after.last_block_hash for after in afters}) == 16
    assert len({after.epoch_seed for after in afters}) == 1
    assert afters[0].reveals is not None and afters[0].reveals[ADDR[name]] == (block.reveal, 0)
    hashing = state0(Params(epoch_length=1))
    hashed = [apply_block(hashing, b)[0] for b in timestamp_variants(hashing, make_block(hashing), 16)]
    assert len({after.epoch_seed for after in hashed}) == 16  # a block-hash chain: a seed per variant


def test_a_block_with_a_reveal_round_trips_and_one_without_keeps_its_old_encoding() -> None:
    block = make_block(state0())
    assert len(block.to_wire()) == 8
    with_reveal = replace(block, reveal=bytes(range(32)))
    assert Block.decode(with_reveal.encoded) == with_reveal
    with pytest.raises(DecodeError):
        Block.decode(encode((*block.to_wire(), (), b"")))  # ten items with an empty reveal
    with pytest.raises(DecodeError):
        Block.decode(encode((*block.to_wire(), (), b"short")))


def test_genesis_commitments_round_trip_through_toml_and_only_on_randao_chains() -> None:
    import tomllib

    doc = genesis(RANDAO)
    assert all(v.randao_commitment == R.commitment(KEYS[v.name].seed) for v in doc.validators)
    assert parse_genesis(tomllib.loads(genesis_to_toml(doc))) == doc
    assert all(not v.randao_commitment for v in genesis().validators)
    raw = tomllib.loads(genesis_to_toml(doc))
    raw["validators"][0]["randao_commitment"] = "abcd"
    with pytest.raises(GenesisError, match="randao_commitment"):
        parse_genesis(raw)


def randao_spec(byzantine: int, mode: str = "grind") -> SweepSpec:
    return SweepSpec(
        validators=7,
        heights=30,
        byzantine=byzantine,
        byzantine_mode=mode,
        committee_size=5,
        params=(("epoch_length", 3), ("randao", 1)),
        faults="random",
    )


@pytest.mark.sim
@pytest.mark.parametrize("byzantine", [0, 2])
def test_randao_runs_keep_every_invariant_across_seeds_with_faults(byzantine: int) -> None:
    for seed in range(1, 5):
        result = run_simulation(randao_spec(byzantine).config(seed))
        assert result.ok, (seed, result.violations[:2], result.replay)
        assert result.heights_finalized >= 30


@pytest.mark.sim
def test_a_randao_grinder_only_publishes_boundary_blocks_that_seat_it_at_least_as_its_stake_expects() -> None:
    """Its only lever is withholding: every boundary block it proposed drew at least its expectation."""
    from tests.test_grinding import chain_of, config, grinder_of

    cfg = config(1, heights=90)
    cfg = replace(cfg, params=replace(cfg.params, randao=1))
    result, chain = chain_of(cfg)
    assert result.ok, result.violations
    assert result.round_timeouts > 0  # it did withhold
    published = 0
    for (block, state), (_, after) in pairwise(chain):
        coalition = grinder_of(state)
        if block.height % 3 or block.proposer not in coalition:
            continue
        stake = sum(p for a, p in after.validator_set if a in coalition)
        total = sum(p for _, p in after.validator_set)
        assert seats_of(after.next_seats, coalition) * total >= 8 * stake
        published += 1
    assert published > 0


@pytest.mark.slow
@pytest.mark.sim
def test_withholding_under_randao_biases_the_seats_far_less_than_grinding_block_hashes() -> None:
    """A 25% grinder over 60 epochs of 3 heights: its seat share over its stake share, both ways."""
    from tests.test_grinding import chain_of, config, grinder_of

    def bias(randao: int, variants: int) -> float:
        cfg = config(variants, heights=180)
        _, chain = chain_of(replace(cfg, params=replace(cfg.params, randao=randao)))
        drawn = [
            seats_of(after.next_seats, grinder_of(after)) / 8
            for (block, _), (_, after) in pairwise(chain)
            if block.height % 3 == 0
        ]
        return sum(drawn) / len(drawn) - 0.25

    hashed, revealed = bias(0, 256), bias(1, 1)
    assert hashed > 0.15
    assert revealed < hashed / 3
