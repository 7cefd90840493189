"""Finality over a real broker: how fast N validator processes finalize, against their limits.

For each network size, starts mosquitto on loopback and N real ``posnet node
run`` processes in fast mode (``commit_wait_ms = 0``: heights back to back),
lets them warm up, then measures a window of about ``--seconds``:

- finalized heights per second and the median / p99 finality latency, from
  the nodes' own ``finalized`` log events (catch-up blocks excluded);
- consensus messages (proposals and votes) each node received per second (its Prometheus counter);

and, in the same run on the same machine, the two ceilings those numbers
must be read against:

- the transport's own rate: vote-sized messages per second one Python
  MqttTransport receives through the same broker
  (``bench/transport_rate.py``'s ``measure_transport_rate``);
- Ed25519 verifications per second on one core (``verify_uncached``), since
  every received message is verified once on admission.

The ratios say how close consensus runs to those limits: consensus msgs/s
per node / transport msgs/s, and verifications needed per second per node /
verifications possible per second. Nodes are separate processes sharing the
machine's cores, so the whole-machine verification load is also shown.

A third limit is the disk: every signature is preceded by an fsynced
signing-record commit (and followed by a journal commit), and every
finalized block is fsynced before it is logged. The table shows the
commits per second all nodes need against the fsynced commits per second
one writer gets from this disk.

    python bench/mqtt_finality.py [--validators 4 16] [--seconds 30] [--json]
    python bench/mqtt_finality.py --validators 4 16 64 --processes 4 16 8   # 64 validators, 8 per process
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_REPO_ROOT = Path(__file__).resolve().parent.parent
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bench.ceilings import ed25519_verifications_per_s  # noqa: E402
from bench.transport_rate import measure_transport_rate  # noqa: E402
from network.testnet.layout import Layout, NodeProc  # noqa: E402
from network.testnet.logcheck import Event, read_log  # noqa: E402
from network.testnet.placement import spread  # noqa: E402
from network.testnet.processes import node_command, output_tail, spawn_node, stop_processes  # noqa: E402
from network.testnet.services import metrics_ports  # noqa: E402
from network.testnet.setup import prepare  # noqa: E402
from network.transport.broker import start_broker  # noqa: E402

WARMUP_HEIGHTS = 3
CHAIN_ID = "posnet-bench"
VOTE_SIZE = 200  # bytes: about one signed vote envelope
TRANSPORT_MESSAGES = 20_000


@dataclass
class FinalityResult:
    validators: int
    processes: int
    seconds: float
    heights: int
    heights_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    round_timeouts: int
    consensus_msgs_per_s_per_node: float
    transport_msgs_per_s: float
    verifications_per_s: float
    commits_needed_per_s_per_node: float
    commits_per_s: float

    @property
    def transport_ratio(self) -> float:
        return (
            self.consensus_msgs_per_s_per_node / self.transport_msgs_per_s
            if self.transport_msgs_per_s
            else 0.0
        )

    @property
    def verify_ratio(self) -> float:
        """Verifications one node needs per second over what one core can do."""
        return (
            self.consensus_msgs_per_s_per_node / self.verifications_per_s if self.verifications_per_s else 0.0
        )

    @property
    def machine_verify_ratio(self) -> float:
        """All nodes' verifications per second over what every core of this machine can do."""
        cores = os.cpu_count() or 1
        needed = self.processes * self.consensus_msgs_per_s_per_node
        return needed / (cores * self.verifications_per_s) if self.verifications_per_s else 0.0

    @property
    def machine_commit_ratio(self) -> float:
        """All nodes' fsynced commits per second over what the disk did for one writer."""
        needed = self.processes * self.commits_needed_per_s_per_node
        return needed / self.commits_per_s if self.commits_per_s else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "transport_ratio": round(self.transport_ratio, 4),
            "verify_ratio": round(self.verify_ratio, 4),
            "machine_verify_ratio": round(self.machine_verify_ratio, 4),
            "machine_commit_ratio": round(self.machine_commit_ratio, 4),
        }


