"""Read-only views of a node's chain state, as JSON-able dicts.

Why pure functions of a `ChainState`: the node answers queries on its HTTP
(metrics) server's threads while its event loop finalizes blocks. A
`ChainState` is an immutable value, so the server needs nothing but a
reference to the latest one (`NodeView.publish` swaps it in one assignment)
and every answer is computed from that one value: it is consistent (never half
of one block and half of the next) and testable without a running node.

The same module gives the driver the fields of the ledger events it logs
(`ledger_event_logs`): which transaction an outcome belongs to, and who lost
what in a slash. Amounts are integers, like everything in the ledger; shares
are in parts per million (`share_ppm`) so no float ever enters a verdict.

Addresses in answers are full lowercase hex; pool names are the genesis
names (`v1`), or `pool-xxxxxxxx` for pools registered by transaction.

Past 500 lines: every line a node writes or answers about its chain (the
queries, the finalized, epoch and ledger event log lines) is built here, so
the view, the report and the tests read one definition of each field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from node.core import ledger as L
from node.core import rewards as R
from node.core import shares as S
from node.core.codec import DecodeError
from node.core.events import EPOCH, EVIDENCE, FINALIZED, LOGGED_LEDGER_EVENTS, ROUND_TIMEOUT, TX_OUTCOMES
from node.core.genesis import PPM, Params
from node.core.keys import ADDRESS_LEN
from node.core.messages import Block, CommitCertificate, Evidence
from node.core.state import ChainState
from node.core.tx import decode_tx, tx_amount, tx_id, tx_type_name

MAX_DELEGATOR_LOSSES = 32  # per slashed event: bounded log lines; the totals are always complete
JSON = dict[str, Any]


YIELD_PROBE = 1000  # the delegation a pool's expected yield is quoted for


class QueryError(ValueError):
    """A query the node cannot answer: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------ helpers


def parse_address(text: str) -> bytes:
    """A 20-byte address from 40 hex digits (QueryError 400 otherwise)."""
    try:
        address = bytes.fromhex(text)
    except ValueError:
        address = b""
    if len(address) != ADDRESS_LEN:
        raise QueryError(400, f"{text[:64]!r} is not an address ({2 * ADDRESS_LEN} hex digits)")
    return address


def name_of(state: ChainState, address: bytes) -> str:
    """A pool's display name: genesis name, else the registered pool's name, else a short hex."""
    name = state.names.get(address)
    if name:
        return name
    pool = state.ledger.pools.get(address)
    return pool.name if pool is not None else address.hex()[:8]


def share_ppm(part: int, total: int) -> int:
    return part * PPM // total if total else 0


def _where(state: ChainState) -> JSON:
    """Which state an answer describes: every answer starts with it."""
    return {"chain_id": state.chain_id, "height": state.height, "epoch": state.epoch}


# ------------------------------------------------------------------ pools


@dataclass(frozen=True)
class SetView:
    """What every pool's view needs from the whole state, computed once per answer."""

    active_total: int  # stake of all active pools (shares are of this)
    voting_power: Mapping[bytes, int]  # the validator set in effect
    bonded_total: int = 0  # stake of all pools that can earn (reward sharing's saturation is of this)

    @classmethod
    def of(cls, state: ChainState) -> SetView:
        return cls(state.ledger.active_total, dict(state.validator_set), L.bonded_stake(state.ledger))


