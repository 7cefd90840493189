"""Penalties at the edges a mutation run found unpinned: several at once, others' stake, who is paid.

Each test names one rule of node/core/ledger's slashing, evidence or
downtime modules that the tests of tests/test_ledger.py left free to
change: a slash of one pool reaching another's unbonding stake, the second
offence or jail in one block going unreported, the offender paid for
reporting itself.
"""

from __future__ import annotations

from dataclasses import replace

from node.core.genesis import PPM
from node.core.ledger import (
    Participation,
    apply_block,
    evidence_problem,
    genesis_ledger,
    judge_participation,
    record_participation,
    slash_pool_stake,
    slash_stake,
    total_supply,
)
from node.core.messages import make_evidence
from node.core.tx import Redelegate, Undelegate
from tests.test_ledger import (
    ALICE,
    CHAIN,
    COMMITTEE,
    D1,
    PARAMS,
    V1,
    V2,
    V3,
    balance,
    block,
    ctx,
    equivocation,
    make_test_genesis,
    pool,
    run_committee_blocks,
    signed,
)

LEDGER = genesis_ledger(make_test_genesis())
FIVE_PERCENT = PARAMS.slash_fraction_double_sign_ppm


def cut(amount: int) -> int:
    return amount * FIVE_PERCENT // PPM


# ------------------------------------------------------------------ slashing


def test_a_slash_cuts_the_slashed_pools_unbonding_stake_and_no_other_pools() -> None:
    ledger, _ = block(
        LEDGER, signed(D1, Undelegate(0, V3.address, 500)), signed(D1, Undelegate(1, V1.address, 400))
    )
    slashed, taken = slash_stake(ledger, V1.address, FIVE_PERCENT)
    by_pool = {entry.pool: entry.amount for entry in slashed.unbonding}
    assert by_pool == {V3.address: 500, V1.address: 400 - cut(400)}
    assert taken == ledger.pools[V1.address].pledge * FIVE_PERCENT // PPM + cut(
        ledger.pools[V1.address].member_tokens
    ) + cut(400)


def test_a_slash_reaches_every_redelegation_out_of_the_pool_and_none_out_of_others() -> None:
    """D1 moved stake V3 -> V2, then twice V1 -> V2: a slash of V1 takes from both of its moves, summed."""
    moves = (
        signed(D1, Redelegate(0, V3.address, V2.address, 300)),
        signed(D1, Redelegate(1, V1.address, V2.address, 200)),
        signed(D1, Redelegate(2, V1.address, V2.address, 100)),
    )
    ledger, events = block(LEDGER, *moves)
    assert [e.kind for e in events].count("tx_applied") == 3
    _, from_pool = slash_stake(replace(ledger, redelegations=()), V1.address, FIVE_PERCENT)
    slashed, taken = slash_stake(ledger, V1.address, FIVE_PERCENT)
    assert taken == from_pool + cut(200) + cut(100)
    assert [(e.source, e.amount) for e in slashed.redelegations] == [
        (V3.address, 300),
        (V1.address, 200 - cut(200)),
        (V1.address, 100 - cut(100)),
    ]


def test_a_pool_slash_cuts_the_members_tokens_unless_told_the_delegation_is_liquid() -> None:
    p = pool(LEDGER, V1)
    slashed, taken = slash_pool_stake(p, FIVE_PERCENT)
    assert slashed.member_tokens == p.member_tokens - cut(p.member_tokens)
    assert taken == cut(p.pledge) + cut(p.member_tokens)
    liquid, from_pledge = slash_pool_stake(p, FIVE_PERCENT, liquid=True)
    assert (liquid.member_tokens, from_pledge) == (p.member_tokens, cut(p.pledge))


# ------------------------------------------------------------------ evidence


def test_a_rejected_offence_does_not_keep_the_next_one_in_the_block_from_being_punished() -> None:
    after, events = block(LEDGER, height=2, evidence=(equivocation(ALICE), equivocation(V3)))
    assert [e.kind for e in events][:3] == ["evidence_rejected", "slashed", "tombstoned"]
    assert pool(after, V3).status == "tombstoned"


