"""`testnet up --auto-unjail`: send each jailed validator's `unjail` as soon as the ledger allows it.

A validator that stays down about half a downtime window is jailed, and a
jail never ends by itself: its operator must send `unjail` once the jail
epochs are over. In a long soak nobody is there to do it, so every jailed
validator stays out for good and the next single fault stops a small chain.
With --auto-unjail the `up` process does what each operator would do with
`posnet tx unjail`: it signs the transaction with the pool's owner key
(DIR/owners/vI.json with --cold-keys, else the node's key), dry-runs it
against a running node's ledger (`/query/check`, which refuses it until the
jail has ended), and publishes it on the chain's `tx` channel only when the
ledger would take it.

It runs in a thread of its own, so a slow or paused node's query endpoint
never holds up the supervisor's loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt

from network.testnet.client import QueryClient
from network.testnet.layout import Layout, TestnetState
from network.testnet.processes import process_state
from network.testnet.submit import publish_tx
from network.testnet.target import ClientError, Target, protocol_of
from node.core.envelopes import tx_bytes
from node.core.genesis import Genesis
from node.core.keys import Keypair, load_key_file
from node.core.tx import Unjail, sign_tx

POLL_S = 2.0
RESEND_S = 20.0  # an unjail sent but not yet applied is not sent again before this


class AutoUnjail:
    """Watches the pools of one testnet through its nodes' query endpoints; unjails when allowed."""

    def __init__(
        self, layout: Layout, genesis: Genesis, broker_url: str, echo: Callable[[str], None]
    ) -> None:
        self.layout, self.genesis, self.broker_url, self.echo = layout, genesis, broker_url, echo
        self.sent: dict[str, float] = {}  # validator -> when its last unjail went out
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="auto-unjail", daemon=True)

    def start(self, state: TestnetState) -> None:
        self.state = state
        self._thread.start()

    def update(self, state: TestnetState) -> None:
        """The supervisor's latest testnet.json (nodes restart with new pids)."""
        self.state = state

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.poll()
            except (ClientError, OSError, aiomqtt.MqttError, KeyError, TypeError, ValueError):
                continue  # a node restarting, the broker between reconnects: the next poll tries again

    def _target(self) -> Target | None:
        """A running node to ask (any: they share one ledger), reached on its metrics port."""
        for node in self.state.nodes.values():
            if process_state(node.pid, node.command) == "alive":
                return Target(
                    query_url=f"http://127.0.0.1:{node.metrics_port}",
                    label=node.name,
                    genesis=self.genesis,
                    broker_url=self.broker_url,
                    mqtt_protocol=protocol_of(self.state, node),
                )
        return None

    def _owner_key(self, name: str) -> Keypair:
        owner = self.layout.owner_key(name)
        path: Path = owner if owner.exists() else self.layout.key(name)
        return load_key_file(path)[1]

    def poll(self) -> None:
        """One look at the pools: every jailed one of ours whose unjail the ledger would take is sent."""
        target = self._target()
        if target is None:
            return
        client = QueryClient(target)
        ours = {v.name for v in self.genesis.validators}
        now = time.monotonic()
        for pool in client.get("/query/pools")["pools"]:
            name = pool.get("name")
            if pool.get("status") != "jailed" or name not in ours:
                continue
            if now - self.sent.get(name, -RESEND_S) < RESEND_S:
                continue
            keypair = self._owner_key(name)
            nonce = int(client.get(f"/query/account/{keypair.address.hex()}")["nonce"])
            wire = sign_tx(self.genesis.chain_id, Unjail(nonce), keypair)
            if not client.get(f"/query/check/{wire.hex()}")["ok"]:
                continue  # still inside its jail epochs
            envelope = tx_bytes(self.genesis.chain_id, wire, keypair)
            asyncio.run(publish_tx(target, self.genesis.chain_id, envelope))
            self.sent[name] = now
            self.echo(f"auto-unjail: sent {name}'s unjail (its jail has ended)")
