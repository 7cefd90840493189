"""The MQTT transport between validators, over aiomqtt.

Every topic lives under ``posnet/<chain_id>/`` so several chains can share a broker
without seeing each other. Channels (the topic below that prefix):

``consensus``            proposals
``votes/<committee>``    prevotes and precommits; only the committee listens, and a
                         node changes these subscriptions as it runs (``listen``)
``evidence``             equivocation evidence
``tx``                   transactions
``sync/req``             block requests from nodes catching up
``sync/resp/<node>``     answers addressed to one node
``status/<node>``        retained liveness; the client's last will sets it to the
                         node's ``offline_status`` payload, so a killed node is seen
                         offline by anyone who subscribes later

Design choices, and why:

- ``publish`` never blocks and never raises for load: consensus code must not stall
  on the network. It enqueues into a bounded queue and returns False (counted) when
  the queue is full. Likewise a full inbound lane drops and counts instead of
  blocking the network loop: inbound messages wait in one bounded lane per channel
  group, served consensus first (network/transport/inbox.py says why), so a flood
  of junk transactions neither delays votes nor pushes them out.
- Consensus traffic is QoS 0 (the protocol tolerates loss and rebroadcasts by
  timeout; QoS 0 costs no acknowledgements). Retained messages (status) are QoS 1 so
  the broker surely stores them.
- The broker may vanish at any time (tests kill -9 it). ``run`` reconnects forever
  with exponential backoff and jitter, subscribes again, re-publishes the latest
  retained payload of every channel we published retained (a restarted broker has
  lost them, and a will may have overwritten our status meanwhile), then flushes
  whatever was queued while disconnected.
- ``protocol`` selects MQTT 5 (default, mosquitto) or 3.1.1 (``311``; required for
  the embedded amqtt broker, which rejects MQTT 5 CONNECTs).
- ``mqtts://`` URLs connect over TLS with the given ``tls`` context (see
  network/transport/tls.py: it trusts posnet's own CA and presents the node's
  certificate, which TLS-only brokers take as its username).
- ``close`` hands queued messages to the socket, unsubscribes, then sends
  DISCONNECT, so the will does not fire (see network/transport/broker.py for why amqtt needs
  the unsubscribe). Messages on channels we did not subscribe to are dropped.
- A node receives its own publications back if it subscribes to their channel (MQTT
  3.1.1 has no "no local"); callers recognise their own messages by the signed
  sender.

Past 500 lines: one reconnecting client with bounded queues; its connect
loop, inbound and outbound pumps and counters share one connection's state,
and the protocol probe beside it is the only other piece.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiomqtt
import paho.mqtt.client as paho_mqtt

from network.transport.broker import MAX_PAYLOAD_BYTES, parse_broker_url
from network.transport.inbox import LANES, PriorityInbox, lane_of
from network.transport.tls import check_tls_matches_url, split_broker_url
from node.core.channels import check_name as _check_name
from node.core.channels import status_channel

TOPIC_ROOT = "posnet"
STAT_KEYS = (
    "rx",
    "tx",
    "rx_dropped_queue_full",
    *(f"rx_dropped_queue_full_{lane}" for lane in LANES),
    "rx_dropped_oversize",
    "rx_dropped_unsubscribed",
    "tx_dropped_queue_full",
    "tx_dropped_oversize",
    "tx_dropped_closed",
    "tx_failed",
    "subscribe_failed",
    "reconnects",
)

log = logging.getLogger("posnet.network.mqtt")

_UNSUPPORTED_PROTOCOL_V5 = 0x84  # CONNACK reason code, MQTT 5
_UNACCEPTABLE_PROTOCOL_V311 = 0x01  # CONNACK return code, MQTT 3.1.1


def check_channel(channel: str, *, wildcards: bool = False) -> None:
    """Validate a channel (a topic below the chain prefix).

    Wildcards are legal only in subscriptions, and only as MQTT allows them: ``+``
    as a whole level, ``#`` as the whole last level.
    """
    if not channel or "\0" in channel:
        raise ValueError(f"channel must be non-empty without NUL: {channel!r}")
    levels = channel.split("/")
    for i, level in enumerate(levels):
        if not level:
            raise ValueError(f"channel {channel!r} has an empty level")
        has_wild = "+" in level or "#" in level
        if has_wild and not wildcards:
            raise ValueError(f"channel {channel!r}: wildcards are only allowed in subscriptions")
        if has_wild and level not in ("+", "#"):
            raise ValueError(f"channel {channel!r}: a wildcard must be a whole level")
        if level == "#" and i != len(levels) - 1:
            raise ValueError(f"channel {channel!r}: '#' must be the last level")


def topic(chain_id: str, channel: str) -> str:
    """Full MQTT topic for ``channel`` of ``chain_id``: ``posnet/<chain_id>/<channel>``."""
    _check_name("chain_id", chain_id)
    check_channel(channel, wildcards=True)
    return f"{TOPIC_ROOT}/{chain_id}/{channel}"


async def detect_protocol(url: str, *, timeout: float = 5.0) -> Literal[5, 311]:
    """The best MQTT version the broker at ``url`` accepts: 5, else 3.1.1.

    For callers that only hold a URL: mosquitto takes MQTT 5, the embedded amqtt
    broker refuses it with "unsupported protocol version". Other failures (broker
    down, timeout) raise aiomqtt.MqttError.
    """
    host, port = parse_broker_url(url)
    client = aiomqtt.Client(
        host,
        port,
        identifier=f"posnet-probe-{random.getrandbits(48):012x}",
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=timeout,
        logger=log,
    )
    try:
        async with client:
            return 5
    except aiomqtt.MqttCodeError as exc:  # a refused CONNECT carries its reason code
        code = getattr(exc.rc, "value", exc.rc)
        if code in (_UNSUPPORTED_PROTOCOL_V5, _UNACCEPTABLE_PROTOCOL_V311):
            return 311
        raise


class PasswordFileError(ValueError):
    """A broker password file that cannot be used. ``reason`` is the OS's words, or "empty"."""

    def __init__(self, path: Path, reason: str, *, unreadable: bool) -> None:
        super().__init__(f"cannot read ({reason})" if unreadable else reason)
        self.path = path
        self.reason = reason