@dataclass
class BenchNet:
    """N validator processes started as ``posnet testnet up`` starts them, minus its supervisor.

    Keys, genesis, command lines and spawning all come from `network.testnet` (setup, processes),
    so the benchmark measures the nodes users run. Unlike ``testnet up`` it
    keeps the children in hand, to scrape them mid-run and stop them on cue,
    and connects them to the broker directly: the fault relay would be one
    more hop in every message's path, which is not what is measured here.
    """

    layout: Layout
    nodes: dict[str, NodeProc]
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @classmethod
    def start(
        cls, root: Path, broker_url: str, validators: int, processes: int | None = None, slot_ms: int = 0
    ) -> BenchNet:
        """Fast mode by default (``slot_ms`` 0: heights back to back), metrics on loopback, MQTT 5.

        `processes` spreads the validators over that many node processes as
        ``testnet up --processes`` does (contiguous blocks); None: one each.
        """
        layout = Layout.of(root)
        names = [v.name for v in prepare(layout, validators, CHAIN_ID, slot_ms=slot_ms).validators]
        hosts = spread(names, processes)
        ports = metrics_ports(len(hosts), None)
        net = cls(layout, {})
        for (name, hosted), port in zip(hosts.items(), ports, strict=True):
            command = node_command(layout, name, broker_url, port, "honest", "5", hosted)
            net.nodes[name] = NodeProc(name=name, command=command, metrics_port=port)
        try:
            for name, node in net.nodes.items():
                net.children[name] = spawn_node(layout, node)
        except BaseException:
            net.stop()
            raise
        return net

    def stop(self) -> None:
        """SIGTERM every node at once, wait, SIGKILL stragglers."""
        stop_processes(
            [(child.pid, self.nodes[name].command, child) for name, child in self.children.items()]
        )

    def events(self, name: str) -> list[Event]:
        return read_log(self.layout.log(name)).events

    def heights(self) -> dict[str, int]:
        """Each node's highest finalized height (0 before its first)."""
        return {
            name: max((e["height"] for e in self.events(name) if e["event"] == "finalized"), default=0)
            for name in self.nodes
        }

    def metrics(self, name: str) -> str:
        """Node ``name``'s /metrics text."""
        url = f"http://127.0.0.1:{self.nodes[name].metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()

    def diagnostics(self) -> str:
        """Heights, exit codes and output tails: what to print when the nodes do not get going."""
        lines = []
        heights = self.heights()
        for name, child in self.children.items():
            lines.append(f"--- {name}: height {heights[name]}, exit code {child.poll()}")
            lines += [f"    {line}" for line in output_tail(self.layout, name)]
        return "\n".join(lines)


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str, net: BenchNet) -> None:
    """Poll ``predicate``; fail naming ``what`` with the net's diagnostics after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}\n{net.diagnostics()}")
        await asyncio.sleep(0.2)


def scrape(net: BenchNet) -> dict[str, tuple[float, float]]:
    """Per node: (consensus messages received, messages signed) so far, from its /metrics."""
    counts = {}
    for name in net.nodes:
        received = signed = 0.0
        for family in text_string_to_metric_families(net.metrics(name)):
            for sample in family.samples:
                if (
                    sample.name == "posnet_messages_received_total"
                    and sample.labels.get("channel") in ("consensus", "votes")  # proposals, votes
                ):
                    received += sample.value
                elif sample.name == "posnet_signed_messages_total":
                    signed += sample.value
        counts[name] = (received, signed)
    return counts


def fsynced_commits_per_s(workdir: Path, seconds: float = 2.0) -> float:
    """Durable (fsynced) SQLite commits per second on this disk: the store's signing-record write."""
    from node.core.safety import SignMark, Step
    from node.runtime.store import Store

    with Store(workdir / "fsync-probe.sqlite3") as store:
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            count += 1
            store.record_signing(b"bench", SignMark(count, 0, Step.PREVOTE, None))
        return count / (time.perf_counter() - start)


def window_stats(net: BenchNet, t0: float, t1: float) -> tuple[int, list[int], int]:
    """(heights finalized by the slowest node, latencies, round timeouts) inside [t0, t1]."""
    latencies: list[int] = []
    heights = []
    timeouts = 0
    for name in net.nodes:
        events = [e for e in net.events(name) if t0 <= e["ts"] <= t1]
        finalized = [e for e in events if e["event"] == "finalized"]
        heights.append(len(finalized))
        latencies += [e["latency_ms"] for e in finalized if not e.get("via_sync")]
        timeouts += sum(1 for e in events if e["event"] == "round_timeout")
    return min(heights), latencies, timeouts


def percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


