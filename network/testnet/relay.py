"""Real network faults for the process testnet: a relay between each node and its broker.

Every node of a `posnet testnet up` connects to the broker through its own
listening port of one relay process (`python -m network.testnet.relay`), so a
fault is something that happens to bytes on a socket, not a flag the node
could notice or obey:

- delay: every chunk is held for MS before it is forwarded, both ways, in order;
- drop: whole MQTT PUBLISH packets vanish with probability RATE, both ways.
  The relay parses MQTT framing (fixed header + remaining-length varint, in
  network/transport/framing.py), so it only ever forwards complete packets and a drop never cuts one in half.
  Other packet types (CONNECT, SUBSCRIBE, PINGREQ...) always pass, so the
  session survives even a rate of 1.0. A dropped QoS 1 PUBLISH is answered
  with the PUBACK its sender waits for: otherwise the sender's in-flight
  window fills with messages that never complete and it stops publishing
  for good, which would be a different fault from loss. QoS 2 is never
  dropped (posnet does not use it; faking its four-way handshake is not
  worth it);
- partition: the groups become islands with a broker each. The first group
  keeps the main broker; the relay starts one more broker per further group
  and moves those nodes' upstream connections there, cutting their current
  connections, so each node sees a broker loss and reconnects through the
  same port into its island. Nothing crosses between islands because there
  is no path, whatever the message type: consensus, sync, status, wills.
  (Filtering by envelope sender inside the relay would keep connections up,
  but would tie the relay to posnet's wire format, need faked PUBACKs for
  every filtered QoS 1 message and let any message type it forgot through;
  and a real partition does cost the cut-off side its broker connection.)
  Healing moves everyone back to the main broker the same way.
- zones (`--zones FILE --zone NODE=ZONE ...`, from `posnet testnet up --zones`):
  each PUBLISH the broker copies to a node is held, on top of any delay, for
  the one-way latency between its publisher's zone and the node's
  (network/testnet/zonedelay.py says how the publisher is known). Such a copy
  may overtake a farther one queued before it, as it would on separate paths;
  everything else keeps its order.

The relay is driven by a control file, DIR/faults.json, which it polls, and
answers in DIR/faults.applied.json (both described in network/testnet/faultfile.py).

Past 500 lines: one process's job (relay bytes, apply faults to them, report);
the pipes, the islands and the control loop share its state, and what
stands apart (MQTT framing, the control file, zones) lives in its own modules.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from network.sim.zones import ZonesError
from network.testnet.faultfile import (
    LinkFaults,
    NetworkFaults,
    applied_path,
    faults_path,
    read_faults,
    write_json_atomic,
)
from network.testnet.zonedelay import LinkZones, ZoneDelays, listen_zone, zone_delays
from network.transport.broker import BrokerProcess, BrokerStartError, parse_broker_url, start_broker
from network.transport.framing import MqttFramer, puback, publish_qos

POLL_S = 0.05
STATS_EVERY_S = 1.0
CONNECT_TIMEOUT_S = 5.0
READ_CHUNK = 64 * 1024
QUEUE_HIGH_BYTES = 8 * 1024 * 1024  # per direction: past this the relay stops reading (TCP backpressure)
UP, DOWN = "up", "down"  # node -> broker, broker -> node

log = logging.getLogger("posnet.netfaults")


# ------------------------------------------------------------------ relaying one connection


@dataclass
class DirectionStats:
    packets: int = 0
    publishes: int = 0
    dropped: int = 0
    bytes: int = 0


@dataclass
class NodeStats:
    """Counters for one node's port, summed over its connections: the evidence a fault was real."""

    connections: int = 0
    cut: int = 0
    refused: int = 0
    up: DirectionStats = field(default_factory=DirectionStats)
    down: DirectionStats = field(default_factory=DirectionStats)


