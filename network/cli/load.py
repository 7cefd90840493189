"""`posnet testnet load`: real signed transactions at a steady rate, and what became of each.

    posnet testnet up --accounts 8 --dir testnet            # in one terminal
    posnet testnet load --dir testnet --tps 50 --duration 60 --mix transfer=8,delegate=1,undelegate=1

Exit codes: 0 every submitted transaction was included or rejected with its
reason, 1 some were never seen in a block, 2 a usage problem.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path

import aiomqtt
import click

from network.cli.chain import with_options
from network.cli.errors import UserError
from network.cli.testnet import DIR_OPTION
from network.cli.tls_options import TLS_OPTIONS, tls_context
from network.testnet.client import QueryClient
from network.testnet.layout import Layout
from network.testnet.load import DEFAULT_MIX, Account, LoadError, LoadGenerator, load_accounts, parse_mix
from network.testnet.target import ClientError, target_from_dir
from network.transport.tls import split_broker_url


@click.command("load")
@DIR_OPTION
@click.option("--node", "node_name", default=None, help="the node whose log is followed [default: the first]")
@click.option("--tps", type=click.FloatRange(0, 1000, min_open=True), default=10.0, show_default=True)
@click.option(
    "--duration", type=click.FloatRange(0, min_open=True), default=30.0, show_default=True, help="seconds"
)
@click.option(
    "--mix",
    default=",".join(f"{k}={w}" for k, w in DEFAULT_MIX.items()),
    show_default=True,
    help="KIND=WEIGHT,... with KIND transfer, delegate, undelegate or overspend (refused by the ledger)",
)
@click.option(
    "--drain", type=click.FloatRange(0), default=60.0, show_default=True, help="seconds to wait for outcomes"
)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the counts as one JSON object")
@click.option(
    "--broker",
    default=None,
    help="publish to this broker instead of the one DIR records, e.g. its mqtts://HOST:PORT listener",
)
@with_options(TLS_OPTIONS)
def load(
    directory: Path,
    node_name: str | None,
    tps: float,
    duration: float,
    mix: str,
    drain: float,
    seed: int,
    as_json: bool,
    broker: str | None,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    """Sign and publish transactions from the testnet's funded accounts; report what the chain did with them.

    The --tls-* files are those `posnet tx` takes, for a broker reached over
    TLS (--broker mqtts://...); the node followed is still DIR's.
    """
    try:
        weights = parse_mix(mix)
        target = target_from_dir(directory, node_name)
    except (LoadError, ClientError) as exc:
        raise UserError(str(exc)) from None
    if broker is not None:
        try:
            split_broker_url(broker)
        except ValueError as exc:
            raise UserError(f"--broker: {exc}") from None
        target = replace(target, broker_url=broker, mqtt_protocol=None)  # its version is asked, not assumed
    assert target.broker_url is not None
    tls = tls_context(target.broker_url, tls_ca, tls_cert, tls_key)
    try:
        client = QueryClient(target)
        keys = load_accounts(Layout.of(directory).account_keys())
        accounts = []
        for keypair in keys:
            answer = client.get(f"/query/account/{keypair.address.hex()}")
            accounts.append(Account(keypair, int(answer["nonce"]), int(answer["balance"])))
        assert target.genesis is not None
        pools = [v.address for v in target.genesis.validators]
        generator = LoadGenerator(target, target.genesis.chain_id, accounts, pools, weights, seed, tls)
        report = asyncio.run(generator.run(tps, duration, drain))
    except (LoadError, ClientError) as exc:
        raise UserError(str(exc)) from None
    except (aiomqtt.MqttError, OSError) as exc:
        raise UserError(f"cannot publish to the broker at {target.broker_url}: {exc}") from None
    counts = report.counts()
    if as_json:
        click.echo(json.dumps(counts, sort_keys=True))
    else:
        for line in report.lines():
            click.echo(line)
    sys.exit(1 if counts["unseen"] else 0)