async def run_one(
    validators: int, seconds: float, workdir: Path, processes: int | None = None, slot_ms: int = 0
) -> FinalityResult:
    """Start a broker and ``validators`` validators (in ``processes`` nodes), measure a window, then the ceilings."""
    broker = start_broker("mosquitto", workdir=workdir / "broker")
    try:
        net = BenchNet.start(workdir / "net", broker.url, validators, processes, slot_ms)
        try:
            await wait_until(
                lambda: min(net.heights().values()) >= WARMUP_HEIGHTS,
                timeout=120 + 10 * validators,
                what=f"{validators} nodes warming up",
                net=net,
            )
            before, t0 = scrape(net), time.time()
            await asyncio.sleep(seconds)
            after, t1 = scrape(net), time.time()
        finally:
            net.stop()
        heights, latencies, timeouts = window_stats(net, t0, t1)
        per_node = [(after[n][0] - before[n][0]) / (t1 - t0) for n in net.nodes]
        signed_per_node = [(after[n][1] - before[n][1]) / (t1 - t0) for n in net.nodes]
        transport = await measure_transport_rate(broker.url, "bench-rate", TRANSPORT_MESSAGES, VOTE_SIZE, 1)
        commits = fsynced_commits_per_s(workdir)
    finally:
        broker.stop(kill=True)
    return FinalityResult(
        validators=validators,
        processes=len(net.nodes),
        seconds=round(t1 - t0, 2),
        heights=heights,
        heights_per_s=round(heights / (t1 - t0), 2),
        latency_p50_ms=statistics.median(latencies) if latencies else float("nan"),
        latency_p99_ms=percentile(latencies, 0.99),
        round_timeouts=timeouts,
        consensus_msgs_per_s_per_node=round(statistics.mean(per_node), 1),
        transport_msgs_per_s=round(transport, 1),
        verifications_per_s=round(ed25519_verifications_per_s(), 1),
        # Each signature costs one fsynced commit (mark and journal together) and each height one more.
        commits_needed_per_s_per_node=round(statistics.mean(signed_per_node) + heights / (t1 - t0), 1),
        commits_per_s=round(commits, 1),
    )


def print_table(results: list[FinalityResult]) -> None:
    header = (
        f"{'vals':>4} {'procs':>5} {'heights/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'timeouts':>8} | "
        f"{'cons msg/s/node':>15} {'transport msg/s':>15} {'ratio':>6} | "
        f"{'verif need/s/node':>17} {'verif/s/core':>12} {'ratio':>6} {'machine':>7} | "
        f"{'fsync need/s':>12} {'fsync/s':>7} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.validators:>4} {r.processes:>5} {r.heights_per_s:>9.2f} {r.latency_p50_ms:>7.0f} {r.latency_p99_ms:>7.0f} "
            f"{r.round_timeouts:>8} | {r.consensus_msgs_per_s_per_node:>15,.0f} {r.transport_msgs_per_s:>15,.0f} "
            f"{r.transport_ratio:>6.3f} | {r.consensus_msgs_per_s_per_node:>17,.0f} "
            f"{r.verifications_per_s:>12,.0f} {r.verify_ratio:>6.3f} {r.machine_verify_ratio:>7.3f} | "
            f"{r.processes * r.commits_needed_per_s_per_node:>12,.0f} {r.commits_per_s:>7,.0f} "
            f"{r.machine_commit_ratio:>6.2f}"
        )
    print(
        f"\n{os.cpu_count()} cores; every process on this machine; per node = per process. "
        "ratio = consensus need / ceiling; "
        "'machine' = all nodes' verifications / all cores' capacity;\n"
        "fsync need/s = all nodes' durable commits (1 per signature: mark and journal together, + 1 per finalized block) "
        "vs one writer's fsynced commits/s on this disk."
    )


async def _main(args: argparse.Namespace) -> None:
    results = []
    processes = args.processes or [None] * len(args.validators)
    for n, p in zip(args.validators, processes, strict=True):
        with tempfile.TemporaryDirectory(prefix=f"posnet-bench-{n}-") as tmp:
            result = await run_one(n, args.seconds, Path(tmp), p, args.slot_ms)
        results.append(result)
        if args.json:
            print(json.dumps(result.to_json()), flush=True)
    print_table(results)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--validators", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        help="node processes per --validators value (default: one per validator)",
    )
    parser.add_argument("--slot-ms", type=int, default=0, help="slot length; 0 (default) is fast mode")
    parser.add_argument("--json", action="store_true", help="also print one JSON object per size")
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
