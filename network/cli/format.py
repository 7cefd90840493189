"""How `posnet query` shows a node's JSON answers: aligned tables and labelled lines.

Kept apart from the commands so the layout of every answer is in one place and
can be checked without a node: each function turns one ``/query/...`` answer
into the lines printed, ending with where the answer came from.
"""

from __future__ import annotations

from typing import Any

from network.testnet.client import JSON
from node.core.genesis import PPM


def pct(share_ppm: int) -> str:
    return f"{share_ppm * 100 / PPM:.2f}%"


def short(address_hex: str) -> str:
    return address_hex[:16]


def table(
    header: tuple[str, ...], rows: list[tuple[Any, ...]], right: frozenset[int] = frozenset()
) -> list[str]:
    """Fixed-width columns; the columns in ``right`` (numbers) are right-aligned."""
    cells = [
        tuple(str(c) for c in header),
        *(tuple("-" if c is None else str(c) for c in row) for row in rows),
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [
        "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in cells
    ]


def _where(answer: JSON, label: str) -> str:
    return f"chain {answer['chain_id']} at height {answer['height']}, epoch {answer['epoch']} (node {label})"


def account_lines(answer: JSON, label: str) -> list[str]:
    stakes = ", ".join(f"{d['pool_name']} {d['amount']}" for d in answer["delegations"])
    unbonding = ", ".join(
        f"{u['pool_name']} {u['amount']} until epoch {u['release_epoch']}" for u in answer["unbonding"]
    )
    lines = [
        f"account    {answer['address']}" + ("" if answer["known"] else "  (no such account yet)"),
        f"balance    {answer['balance']}",
        f"nonce      {answer['nonce']}",
        f"staked     {answer['staked']}" + (f"  ({stakes})" if stakes else ""),
        f"unbonding  {answer['unbonding_total']}" + (f"  ({unbonding})" if unbonding else ""),
        f"total      {answer['total']}",
    ]
    return [*lines, _where(answer, label)]


def delegation_lines(answer: JSON, label: str) -> list[str]:
    lines = [f"account {answer['address']}: {answer['staked']} staked, {answer['unbonding_total']} unbonding"]
    if answer["delegations"]:
        rows = [(d["pool_name"], d["role"], d["amount"], d["pool_status"]) for d in answer["delegations"]]
        lines += table(("POOL", "ROLE", "AMOUNT", "POOL STATUS"), rows, frozenset({2}))
    else:
        lines.append("no stake in any pool")
    if answer["unbonding"]:
        lines.append("unbonding (still slashable until released):")
        rows = [(u["pool_name"], u["amount"], u["release_epoch"]) for u in answer["unbonding"]]
        lines += table(("POOL", "AMOUNT", "RELEASE EPOCH"), rows, frozenset({1, 2}))
    if answer.get("redelegations"):
        lines.append("redelegated (still slashable by the pool it left):")
        rows = [
            (r["from"], r["to"], r["amount"], r["slashable_until_epoch"]) for r in answer["redelegations"]
        ]
        lines += table(("FROM", "TO", "AMOUNT", "UNTIL EPOCH"), rows, frozenset({2, 3}))
    return [*lines, _where(answer, label)]


POOL_HEADER = ("NAME", "STATUS", "STAKE", "SHARE", "PLEDGE", "DELEGATED", "DELEGATORS", "MARGIN", "ADDRESS")


def _pool_row(pool: JSON) -> tuple[Any, ...]:
    status = pool["status"]
    if pool["jailed_until_epoch"] is not None:
        status += f" (until epoch {pool['jailed_until_epoch']})"
    return (
        pool["name"],
        status,
        pool["stake"],
        pct(pool["share_ppm"]),
        pool["pledge"],
        pool["delegated"],
        pool["delegators"],
        pct(pool["margin_ppm"]),
        short(pool["address"]),
    )


def pools_lines(answer: JSON, label: str) -> list[str]:
    rows = [_pool_row(pool) for pool in answer["pools"]]
    return [*table(POOL_HEADER, rows, frozenset({2, 3, 4, 5, 6, 7})), _where(answer, label)]


def _signing(pool: JSON) -> str:
    """The signing key, and the one taking over at the next epoch when a rotation is under way."""
    text = pool["signing_key"][:16]
    return text + (
        f" (from next epoch {pool['next_signing_key'][:16]})" if pool.get("next_signing_key") else ""
    )


def pool_lines(answer: JSON, label: str) -> list[str]:
    pool = answer["pool"]
    lines = [
        f"pool        {pool['name']}  {pool['address']}",
        f"status      {pool['status']}"
        + (f" until epoch {pool['jailed_until_epoch']}" if pool["jailed_until_epoch"] is not None else "")
        + (f", retiring at epoch {pool['retiring_epoch']}" if pool.get("retiring_epoch") else ""),
        f"stake       {pool['stake']} ({pct(pool['share_ppm'])} of active stake), voting power now {pool['voting_power']}",
        f"keys        owner {pool['owner']}, signing {_signing(pool)}",
        f"pledge      {pool['pledge']}",
        f"delegated   {pool['delegated']} by {pool['delegators']} delegators",
        f"terms       fixed cost {pool['fixed_cost']}, margin {pct(pool['margin_ppm'])}, "
        f"member rewards {pool['reward_mode'].replace('_', ' ')}",
        f"shares      {pool['total_shares']} at {pool['exchange_rate_ppm'] / PPM:.6f} per share",
        f"leverage    {_leverage(pool['leverage_ppm'])} (stake over pledge)",
        f"yield       {pool['yield_per_1000_per_epoch']} per 1,000 more delegated per epoch (expected)",
        f"downtime    missed {pool['missed_in_window']} of the recent committee precommits",
        f"performance {pct(pool['performance_ppm'])} of its recent committee precommits counted",
    ]
    if pool.get("saturation_ppm") is not None:
        lines.append(
            f"saturation  {pct(pool['saturation_ppm'])} of the saturation point (1/k of bonded stake)"
        )
    if pool["delegations"]:
        lines += table(
            ("DELEGATOR", "SHARES", "AMOUNT"),
            [(d["account"], d["shares"], d["amount"]) for d in pool["delegations"]],
            frozenset({1, 2}),
        )
    if pool["unbonding"]:
        lines.append("unbonding from this pool:")
        rows = [(u["account"], u["amount"], u["release_epoch"]) for u in pool["unbonding"]]
        lines += table(("ACCOUNT", "AMOUNT", "RELEASE EPOCH"), rows, frozenset({1, 2}))
    return [*lines, _where(answer, label)]


def _leverage(ppm: int | None) -> str:
    return "unbounded (no pledge)" if ppm is None else f"{ppm / PPM:.2f}x"


def distribution_lines(answer: JSON) -> list[str]:
    rows = [(d["pool"], d["stake"], pct(d["share_ppm"])) for d in answer["stake_distribution"]]
    return table(("POOL", "ACTIVE STAKE", "SHARE"), rows, frozenset({1, 2}))


def nakamoto_lines(answer: JSON, label: str) -> list[str]:
    lines = [
        f"Nakamoto coefficient {answer['nakamoto_coefficient']}: the fewest pools holding more than 1/3 "
        f"of the {answer['active_stake']} active stake ({answer['active_pools']} active pools)",
        *distribution_lines(answer),
    ]
    return [*lines, _where(answer, label)]


def supply_lines(answer: JSON, label: str) -> list[str]:
    verdict = "holds" if answer["conserved"] else "VIOLATED"
    width = len(str(max(answer["total_supply"], answer["genesis_supply"], answer["expected_supply"])))
    lines = [
        f"total supply   {answer['total_supply']:>{width}}",
        f"  genesis      {answer['genesis_supply']:>{width}}",
        f"  + issued     {answer['issued']:>{width}}",
        f"  - slashed    {answer['slashed']:>{width}}",
        f"  = expected   {answer['expected_supply']:>{width}}  (conservation {verdict})",
        f"liquid {answer['liquid']}, staked {answer['staked']}, unbonding {answer['unbonding']}",
        f"Nakamoto coefficient {answer['nakamoto_coefficient']}",
        *distribution_lines(answer),
    ]
    return [*lines, _where(answer, label)]
