"""Equivocation evidence in a block: whether it may be punished, and the punishment.

A valid offence slashes the offender's pool, pays the including proposer's
operator a whistleblower's share, burns the rest and tombstones the pool.
"""

from __future__ import annotations

from node.core.genesis import Params
from node.core.ledger.balances import credit_accounts, set_pool
from node.core.ledger.slashing import burn, cut, slash_stake
from node.core.ledger.values import TOMBSTONED, BlockContext, Ledger, LedgerEvent, replace
from node.core.messages import Evidence, evidence_shape_problem


def evidence_problem(ledger: Ledger, evidence: Evidence, height: int, params: Params) -> str | None:
    """Why `evidence` included at `height` must not be punished, or None (signatures are the caller's)."""
    shape = evidence_shape_problem(evidence)
    if shape:
        return shape
    pool = ledger.pools.get(evidence.offender)
    if pool is None:
        return "unknown pool"
    if evidence.key() in ledger.slashed_evidence:
        return "duplicate: offence already punished"
    if pool.status == TOMBSTONED:
        return "duplicate: pool already tombstoned"
    if evidence.height > height:
        return "evidence from a future height"
    if height - evidence.height > params.evidence_max_age:
        return f"stale: older than {params.evidence_max_age} heights"
    return None


def whistleblower_account(ledger: Ledger, proposer: bytes, offender: bytes) -> bytes | None:
    """The including proposer's operator; nobody when the proposer is unknown or is the offender."""
    pool = ledger.pools.get(proposer)
    return None if pool is None or proposer == offender else pool.operator


def punish_equivocation(
    ledger: Ledger, evidence: Evidence, proposer: bytes, params: Params
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """Slash the offender's pool, reward the including proposer's operator, burn the rest, tombstone."""
    offender = evidence.offender
    ledger, taken = slash_stake(ledger, offender, params.slash_fraction_double_sign_ppm)
    reporter = whistleblower_account(ledger, proposer, offender)
    credits: dict[bytes, int] = (
        {} if reporter is None else {reporter: cut(taken, params.whistleblower_reward_ppm)}
    )
    ledger = burn(credit_accounts(ledger, credits), taken - sum(credits.values()))
    ledger = set_pool(ledger, replace(ledger.pools[offender], status=TOMBSTONED))
    ledger = replace(ledger, slashed_evidence=ledger.slashed_evidence | {evidence.key()})
    return ledger, (
        LedgerEvent("slashed", offender, taken, f"double sign at height {evidence.height}"),
        LedgerEvent("tombstoned", offender, 0, "double sign"),
    )


def apply_evidence(
    ledger: Ledger, ctx: BlockContext, params: Params
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """Punish each valid offence in order; consensus should have filtered the rest, which are skipped."""
    events: tuple[LedgerEvent, ...] = ()
    for evidence in ctx.evidence:
        problem = evidence_problem(ledger, evidence, ctx.height, params)
        if problem:
            events += (LedgerEvent("evidence_rejected", evidence.offender, 0, problem),)
            continue
        ledger, punished = punish_equivocation(ledger, evidence, ctx.proposer, params)
        events += punished
    return ledger, events
