"""`posnet query`: read a running chain's ledger from one node.

Reads go to a node's read-only JSON endpoint (``/query/...`` on its metrics
port, see `node.core.query`), never to files a node owns; `network.cli.format`
lays out each answer, ``--json`` prints it as the node sent it.

Exit codes: 0 answered, 2 a usage problem (bad option, unknown account, node unreachable).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click

from network.cli.chain import TARGET_OPTIONS, ChainGroup, resolve_target, with_options
from network.cli.errors import UserError
from network.cli.format import (
    account_lines,
    delegation_lines,
    nakamoto_lines,
    pool_lines,
    pools_lines,
    supply_lines,
)
from network.testnet.client import JSON, QueryClient, parse_account
from network.testnet.target import Target

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="print the node's JSON answer")


def _show(answer: JSON, as_json: bool, lines: Callable[[JSON, str], list[str]], label: str) -> None:
    if as_json:
        click.echo(json.dumps(answer))
        return
    for line in lines(answer, label):
        click.echo(line)


@click.group("query", cls=ChainGroup)
def query() -> None:
    """Read a running chain's ledger from one node: balances, pools, delegations, supply."""


def _client(directory: Path | None, node_name: str | None, url: str | None) -> tuple[Target, QueryClient]:
    target = resolve_target(directory, node_name, url)
    if target.query_url is None:
        raise UserError("no node to ask: pass --dir DIR or --url http://HOST:PORT")
    return target, QueryClient(target)


@query.command("balance")
@click.argument("account")
@with_options(TARGET_OPTIONS)
@JSON_OPTION
def query_balance(
    account: str, directory: Path | None, node_name: str | None, url: str | None, as_json: bool
) -> None:
    """An account's balance, nonce, stake and unbonding (ACCOUNT: address, key file or pool name)."""
    target, client = _client(directory, node_name, url)
    address = parse_account(account, target, client)
    _show(client.get(f"/query/account/{address.hex()}"), as_json, account_lines, client.label)


@query.command("delegations")
@click.argument("account")
@with_options(TARGET_OPTIONS)
@JSON_OPTION
def query_delegations(
    account: str, directory: Path | None, node_name: str | None, url: str | None, as_json: bool
) -> None:
    """Where an account has stake, and what it is unbonding."""
    target, client = _client(directory, node_name, url)
    address = parse_account(account, target, client)
    _show(client.get(f"/query/delegations/{address.hex()}"), as_json, delegation_lines, client.label)


@query.command("pools")
@with_options(TARGET_OPTIONS)
@JSON_OPTION
def query_pools(directory: Path | None, node_name: str | None, url: str | None, as_json: bool) -> None:
    """Every stake pool: status, stake and share, pledge, delegations, margin."""
    _, client = _client(directory, node_name, url)
    _show(client.get("/query/pools"), as_json, pools_lines, client.label)


@query.command("pool")
@click.argument("pool")
@with_options(TARGET_OPTIONS)
@JSON_OPTION
def query_pool(
    pool: str, directory: Path | None, node_name: str | None, url: str | None, as_json: bool
) -> None:
    """One pool in detail, with its delegators and unbonding stake (POOL: name, address or key file)."""
    target, client = _client(directory, node_name, url)
    _show(
        client.get(f"/query/pool/{parse_account(pool, target, client).hex()}"),
        as_json,
        pool_lines,
        client.label,
    )


@query.command("supply")
@with_options(TARGET_OPTIONS)
@JSON_OPTION
def query_supply(directory: Path | None, node_name: str | None, url: str | None, as_json: bool) -> None:
    """Total supply against genesis + issued - slashed, where the units are, and stake concentration."""
    _, client = _client(directory, node_name, url)
    _show(client.get("/query/supply"), as_json, supply_lines, client.label)


@query.command("nakamoto")
@with_options(TARGET_OPTIONS)
@JSON_OPTION
def query_nakamoto(directory: Path | None, node_name: str | None, url: str | None, as_json: bool) -> None:
    """The Nakamoto coefficient (fewest pools that can halt the chain) and the stake distribution."""
    _, client = _client(directory, node_name, url)
    _show(client.get("/query/nakamoto"), as_json, nakamoto_lines, client.label)
