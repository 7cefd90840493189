"""``posnet node``: run one validator node process against an MQTT broker.

The testnet orchestrator and docker compose spawn exactly ``posnet node run``
with these options, so its contract is kept small and stable: inputs are
files and a broker URL, output is a JSON-lines log (``--log``) and optional
Prometheus metrics; a bad input ends it at once with one line naming the
problem and exit code 2, never a traceback.
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path
from typing import Literal, cast

import click

from network.cli.chain import with_options
from network.cli.tls_options import TLS_OPTIONS, tls_context
from network.transport.mqtt import PasswordFileError, read_password_file
from network.transport.split import SplitMqttTransport
from node.core.behaviours import BEHAVIOURS
from node.core.checkpoint import Checkpoint, parse_checkpoint
from node.runtime.node import NodeConfig, NodeFailed, StartupError, run_node
from node.runtime.recovery import SNAPSHOT_EVERY
from node.runtime.transport import Transport, TransportFactory, TransportSpec


def _fail(message: str) -> None:
    """One line on stderr, exit 2: the convention for inputs a node cannot start with."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(2)


def _checkpoint(value: str | None) -> Checkpoint | None:
    """--trust HEIGHT:HASH, or a usage error naming what is wrong with it."""
    if not value:  # unset, or POSNET_TRUST empty (compose passes it through as such)
        return None
    try:
        return parse_checkpoint(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _read_password(path: Path) -> str:
    try:
        return read_password_file(path)
    except PasswordFileError as exc:
        _fail(f"--mqtt-password-file {path}: {exc}")
        raise  # not reached: _fail exits


def mqtt_transport(
    broker_url: str,
    protocol: Literal[5, 311],
    username: str | None,
    password: str | None,
    tls: ssl.SSLContext | None = None,
) -> TransportFactory:
    """The node's transport: two MQTT connections to the broker at `broker_url` (already validated).

    Consensus and status on one, transactions and sync on the other (network/transport/split.py says why).
    """
    credentials = {} if username is None else {"username": username, "password": password or ""}

    def connect(spec: TransportSpec) -> Transport:
        return SplitMqttTransport(
            broker_url,
            spec.chain_id,
            spec.node_id,
            subscriptions=spec.subscriptions,
            offline_status=spec.offline_status,
            protocol=protocol,
            inbound_queue=spec.inbound_queue,
            tls=tls,
            **credentials,
        )

    return connect


@click.group("node")
def node() -> None:
    """Run a validator node."""


@node.command("run")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="node directory: holds key.json; the store node.sqlite3 is kept here",
)
@click.option(
    "--key",
    "key_files",
    type=click.Path(dir_okay=False, path_type=Path),
    multiple=True,
    help="validator key file to host (repeatable: one node may host several validators) [default: HOME/key.json]",
)
@click.option(
    "--genesis", "genesis_path", type=click.Path(path_type=Path), required=True, help="genesis TOML"
)
@click.option(
    "--broker",
    "broker_url",
    required=True,
    help="broker URL, mqtt://HOST:PORT (or mqtts://HOST:PORT with --tls-ca)",
)
@click.option(
    "--name", default=None, help="node name on the wire and in logs [default: the key's validator name]"
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="append JSON-lines events here [default: stdout, pretty on a terminal]",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Prometheus /metrics port, 0 = disabled",
)
@click.option("--metrics-host", default="0.0.0.0", show_default=True, help="address the metrics server binds")
@click.option(
    "--behaviour",
    type=click.Choice(BEHAVIOURS),
    default="honest",
    show_default=True,
    help="fault injection: a Byzantine mode (node/core/behaviours.py says what each does)",
)
@click.option(
    "--mqtt-protocol",
    type=click.Choice(["5", "311"]),
    default="5",
    show_default=True,
    help="MQTT version (311 for the embedded broker)",
)
@click.option("--mqtt-username", default=None, help="broker username")
@click.option(
    "--mqtt-password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="file holding the broker password (kept off the command line)",
)
@with_options(TLS_OPTIONS)
@click.option(
    "--snapshot-every",
    type=click.IntRange(min=0),
    default=SNAPSHOT_EVERY,
    show_default=True,
    help="store the chain state every N blocks, so a restart replays only the blocks after it (0: never)",
)
@click.option(
    "--genesis-wait-s",
    type=click.FloatRange(min=0, max=3600),
    default=0,
    show_default=True,
    help="at genesis, hold height 1 until every validator's node is online, for at most this long "
    "(0: start at once); a node that finds the chain begun starts at once",
)
@click.option(
    "--doppelganger-ms",
    type=click.IntRange(min=0, max=600_000),
    default=None,
    help="after every start, sign nothing until synced to the network's height and no message of our "
    "keys has arrived for this long [default: a relay cycle, from the genesis timeouts]; "
    "0 turns the protection off (a wiped or restored store may then double-sign)",
)
@click.option(
    "--trust",
    "trust",
    metavar="HEIGHT:HASH",
    envvar="POSNET_TRUST",
    callback=lambda _ctx, _param, value: _checkpoint(value),
    help="a block you trust from outside the chain (weak subjectivity checkpoint): take no history "
    "that does not pass through it, so validators who have since left cannot lead this node "
    "onto another (docs/attacks.md); also from POSNET_TRUST",
)
def run(
    home: Path,
    key_files: tuple[Path, ...],
    genesis_path: Path,
    broker_url: str,
    name: str | None,
    log_path: Path | None,
    metrics_port: int,
    metrics_host: str,
    behaviour: str,
    mqtt_protocol: str,
    mqtt_username: str | None,
    mqtt_password_file: Path | None,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    snapshot_every: int,
    genesis_wait_s: float,
    doppelganger_ms: int | None,
    trust: Checkpoint | None,
) -> None:
    """Run one validator node until SIGTERM or SIGINT.

    Exit codes: 0 after a graceful stop, 1 on a fatal runtime failure
    (e.g. the store cannot be written), 2 on bad inputs (a corrupt store
    among them); either failure is one line on stderr and, once the node
    has a log, one ``fatal`` event.
    """
    if mqtt_password_file is not None and mqtt_username is None:
        _fail("--mqtt-password-file needs --mqtt-username")
    password = _read_password(mqtt_password_file) if mqtt_password_file is not None else None
    tls = tls_context(broker_url, tls_ca, tls_cert, tls_key)
    protocol = cast(Literal[5, 311], int(mqtt_protocol))
    config = NodeConfig(
        home=home,
        key_files=key_files,
        genesis=genesis_path,
        broker_url=broker_url,
        name=name,
        log_path=log_path,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        behaviour=behaviour,
        snapshot_every=snapshot_every,
        genesis_wait_ms=round(genesis_wait_s * 1000),
        doppelganger_ms=doppelganger_ms,
        trust=trust,
    )
    try:
        code = run_node(config, mqtt_transport(broker_url, protocol, mqtt_username, password, tls))
    except StartupError as exc:
        _fail(str(exc))
    except NodeFailed as exc:
        click.echo(f"Error: {exc}", err=True)  # the log's fatal event has it too
        sys.exit(1)
    sys.exit(code)