def pool_view(
    state: ChainState, pool: L.Pool, *, detail: bool = False, context: SetView | None = None
) -> JSON:
    """One pool: stake, status, terms; with `detail`, its delegations and unbonding stake.

    Viewing many pools, pass one `context` so n pools cost O(n), not O(n^2).
    """
    context = context or SetView.of(state)
    stake = L.pool_power(pool)
    rate = member_rate(state, pool, context)
    view: JSON = {
        "address": pool.address.hex(),
        "name": name_of(state, pool.address),
        "owner": pool.operator.hex(),  # the cold key's address: funds and pool changes
        "signing_key": pool.public_key.hex(),  # the hot key votes verify under (maybe the owner's own)
        "next_signing_key": pool.next_public_key.hex() or None,  # in force from the next epoch
        "status": pool.status,
        "stake": stake,
        "pledge": pool.pledge,
        "delegated": stake - pool.pledge,
        "delegators": len(pool.shares),
        "share_ppm": share_ppm(stake, context.active_total) if pool.status == L.ACTIVE else 0,
        "voting_power": context.voting_power.get(pool.address, 0),
        "fixed_cost": pool.fixed_cost,
        "margin_ppm": pool.margin_ppm,
        "reward_mode": "compounding" if pool.compounding else "paid_out",
        # Receipt-token terms: tokens per share (1,000,000 until a slash or compounding moves it),
        # and stake over pledge (None without pledge; capped by params.max_leverage when set).
        "exchange_rate_ppm": S.exchange_rate_ppm(pool.total_shares, pool.member_tokens),
        "total_shares": pool.total_shares,
        "leverage_ppm": L.leverage_ppm(pool),
        "jailed_until_epoch": pool.jailed_until_epoch if pool.status == L.JAILED else None,
        "retiring_epoch": pool.retiring_epoch or None,
        "missed_in_window": L.missed_count(pool),
        # Reward sharing: stake over the saturation point (None with saturation_k = 0) and the
        # share of its committee precommits counted in the downtime window (node.core.rewards).
        "saturation_ppm": R.saturation_ppm(stake, context.bonded_total, state.params.saturation_k),
        "performance_ppm": R.apparent_performance_ppm(L.missed_count(pool), state.params.downtime_window),
        # What 1,000 more delegated would earn per epoch here, in expectation, and the same rate in ppm.
        "yield_per_1000_per_epoch": (rate * YIELD_PROBE).__floor__(),
        "yield_ppm_per_epoch": (rate * PPM).__floor__(),
    }
    if detail:
        view["delegations"] = [
            {"account": account.hex(), "shares": pool.shares[account], "amount": amount}
            for account, amount in sorted(
                L.member_stakes(pool).items(), key=lambda item: (-pool.shares[item[0]], item[0])
            )
        ]
        view["unbonding"] = [
            _unbonding_view(state, entry) for entry in state.ledger.unbonding if entry.pool == pool.address
        ]
    return view


def member_rate(state: ChainState, pool: L.Pool, context: SetView) -> Fraction | int:
    """The view's expected earnings of one more unit delegated per epoch, alone (0: takes no stake)."""
    if pool.status != L.ACTIVE or pool.retiring_epoch:
        return 0
    performance = R.apparent_performance_ppm(L.missed_count(pool), state.params.downtime_window)
    active, bonded = context.active_total, context.bonded_total
    return R.expected_member_rate(pool, YIELD_PROBE, active, bonded, performance, state.params)


def _pool_order(state: ChainState, pool: L.Pool) -> tuple[int, int, str]:
    rank = {L.ACTIVE: 0, L.JAILED: 1, L.TOMBSTONED: 2}.get(pool.status, 3)
    return (rank, -L.pool_power(pool), name_of(state, pool.address))


def pools_view(state: ChainState) -> JSON:
    """Every pool, active ones first, then by stake (largest first)."""
    pools = sorted(state.ledger.pools.values(), key=lambda pool: _pool_order(state, pool))
    context = SetView.of(state)
    return {**_where(state), "pools": [pool_view(state, pool, context=context) for pool in pools]}


def find_pool(state: ChainState, key: str) -> L.Pool:
    """A pool by address hex or by name (QueryError 404 when there is none)."""
    if len(key) == 2 * ADDRESS_LEN:
        pool = state.ledger.pools.get(parse_address(key))
        if pool is not None:
            return pool
    for address, pool in state.ledger.pools.items():
        if name_of(state, address) == key:
            return pool
    raise QueryError(404, f"no pool {key!r}")


def single_pool_view(state: ChainState, key: str) -> JSON:
    return {**_where(state), "pool": pool_view(state, find_pool(state, key), detail=True)}


# ------------------------------------------------------------------ accounts


def _unbonding_view(state: ChainState, entry: L.Unbonding) -> JSON:
    return {
        "account": entry.delegator.hex(),
        "pool": entry.pool.hex(),
        "pool_name": name_of(state, entry.pool),
        "amount": entry.amount,
        "release_epoch": entry.release_epoch,
    }


