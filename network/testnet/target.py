"""Where a running chain is: the node to ask, the broker to publish to, the chain's genesis.

A `posnet testnet up` directory records all of it (DIR/testnet.json: the
broker URL, each node's metrics port and log); a chain started some other
way is named by its URLs instead. Clients of a running chain (`posnet query`,
`posnet tx`, scripts) start from a `Target` and never open files a node owns.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from network.testnet.errors import TestnetError
from network.testnet.layout import Layout, NodeProc, TestnetState, read_state
from network.testnet.processes import process_state
from node.core.genesis import Genesis, GenesisError, load_genesis
from node.core.keys import load_key_file


class ClientError(Exception):
    """A one-line problem a client of a running chain reports to its user (no traceback)."""


@dataclass(frozen=True)
class Target:
    """The node a client asks (its query URL and log), and the chain and broker to submit to."""

    query_url: str | None
    label: str  # how to name the node in messages: its name, or the URL
    genesis: Genesis | None = None
    broker_url: str | None = None
    mqtt_protocol: Literal[5, 311] | None = None
    log_path: Path | None = None
    # name -> address: the genesis pools, and a testnet directory's funded accounts (a01, a02, ...)
    names: dict[str, bytes] = field(default_factory=dict)


def genesis_names(genesis: Genesis | None) -> dict[str, bytes]:
    """Pool name -> address for the genesis validators (none without a genesis)."""
    return {} if genesis is None else {v.name: v.address for v in genesis.validators}


def account_names(layout: Layout) -> dict[str, bytes]:
    """Account name -> address for the funded accounts a testnet directory made (`up --accounts N`).

    Their keys are in the directory (DIR/accounts/aNN.json), so `posnet tx
    transfer a02 ...` can name a recipient the way `testnet up` named it. A
    key file that cannot be read is left out: it is then not a name, and the
    command says what names it knows.
    """
    names = {}
    for path in layout.account_keys():
        with contextlib.suppress(ValueError, OSError):
            names[path.stem] = load_key_file(path)[1].address
    return names


def protocol_of(state: TestnetState, node: NodeProc) -> Literal[5, 311]:
    """The MQTT version the testnet's nodes speak (their command line says it; amqtt needs 3.1.1)."""
    command = node.command
    if "--mqtt-protocol" in command[:-1]:
        return 311 if command[command.index("--mqtt-protocol") + 1] == "311" else 5
    return 311 if state.broker.kind == "embedded" else 5


def target_from_dir(directory: Path, node_name: str | None) -> Target:
    """A testnet directory: its genesis, its broker, and one running node (``node_name`` or the first)."""
    layout = Layout.of(directory)
    try:
        state = read_state(layout)
        genesis = load_genesis(layout.genesis)
    except (TestnetError, GenesisError) as exc:
        raise ClientError(str(exc)) from None
    if node_name is not None:
        try:
            node = state.node(node_name)
        except TestnetError as exc:
            raise ClientError(str(exc)) from None
    else:
        alive = [n for n in state.nodes.values() if process_state(n.pid, n.command) == "alive"]
        if not alive:
            raise ClientError(
                f"no node of the testnet in {layout.root} is running; start it with `posnet testnet up`"
            )
        node = alive[0]
    return Target(
        query_url=f"http://127.0.0.1:{node.metrics_port}",
        label=node.name,
        genesis=genesis,
        broker_url=state.broker.url,
        mqtt_protocol=protocol_of(state, node),
        log_path=layout.log(node.name),
        names={**account_names(layout), **genesis_names(genesis)},  # a pool's name wins a clash
    )