class Pipe:
    """One direction of a link: read whole packets, maybe drop, hold for the delay, write in order.

    With zones (`zoned`: a packet's zone delay, or None for a packet that
    keeps its order) a zone-delayed PUBLISH leaves at its own time, so a
    near publisher's message is not stuck behind a far one's.
    """

    def __init__(
        self,
        direction: str,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        faults: Callable[[], LinkFaults],
        stats: DirectionStats,
        rng: random.Random,
        zoned: Callable[[bytes], int | None] | None = None,
    ) -> None:
        self.direction = direction
        self.source = source
        self.sink = sink
        self.faults = faults
        self.stats = stats
        self.rng = rng
        self.reverse: Pipe | None = None  # where a faked PUBACK goes back to the sender
        self.zoned = zoned
        self._items: list[tuple[float, int, bytes | None]] = []  # a heap by (due, order pushed)
        self._pushed = 0
        self._last_due = 0.0  # what keeps order leaves no sooner than anything queued before it
        self._queued = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def push(self, data: bytes | None, delay_ms: int, overtake: bool = False) -> None:
        """Queue bytes (None = end of stream) to leave `delay_ms` from now, after everything queued
        (unless `overtake`: a zone-delayed PUBLISH leaves at its own time)."""
        due = asyncio.get_running_loop().time() + delay_ms / 1000
        if not overtake:
            due = max(due, self._last_due)
        self._last_due = max(self._last_due, due)
        self._pushed += 1
        heapq.heappush(self._items, (due, self._pushed, data))
        self._queued += len(data or b"")
        self._ready.set()
        if self._queued > QUEUE_HIGH_BYTES:
            self._room.clear()

    async def read_loop(self) -> None:
        framer = MqttFramer()
        while True:
            data = await self.source.read(READ_CHUNK)
            if not data:
                self.push(None, self.faults().delay_ms)
                return
            kept = self._filter(framer.feed(data))
            if kept and self.zoned is None:
                self.push(b"".join(kept), self.faults().delay_ms)
            elif kept:
                self._push_zoned(kept)
            await self._room.wait()

    def _push_zoned(self, packets: list[bytes]) -> None:
        delay = self.faults().delay_ms
        assert self.zoned is not None
        for packet in packets:
            extra = self.zoned(packet)
            self.push(packet, delay + (extra or 0), overtake=extra is not None)

    def _filter(self, packets: list[bytes]) -> list[bytes]:
        """Count packets and drop PUBLISHes at the node's current rate (acknowledging QoS 1 ones)."""
        drop = self.faults().drop
        kept = []
        for packet in packets:
            self.stats.packets += 1
            self.stats.bytes += len(packet)
            info = publish_qos(packet)
            if info is None:
                kept.append(packet)
                continue
            self.stats.publishes += 1
            qos, packet_id = info
            if qos == 2 or drop <= 0 or self.rng.random() >= drop:
                kept.append(packet)
                continue
            self.stats.dropped += 1
            if qos == 1 and packet_id is not None and self.reverse is not None:
                self.reverse.push(puback(packet_id), self.faults().delay_ms)
        return kept

    async def write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._items:
                self._ready.clear()
                await self._ready.wait()
            due = self._items[0][0]
            wait = due - loop.time()
            if wait > 0:  # wait, but wake for a packet pushed meanwhile that is due sooner
                self._ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), wait)
                continue
            _, _, data = heapq.heappop(self._items)
            if data is None:
                self.sink.close()
                return
            self.sink.write(data)
            await self.sink.drain()
            self._queued -= len(data)
            if self._queued <= QUEUE_HIGH_BYTES // 2:
                self._room.set()