def stakes_of(state: ChainState, address: bytes) -> list[JSON]:
    """Where `address` has stake: its pledge (as operator) and its delegations, largest first."""
    stakes = [
        {
            "pool": pool.address.hex(),
            "pool_name": name_of(state, pool.address),
            "amount": amount,
            "role": "pledge" if address == pool.operator else "delegation",
            "shares": None if address == pool.operator else pool.shares.get(address, 0),
            "pool_status": pool.status,
        }
        for pool in state.ledger.pools.values()
        if (amount := L.stake_of(pool, address)) > 0 or pool.shares.get(address, 0)
    ]
    return sorted(stakes, key=lambda s: (-s["amount"], s["pool_name"]))


def delegations_view(state: ChainState, address: bytes) -> JSON:
    """An account's stake by pool and its unbonding entries (still slashable until released)."""
    stakes = stakes_of(state, address)
    unbonding = [_unbonding_view(state, e) for e in state.ledger.unbonding if e.delegator == address]
    redelegations = [
        {
            "from": name_of(state, e.source),
            "to": name_of(state, e.target),
            "amount": e.amount,
            "slashable_until_epoch": e.release_epoch,
        }
        for e in state.ledger.redelegations
        if e.delegator == address
    ]
    return {
        **_where(state),
        "address": address.hex(),
        "delegations": stakes,
        "unbonding": unbonding,
        "redelegations": redelegations,
        "staked": sum(s["amount"] for s in stakes),
        "unbonding_total": sum(e["amount"] for e in unbonding),
    }


def _locked_stake(state: ChainState, holdings: JSON) -> int:
    """Stake held outside the balance: all of it, or with liquid delegation only the pledge."""
    if not state.ledger.liquid:
        return int(holdings["staked"])
    return sum(s["amount"] for s in holdings["delegations"] if s["role"] == "pledge")


def account_view(state: ChainState, address: bytes) -> JSON:
    """Balance, next nonce, stake and unbonding of one account (zeros for an unknown one)."""
    account = state.ledger.accounts.get(address)
    holdings = delegations_view(state, address)
    balance = 0 if account is None else account.balance
    return {
        **holdings,
        "known": account is not None,
        "balance": balance,
        "nonce": 0 if account is None else account.nonce,
        "public_key": "" if account is None else account.public_key.hex(),
        "total": balance + _locked_stake(state, holdings) + holdings["unbonding_total"],
    }


# ------------------------------------------------------------------ supply


def distribution_view(state: ChainState) -> list[JSON]:
    """Active stake by pool, largest first, with each pool's share in ppm."""
    distribution = L.stake_distribution(state.ledger)
    total = sum(power for _, power in distribution)
    return [
        {"pool": name, "stake": power, "share_ppm": share_ppm(power, total)} for name, power in distribution
    ]


def nakamoto_view(state: ChainState) -> JSON:
    """The fewest pools that together hold more than 1/3 of active stake, and the distribution."""
    distribution = distribution_view(state)
    return {
        **_where(state),
        "nakamoto_coefficient": L.nakamoto_coefficient(state.ledger),
        "active_stake": sum(item["stake"] for item in distribution),
        "active_pools": len(distribution),
        "stake_distribution": distribution,
    }


def supply_view(state: ChainState) -> JSON:
    """Where every unit is, and the ledger's conservation law checked on this state."""
    ledger = state.ledger
    liquid = sum(account.balance for account in ledger.accounts.values())
    staked = sum(L.pool_power(pool) for pool in ledger.pools.values())
    unbonding = sum(entry.amount for entry in ledger.unbonding)
    expected = ledger.genesis_supply + ledger.issued - ledger.slashed
    total = L.total_supply(ledger)
    nakamoto = nakamoto_view(state)
    return {
        **_where(state),
        "total_supply": total,
        "genesis_supply": ledger.genesis_supply,
        "issued": ledger.issued,
        "slashed": ledger.slashed,
        "expected_supply": expected,
        "conserved": total == expected,
        "liquid": liquid,
        "staked": staked,
        "unbonding": unbonding,
        "reserve": ledger.reserve,  # what reward sharing withheld, not yet paid out again
        "nakamoto_coefficient": nakamoto["nakamoto_coefficient"],
        "stake_distribution": nakamoto["stake_distribution"],
    }


def status_view(state: ChainState) -> JSON:
    return {
        **_where(state),
        "last_block_hash": state.last_block_hash.hex(),
        "validators": len(state.validator_set),
        "committee_members": len(state.committee.members),
        "committee_power": state.committee.total,  # seats, or stake when everyone sits
    }


# ------------------------------------------------------------------ transactions


