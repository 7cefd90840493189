"""Reward sharing reads the stake snapshot the signing committee was drawn from, not the live ledger.

Issue 26, item 1: the saturation cap (cardano-ledger's maxPool' with k and
a0) read each pool's stake and pledge as they were when the block was
applied, while the shares it scales come from committee power drawn up to
two epochs earlier. A delegator could move stake into a pool that signed
at 2x saturation between the certificate and the block paying it, and the
pool would be paid in full. These tests drive the real chain state
(`node.core.state.apply_block`, real signatures) so the snapshot's timing
is the state's own.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.core import ledger as L
from node.core import rewards as R
from node.core.canonical import canonical
from node.core.genesis import GenesisError, Params, parse_params
from node.core.keys import Keypair
from node.core.messages import Block, CommitCertificate, Kind, Vote, make_certificate, sign_item
from node.core.snapshot import decode_state, encode_state
from node.core.state import ChainState, apply_block, genesis_state, proposer_of
from node.core.tx import Delegate, Redelegate, Tx, Undelegate, sign_tx
from tests.test_ledger import CHAIN, D1, D2, PARAMS, V1, V2, V3, make_test_genesis

VALIDATORS = (V1, V2, V3)
KEY_OF = {key.address: key for key in VALIDATORS}

# The reproduction: a million per block, all of it to the signers (no proposer share), k = 4
# over 8,000 bonded (z0 = 1/4: 2,000), a0 = 0, everyone sits (power = stake: v1 4,000, v2 and v3 2,000).
REPRO = replace(PARAMS, block_reward=1_000_000, proposer_reward_ppm=0, saturation_k=4, epoch_length=10)


def next_block(
    state: ChainState, txs: tuple[bytes, ...] = (), cert: CommitCertificate | None = None
) -> Block:
    return Block(
        height=state.next_height,
        prev_hash=state.last_block_hash,
        proposer=proposer_of(state, 0),
        timestamp_ms=state.last_timestamp_ms + 1,
        txs=txs,
        evidence=(),
        last_commit=cert,
        state_hash=state.digest,
    )


def signed_by_all(block: Block) -> CommitCertificate:
    """Real precommits for `block` by every validator (all of them sit on every committee here)."""
    votes = [Vote(Kind.PRECOMMIT, block.height, 0, block.hash, key.address) for key in VALIDATORS]
    return make_certificate([replace(v, signature=sign_item(CHAIN, v, KEY_OF[v.validator])) for v in votes])


def rewarded(events: tuple[L.LedgerEvent, ...]) -> dict[bytes, int]:
    return {e.validator: e.amount for e in events if e.kind == "rewarded"}


def run_chain(
    params: Params, heights: int, txs_at: dict[int, tuple[bytes, ...]] | None = None
) -> tuple[ChainState, list[dict[bytes, int]]]:
    """Apply `heights` blocks, each signed by everyone; per height, what each pool was paid."""
    state, cert, paid = genesis_state(make_test_genesis(params)), None, []
    for height in range(1, heights + 1):
        block = next_block(state, (txs_at or {}).get(height, ()), cert)
        state, events = apply_block(state, block)
        paid.append(rewarded(events))
        cert = signed_by_all(block)
    return state, paid


def test_the_cap_reads_the_stake_the_signers_were_seated_by_not_the_stake_moved_since() -> None:
    """The issue's reproduction. Block 1 moves d1's 2,000 from v1 to v3; block 2 pays block 1's signers.

    Shares of the 1,000,000 by committee power (4,000 : 2,000 : 2,000): v1 500,000, v2 and v3 250,000.
    The cap with k = 4, a0 = 0 is min(sigma, 1/4) / sigma of the stake in the snapshot the committee was
    drawn from (genesis): v1 sigma = 4,000/8,000 = 1/2, factor 1/2, paid 250,000; v2 and v3 sigma = 1/4,
    factor 1, paid 250,000. The 250,000 the cap withholds goes to the reserve.
    Before the fix the cap read the live stake after the move: v1 at 2,000 (factor 1) was paid
    500,000 in full, and v3 at 4,000 (factor 1/2) only 125,000.
    """
    redelegate = sign_tx(CHAIN, Redelegate(0, V1.address, V3.address, 2000), D1)
    state, paid = run_chain(REPRO, 2, {1: (redelegate,)})
    assert L.pool_power(state.ledger.pools[V3.address]) == 4000  # the move happened at once
    assert paid[1] == {V1.address: 250_000, V2.address: 250_000, V3.address: 250_000}


def test_epochs_zero_and_one_use_the_genesis_snapshot_and_each_boundary_takes_the_one_after_next() -> None:
    """Seats of epoch e + 1 are drawn at the boundary that starts epoch e: the stake snapshot with them."""
    redelegate = sign_tx(CHAIN, Redelegate(0, V1.address, V3.address, 2000), D1)
    genesis = genesis_state(make_test_genesis(REPRO))
    assert genesis.seats.stake == genesis.next_seats.stake == L.stake_snapshot(genesis.ledger, REPRO)
    assert dict(genesis.seats.stake.pools)[V1.address] == (4000, 1000)
    state, _ = run_chain(REPRO, REPRO.epoch_length, {1: (redelegate,)})
    assert (state.epoch, state.seats.epoch, state.next_seats.epoch) == (1, 1, 2)
    assert state.seats.stake == genesis.seats.stake  # epoch 1: still genesis
    assert dict(state.next_seats.stake.pools)[V1.address] == (2000, 1000)  # epoch 2: after the move
    assert dict(state.next_seats.stake.pools)[V3.address] == (4000, 1000)


def test_the_snapshot_survives_a_state_snapshot_and_enters_the_digest() -> None:
    state, _ = run_chain(REPRO, REPRO.epoch_length + 1)
    restored = decode_state(encode_state(state))
    assert restored == state and restored.digest == state.digest
    assert restored.recent_committees[0].stake == state.recent_committees[0].stake is not None
    bumped = replace(state.next_seats, stake=replace(state.next_seats.stake, total=1))
    assert replace(state, next_seats=bumped).digest != state.digest


def test_with_sharing_off_no_snapshot_is_kept_and_the_seats_hash_as_before() -> None:
    state = genesis_state(make_test_genesis(PARAMS))
    assert state.seats.stake is None and state.next_seats.stake is None


# ------------------------------------------------------------------ the property

MOVES = st.sampled_from(["redelegate", "bond", "unbond", "pledge up", "pledge down"])
SHARING = replace(
    PARAMS, block_reward=1_000_000, saturation_k=4, pledge_influence_ppm=300_000, epoch_length=3
)


def move_tx(kind: str, amount: int, nonces: dict[bytes, int]) -> bytes:
    """A stake-moving transaction: d1 redelegates, d2 bonds into v2 or unbonds from v1, v1 and v2 change pledge."""
    txs: dict[str, tuple[Keypair, Tx]] = {
        "redelegate": (D1, Redelegate(0, V1.address, V3.address, amount)),
        "bond": (D2, Delegate(0, V2.address, amount)),
        "unbond": (D2, Undelegate(0, V1.address, amount)),
        "pledge up": (V1, Delegate(0, V1.address, amount)),
        "pledge down": (V2, Undelegate(0, V2.address, amount // 4)),  # v2 keeps some pledge: stays seated
    }
    key, tx = txs[kind]
    nonce = nonces.get(key.address, 0)
    nonces[key.address] = nonce + 1
    return sign_tx(CHAIN, replace(tx, nonce=nonce), key)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 6),
    st.lists(st.tuples(MOVES, st.integers(1, 1500)), min_size=1, max_size=5),
    st.sampled_from([0, 1]),
)
def test_moving_stake_after_an_epochs_snapshot_never_changes_what_that_epochs_blocks_pay(
    at: int, moves: list[tuple[str, int]], epoch_rewards: int
) -> None:
    """Stake moved in block `at` first enters the snapshot taken at the next boundary b (at <= b),
    the one for epoch b/L + 1, drawn with that epoch's seats. Block h pays the signers of h - 1, whose
    committee sat in epoch (h - 2) // L: every block up to h = b + L reads a snapshot from before the
    move (and has the same proposer: its committee was drawn before the move too), so each pool must be
    paid exactly what it is paid on the same chain without the move."""
    params = replace(SHARING, epoch_rewards=epoch_rewards)
    length = params.epoch_length
    boundary = -(-at // length) * length
    last_unaffected = boundary + length
    nonces: dict[bytes, int] = {}
    txs = tuple(move_tx(kind, amount, nonces) for kind, amount in moves)
    _, plain = run_chain(params, last_unaffected)
    _, moved = run_chain(params, last_unaffected, {at: txs})
    assert moved == plain


# ------------------------------------------------------------------ sigma against the supply


def test_sigma_against_the_supply_measures_saturation_by_it_and_withholds_the_unstaked_part() -> None:
    """k = 4, a0 = 0, 8,000 bonded in a supply of 33,500 (sigma_of_supply = 1).

    A pool of 2,000: sigma = 2,000/33,500, under z0 = 1/4, so maxPool/R = sigma and the factor is
    sigma / (2,000/8,000) = 8,000/33,500 = 16/67: the block shares are in proportion to the bonded
    stake, and the part the 25,500 unstaked units would have earned goes to the reserve (Cardano).
    A pool of 10,000 in that supply is past 1/4 of it (8,375): factor (1/4) / (10,000/8,000) = 1/5.
    Measured against the bonded stake (the default) a pool of 2,000 of 8,000 keeps all of its share.
    """
    on = replace(PARAMS, saturation_k=4)
    assert R.reward_factor(2000, 1000, 33_500, on, bonded=8000) == Fraction(16, 67)
    assert R.reward_factor(10_000, 1000, 33_500, on, bonded=8000) == Fraction(1, 5)
    assert R.reward_factor(2000, 1000, 8000, on) == R.reward_factor(2000, 1000, 8000, on, bonded=8000) == 1
    a0 = replace(
        on, pledge_influence_ppm=300_000
    )  # the bonded/total scaling applies with pledge influence too
    assert R.reward_factor(2000, 1000, 33_500, a0, bonded=8000) == R.reward_factor(
        2000, 1000, 33_500, a0
    ) * Fraction(8000, 33_500)
    assert R.shared_rewards({V2.address: 670}, {V2.address: (2000, 2000)}, 33_500, on, 8000) == {
        V2.address: 160
    }


def test_the_snapshot_measures_sigma_against_the_circulating_supply_when_asked() -> None:
    """The test genesis: 8,000 bonded, 33,500 in all, none in the reserve yet; 500 added to the reserve
    make the supply 34,000, and the circulating supply is still 33,500."""
    bonded = L.stake_snapshot(genesis_state(make_test_genesis(REPRO)).ledger, REPRO)
    of_supply = replace(REPRO, sigma_of_supply=1)
    state = genesis_state(make_test_genesis(of_supply))
    snapshot = state.seats.stake
    assert (bonded.total, bonded.bonded) == (8000, 8000)
    assert (snapshot.total, snapshot.bonded) == (33_500, 8000)
    reserved = replace(state.ledger, reserve=500)
    assert L.stake_snapshot(reserved, of_supply).total == L.circulating_supply(reserved) == 33_500
    assert L.circulating_supply(reserved) == L.total_supply(reserved) - 500


def test_sigma_of_supply_is_a_flag_and_left_out_of_the_hash_while_off() -> None:
    assert parse_params({"sigma_of_supply": 1}).sigma_of_supply == 1
    with pytest.raises(GenesisError):
        parse_params({"sigma_of_supply": 2})
    assert len(canonical(replace(REPRO, sigma_of_supply=1))) == len(canonical(REPRO)) + 1


def test_the_chain_pays_by_the_supply_when_sigma_is_of_it() -> None:
    """The reproduction with sigma_of_supply = 1 and no move: 8,000 bonded of a 33,500 supply, every pool
    under 1/4 of the supply, so each is paid 8,000/33,500 = 16/67 of its share: v1 floor(500,000 * 16/67)
    = 119,402, v2 and v3 floor(250,000 * 16/67) = 59,701; the rest waits in the reserve."""
    state, paid = run_chain(replace(REPRO, sigma_of_supply=1), 2)
    assert paid[1] == {V1.address: 119_402, V2.address: 59_701, V3.address: 59_701}
    assert L.supply_is_conserved(state.ledger) and state.ledger.reserve > 1_000_000 - 119_402 - 2 * 59_701


def test_a_pool_missing_from_the_snapshot_is_measured_as_having_no_stake() -> None:
    """A proposer new to the validator set at an epoch's first block is paid by the old snapshot, which
    does not hold it: the factor's limit at zero stake, 1/(1 + a0) (exactly 1 with a0 = 0)."""
    a0 = replace(PARAMS, saturation_k=4, pledge_influence_ppm=300_000)
    assert R.shared_rewards({V1.address: 1300}, {}, 8000, a0) == {V1.address: 1000}
    assert R.shared_rewards({V1.address: 1300}, {}, 8000, replace(a0, pledge_influence_ppm=0)) == {
        V1.address: 1300
    }