def read_password_file(path: Path) -> str:
    """The broker password kept in ``path``, without the newline an editor leaves at its end.

    Passwords live in files, not on command lines, because any local user can read
    another's command line. An empty file is refused: it would mean "no password"
    while the user clearly meant to give one.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PasswordFileError(path, str(exc.strerror or exc), unreadable=True) from None
    password = text.rstrip("\r\n")
    if not password:
        raise PasswordFileError(path, "empty", unreadable=False)
    return password


@dataclass(frozen=True)
class Inbound:
    """A received message: its channel (prefix stripped) and opaque payload."""

    channel: str
    payload: bytes


@dataclass(frozen=True)
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class MqttTransport:
    """One node's connection to the broker: bounded queues in, bounded queues out.

    Usage: create, start ``run()`` as a task, ``publish``/``recv`` freely, ``close()``.
    ``connected`` is set once subscriptions are acknowledged (so "connected" means
    "will receive") and cleared on loss. The client id is
    ``posnet-<chain_id>-<node_id>``: a restarted node takes over its old session at
    once instead of coexisting with a stale one. One transport per (chain, node).

    Arguments beyond the obvious: ``subscriptions`` are channels (wildcards allowed);
    ``offline_status`` is the will payload for ``status/<node_id>`` (None: no will);
    ``inbound_queue`` bounds each inbound lane (see network/transport/inbox.py), and
    ``inbox`` shares one with another connection (see network/transport/split.py),
    whose ``client_suffix`` keeps its client id apart; ``protocol`` 5 or
    311 (amqtt needs 311, see ``detect_protocol``); ``max_payload`` bounds both
    directions; ``keepalive`` (s) bounds how long a frozen node looks alive;
    ``max_inflight`` caps publishes handed to the client but not yet written;
    ``timeout`` (s) bounds connect/subscribe round trips; ``tls`` is required for an
    ``mqtts://`` URL and refused for ``mqtt://`` (never plaintext by mistake).
    """

    def __init__(
        self,
        url: str,
        chain_id: str,
        node_id: str,
        *,
        subscriptions: Sequence[str],
        offline_status: bytes | None,
        protocol: Literal[5, 311] = 5,
        inbound_queue: int = 10_000,
        outbound_queue: int = 10_000,
        backoff: tuple[float, float] = (0.2, 5.0),
        max_payload: int = MAX_PAYLOAD_BYTES,
        keepalive: int = 10,
        max_inflight: int = 64,
        timeout: float = 10.0,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        inbox: PriorityInbox[Inbound] | None = None,
        client_suffix: str = "",
    ) -> None:
        self.host, self.port, _ = split_broker_url(url)
        check_tls_matches_url(url, tls)
        _check_name("chain_id", chain_id)
        _check_name("node_id", node_id)
        if protocol not in (5, 311):
            raise ValueError(f"protocol must be 5 or 311, got {protocol!r}")
        if inbound_queue < 1 or outbound_queue < 1 or max_inflight < 1:
            raise ValueError("queue sizes and max_inflight must be >= 1")
        if not 0 < backoff[0] <= backoff[1]:
            raise ValueError(f"backoff must be (min, max) with 0 < min <= max, got {backoff}")
        for channel in subscriptions:
            check_channel(channel, wildcards=True)
        self.url = url
        self.chain_id = chain_id
        self.node_id = node_id
        self.client_id = f"posnet-{chain_id}-{node_id}" + (f"-{client_suffix}" if client_suffix else "")
        self.protocol = protocol
        self.subscriptions = tuple(subscriptions)
        self._exact_subscriptions = {c for c in self.subscriptions if "+" not in c and "#" not in c}
        self._wildcard_subscriptions = [c for c in self.subscriptions if c not in self._exact_subscriptions]
        self.offline_status = None if offline_status is None else bytes(offline_status)
        self.max_payload = max_payload
        self.keepalive = keepalive
        self.timeout = timeout
        self._username = username
        self._password = password
        self._tls = tls
        self._prefix = f"{TOPIC_ROOT}/{chain_id}/"
        self._backoff = backoff
        self._max_inflight = max_inflight
        self._outbound_max = outbound_queue
        self._inbound: PriorityInbox[Inbound] = PriorityInbox(inbound_queue) if inbox is None else inbox
        self._outbound: deque[_Outgoing] = deque()
        self._outbound_ready = asyncio.Event()
        self._outbound_idle = asyncio.Event()
        self._retained: dict[str, bytes] = {}
        self._listening: frozenset[str] = frozenset()  # channels added and dropped while running
        self._live: aiomqtt.Client | None = None  # the connected client, for subscription changes
        self._changes: set[asyncio.Task[None]] = set()
        self._known_channels: set[str] = set()
        self._closing = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stopped.set()
        self._run_task: asyncio.Task[None] | None = None
        self._connections = 0
        self._drain_timeout = 2.0
        self.connected = asyncio.Event()
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)

    # --- public API -----------------------------------------------------------------

    def publish(self, channel: str, payload: bytes, *, retain: bool = False) -> bool:
        """Queue ``payload`` for ``channel``; never blocks.

        Returns False (and counts why) when closed, the payload exceeds
        ``max_payload``, or the outbound queue is full. Retained publications use
        QoS 1 and are remembered for re-publication after a reconnect.
        """
        if channel not in self._known_channels:
            check_channel(channel)
            self._known_channels.add(channel)
        if self._closing.is_set():
            self.stats["tx_dropped_closed"] += 1
            return False
        if len(payload) > self.max_payload:
            self.stats["tx_dropped_oversize"] += 1
            return False
        if len(self._outbound) >= self._outbound_max:
            self.stats["tx_dropped_queue_full"] += 1
            return False
        item = _Outgoing(self._prefix + channel, bytes(payload), 1 if retain else 0, retain)
        if retain:
            self._retained[item.topic] = item.payload
        self._outbound.append(item)
        self._outbound_idle.clear()
        self._outbound_ready.set()
        return True

    async def recv(self) -> Inbound:
        """The next inbound message by priority (waits for one); see network/transport/inbox.py."""
        return await self._inbound.get()

    def listen(self, channels: frozenset[str]) -> None:
        """Listen to exactly these channels besides the fixed ``subscriptions``; never blocks.

        A committee's vote channel is joined and left as the node's keys gain
        and lose seats. The change goes to the broker at once when connected
        (and with every later reconnect); messages on a channel left are
        dropped from now on, like any unsubscribed message.
        """
        channels = frozenset(channels)
        for channel in channels:
            check_channel(channel)
        added, removed = channels - self._listening, self._listening - channels
        if not added and not removed:
            return
        self._listening = channels
        self._exact_subscriptions = (self._exact_subscriptions - removed) | added
        client = self._live
        if client is not None:
            task = asyncio.get_running_loop().create_task(self._change_subscriptions(client, added, removed))
            self._changes.add(task)
            task.add_done_callback(self._changes.discard)

    def _channels(self) -> list[str]:
        """Everything subscribed now: the fixed channels, then those ``listen`` added."""
        return [*self.subscriptions, *sorted(self._listening - set(self.subscriptions))]

    def pending_inbound(self) -> int:
        """Messages received and not yet taken by ``recv``."""
        return len(self._inbound)

    def pending_outbound(self) -> int:
        """Messages queued and not yet handed to the socket."""
        return len(self._outbound)

    async def run(self) -> None:
        """Stay connected until ``close()``: connect, subscribe, pump, reconnect.

        Never returns on broker loss; every failure is logged and retried after an
        exponentially growing, jittered delay (reset after a successful connect).
        """
        if not self._stopped.is_set():
            raise RuntimeError("MqttTransport.run() is already running")
        self._stopped.clear()
        self._run_task = asyncio.current_task()
        attempt = 0
        try:
            while not self._closing.is_set():
                before = self._connections
                await self._session_guarded(attempt)
                attempt = 0 if self._connections > before else attempt + 1
                if not self._closing.is_set():
                    await self._sleep_unless_closing(self._backoff_delay(attempt))
        finally:
            self.connected.clear()
            self._run_task = None
            self._stopped.set()

    async def close(self, *, drain_timeout: float = 2.0) -> None:
        """Disconnect cleanly, so the broker does not fire the will.

        Messages already queued are handed to the socket first (for up to
        ``drain_timeout`` seconds); nothing else is published. Afterwards
        ``publish`` returns False and ``run`` returns. Idempotent.
        """
        self._drain_timeout = drain_timeout
        self._closing.set()
        task = self._run_task
        if task is None or task is asyncio.current_task():
            return
        try:
            await asyncio.wait_for(self._stopped.wait(), drain_timeout + self.timeout + 5.0)
        except TimeoutError:
            task.cancel()
            await asyncio.wait({task}, timeout=self.timeout)

    # --- connection lifecycle -------------------------------------------------------------

    async def _session_guarded(self, attempt: int) -> None:
        """One connection attempt; logs failures instead of raising them."""
        try:
            await self._session()
        except aiomqtt.MqttError as exc:
            level = logging.WARNING if attempt == 0 else logging.DEBUG
            log.log(level, "%s: broker %s:%d unavailable: %s", self.client_id, self.host, self.port, exc)
        except Exception:
            log.exception("%s: unexpected transport failure; reconnecting", self.client_id)
        finally:
            self.connected.clear()

    def _client(self) -> aiomqtt.Client:
        """A fresh aiomqtt client (one per connection, as aiomqtt recommends)."""
        will = None
        if self.offline_status is not None:
            will = aiomqtt.Will(
                topic=self._prefix + status_channel(self.node_id),
                payload=self.offline_status,
                qos=1,
                retain=True,
            )
        version = aiomqtt.ProtocolVersion.V5 if self.protocol == 5 else aiomqtt.ProtocolVersion.V311
        return aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id,
            username=self._username,
            password=self._password,
            tls_context=self._tls,
            protocol=version,
            will=will,
            clean_session=True if self.protocol == 311 else None,
            clean_start=True if self.protocol == 5 else paho_mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            keepalive=self.keepalive,
            timeout=self.timeout,
            max_inflight_messages=self._max_inflight,
            queue_type=_sink_queue_type(self._accept),
            logger=log,
        )

    async def _session(self) -> None:
        """Run one connection until it breaks (raises) or we are closing (returns)."""
        client = self._client()
        async with client:
            client.pending_calls_threshold = self._max_inflight + 64  # we bound it ourselves
            self._live = client  # a `listen` from here on changes this connection's subscriptions too
            try:
                await self._session_on(client)
            finally:
                self._live = None

    async def _session_on(self, client: aiomqtt.Client) -> None:
        """The connected part of a session: subscribe, then pump until it breaks or we close."""
        await self._subscribe(client)
        self._on_connected()
        reader = asyncio.create_task(self._watch_connection(client))
        writer = asyncio.create_task(self._pump_outbound(client))
        closing = asyncio.create_task(self._closing.wait())
        try:
            await asyncio.wait({reader, writer, closing}, return_when=asyncio.FIRST_COMPLETED)
            if closing.done():
                await self._leave(client, writer)
        finally:
            await _cancel(reader, writer, closing)
        for task in (reader, writer):
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    def _on_connected(self) -> None:
        self._connections += 1
        if self._connections > 1:
            self.stats["reconnects"] += 1
        log.info("%s: connected to %s:%d", self.client_id, self.host, self.port)
        self.connected.set()

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        """Subscribe to all channels in one SUBSCRIBE; log and count refusals.

        Everything is subscribed at QoS 1: delivery uses the lower of publish and
        subscription QoS, so QoS 0 consensus traffic stays QoS 0 while retained
        status arrives with QoS 1.
        """
        channels = self._channels()
        if not channels:
            return
        filters = [(self._prefix + channel, 1) for channel in channels]
        self._count_refusals(filters, await client.subscribe(filters))

    async def _change_subscriptions(
        self, client: aiomqtt.Client, added: frozenset[str], removed: frozenset[str]
    ) -> None:
        """Send one `listen` change on a live connection; a broken one re-subscribes all on reconnect."""
        with contextlib.suppress(aiomqtt.MqttError):
            if added:
                filters = [(self._prefix + channel, 1) for channel in sorted(added)]
                self._count_refusals(filters, await client.subscribe(filters))
            if removed:
                await client.unsubscribe([self._prefix + channel for channel in sorted(removed)])

    def _count_refusals(self, filters: list[tuple[str, int]], codes: Sequence[object]) -> None:
        for (name, _), code in zip(filters, codes, strict=False):
            value = code.value if hasattr(code, "value") else int(code)
            if value >= 0x80:
                self.stats["subscribe_failed"] += 1
                log.error("%s: broker refused subscription %s (code %#x)", self.client_id, name, value)

    async def _leave(self, client: aiomqtt.Client, writer: asyncio.Task[None]) -> None:
        """Prepare a clean disconnect: flush what is queued, then stop all inbound flow.

        Both steps are bounded by ``drain_timeout``. Unsubscribing first means the
        broker is not writing to us when DISCONNECT arrives; amqtt treats a write
        that fails because the client just closed as an abnormal disconnect and
        would publish the will despite the clean DISCONNECT.
        """
        if not writer.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbound_idle.wait(), self._drain_timeout)
        if channels := self._channels():
            filters = [self._prefix + channel for channel in channels]
            with contextlib.suppress(aiomqtt.MqttError):
                await client.unsubscribe(filters, timeout=self._drain_timeout)

    async def _sleep_unless_closing(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay)

    def _backoff_delay(self, attempt: int) -> float:
        """Exponential backoff with jitter in [ceiling/2, ceiling], ceiling capped.

        The jitter keeps a testnet's nodes from reconnecting in lockstep after a
        broker restart.
        """
        low, high = self._backoff
        ceiling = min(high, low * 2 ** min(max(attempt - 1, 0), 30))
        return random.uniform(ceiling / 2, ceiling)

    # --- pumps ------------------------------------------------------------------------

    async def _watch_connection(self, client: aiomqtt.Client) -> None:
        """Return only by raising MqttError when the connection breaks.

        Messages never wait in aiomqtt's queue (see ``_sink_queue_type``), so this
        iteration yields nothing; it is aiomqtt's documented way to learn of a
        disconnect.
        """
        async for _ in client.messages:
            pass

    def _subscribed_to(self, channel: str) -> bool:
        """True when ``channel`` matches one of our subscriptions.

        The broker should only send what we subscribed to, but amqtt also hands a
        new client retained messages matching *other* clients' subscriptions.
        """
        if channel in self._exact_subscriptions:
            return True
        return any(paho_mqtt.topic_matches_sub(f, channel) for f in self._wildcard_subscriptions)

    def _accept(self, message: aiomqtt.Message) -> None:
        """Filter one received message into the inbound queue (drop and count, never block)."""
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            payload = str(payload).encode()
        if len(payload) > self.max_payload:
            self.stats["rx_dropped_oversize"] += 1
            return
        full_topic = message.topic.value
        channel = full_topic[len(self._prefix) :]
        if not full_topic.startswith(self._prefix) or not self._subscribed_to(channel):
            self.stats["rx_dropped_unsubscribed"] += 1
            return
        data = bytes(payload)
        if not self._inbound.put(channel, Inbound(channel, data), len(data)):
            self.stats["rx_dropped_queue_full"] += 1
            self.stats[f"rx_dropped_queue_full_{lane_of(channel)}"] += 1
            return
        self.stats["rx"] += 1

    def _retained_to_replay(self) -> list[_Outgoing]:
        """Latest retained payload per topic, except topics with a publish still queued.

        A queued retained publish will set that topic anyway; replaying it too would
        send the same state twice (and amqtt may order the copy after a will).
        """
        queued = {item.topic for item in self._outbound if item.retain}
        return [
            _Outgoing(name, payload, 1, True)
            for name, payload in self._retained.items()
            if name not in queued
        ]

    async def _pump_outbound(self, client: aiomqtt.Client) -> None:
        """Hand queued messages to the client in order, at most ``max_inflight`` at once.

        Publishes run as concurrent tasks because awaiting each one serially would
        cost a full event-loop round trip per message; task start order is queue
        order, and paho writes packets in the order it is given them. A message
        leaves our queue only when a slot is free, so whatever is still queued when
        the connection breaks is sent after the reconnect.
        """
        slots = asyncio.Semaphore(self._max_inflight)
        inflight: set[asyncio.Task[None]] = set()
        try:
            for item in self._retained_to_replay():
                await slots.acquire()
                self._spawn_publish(client, item, slots, inflight)
            while True:
                if not self._outbound:
                    if not inflight:
                        self._outbound_idle.set()
                    self._outbound_ready.clear()
                    await self._outbound_ready.wait()
                    continue
                await slots.acquire()
                if not self._outbound:  # cannot happen today; keeps the slot count honest
                    slots.release()
                    continue
                self._spawn_publish(client, self._outbound.popleft(), slots, inflight)
        finally:
            await _cancel(*inflight)

    def _spawn_publish(
        self,
        client: aiomqtt.Client,
        item: _Outgoing,
        slots: asyncio.Semaphore,
        inflight: set[asyncio.Task[None]],
    ) -> None:
        """Start one publish in an already acquired slot; free the slot when it ends."""
        task = asyncio.create_task(self._publish_one(client, item))
        inflight.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            inflight.discard(finished)
            slots.release()
            if not inflight and not self._outbound:
                self._outbound_idle.set()

        task.add_done_callback(done)

    async def _publish_one(self, client: aiomqtt.Client, item: _Outgoing) -> None:
        try:
            await client.publish(item.topic, item.payload, qos=item.qos, retain=item.retain)
        except (aiomqtt.MqttError, asyncio.CancelledError) as exc:
            self.stats["tx_failed"] += 1
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        self.stats["tx"] += 1


def _sink_queue_type(
    accept: Callable[[aiomqtt.Message], None],
) -> type[asyncio.Queue[aiomqtt.Message]]:
    """An aiomqtt ``queue_type`` that hands every message straight to ``accept``.

    aiomqtt would otherwise queue each message and wake a task per message to
    iterate it, which halves the receive rate; our own bounded queue (with drop
    counting) is the only queue a message should sit in.
    """

    class _Sink(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            accept(item)

    return _Sink


async def _cancel(*tasks: asyncio.Task[object]) -> None:
    """Cancel tasks and wait for them, swallowing their outcome (already handled)."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
