"""One validator node as one asyncio process: the node core wired to a transport, SQLite, logs and metrics.

The consensus core is sans-I/O; this module is the I/O. It is the real-world
twin of ``network.sim.node.SimNode``: the same `Host`, the same `Effects`
interface, but effects go to a transport (an MQTT broker in practice, chosen
by the composition root: see ``node.runtime.transport``), the wall clock, an
fsynced SQLite store, a JSON-lines log and a Prometheus registry.

Startup, in order, so that a node killed at any instant restarts sound:

1. load genesis and the hosted key(s), open ``HOME/node.sqlite3``;
2. rebuild the chain state from the newest stored state snapshot the chain
   vouches for (else genesis), replaying the finalized blocks after it
   through ``apply_block``, checking the hash chain and that each stored
   certificate is for its block (a corrupt store refuses to start; see
   ``node.runtime.recovery``);
3. boot one `Driver` per hosted key with the stored certificate of the last
   height; the driver replays the key's signing journal (its own signed
   messages of the open height) before it starts, so it neither forgets its
   lock nor signs anything that conflicts with the durable signing record;
4. connect to the broker (retrying forever with backoff) with a pre-signed
   "offline" status as the last will, and run.

Durability rules kept here: a finalized block is written to the store
before it is logged or announced; a vote is signed only after its mark is
fsynced (the `GuardedSigner` over the store). Bad input is never stored:
admission rejects it and only its reason is counted.

A node may host several validator keys (one driver each, sharing the
store, the transport and the chain); one key is the common case. What a
node does with its keys (admitting once, feeding co-hosted keys each
other's messages, pipelined catch-up and its ``synced`` event) is core
protocol, in ``node.core.hosting.Host``, which the simulator runs too;
here the broker's copy of our own messages (MQTT 3.1.1 has no "no local")
is recognised by its digest and dropped.

Past 500 lines: the one place a node's I/O meets (startup and recovery,
the inbound loop, status, shutdown); they share the process's store,
transport and host, and splitting them would pass that state around.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.core import doppelganger, startgate
from node.core.admission import StatusMsg
from node.core.behaviours import BEHAVIOURS, HONEST
from node.core.channels import (
    CONSENSUS,
    EVIDENCE,
    STATUS_ANY,
    SYNC_REQ,
    TX,
    channel_group,
    status_channel,
    sync_resp_channel,
)
from node.core.checkpoint import Checkpoint, TrustedPath, stored_conflict, trust_log
from node.core.codec import decode, encode
from node.core.consensus import Decided
from node.core.driver import Audience
from node.core.envelopes import status_bytes
from node.core.events import (
    DOPPELGANGER,
    EPOCH,
    FINALIZED,
    LEDGER_PENALTIES,
    LISTENING,
    ROUND_TIMEOUT,
    SIGNING_KEY,
    START_GATE,
    TX_OUTCOMES,
    VOTE_CHANNELS,
)
from node.core.genesis import Genesis, GenesisError, load_genesis
from node.core.hosting import Host
from node.core.keys import Keypair
from node.core.messages import Block, CommitCertificate
from node.core.routes import listened_vote_channels
from node.core.signer import GuardedSigner, KeyRing, SigningRecord
from node.core.snapshot import encode_state
from node.core.state import genesis_state
from node.runtime import testhooks
from node.runtime.eventlog import EventLog
from node.runtime.keyfiles import (
    HostedKey,
    KeyFileError,
    load_key_files,
    owner_key_problem,
    resolve_hosted,
    scan_keys_dir,
)
from node.runtime.metrics import NodeMetrics
from node.runtime.queryview import QueryView
from node.runtime.records import CrashAfterRecord, FailOnStorageError, protocol_memory
from node.runtime.recovery import SNAPSHOT_EVERY, CorruptStore, Recovery, recover_chain
from node.runtime.store import StorageError, Store
from node.runtime.transport import TransportFactory, TransportSpec

STORE_FILE = "node.sqlite3"
KEY_FILE = "key.json"
STATUS_CHECK_S = 0.5  # how often to look whether height/round changed (status "on change")
STATUS_REFRESH_S = 5.0  # re-publish the retained status at least this often
GATE_POLL_S = 0.05  # how often the start gate looks at the statuses heard
OWN_DIGESTS_KEPT = 100_000
INBOUND_QUEUE = 2_500  # per lane of the transport's inbox (consensus, status, sync, tx): 10,000 in all


class StartupError(Exception):
    """A node that cannot start: the message is one line naming what is wrong."""


class NodeFailed(Exception):
    """A node that ran and stopped on a fatal failure (logged as its one ``fatal`` event): the reason."""


@dataclass(frozen=True)
class NodeConfig:
    """Everything ``posnet node run`` tells the runtime (the transport's own options stay with it)."""

    home: Path
    genesis: Path
    broker_url: str  # where the transport connects: only logged here (the factory validated it)
    name: str | None = None
    log_path: Path | None = None
    metrics_port: int = 0
    metrics_host: str = "0.0.0.0"
    behaviour: str = "honest"
    key_files: tuple[Path, ...] = ()  # validator keys to host; default HOME/key.json
    snapshot_every: int = SNAPSHOT_EVERY  # blocks between stored state snapshots; 0: none
    genesis_wait_ms: int = 0  # at genesis, wait up to this long for every validator to be online
    doppelganger_ms: int | None = None  # listen this long before signing (None: from genesis; 0: off)
    trust: Checkpoint | None = None  # --trust: take no history that does not pass through this block


# ------------------------------------------------------------------ loading


def load_node_inputs(config: NodeConfig) -> tuple[Genesis, list[tuple[Path, Keypair]]]:
    """Validate the command line's inputs: (genesis, key files), or StartupError.

    Which validator each key signs for is decided against the recovered
    chain (`node.runtime.keyfiles.resolve_hosted`): a rotation may have
    moved it since genesis.
    """
    try:
        genesis = load_genesis(config.genesis)
    except GenesisError as exc:
        raise StartupError(f"genesis {exc}") from None
    hint = f"HOME must hold {KEY_FILE} or pass --key, see `posnet keys`"
    try:
        loaded = load_key_files(config.key_files or (config.home / KEY_FILE,), hint)
    except KeyFileError as exc:
        raise StartupError(str(exc)) from None
    for path, keypair in loaded:
        problem = owner_key_problem(genesis, path, keypair)
        if problem:
            raise StartupError(problem)
    if config.name is not None:
        _check_node_name(config.name)
    if config.behaviour not in BEHAVIOURS:
        raise StartupError(f"behaviour {config.behaviour!r}: must be one of {', '.join(BEHAVIOURS)}")
    return genesis, loaded


def _check_node_name(name: str) -> str:
    if not name or any(c in name for c in "/+#\0") or len(name) > 64:
        raise StartupError(f"node name {name!r}: must be 1-64 characters without '/', '+', '#'")
    return name


def _startup_name(config: NodeConfig, genesis: Genesis, loaded: list[tuple[Path, Keypair]]) -> str:
    """The node's name before its chain is recovered: ``--name``, else its first key's genesis validator."""
    if config.name is not None:
        return config.name
    public = loaded[0][1].public
    named = (v.name for v in genesis.validators if public in (v.signing_public_key, v.public_key))
    return next(named, config.home.name or "node")


def _refuse_store(config: NodeConfig, name: str, reason: str) -> StartupError:
    """Log a store the node cannot start from as its one ``fatal`` event; the error that ends the start.

    A log that cannot be opened is left out: the one line on stderr still says it.
    """
    with contextlib.suppress(OSError):
        events = EventLog(name, config.log_path)
        events.emit({"event": "fatal", "reason": reason})
        events.close()
    return StartupError(reason)


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


# ------------------------------------------------------------------ effects


class HostedValidator:
    """One hosted key: its guarded signer and the `Effects` its driver acts through."""

    def __init__(self, runtime: NodeRuntime, key: HostedKey, record: SigningRecord) -> None:
        self.runtime = runtime
        self.key = key
        self.signer = GuardedSigner(
            runtime.genesis.chain_id, key.keypair, record, validator=key.validator, ring=runtime.ring
        )

    # Effects -------------------------------------------------------------

    def now_ms(self) -> int:
        return self.runtime.now_ms()

    def broadcast(self, channel: str, data: bytes) -> None:
        self.runtime.publish(channel, data)

    def send_to(self, node: str, data: bytes) -> None:
        try:
            channel = sync_resp_channel(node)
        except ValueError:
            return  # a reply_to no topic can carry: nothing to answer
        self.runtime.publish(channel, data)

    def schedule(self, delay_ms: int, action: Callable[[], None]) -> None:
        self.runtime.schedule(delay_ms, action)

    def finalized(self, decided: Decided) -> None:
        """Persist first (idempotent across hosted keys); only then may anyone hear of it."""
        self.runtime.persist(decided)

    def chain_range(self, start: int, limit: int) -> list[tuple[Block, CommitCertificate]]:
        return self.runtime.chain_range(start, limit)

    def log(self, event: dict[str, Any]) -> None:
        self.runtime.on_driver_event(self, event)

    def audience(self) -> Audience | None:
        """None: a broker broadcast reaches every node, there is nobody to address alone."""
        return None


# ------------------------------------------------------------------ runtime


class NodeRuntime:
    """A running node: construct, ``await run()``, and ``request_stop()`` (or send SIGTERM)."""

    def __init__(self, config: NodeConfig, transport: TransportFactory) -> None:
        self.config = config
        self.genesis, loaded = load_node_inputs(config)
        try:
            crash_after, self._clock_offset_ms = testhooks.crash_after(), testhooks.clock_offset_ms()
        except testhooks.HookError as exc:
            raise StartupError(str(exc)) from None
        self.exit_code = 0
        self._progress = (0, 0)  # (height, round) last seen, for status messages after the machine stops
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._own: OrderedDict[bytes, None] = OrderedDict()
        self._fatal: str | None = None
        self._record_failure: str | None = None  # a store failure met while signing, for `_guarded`
        self._stopping = False
        config.home.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self.store, self.recovery = self._open_store(loaded)
        self._recovery_ms = round((time.monotonic() - started) * 1000)
        self.state, self.last_certificate = self.recovery.state, self.recovery.certificate
        spare, self._spare_problems = scan_keys_dir(config.home)
        try:
            self.keys, self._stale_keys = resolve_hosted(self.state, loaded, spare)
            self.name = _check_node_name(config.name or self.keys[0].name)
        except (KeyFileError, StartupError) as exc:
            self.store.close()
            raise StartupError(str(exc)) from None
        self.ring = KeyRing([*(keypair for _, keypair in loaded), *spare])
        self._key_problems: set[str] = set()
        self._progress = (self.state.height + 1, 0)
        self.view = QueryView(self.state)  # what the read-only /query/ endpoint answers from
        try:
            self.events = EventLog(self.name, config.log_path)
        except OSError as exc:
            self.store.close()
            raise StartupError(f"log file {config.log_path}: {exc.strerror or exc}") from None
        record: SigningRecord = FailOnStorageError(self.store, self._note_record_failure)
        if crash_after is not None:
            record = CrashAfterRecord(record, crash_after)
        behaviour = None if config.behaviour == HONEST else config.behaviour
        self.hosted = [HostedValidator(self, key, record) for key in self.keys]
        self.primary = self.hosted[0]
        keys = [(h.signer, h) for h in self.hosted]
        self.host = Host(self.name, keys, behaviour, log=self.events.emit, memory=protocol_memory(self.store))
        self._trust(config.trust)
        self.metrics = NodeMetrics(
            self.name,
            self.genesis.chain_id,
            dropped=self.dropped,
            signed=lambda: sum(d.stats.signed for d in self.host.drivers),
            refused=lambda: sum(h.signer.refused for h in self.hosted),
        )
        self.metrics.finalized_height.set(self.state.height)
        self.metrics.height.set(self.state.height + 1)
        self.transport = transport(
            TransportSpec(
                self.genesis.chain_id,
                self.name,
                (CONSENSUS, EVIDENCE, TX, SYNC_REQ, sync_resp_channel(self.name), STATUS_ANY),
                offline_status=self._status(online=False),
                inbound_queue=INBOUND_QUEUE,
            )
        )
        self._last_status: tuple[int, int] | None = None
        self._vote_channels: frozenset[str] | None = None

    def _trust(self, checkpoint: Checkpoint | None) -> None:
        """--trust: refuse a store on another history; below the checkpoint, take only the path to it."""
        if checkpoint is None:
            return
        stored = self.chain_range(checkpoint.height, 1) if self.state.height >= checkpoint.height else []
        problem = stored_conflict(checkpoint, stored[0][0].hash if stored else None)
        if problem is not None:
            self.store.close()
            raise StartupError(f"--trust {checkpoint.describe()}: {problem}")
        path = TrustedPath(checkpoint) if not stored else None
        for driver in self.host.drivers:
            driver.trust = path
        self.events.emit(trust_log(checkpoint, bool(stored), self.genesis.params))

    def _open_store(self, loaded: list[tuple[Path, Keypair]]) -> tuple[Store, Recovery]:
        """Open the store and recover the chain from it; a store that fails either is a logged StartupError."""
        config = self.config
        path = config.home / STORE_FILE
        try:
            store = Store(path)
        except StorageError as exc:
            raise _refuse_store(
                config, _startup_name(config, self.genesis, loaded), f"store {path}: {exc}"
            ) from None
        try:
            return store, recover_chain(store, genesis_state(self.genesis))
        except (CorruptStore, StorageError) as exc:
            store.close()
            reason = f"store {path}: {exc}"
            raise _refuse_store(config, _startup_name(config, self.genesis, loaded), reason) from None
        except BaseException:
            store.close()
            raise

    # ------------------------------------------------------------- running

    async def run(self) -> int:
        """Run until stopped (signal or ``request_stop``); returns the process exit code."""
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.add_signal_handler(sig, self.request_stop)
        if self.config.metrics_port:
            try:
                self.metrics.serve(self.config.metrics_port, self.config.metrics_host, query=self.view.answer)
            except OSError as exc:
                self.store.close()
                self.events.close()
                raise StartupError(
                    f"metrics port {self.config.metrics_host}:{self.config.metrics_port}: {exc.strerror or exc}"
                ) from None
        self.events.emit(
            {
                "event": "started",
                "height": self.state.height,
                "chain_id": self.genesis.chain_id,
                "validators": [key.name for key in self.keys],
                "behaviour": self.config.behaviour,
                "broker": self.config.broker_url,
                "pid": os.getpid(),
                "recovered_from": self.recovery.snapshot_height,  # 0: genesis
                "replayed": self.recovery.replayed,
                "recovery_ms": self._recovery_ms,
                **({"snapshots_passed_over": list(p)} if (p := self.recovery.passed_over) else {}),
            }
        )
        for path in self._stale_keys:
            self.events.emit(
                {"event": "key_file_stale", "path": str(path), "why": "signs for no validator now"}
            )
        self._load_new_keys()
        # Listening from the start: the committee's first votes may be on their way before we boot.
        self._listen(listened_vote_channels(self.state, self.host.validators), self.state.next_height)
        transport_task = asyncio.create_task(self.transport.run(), name="transport")
        tasks = [
            asyncio.create_task(self._inbound_loop(), name="inbound"),
            asyncio.create_task(self._status_loop(), name="status"),
            asyncio.create_task(self._connection_watch(), name="connection"),
        ]
        try:
            if await self._start_gate():
                self._listen_before_signing()
                self._guarded(lambda: self.host.boot(self.state, self.last_certificate))
            await self._stop.wait()
        finally:
            await self._shutdown(tasks, transport_task)
        return self.exit_code

    async def _start_gate(self) -> bool:
        """At genesis, hold the machine until every validator is online (see `node.core.startgate`).

        Returns False when the node was told to stop while it waited.
        """
        wait_ms = self.config.genesis_wait_ms
        if not startgate.waits_at_genesis(self.state, wait_ms):
            return True
        assert self._loop is not None
        self.host.await_boot(self.state)
        began = self._loop.time()
        while not self._stop.is_set():
            waited = round((self._loop.time() - began) * 1000)
            decision = self.host.start_gate(waited, wait_ms)
            if decision.open:
                missing = [self.state.names.get(a, a.hex()) for a in decision.missing]
                self.events.emit(
                    {"event": START_GATE, "reason": decision.reason, "waited_ms": waited, "missing": missing}
                )
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), GATE_POLL_S)
        return False

    def _listen_before_signing(self) -> None:
        """Every start waits before signing (node.core.doppelganger): the store may be wiped or old."""
        quiet = self.config.doppelganger_ms
        if quiet is None:
            quiet = doppelganger.quiet_ms(self.genesis.params)
        if quiet > 0:
            self.host.listen_first(quiet)
        self.events.emit({"event": LISTENING, "quiet_ms": quiet, "height": self.state.height + 1})

    @property
    def fatal(self) -> str | None:
        """Why the node stopped on a failure (its one ``fatal`` event), or None."""
        return self._fatal

    def request_stop(self) -> None:
        """Begin a graceful stop (what SIGTERM and SIGINT do)."""
        self._stop.set()

    async def _shutdown(self, tasks: list[asyncio.Task[None]], transport_task: asyncio.Task[None]) -> None:
        """Stop deciding, say "offline" (retained), disconnect cleanly, close the store."""
        self._stopping = True
        self.host.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.transport.publish(status_channel(self.name), self._status(online=False), retain=True)
        await self.transport.close(drain_timeout=2.0)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(transport_task, 30)
        height = None
        try:
            if self._fatal is None:
                height = self.store.last_height()
            self.store.close()
        except StorageError as exc:
            self._fail(f"storage: {exc}")
        self.metrics.close()
        stopped: dict[str, Any] = {"event": "stopped", "height": height}
        if self._fatal is not None:
            stopped["reason"] = self._fatal
        self.events.emit(stopped)
        self.events.close()

    # ------------------------------------------------------------- effects

    def now_ms(self) -> int:
        """The wall clock in unix milliseconds (block timestamps and finality latency use it)."""
        return int(time.time() * 1000) + self._clock_offset_ms

    def publish(self, channel: str, data: bytes) -> None:
        """Send our own message, remembering its digest to drop the broker's echo of it."""
        if self._stopping:
            return
        self._own[_digest(data)] = None
        if len(self._own) > OWN_DIGESTS_KEPT:
            self._own.popitem(last=False)
        self.transport.publish(channel, data)
        self.metrics.sent.labels(channel_group(channel)).inc()

    def schedule(self, delay_ms: int, action: Callable[[], None]) -> None:
        assert self._loop is not None
        self._loop.call_later(max(0, delay_ms) / 1000, self._guarded, action)

    def persist(self, decided: Decided) -> None:
        """Write a finalized block and its certificate (fsynced) before it is logged."""
        block = decided.block
        self.store.put_finalized(
            block.height, block.hash, block.encoded, encode(decided.certificate.to_wire())
        )
        if self.config.snapshot_every and block.height % self.config.snapshot_every == 0:
            self.store.put_snapshot(block.height, encode_state(decided.state))
        self.view.publish(decided.state)  # durable first, then visible to queries
        self._listen(self.host.vote_channels(), block.height + 1)  # a new epoch may (un)seat our keys

    def _listen(self, channels: frozenset[str], height: int) -> None:
        """Listen to these committee vote channels from now on; log each change (users see who votes where)."""
        if channels == self._vote_channels:
            return
        self._vote_channels = channels
        self.transport.listen(channels)
        self.events.emit({"event": VOTE_CHANNELS, "height": height, "channels": sorted(channels)})

    def chain_range(self, start: int, limit: int) -> list[tuple[Block, CommitCertificate]]:
        """Stored blocks with their certificates, for answering a peer's sync request."""
        return [
            (Block.decode(block), CommitCertificate.from_wire(decode(cert)))
            for _, _, block, cert in self.store.finalized_range(start, limit)
        ]

    def on_driver_event(self, source: HostedValidator, event: dict[str, Any]) -> None:
        """Log a driver event and update the metrics it implies."""
        kind = event.get("event")
        if kind == FINALIZED:
            if source is not self.primary:
                return  # the chain is shared: one finalized event per height per node
            self.metrics.finalized_height.set(event["height"])
            self.metrics.height.set(event["height"] + 1)
            self.metrics.rounds.inc(event["round"] + 1)
            self.metrics.finality_latency.observe(event["latency_ms"] / 1000)
        elif kind == ROUND_TIMEOUT:
            self.metrics.round_timeouts.inc()
        elif kind in LEDGER_PENALTIES and source is self.primary:
            self.metrics.penalties.labels(kind).inc()
        elif kind in TX_OUTCOMES and source is self.primary:
            self.view.record(event)
        elif kind == EPOCH and source is self.primary:
            self._load_new_keys()
        elif kind == DOPPELGANGER:
            why = f"doppelganger: {event['validator']} {event['why']}; this node stops signing"
            assert self._loop is not None
            self._loop.call_soon(self._fail, why)
        elif kind == SIGNING_KEY and not event["held"]:  # its file may have arrived in HOME/keys/ since
            self._load_new_keys()
            event = {**event, "held": bytes.fromhex(event["key"]) in self.ring}
        if len(self.hosted) > 1:
            event = {**event, "host_key": source.key.name}
        self.events.emit(event)

    def _load_new_keys(self) -> None:
        """Read ``HOME/keys/`` for keys this node does not hold yet (a rotation's next key); log each."""
        keypairs, problems = scan_keys_dir(self.config.home)
        for problem in problems:
            if problem not in self._key_problems:
                self._key_problems.add(problem)
                self.events.emit({"event": "key_file_error", "error": problem})
        for keypair in keypairs:
            if self.ring.add(keypair):
                self.events.emit({"event": "key_loaded", "key": keypair.public.hex()[:16]})

    def dropped(self) -> dict[str, int]:
        """Dropped inbound messages by reason: admission rejections plus transport drops."""
        counts = Counter(self.host.primary.stats.rejected)
        stats = self.transport.stats
        counts["oversize"] += stats.get("rx_dropped_oversize", 0)
        for key, count in stats.items():  # one count per inbound lane: which traffic a flood pushed out
            if key.startswith("rx_dropped_queue_full_"):
                counts[key.removeprefix("rx_dropped_")] += count
        counts["unsubscribed"] += stats.get("rx_dropped_unsubscribed", 0)
        return {reason: count for reason, count in counts.items() if count}

    # ------------------------------------------------------------- inbound

    async def _inbound_loop(self) -> None:
        """Handle inbound messages in the transport's order (consensus first), yielding between them.

        ``recv`` returns at once while messages wait; without the yield a backlog
        would be drained before the socket is read again, and a vote that just
        arrived could not overtake the junk queued ahead of it.
        """
        while True:
            message = await self.transport.recv()
            self._guarded(lambda m=message: self._handle(m.channel, m.payload))
            await asyncio.sleep(0)

    def _handle(self, channel: str, payload: bytes) -> None:
        digest = _digest(payload)
        if digest in self._own:
            return  # the broker's copy of our own message
        self.metrics.received.labels(channel_group(channel)).inc()
        if isinstance(self.host.receive(payload), StatusMsg):
            self._update_peers()

    def _guarded(self, action: Callable[[], object]) -> None:
        """Run a driver callback; a storage failure is fatal, any other bug is logged and survived."""
        if self._stopping:
            return
        try:
            action()
        except StorageError as exc:
            self._fail(f"storage: {exc}")
        except Exception as exc:
            self.events.emit({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        else:
            self._update_progress()
        if self._record_failure is not None:
            self._fail(self._record_failure)

    def _note_record_failure(self, reason: str) -> None:
        """The signer's record could not be written; fatal once the driver's callback has returned."""
        if self._record_failure is None:
            self._record_failure = reason

    def _fail(self, reason: str) -> None:
        """Stop at once without deciding anything more: the store can no longer be trusted to persist."""
        if self._fatal is None:
            self._fatal = reason
            self.exit_code = 1
            self.events.emit({"event": "fatal", "reason": reason})
            self.host.stop()
            self._stop.set()

    def _update_progress(self) -> None:
        machine = self.host.primary.machine
        if machine is not None:
            self._progress = (machine.height, machine.round)
            self.metrics.round.set(machine.round)

    def _update_peers(self) -> None:
        peers, now = self.host.primary.peers, self.now_ms()
        self.metrics.peers_online.set(
            sum(1 for n, s in peers.items() if s.online and n != self.name and startgate.is_fresh(s, now))
        )

    # -------------------------------------------------------------- status

    def _status(self, online: bool) -> bytes:
        """Our signed status: the height we work on, its round, and whether we are online."""
        height, round_ = self._progress
        keypair, sender = self.host.primary.sealing()
        return status_bytes(
            self.genesis.chain_id,
            self.name,
            height,
            round_,
            online,
            keypair,
            sender,
            self.host.validators,
            ts_ms=self.now_ms(),
        )

    async def _status_loop(self) -> None:
        """Publish the retained status when height or round changed, and every few seconds anyway."""
        assert self._loop is not None
        last_sent = -STATUS_REFRESH_S
        while True:
            now = self._loop.time()
            current = self._progress
            if current != self._last_status or now - last_sent >= STATUS_REFRESH_S:
                self.transport.publish(status_channel(self.name), self._status(online=True), retain=True)
                self._last_status, last_sent = current, now
            await asyncio.sleep(STATUS_CHECK_S)

    async def _connection_watch(self) -> None:
        """Log broker connects and disconnects (the transport itself reconnects with backoff)."""
        connected = self.transport.connected
        first = True
        while True:
            await connected.wait()
            self.metrics.broker_connected.set(1)
            self.events.emit({"event": "broker_connected", "reconnect": not first})
            first = False
            while connected.is_set():
                await asyncio.sleep(0.1)
            self.metrics.broker_connected.set(0)
            if not self._stopping:
                self.events.emit({"event": "broker_disconnected"})


def run_node(config: NodeConfig, transport: TransportFactory) -> int:
    """Build and run a node in a fresh event loop; StartupError for bad inputs, NodeFailed after a fatal stop."""

    async def main() -> int:
        runtime = NodeRuntime(config, transport)
        code = await runtime.run()
        if runtime.fatal is not None:
            raise NodeFailed(runtime.fatal)
        return code

    return asyncio.run(main())
