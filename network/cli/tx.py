"""`posnet tx`: sign a transaction, send it to a running chain, and follow it into a block.

A transaction goes out on the chain's ``tx`` MQTT channel, exactly as a
peer's would, for whichever validator proposes next to include. Where the
chain is comes from ``--dir DIR`` (a `posnet testnet up` directory: the broker
URL, each node's metrics port and log are in DIR/testnet.json), or explicitly
``--broker mqtt://HOST:PORT`` (plus ``--url http://HOST:PORT`` for a node to
ask, or ``--genesis FILE`` when no ``--url`` can tell the chain id); see
`network.cli.chain`.

A transaction is checked first: the node dry-runs it against its current
ledger (``/query/check/...``) with the ledger's own rules, so a doomed
transaction costs one line with the reason instead of a block and silence.
Then it is published and, by default, followed until a block applies or
rejects it (the node's ``tx_applied``/``tx_rejected`` events, by tx id).
Publishing and following live in `network.testnet.submit`, without click.

Exit codes: 0 applied (or published with --no-wait), 1 rejected (by the check
or by the chain), 2 a usage problem (bad option, missing file, node or broker
unreachable), 3 not seen in a block within --timeout.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import click

from network.cli.chain import TARGET_OPTIONS, ChainGroup, resolve_target, with_options
from network.cli.errors import UserError
from network.cli.keys import load_key
from network.cli.tls_options import TLS_OPTIONS, tls_context
from network.testnet.client import QueryClient, parse_account
from network.testnet.logtail import LogTail
from network.testnet.submit import publish_tx, wait_for_outcome
from network.testnet.target import Target
from network.transport.mqtt import PasswordFileError, read_password_file
from node.core.envelopes import tx_bytes
from node.core.genesis import PPM
from node.core.keys import PUBLIC_KEY_LEN
from node.core.tx import (
    Delegate,
    Redelegate,
    RegisterPool,
    RetirePool,
    RotateKey,
    Transfer,
    TransferShares,
    Tx,
    Undelegate,
    Unjail,
    UpdatePool,
    sign_tx,
    tx_id,
    tx_type_name,
)

DEFAULT_WAIT_S = 60.0
EXIT_REJECTED, EXIT_TIMEOUT = 1, 3


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
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


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
    *TLS_OPTIONS,
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
        tls_ca=kwargs.pop("tls_ca"),
        tls_cert=kwargs.pop("tls_cert"),
        tls_key=kwargs.pop("tls_key"),
    )


def _password(options: TxOptions) -> str | None:
    if options.mqtt_password_file is None:
        return None
    if options.mqtt_username is None:
        raise UserError("--mqtt-password-file needs --mqtt-username")
    try:
        return read_password_file(options.mqtt_password_file)
    except PasswordFileError as exc:
        raise UserError(f"--mqtt-password-file {options.mqtt_password_file}: {exc.reason}") from None


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
    status: str  # applied | rejected | refused | published | timeout
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
        if self.status == "refused":
            return f"{head} refused before any block: {self.reason} ({self.node} would not hold it)"
        if self.status == "published":
            return f"{head} published; {self.reason}"
        return f"{head} published but not seen in a block within {self.reason}"

    def exit_code(self) -> int:
        return {"rejected": EXIT_REJECTED, "refused": EXIT_REJECTED, "timeout": EXIT_TIMEOUT}.get(
            self.status, 0
        )


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
            raise UserError(
                "where to send it? pass --dir DIR, or --broker mqtt://HOST:PORT (mqtts:// for TLS)"
            )
        client = QueryClient(target) if target.query_url is not None else None
        return cls(options, target, client)

    def address(self, text: str) -> bytes:
        """A recipient or pool argument as an address (names resolved through genesis and node)."""
        return parse_account(text, self.target, self.client)


def submit(submission: Submission, build: Callable[[int], Tx]) -> None:
    """Sign, check, publish and follow one transaction; prints the outcome and exits with its code."""
    options, target, client = submission.options, submission.target, submission.client
    password = _password(options)
    assert target.broker_url is not None
    tls = tls_context(target.broker_url, options.tls_ca, options.tls_cert, options.tls_key)
    _, keypair = load_key(options.key)
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
    tail = LogTail(target.log_path) if options.wait and target.log_path is not None else None
    envelope = tx_bytes(chain_id, wire, keypair)
    try:
        asyncio.run(publish_tx(target, chain_id, envelope, options.mqtt_username, password, tls))
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


@click.group("tx", cls=ChainGroup)
def tx() -> None:
    """Sign a transaction with an account key, send it to the chain, and wait for its block."""


@tx.command("transfer")
@click.argument("to")
@click.argument("amount", type=click.IntRange(1))
@with_options(TX_OPTIONS)
def tx_transfer(to: str, amount: int, **kwargs: Any) -> None:
    """Send AMOUNT of the sender's liquid balance to TO (address, public key, key file, pool or account name)."""
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
@click.option(
    "--compounding",
    is_flag=True,
    help="keep members' rewards in the pool (each share's value rises) instead of paying them out",
)
@with_options(TX_OPTIONS)
def tx_register_pool(pledge: int, fixed_cost: int, margin_ppm: int, compounding: bool, **kwargs: Any) -> None:
    """Make the sender a stake pool operator, pledging PLEDGE of its balance."""
    submit(
        Submission.prepare(_tx_options(kwargs)),
        lambda nonce: RegisterPool(nonce, pledge, fixed_cost, margin_ppm, compounding),
    )