class Link:
    """One node connection relayed to one upstream broker connection."""

    def __init__(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        faults: Callable[[], LinkFaults],
        stats: NodeStats,
        rng: random.Random,
        zones: LinkZones | None = None,
    ) -> None:
        self.client_writer = client[1]
        self.upstream_writer = upstream[1]
        up, down = (zones.up, zones.down) if zones is not None else (None, None)
        self.up = Pipe(UP, client[0], upstream[1], faults, stats.up, rng, up)
        self.down = Pipe(DOWN, upstream[0], client[1], faults, stats.down, rng, down)
        self.up.reverse, self.down.reverse = self.down, self.up
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        """Relay until both sides have closed, or either fails; then close both sockets."""
        pipes = (self.up, self.down)
        readers = [asyncio.create_task(p.read_loop()) for p in pipes]
        writers = [asyncio.create_task(p.write_loop()) for p in pipes]
        self._tasks = readers + writers
        try:
            pending = set(self._tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(not t.cancelled() and t.exception() is not None for t in done):
                    break
                if all(w.done() for w in writers):
                    break
        finally:
            self.cut()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        """Drop both connections now (no flush): what a partition does to a link."""
        for task in self._tasks:
            task.cancel()
        for writer in (self.client_writer, self.upstream_writer):
            writer.transport.abort()


# ------------------------------------------------------------------ the relay process


@dataclass
class Island:
    """A broker for one partition group beyond the first."""

    index: int
    broker: BrokerProcess

    @property
    def address(self) -> tuple[str, int]:
        return self.broker.host, self.broker.port

    def describe(self) -> dict[str, Any]:
        """url, pid and argv: enough for a later `up` to stop it if this relay was killed."""
        process = self.broker.process
        return {
            "url": self.broker.url,
            "pid": process.pid if process else None,
            "command": [str(a) for a in process.args] if process else None,  # type: ignore[union-attr]
        }


class Relay:
    """All nodes' ports, their routes to a broker, the island brokers, and the control loop."""

    def __init__(
        self,
        directory: Path,
        upstream: str,
        ports: dict[str, int],
        island_kind: str = "auto",
        host: str = "127.0.0.1",
        seed: int | None = None,
        parent_pid: int | None = None,
        zones: ZoneDelays | None = None,
    ) -> None:
        self.directory = directory
        self.upstream_url = upstream
        self.main = parse_broker_url(upstream)
        self.ports = dict(ports)
        self.island_kind = island_kind
        self.host = host
        self.rng = random.Random(seed)
        self.zones = zones  # with --zones: who published what, and each copy's zone latency
        self.parent_pid = parent_pid  # stop when this process is no longer our parent
        self.faults = NetworkFaults()
        self.routes: dict[str, tuple[str, int]] = dict.fromkeys(ports, self.main)
        self.links: dict[str, set[Link]] = {name: set() for name in ports}
        self.stats: dict[str, NodeStats] = {name: NodeStats() for name in ports}
        self.islands: dict[int, Island] = {}
        self.error: str | None = None
        self._servers: list[asyncio.Server] = []
        self._seen: tuple[int, int, int] | None = None
        self._stopping = asyncio.Event()

    # -- listening

    async def start(self) -> None:
        """Bind every node's port (all or nothing: a port taken is a startup error)."""
        for name, port in self.ports.items():
            server = await asyncio.start_server(
                lambda r, w, name=name: self._serve(name, r, w), self.host, port, reuse_address=True
            )
            self._servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]

    def url(self, name: str) -> str:
        return f"mqtt://{self.host}:{self.ports[name]}"

    async def _serve(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.routes[name]
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError):
            self.stats[name].refused += 1
            writer.transport.abort()  # the node backs off and retries, as with a dead broker
            return
        if self.routes[name] != (host, port):  # re-routed while connecting: go where it now belongs
            upstream[1].transport.abort()
            writer.transport.abort()
            return
        self.stats[name].connections += 1
        zones = LinkZones(self.zones, name) if self.zones is not None else None
        link = Link(
            (reader, writer), upstream, lambda: self.faults.link(name), self.stats[name], self.rng, zones
        )
        self.links[name].add(link)
        try:
            await link.run()
        finally:
            self.links[name].discard(link)

    # -- applying a control file

    async def apply(self, faults: NetworkFaults) -> None:
        """Make `faults` real: islands up, links of moved nodes cut, unused islands down."""
        named = {n for group in faults.groups for n in group} | set(faults.links)
        unknown = sorted(named - set(self.ports))
        if unknown:
            raise ValueError(f"unknown node {unknown[0]}")
        wanted = set(range(1, len(faults.groups))) if len(faults.groups) > 1 else set()
        for index in sorted(wanted - set(self.islands)):
            self.islands[index] = await self._start_island(index)
        self.faults = faults  # delays and drop rates take effect for the next chunk
        for name in self.ports:
            group = faults.group_of(name) if wanted else 0
            route = self.islands[group].address if group else self.main
            if route != self.routes[name]:
                self.routes[name] = route
                self._cut(name)
                log.info("%s: now routed to %s:%d", name, *route)
        for index in sorted(set(self.islands) - wanted):
            island = self.islands.pop(index)
            await asyncio.to_thread(island.broker.stop)
            log.info("island %d broker stopped", index)

    async def _start_island(self, index: int) -> Island:
        workdir = self.directory / "broker" / f"island-{index}"
        try:
            broker = await asyncio.to_thread(start_broker, self.island_kind, host=self.host, workdir=workdir)  # type: ignore[arg-type]
        except (BrokerStartError, ValueError) as exc:
            raise ValueError(f"island broker {index}: {str(exc).splitlines()[0]}") from None
        log.info("island %d broker %s pid %s", index, broker.url, broker.process and broker.process.pid)
        return Island(index, broker)

    def _cut(self, name: str) -> None:
        links = list(self.links[name])
        for link in links:
            link.cut()
        self.stats[name].cut += len(links)

    async def poll_control(self) -> None:
        """Apply DIR/faults.json whenever it changes; report in DIR/faults.applied.json."""
        last_report = 0.0
        while not self._stopping.is_set():
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                log.info("parent %d is gone; stopping", self.parent_pid)
                break
            if self._control_changed():
                await self._reload()
                last_report = 0.0
            if time.monotonic() - last_report >= STATS_EVERY_S:
                self.report()
                last_report = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), POLL_S)

    def _control_changed(self) -> bool:
        try:
            st = faults_path(self.directory).stat()
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            seen = (0, 0, 0)
        changed, self._seen = seen != self._seen, seen
        return changed

    async def _reload(self) -> None:
        try:
            faults = read_faults(self.directory)
            await self.apply(faults)
            self.error = None
        except (ValueError, OSError) as exc:
            self.error = str(exc)
            log.error("faults not applied: %s", exc)
            with contextlib.suppress(ValueError, OSError):
                self.faults.generation = read_faults(self.directory).generation  # answered, with the error
        self.report()

    def report(self) -> None:
        """Write DIR/faults.applied.json: generation, routes, islands, counters."""
        islands = {str(i): island.describe() for i, island in self.islands.items()}
        write_json_atomic(
            applied_path(self.directory),
            {
                "pid": os.getpid(),
                "generation": self.faults.generation,
                "error": self.error,
                "upstream": self.upstream_url,
                "ports": self.ports,
                "routes": {name: f"mqtt://{h}:{p}" for name, (h, p) in self.routes.items()},
                "islands": islands,
                "stats": {name: asdict(s) for name, s in self.stats.items()},
                **self._zones_report(),
                "updated": time.time(),
            },
        )

    def _zones_report(self) -> dict[str, Any]:
        if self.zones is None:
            return {}
        return {
            "zones": {
                "file": self.zones.zones.path,
                "placement": self.zones.placement,
                "delayed": self.zones.delayed,
            }
        }

    # -- stopping

    def request_stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        """Stop listening, cut every link, stop the island brokers."""
        for server in self._servers:
            server.close()
        for name in self.ports:
            self._cut(name)
        for island in self.islands.values():
            await asyncio.to_thread(island.broker.stop)
        self.islands.clear()


