"""`posnet tx` and `posnet query`: submit signed transactions to a running chain and read its ledger.

Both talk to running nodes, never to files a node owns: reads go to a node's
read-only JSON endpoint (``/query/...`` on its metrics port, see
`node.core.query`), and a transaction goes out on the chain's ``tx`` MQTT channel,
exactly as a peer's would, for whichever validator proposes next to include.

Where to find the chain: ``--dir DIR`` (a `posnet testnet up` directory: the
broker URL, each node's metrics port and log are in DIR/testnet.json), or
explicitly ``--url http://HOST:PORT`` for a node's query endpoint and, for
transactions, ``--broker mqtt://HOST:PORT`` (plus ``--genesis FILE`` when no
``--url`` can tell the chain id).

A transaction is checked first: the node dry-runs it against its current
ledger (``/query/check/...``) with the ledger's own rules, so a doomed
transaction costs one line with the reason instead of a block and silence.
Then it is published and, by default, followed until a block applies or
rejects it (the node's ``tx_applied``/``tx_rejected`` events, by tx id).

Exit codes: 0 applied (or published with --no-wait), 1 rejected (by the check
or by the chain), 2 a usage problem (bad option, missing file, node or broker
unreachable), 3 not seen in a block within --timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiomqtt
import click

from network.cli.keys import UserError
from network.testnet import supervisor as tn
from network.transport.broker import parse_broker_url
from network.transport.mqtt import TX, detect_protocol, topic
from node.core.envelopes import tx_bytes
from node.core.genesis import PPM, Genesis, GenesisError, load_genesis
from node.core.keys import ADDRESS_LEN, PUBLIC_KEY_LEN, Keypair, address_of, load_key_file
from node.core.query import TX_OUTCOMES
from node.core.tx import (
    Delegate,
    RegisterPool,
    Transfer,
    Tx,
    Undelegate,
    Unjail,
    sign_tx,
    tx_id,
    tx_type_name,
)

HTTP_TIMEOUT_S = 5.0
POLL_S = 0.25
DEFAULT_WAIT_S = 60.0
DEFAULT_DIR = "testnet"
EXIT_REJECTED, EXIT_TIMEOUT = 1, 3

JSON = dict[str, Any]
log = logging.getLogger("posnet.cli.tx")


# ------------------------------------------------------------------ where the chain is


@dataclass(frozen=True)
class Target:
    """The node a command asks (its query URL and log), and the chain and broker to submit to."""

    query_url: str | None
    label: str  # how to name the node in messages: its name, or the URL
    genesis: Genesis | None = None
    broker_url: str | None = None
    mqtt_protocol: Literal[5, 311] | None = None
    log_path: Path | None = None
    names: dict[str, bytes] = field(default_factory=dict)  # pool name -> address, from the genesis


def _genesis_names(genesis: Genesis | None) -> dict[str, bytes]:
    return {} if genesis is None else {v.name: v.address for v in genesis.validators}


def _protocol_of(state: tn.TestnetState, node: tn.NodeProc) -> Literal[5, 311]:
    """The MQTT version the testnet's nodes speak (their command line says it; amqtt needs 3.1.1)."""
    command = node.command
    if "--mqtt-protocol" in command[:-1]:
        return 311 if command[command.index("--mqtt-protocol") + 1] == "311" else 5
    return 311 if state.broker.kind == "embedded" else 5


def target_from_dir(directory: Path, node_name: str | None) -> Target:
    """A testnet directory: its genesis, its broker, and one running node (``node_name`` or the first)."""
    layout = tn.Layout.of(directory)
    try:
        state = tn.read_state(layout)
        genesis = load_genesis(layout.genesis)
    except (tn.TestnetError, GenesisError) as exc:
        raise UserError(str(exc)) from None
    if node_name is not None:
        try:
            node = state.node(node_name)
        except tn.TestnetError as exc:
            raise UserError(str(exc)) from None
    else:
        alive = [n for n in state.nodes.values() if tn.process_state(n.pid, n.command) == "alive"]
        if not alive:
            raise UserError(
                f"no node of the testnet in {layout.root} is running; start it with `posnet testnet up`"
            )
        node = alive[0]
    return Target(
        query_url=f"http://127.0.0.1:{node.metrics_port}",
        label=node.name,
        genesis=genesis,
        broker_url=state.broker.url,
        mqtt_protocol=_protocol_of(state, node),
        log_path=layout.log(node.name),
        names=_genesis_names(genesis),
    )