def test_two_offences_in_one_block_are_both_punished_and_reported() -> None:
    after, events = block(LEDGER, height=2, evidence=(equivocation(V3), equivocation(V1)))
    slashed = [e.validator for e in events if e.kind == "slashed"]
    assert slashed == [V3.address, V1.address]
    assert pool(after, V1).status == pool(after, V3).status == "tombstoned"


def test_the_ledger_refuses_two_votes_for_the_same_block_as_evidence() -> None:
    first = equivocation(V3).first
    assert evidence_problem(LEDGER, make_evidence(first, first), 2, PARAMS) == "items for the same block"


def test_evidence_of_the_including_blocks_own_height_is_accepted() -> None:
    """A proposer at round 1 may have seen a double sign at round 0 of the very height it proposes."""
    assert evidence_problem(LEDGER, equivocation(V3, height=5), 5, PARAMS) is None


def test_an_offender_that_includes_its_own_evidence_earns_no_whistleblower_reward() -> None:
    after, events = block(LEDGER, height=2, proposer=V3, evidence=(equivocation(V3),))
    taken = next(e.amount for e in events if e.kind == "slashed")
    assert after.slashed == LEDGER.slashed + taken  # all of it burned
    assert balance(after, V3) == balance(LEDGER, V3)  # and, tombstoned, no block reward either


def test_evidence_included_by_a_proposer_that_is_no_pool_is_all_burned() -> None:
    after, events = block(LEDGER, height=2, proposer=ALICE, evidence=(equivocation(V3),))
    taken = next(e.amount for e in events if e.kind == "slashed")
    assert after.slashed == LEDGER.slashed + taken and None not in after.accounts
    assert total_supply(after) == total_supply(LEDGER) - taken  # nobody was paid: nothing was minted either


# ------------------------------------------------------------------ downtime


def test_a_miss_leaves_the_window_after_window_more_participations() -> None:
    p = pool(LEDGER, V3)
    window = PARAMS.downtime_window
    p = record_participation(p, False, window)
    for _ in range(window - 1):
        p = record_participation(p, True, window)
    assert p.missed == 1 << (window - 1)
    assert record_participation(p, True, window).missed == 0


def test_a_participation_that_changes_nothing_keeps_the_pool_value_itself() -> None:
    """So a block whose committee all signed leaves the pool map, and what is derived from it, as it was."""
    p = pool(LEDGER, V3)
    assert p.missed == 0 and record_participation(p, True, PARAMS.downtime_window) is p


def test_a_height_that_jails_two_pools_reports_both() -> None:
    at_limit = LEDGER
    for height in (2, 3):
        at_limit, _ = block(at_limit, height=height, epoch=1, committee=COMMITTEE, signers=(V1,))
    jailed, events = block(at_limit, height=4, epoch=1, committee=COMMITTEE, signers=(V1,))
    assert sorted(e.validator for e in events if e.kind == "jailed") == sorted([V2.address, V3.address])
    assert pool(jailed, V2).status == pool(jailed, V3).status == "jailed"


def test_a_block_that_judges_two_heights_reports_the_jails_of_both() -> None:
    at_limit = LEDGER
    for height in (2, 3):
        at_limit, _ = block(at_limit, height=height, epoch=1, committee=COMMITTEE, signers=(V1,))
    members = tuple(address for address, _ in COMMITTEE)
    judged = (
        Participation(4, 0, bytes(32), 0, members, frozenset({V1.address, V2.address})),  # v3 missed
        Participation(5, 0, bytes(32), 0, members, frozenset({V1.address, V3.address})),  # v2 missed
    )
    context = replace(ctx(height=6, epoch=1), judged=judged)
    after, events = apply_block(at_limit, context, (), PARAMS, CHAIN)
    assert [e.validator for e in events if e.kind == "jailed"] == [V3.address, V2.address]
    assert pool(after, V2).status == pool(after, V3).status == "jailed"


def test_a_committee_member_without_an_active_pool_does_not_end_the_judging_of_the_rest() -> None:
    at_limit, _ = run_committee_blocks(LEDGER, [False, False])
    nobody = bytes(20)  # sorts first: no pool here
    participation = Participation(
        4, 0, bytes(32), 0, (nobody, V1.address, V3.address), frozenset({V1.address})
    )
    after, events = judge_participation(at_limit, participation, 1, PARAMS)
    assert [e.kind for e in events] == ["jailed", "slashed"] and pool(after, V3).status == "jailed"