async def serve(relay: Relay) -> None:
    """Run the relay until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, relay.request_stop)
    await relay.start()
    log.info("relaying %s to %s", ", ".join(f"{n}:{p}" for n, p in relay.ports.items()), relay.upstream_url)
    try:
        await relay.poll_control()
    finally:
        await relay.close()
        relay.report()


def _listen(value: str) -> tuple[str, int]:
    name, sep, port = value.partition("=")
    if not sep or not name or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r}: expected NODE=PORT")
    return name, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m network.testnet.relay`: the testnet's fault relay (started by `posnet testnet up`)."""
    parser = argparse.ArgumentParser(description="posnet network-fault relay between nodes and their broker")
    parser.add_argument("--dir", type=Path, required=True, help="testnet directory (faults.json lives there)")
    parser.add_argument("--upstream", required=True, help="main broker, mqtt://HOST:PORT")
    parser.add_argument("--listen", type=_listen, action="append", default=[], metavar="NODE=PORT")
    parser.add_argument("--island-broker", default="auto", help="broker kind for partition islands")
    parser.add_argument("--seed", type=int, default=None, help="seed for drop decisions")
    parser.add_argument("--zones", type=Path, default=None, help="zones file: latency between zones (TOML)")
    parser.add_argument("--zone", type=listen_zone, action="append", default=[], metavar="NODE=ZONE")
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="stop (and stop the islands) when the parent dies"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    rng = random.Random(args.seed)
    try:
        zones = zone_delays(args.zones, dict(args.zone), dict(args.listen), rng)
    except (OSError, ZonesError) as exc:
        log.error("netfaults relay failed: --zones %s: %s", args.zones, exc)
        return 2
    relay = Relay(
        args.dir.resolve(),
        args.upstream,
        dict(args.listen),
        island_kind=args.island_broker,
        seed=args.seed,
        parent_pid=os.getppid() if args.exit_with_parent else None,
        zones=zones,
    )
    try:
        asyncio.run(serve(relay))
    except OSError as exc:  # a port already taken, typically
        log.error("netfaults relay failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