def resolve_target(
    directory: Path | None,
    node_name: str | None,
    url: str | None,
    broker: str | None = None,
    genesis_path: Path | None = None,
) -> Target:
    """``--dir`` (default ./testnet) or the explicit ``--url``/``--broker``/``--genesis``; never a mix."""
    explicit = url is not None or broker is not None or genesis_path is not None
    if explicit and (directory is not None or node_name is not None):
        raise UserError("use --dir [--node] or --url/--broker/--genesis, not both")
    if not explicit:
        return target_from_dir(directory or Path(DEFAULT_DIR), node_name)
    genesis = None
    if genesis_path is not None:
        try:
            genesis = load_genesis(genesis_path)
        except GenesisError as exc:
            raise UserError(str(exc)) from None
    if broker is not None:
        try:
            parse_broker_url(broker)
        except ValueError as exc:
            raise UserError(f"--broker: {exc}") from None
    query_url = url.rstrip("/") if url else None
    if query_url is not None and not query_url.startswith(("http://", "https://")):
        raise UserError(f"--url {url!r}: expected http://HOST:PORT (a node's metrics port)")
    return Target(query_url, query_url or "the chain", genesis, broker, None, None, _genesis_names(genesis))


# ------------------------------------------------------------------ the query client


class QueryClient:
    """GETs JSON from one node's ``/query/`` endpoint; every failure is a one-line UserError."""

    def __init__(self, target: Target) -> None:
        if target.query_url is None:
            raise UserError("no node to ask: pass --dir DIR or --url http://HOST:PORT")
        self.url = target.query_url
        self.label = target.label

    def get(self, path: str) -> JSON:
        try:
            with urllib.request.urlopen(self.url + path, timeout=HTTP_TIMEOUT_S) as response:
                return json.load(response)  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            raise UserError(f"{self.label}: {_error_text(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            who = f"node {self.label} at {self.url}" if self.label != self.url else f"a node at {self.url}"
            raise UserError(f"cannot reach {who} ({reason}); is it running with a --metrics-port?") from None
        except ValueError:
            raise UserError(
                f"{self.label}: answered something that is not JSON at {self.url + path}"
            ) from None


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.load(exc)["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.code}"


def parse_account(text: str, target: Target | None = None, client: QueryClient | None = None) -> bytes:
    """An address from 40 hex digits, a 64-hex public key, a pool name, or a key file.

    Pool names come from the genesis first, then (only if needed) from the
    node's pool list, which also knows pools registered by transaction.
    """
    raw = text.strip()
    hex_text = raw[2:] if raw.lower().startswith("0x") else raw
    with contextlib.suppress(ValueError):
        value = bytes.fromhex(hex_text)
        if len(value) == ADDRESS_LEN:
            return value
        if len(value) == PUBLIC_KEY_LEN:
            return address_of(value)
    names = dict(target.names) if target is not None else {}
    if raw in names:
        return names[raw]
    path = Path(raw).expanduser()
    if path.is_file():
        return _load_key(path)[1].address
    if client is not None:
        with contextlib.suppress(UserError, KeyError, TypeError, ValueError):
            for pool in client.get("/query/pools")["pools"]:
                names.setdefault(pool["name"], bytes.fromhex(pool["address"]))
        if raw in names:
            return names[raw]
    raise UserError(
        f"{text!r} is not an address (40 hex digits), a public key, a key file or a pool name"
        + (f" ({', '.join(sorted(names))})" if names else "")
    )


def _load_key(path: Path) -> tuple[str, Keypair]:
    try:
        return load_key_file(path)
    except ValueError as exc:
        raise UserError(str(exc)) from None


# ------------------------------------------------------------------ formatting


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


def pool_lines(answer: JSON, label: str) -> list[str]:
    pool = answer["pool"]
    lines = [
        f"pool        {pool['name']}  {pool['address']}",
        f"status      {pool['status']}"
        + (f" until epoch {pool['jailed_until_epoch']}" if pool["jailed_until_epoch"] is not None else ""),
        f"stake       {pool['stake']} ({pct(pool['share_ppm'])} of active stake), voting power now {pool['voting_power']}",
        f"pledge      {pool['pledge']}",
        f"delegated   {pool['delegated']} by {pool['delegators']} delegators",
        f"terms       fixed cost {pool['fixed_cost']}, margin {pct(pool['margin_ppm'])}",
        f"downtime    missed {pool['missed_in_window']} of the recent committee precommits",
    ]
    if pool["delegations"]:
        lines += table(
            ("DELEGATOR", "AMOUNT"),
            [(d["account"], d["amount"]) for d in pool["delegations"]],
            frozenset({1}),
        )
    if pool["unbonding"]:
        lines.append("unbonding from this pool:")
        rows = [(u["account"], u["amount"], u["release_epoch"]) for u in pool["unbonding"]]
        lines += table(("ACCOUNT", "AMOUNT", "RELEASE EPOCH"), rows, frozenset({1, 2}))
    return [*lines, _where(answer, label)]


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


# ------------------------------------------------------------------ query commands

TARGET_OPTIONS: list[Callable[[Any], Any]] = [
    click.option(
        "--dir",
        "directory",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"a `posnet testnet up` directory [default: ./{DEFAULT_DIR} unless --url is given]",
    ),
    click.option(
        "--node", "node_name", default=None, help="which node of --dir to ask [default: the first running]"
    ),
    click.option("--url", default=None, help="a node's query endpoint: http://HOST:METRICS_PORT"),
]
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="print the node's JSON answer")


def with_options(options: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def decorate(function: Any) -> Any:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _show(answer: JSON, as_json: bool, lines: Callable[[JSON, str], list[str]], label: str) -> None:
    if as_json:
        click.echo(json.dumps(answer))
        return
    for line in lines(answer, label):
        click.echo(line)


@click.group("query")
def query() -> None:
    """Read a running chain's ledger from one node: balances, pools, delegations, supply."""


def _client(directory: Path | None, node_name: str | None, url: str | None) -> tuple[Target, QueryClient]:
    target = resolve_target(directory, node_name, url)
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


# ------------------------------------------------------------------ submitting


@dataclass(frozen=True)
class TxOptions:
    """The options every `posnet tx` command shares."""

    key: Path
    directory: Path | None
    node_name: str | None
    url: str | None
    broker: str | None
    genesis_path: Path | None
    nonce: int | None
    check: bool
    wait: bool
    timeout: float
    as_json: bool
    mqtt_username: str | None
    mqtt_password_file: Path | None


TX_OPTIONS: list[Callable[[Any], Any]] = [
    click.option(
        "--key",
        type=click.Path(dir_okay=False, path_type=Path),
        required=True,
        help="the sender's key file (`posnet keys generate`)",
    ),
    *TARGET_OPTIONS,
    click.option("--broker", default=None, help="the chain's broker, mqtt://HOST:PORT (instead of --dir)"),
    click.option(
        "--genesis",
        "genesis_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="the chain's genesis (with --broker): its chain id, and pool names",
    ),
    click.option(
        "--nonce",
        type=click.IntRange(0),
        default=None,
        help="the sender's next nonce [default: ask the node]",
    ),
    click.option(
        "--no-check", "no_check", is_flag=True, help="send even if the node's ledger says it would fail"
    ),
    click.option(
        "--no-wait", "no_wait", is_flag=True, help="return once published, without waiting for a block"
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(0, min_open=True),
        default=DEFAULT_WAIT_S,
        show_default=True,
        help="seconds to wait for a block to apply or reject it",
    ),
    click.option("--json", "as_json", is_flag=True, help="print the outcome as one JSON object"),
    click.option("--mqtt-username", default=None, help="broker username"),
    click.option(
        "--mqtt-password-file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="file holding the broker password",
    ),
]


def _tx_options(kwargs: dict[str, Any]) -> TxOptions:
    return TxOptions(
        key=kwargs.pop("key"),
        directory=kwargs.pop("directory"),
        node_name=kwargs.pop("node_name"),
        url=kwargs.pop("url"),
        broker=kwargs.pop("broker"),
        genesis_path=kwargs.pop("genesis_path"),
        nonce=kwargs.pop("nonce"),
        check=not kwargs.pop("no_check"),
        wait=not kwargs.pop("no_wait"),
        timeout=kwargs.pop("timeout"),
        as_json=kwargs.pop("as_json"),
        mqtt_username=kwargs.pop("mqtt_username"),
        mqtt_password_file=kwargs.pop("mqtt_password_file"),
    )


def _password(options: TxOptions) -> str | None:
    if options.mqtt_password_file is None:
        return None
    if options.mqtt_username is None:
        raise UserError("--mqtt-password-file needs --mqtt-username")
    try:
        password = options.mqtt_password_file.read_text().rstrip("\r\n")
    except OSError as exc:
        raise UserError(f"--mqtt-password-file {options.mqtt_password_file}: {exc.strerror or exc}") from None
    if not password:
        raise UserError(f"--mqtt-password-file {options.mqtt_password_file}: empty")
    return password


async def publish_tx(
    target: Target, chain_id: str, payload: bytes, username: str | None = None, password: str | None = None
) -> None:
    """Hand one transaction envelope to the broker (QoS 1: returns once the broker has it)."""
    assert target.broker_url is not None
    host, port = parse_broker_url(target.broker_url)
    protocol = target.mqtt_protocol
    if protocol is None:
        protocol = 5 if username is not None else await detect_protocol(target.broker_url)
    version = aiomqtt.ProtocolVersion.V5 if protocol == 5 else aiomqtt.ProtocolVersion.V311
    client = aiomqtt.Client(
        host,
        port,
        identifier=f"posnet-tx-{random.getrandbits(48):012x}",
        username=username,
        password=password,
        protocol=version,
        timeout=HTTP_TIMEOUT_S * 2,
        logger=log,
    )
    async with client:
        await client.publish(topic(chain_id, TX), payload, qos=1)


def _chain_id(target: Target, client: QueryClient | None) -> str:
    if target.genesis is not None:
        return target.genesis.chain_id
    if client is not None:
        return str(client.get("/query/status")["chain_id"])
    raise UserError("which chain? pass --genesis FILE (or --url to ask a node)")


@dataclass
class Outcome:
    """How a submission ended, for the user (one line) and for scripts (--json)."""

    tx: str
    type: str
    account: str
    nonce: int
    status: str  # applied | rejected | published | timeout
    height: int | None = None
    reason: str | None = None
    stage: str = "chain"  # check | chain
    node: str | None = None

    def line(self) -> str:
        head = f"{self.type} (nonce {self.nonce}, tx {self.tx[:16]})"
        if self.status == "applied":
            return f"{head} applied at height {self.height} (seen by {self.node})"
        if self.status == "rejected" and self.stage == "check":
            return f"{head} rejected, not sent: {self.reason} (checked against {self.node} at height {self.height})"
        if self.status == "rejected":
            return f"{head} rejected at height {self.height}: {self.reason} (seen by {self.node})"
        if self.status == "published":
            return f"{head} published; {self.reason}"
        return f"{head} published but not seen in a block within {self.reason}"

    def exit_code(self) -> int:
        return {"rejected": EXIT_REJECTED, "timeout": EXIT_TIMEOUT}.get(self.status, 0)


def _log_outcomes(tail: tn.LogTail | None, txid: str) -> Iterator[JSON]:
    for event in tail.read_events() if tail is not None else ():
        if event.get("event") in TX_OUTCOMES and event.get("tx") == txid:
            yield {
                "status": "applied" if event["event"] == "tx_applied" else "rejected",
                "tx_height": event.get("height"),
                "reason": event.get("reason"),
            }


def wait_for_outcome(
    client: QueryClient | None, tail: tn.LogTail | None, txid: str, timeout: float
) -> JSON | None:
    """Poll the node's log (new lines only) and its /query/tx/ answer until the tx's block is seen."""
    deadline = time.monotonic() + timeout
    while True:
        for outcome in _log_outcomes(tail, txid):
            return outcome
        if client is not None:
            with contextlib.suppress(UserError):  # a node restarting answers again shortly
                answer = client.get(f"/query/tx/{txid}")
                if answer.get("status") in ("applied", "rejected"):
                    return answer
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_S)


@dataclass(frozen=True)
class Submission:
    """What a `posnet tx` command resolved before building its transaction."""

    options: TxOptions
    target: Target
    client: QueryClient | None

    @classmethod
    def prepare(cls, options: TxOptions) -> Submission:
        target = resolve_target(
            options.directory, options.node_name, options.url, options.broker, options.genesis_path
        )
        if target.broker_url is None:
            raise UserError("where to send it? pass --dir DIR, or --broker mqtt://HOST:PORT")
        client = QueryClient(target) if target.query_url is not None else None
        return cls(options, target, client)

    def address(self, text: str) -> bytes:
        """A recipient or pool argument as an address (names resolved through genesis and node)."""
        return parse_account(text, self.target, self.client)


def submit(submission: Submission, build: Callable[[int], Tx]) -> None:
    """Sign, check, publish and follow one transaction; prints the outcome and exits with its code."""
    options, target, client = submission.options, submission.target, submission.client
    password = _password(options)
    _, keypair = _load_key(options.key)
    chain_id = _chain_id(target, client)
    nonce = options.nonce
    if nonce is None:
        if client is None:
            raise UserError("no node to ask for the sender's nonce: pass --nonce N, or --url/--dir")
        nonce = int(client.get(f"/query/account/{keypair.address.hex()}")["nonce"])
    tx = build(nonce)
    wire = sign_tx(chain_id, tx, keypair)
    outcome = Outcome(tx_id(wire).hex(), tx_type_name(tx), keypair.address.hex(), nonce, "published")
    outcome.node = client.label if client is not None else None
    if options.check and client is not None:
        verdict = client.get(f"/query/check/{wire.hex()}")
        if not verdict["ok"]:
            outcome.status, outcome.stage = "rejected", "check"
            outcome.height, outcome.reason = verdict["height"], verdict["problem"]
            _finish(outcome, options)
    tail = tn.LogTail(target.log_path) if options.wait and target.log_path is not None else None
    envelope = tx_bytes(chain_id, wire, keypair)
    try:
        asyncio.run(publish_tx(target, chain_id, envelope, options.mqtt_username, password))
    except (aiomqtt.MqttError, OSError) as exc:
        raise UserError(f"cannot publish to the broker at {target.broker_url}: {exc}") from None
    if not options.wait or (client is None and tail is None):
        outcome.reason = f"sent to {target.broker_url}" + (
            "" if options.wait else " (not waiting for a block)"
        )
        _finish(outcome, options)
    result = wait_for_outcome(client, tail, outcome.tx, options.timeout)
    if result is None:
        outcome.status, outcome.reason = "timeout", f"{options.timeout:g} s"
    else:
        outcome.status, outcome.height = result["status"], result["tx_height"]
        outcome.reason = None if outcome.status == "applied" else result["reason"]
    _finish(outcome, options)


def _finish(outcome: Outcome, options: TxOptions) -> None:
    if options.as_json:
        click.echo(json.dumps(asdict(outcome)))
    else:
        click.echo(outcome.line())
    sys.exit(outcome.exit_code())


@click.group("tx")
def tx() -> None:
    """Sign a transaction with an account key, send it to the chain, and wait for its block."""


@tx.command("transfer")
@click.argument("to")
@click.argument("amount", type=click.IntRange(1))
@with_options(TX_OPTIONS)
def tx_transfer(to: str, amount: int, **kwargs: Any) -> None:
    """Send AMOUNT of the sender's liquid balance to TO (address, public key, key file or pool name)."""
    submission = Submission.prepare(_tx_options(kwargs))
    recipient = submission.address(to)
    submit(submission, lambda nonce: Transfer(nonce, recipient, amount))


@tx.command("register-pool")
@click.argument("pledge", type=click.IntRange(1))
@click.option(
    "--fixed-cost", type=click.IntRange(0), default=0, show_default=True, help="taken from each reward first"
)
@click.option(
    "--margin-ppm",
    type=click.IntRange(0, PPM),
    default=50_000,
    show_default=True,
    help="operator's share of the rest",
)
@with_options(TX_OPTIONS)
def tx_register_pool(pledge: int, fixed_cost: int, margin_ppm: int, **kwargs: Any) -> None:
    """Make the sender a stake pool operator, pledging PLEDGE of its balance."""
    submit(
        Submission.prepare(_tx_options(kwargs)),
        lambda nonce: RegisterPool(nonce, pledge, fixed_cost, margin_ppm),
    )


@tx.command("delegate")
@click.argument("pool")
@click.argument("amount", type=click.IntRange(1))
@with_options(TX_OPTIONS)
def tx_delegate(pool: str, amount: int, **kwargs: Any) -> None:
    """Stake AMOUNT of the sender's balance with POOL (name or address); custody stays with the sender."""
    submission = Submission.prepare(_tx_options(kwargs))
    address = submission.address(pool)
    submit(submission, lambda nonce: Delegate(nonce, address, amount))


@tx.command("undelegate")
@click.argument("pool")
@click.argument("amount", type=click.IntRange(1))
@with_options(TX_OPTIONS)
def tx_undelegate(pool: str, amount: int, **kwargs: Any) -> None:
    """Withdraw AMOUNT of the sender's stake from POOL; it unbonds (still slashable) for a few epochs."""
    submission = Submission.prepare(_tx_options(kwargs))
    address = submission.address(pool)
    submit(submission, lambda nonce: Undelegate(nonce, address, amount))


@tx.command("unjail")
@with_options(TX_OPTIONS)
def tx_unjail(**kwargs: Any) -> None:
    """Ask for the sender's jailed pool back (allowed once its jail has ended)."""
    submit(Submission.prepare(_tx_options(kwargs)), Unjail)