@tx.command("delegate")
@click.argument("pool")
@click.argument("amount", type=click.IntRange(1))
@with_options(TX_OPTIONS)
def tx_delegate(pool: str, amount: int, **kwargs: Any) -> None:
    """Stake AMOUNT of the sender's balance with POOL (name or address); custody stays with the sender.

    With liquid delegation (a genesis parameter) it labels the whole balance instead, and AMOUNT is not moved.
    """
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


@tx.command("transfer-shares")
@click.argument("pool")
@click.argument("to")
@click.argument("shares", type=click.IntRange(1))
@with_options(TX_OPTIONS)
def tx_transfer_shares(pool: str, to: str, shares: int, **kwargs: Any) -> None:
    """Give SHARES of the sender's delegation to POOL to TO: the new holder owns (and can undelegate) them."""
    submission = Submission.prepare(_tx_options(kwargs))
    address, recipient = submission.address(pool), submission.address(to)
    submit(submission, lambda nonce: TransferShares(nonce, address, recipient, shares))


@tx.command("redelegate")
@click.argument("source")
@click.argument("target")
@click.argument("amount", type=click.IntRange(1))
@with_options(TX_OPTIONS)
def tx_redelegate(source: str, target: str, amount: int, **kwargs: Any) -> None:
    """Move AMOUNT of the sender's stake from SOURCE to TARGET at once (it stays slashable by SOURCE a while)."""
    submission = Submission.prepare(_tx_options(kwargs))
    source_address, target_address = submission.address(source), submission.address(target)
    submit(submission, lambda nonce: Redelegate(nonce, source_address, target_address, amount))


@tx.command("retire-pool")
@click.argument("epoch", type=click.IntRange(1))
@with_options(TX_OPTIONS)
def tx_retire_pool(epoch: int, **kwargs: Any) -> None:
    """Retire the sender's pool at the start of EPOCH: its members' stake and the pledge unbond from then."""
    submit(Submission.prepare(_tx_options(kwargs)), lambda nonce: RetirePool(nonce, epoch))


@tx.command("rotate-key")
@click.argument("new_key", metavar="NEW_KEY")
@with_options(TX_OPTIONS)
def tx_rotate_key(new_key: str, **kwargs: Any) -> None:
    """Make NEW_KEY (a key file, or a hex public key) the pool's signing key from the next epoch.

    Sign with the pool's owner (cold) key. The node picks the new key up from
    its HOME/keys/ folder: put the key file there first.
    """
    public_key = parse_public_key(new_key)
    submit(Submission.prepare(_tx_options(kwargs)), lambda nonce: RotateKey(nonce, public_key))


def parse_public_key(text: str) -> bytes:
    """A key file's public key, or a hex Ed25519 public key."""
    path = Path(text)
    if path.is_file():
        return load_key(path)[1].public
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != PUBLIC_KEY_LEN:
        raise UserError(
            f"NEW_KEY {text!r}: neither a key file nor a {2 * PUBLIC_KEY_LEN}-digit hex public key"
        )
    return key


@tx.command("update-pool")
@click.option("--fixed-cost", type=click.IntRange(0), required=True, help="taken from each reward first")
@click.option("--margin-ppm", type=click.IntRange(0, PPM), required=True, help="operator's share of the rest")
@with_options(TX_OPTIONS)
def tx_update_pool(fixed_cost: int, margin_ppm: int, **kwargs: Any) -> None:
    """Set the sender's pool terms (sign with the owner key); rewards use them from the next block."""
    submit(Submission.prepare(_tx_options(kwargs)), lambda nonce: UpdatePool(nonce, fixed_cost, margin_ppm))


@tx.command("unjail")
@with_options(TX_OPTIONS)
def tx_unjail(**kwargs: Any) -> None:
    """Ask for the sender's jailed pool back (allowed once its jail has ended)."""
    submit(Submission.prepare(_tx_options(kwargs)), Unjail)