def check_tx_view(state: ChainState, tx_hex: str) -> JSON:
    """Dry-run a signed transaction against this state: why it would be rejected now, or ok.

    The answer comes from the ledger's own `tx_problem`, so a client learns
    the exact reason a block would give, before it spends a block on it.
    """
    try:
        data = bytes.fromhex(tx_hex)
    except ValueError:
        raise QueryError(400, "transaction is not hex") from None
    problem = L.tx_problem(state.ledger, state.chain_id, data, state.params)
    view: JSON = {**_where(state), "tx": tx_id(data).hex(), "ok": problem is None, "problem": problem}
    try:
        signed = decode_tx(data)
    except DecodeError:
        return view
    account = state.ledger.accounts.get(signed.sender)
    view.update(
        account=signed.sender.hex(),
        type=tx_type_name(signed.tx),
        nonce=signed.tx.nonce,
        expected_nonce=0 if account is None else account.nonce,
    )
    return view


def tx_log_fields(tx: bytes | None, event: L.LedgerEvent) -> JSON:
    """A tx outcome as logged: the tx id, sender, type, nonce, amount and the ledger's reason."""
    fields: JSON = {"tx": None if tx is None else tx_id(tx).hex(), "account": event.validator.hex()}
    try:
        signed = decode_tx(tx) if tx is not None else None
    except DecodeError:
        signed = None
    if signed is not None:
        fields.update(type=tx_type_name(signed.tx), nonce=signed.tx.nonce, amount=tx_amount(signed.tx))
    else:
        fields.update(type="unknown", nonce=None, amount=event.amount)
    fields["reason"] = event.reason
    return fields


# ------------------------------------------------------------------ ledger events for the log


def slash_breakdown(before: L.Ledger, pool_address: bytes, amount: int, params: Params, reason: str) -> JSON:
    """Who lost what in one slash: the operator's pledge, each delegator, unbonding stake.

    The ledger reports only the total. The pool's stake when it was slashed
    is its stake before the block (penalties come first in a block, and a
    pool is slashed at most once per block), so the split is recomputed from
    `before` with the fraction the reason names, and used only if it adds up
    to exactly the amount the ledger took; otherwise only the total is logged.
    """
    pool = before.pools.get(pool_address)
    if pool is None:
        return {}
    fractions = (params.slash_fraction_double_sign_ppm, params.slash_fraction_downtime_ppm)
    if reason == "downtime":
        fractions = fractions[::-1]
    for fraction in fractions:
        slashed, from_pool = L.slash_pool_stake(pool, fraction, before.liquid)  # the ledger's own cut
        operator = pool.pledge - slashed.pledge
        delegator_total = from_pool - operator
        after = L.member_stakes(slashed)
        losses = {d: stake - after[d] for d, stake in L.member_stakes(pool).items()}  # every share at once
        unbonding = sum(L.cut(e.amount, fraction) for e in before.unbonding if e.pool == pool_address)
        _, redelegated = L.slash_redelegations(before, pool_address, fraction)
        if operator + delegator_total + unbonding + redelegated != amount:
            continue
        largest = sorted(((loss, d) for d, loss in losses.items() if loss), reverse=True)
        return {
            "fraction_ppm": fraction,
            "operator_loss": operator,
            "delegator_loss": delegator_total,
            "unbonding_loss": unbonding,
            "redelegation_loss": redelegated,
            "delegators": len(pool.shares),
            "delegator_losses": {d.hex(): loss for loss, d in largest[:MAX_DELEGATOR_LOSSES]},
        }
    return {}


def finalized_log(
    state: ChainState,
    block: Block,
    round_: int,
    latency_ms: int,
    certificate: CommitCertificate,
    via_sync: bool,
) -> JSON:
    """The log line of a decided block: the report, the view and the tests read heights from it."""
    return {
        "event": FINALIZED,
        "height": block.height,
        "round": round_,
        "hash": block.hash.hex(),
        "proposer": state.names.get(block.proposer, block.proposer.hex()[:8]),
        "latency_ms": latency_ms,
        "txs": len(block.txs),
        "evidence": len(block.evidence),
        "signers": len(certificate.signatures),
        "via_sync": via_sync,
    }


def evidence_log(state: ChainState, evidence: Evidence) -> JSON:
    """The log line of evidence a node derived and broadcast: who, at which height."""
    offender = state.names.get(evidence.offender, evidence.offender.hex()[:8])
    return {"event": EVIDENCE, "offender": offender, "height": evidence.height}


