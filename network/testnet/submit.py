"""Submitting a transaction to a running chain and following it into a block.

A transaction goes out on the chain's ``tx`` MQTT channel, exactly as a
peer's would, for whichever validator proposes next to include. Its outcome
is then read back two ways, whichever comes first: the node's log (its
``tx_applied``/``tx_rejected`` events, by tx id, new lines only) and the
node's ``/query/tx/`` answer (which also covers a node without a readable log).
"""

from __future__ import annotations

import contextlib
import logging
import random
import ssl
import time
from collections.abc import Iterator

import aiomqtt

from network.testnet.client import JSON, QueryClient
from network.testnet.logtail import LogTail
from network.testnet.target import ClientError, Target
from network.transport.mqtt import detect_protocol, topic
from network.transport.tls import split_broker_url
from node.core.channels import TX
from node.core.events import TX_OUTCOMES

PUBLISH_TIMEOUT_S = 10.0
POLL_S = 0.25

log = logging.getLogger("posnet.testnet.submit")


async def broker_client(
    target: Target,
    role: str,
    username: str | None = None,
    password: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> aiomqtt.Client:
    """An MQTT client for the chain's broker, speaking the version its nodes speak (`role` names it).

    `tls` is for an ``mqtts://`` broker (posnet's TLS brokers are mosquitto: MQTT 5).
    """
    assert target.broker_url is not None
    host, port, _ = split_broker_url(target.broker_url)
    protocol = target.mqtt_protocol
    if protocol is None:
        protocol = 5 if username is not None or tls is not None else await detect_protocol(target.broker_url)
    version = aiomqtt.ProtocolVersion.V5 if protocol == 5 else aiomqtt.ProtocolVersion.V311
    return aiomqtt.Client(
        host,
        port,
        identifier=f"posnet-{role}-{random.getrandbits(48):012x}",
        username=username,
        password=password,
        protocol=version,
        tls_context=tls,
        timeout=PUBLISH_TIMEOUT_S,
        logger=log,
    )


async def publish_tx(
    target: Target,
    chain_id: str,
    payload: bytes,
    username: str | None = None,
    password: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Hand one transaction envelope to the broker (QoS 1: returns once the broker has it)."""
    async with await broker_client(target, "tx", username, password, tls) as client:
        await client.publish(topic(chain_id, TX), payload, qos=1)


def _log_outcomes(tail: LogTail | None, txid: str) -> Iterator[JSON]:
    for event in tail.read_events() if tail is not None else ():
        if event.get("event") in TX_OUTCOMES and event.get("tx") == txid:
            yield {
                "status": {"tx_applied": "applied", "tx_rejected": "rejected"}.get(event["event"], "refused"),
                "tx_height": event.get("height"),
                "reason": event.get("reason"),
            }


def wait_for_outcome(
    client: QueryClient | None, tail: LogTail | None, txid: str, timeout: float
) -> JSON | None:
    """Poll the node's log (new lines only) and its /query/tx/ answer until the tx's block is seen."""
    deadline = time.monotonic() + timeout
    while True:
        for outcome in _log_outcomes(tail, txid):
            return outcome
        if client is not None:
            with contextlib.suppress(ClientError):  # a node restarting answers again shortly
                answer = client.get(f"/query/tx/{txid}")
                if answer.get("status") in ("applied", "rejected", "refused"):
                    return answer
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_S)