def round_timeout_log(height: int, round_: int, step: str) -> JSON:
    """The log line of a round that timed out: the report counts them, the view marks them."""
    return {"event": ROUND_TIMEOUT, "height": height, "round": round_, "step": step}


def epoch_log(state: ChainState) -> JSON:
    """The log line a node writes when a block starts an epoch: who holds the active stake now.

    The report and the live view read the stake distribution over a run
    from these lines, so they need no node to be running.
    """
    return {
        "event": EPOCH,
        "height": state.height,
        "epoch": state.epoch,
        "stake": dict(L.stake_distribution(state.ledger)),
        "nakamoto": L.nakamoto_coefficient(state.ledger),
    }


def _pair_txs(block: Block, events: Iterable[L.LedgerEvent]) -> list[bytes | None]:
    """The tx each outcome event is about: the ledger emits exactly one outcome per tx, in block order."""
    outcomes = [event for event in events if event.kind in TX_OUTCOMES]
    if len(outcomes) != len(block.txs):
        return [None] * len(outcomes)
    return list(block.txs)


def ledger_event_logs(
    before: ChainState | None, after: ChainState, block: Block, events: Iterable[L.LedgerEvent]
) -> list[JSON]:
    """The log lines for a finalized block's ledger events (penalties, tx outcomes, releases).

    `before` is the state the block was applied to (None when unknown: the
    slash breakdown is then left out). Every penalty line keeps the fields
    `validator, amount, reason` the log checkers read.
    """
    events = tuple(events)
    txs = iter(_pair_txs(block, events))
    lines: list[JSON] = []
    for event in events:
        if event.kind not in LOGGED_LEDGER_EVENTS:
            continue
        line: JSON = {"event": event.kind, "height": block.height}
        if event.kind in TX_OUTCOMES:
            line.update(tx_log_fields(next(txs, None), event))
        elif event.kind == "released":
            line.update(account=event.validator.hex(), amount=event.amount, reason=event.reason)
        else:
            line.update(validator=name_of(after, event.validator), amount=event.amount, reason=event.reason)
            if event.kind == "slashed" and before is not None:
                line.update(
                    slash_breakdown(before.ledger, event.validator, event.amount, after.params, event.reason)
                )
        lines.append(line)
    return lines


# ------------------------------------------------------------------ the node's side


def route(state: ChainState, path: str, outcome_of: Callable[[str], JSON | None] = lambda _tx: None) -> JSON:
    """Answer one query path (``/query/...``) from `state`; QueryError for a bad or unknown one."""
    parts = [part for part in path.split("/") if part]
    if not parts or parts[0] != "query":
        raise QueryError(404, f"unknown path {path[:100]!r}")
    match parts[1:]:
        case [] | ["status"]:
            return status_view(state)
        case ["pools"]:
            return pools_view(state)
        case ["pool", key]:
            return single_pool_view(state, key)
        case ["account", address]:
            return account_view(state, parse_address(address))
        case ["delegations", address]:
            return delegations_view(state, parse_address(address))
        case ["supply"]:
            return supply_view(state)
        case ["nakamoto"]:
            return nakamoto_view(state)
        case ["check", tx_hex]:
            return check_tx_view(state, tx_hex)
        case ["tx", tx_hex]:
            outcome = outcome_of(tx_hex.lower()) or {"status": "unknown"}
            return {**_where(state), "tx": tx_hex.lower(), **outcome}
    raise QueryError(
        404,
        f"unknown query {path[:100]!r}; try /query/status, /query/pools, /query/pool/<name|address>, "
        "/query/account/<address>, /query/delegations/<address>, /query/supply, /query/nakamoto, "
        "/query/tx/<id>, /query/check/<signed-tx-hex>",
    )


def validator_summary(state: ChainState) -> dict[str, dict[str, object]]:
    """name -> {stake, status, balance}, for reports and the simulator's JSON.

    `balance` is the operator's liquid balance: in the simulator, which funds
    no accounts, that is what the pool's operator earned in the run.
    """
    pools = sorted(state.ledger.pools.values(), key=lambda pool: (len(pool.name), pool.name))
    return {
        pool.name: {
            "stake": L.pool_power(pool),
            "status": pool.status,
            "balance": L.account_of(state.ledger, pool.operator).balance,
        }
        for pool in pools
    }
