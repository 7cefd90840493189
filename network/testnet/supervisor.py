"""The supervisor of `posnet testnet up`: start a testnet, watch it, stream its logs, stop it, judge it.

It runs in the foreground of one terminal and does one loop: every POLL_S it
streams the nodes' new events, notices nodes that died without being told to
(fault commands from other terminals record their intent in testnet.json
first) and a broker or relay that exited, and gives its `RunHooks` a tick. On
Ctrl-C, SIGTERM or --duration it stops the nodes first and the broker last,
then prints heights and the safety verdict from the logs alone.

A run that adds to this loop (a scenario's timeline) does so through
`RunHooks`, the one extension point: it never reaches into the loop itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from network.sim.zones import Zones
from network.sim.zones import describe as describe_zones
from network.testnet import ansi
from network.testnet.ansi import Echo, style
from network.testnet.brokercheck import refuse_shared_broker
from network.testnet.errors import TestnetError
from network.testnet.layout import (
    DIED,
    PAUSED,
    RESTARTING,
    RUNNING,
    STOPPED,
    Layout,
    NodeProc,
    TestnetState,
    byzantine_names,
    locked_state,
    read_state,
    write_state,
)
from network.testnet.logcheck import analyse, format_report, read_log
from network.testnet.logtail import LogTail
from network.testnet.monitor import PrometheusInfo, start_prometheus, stop_prometheus
from network.testnet.placement import host_of, spread
from network.testnet.processes import (
    cmdline,
    describe_exit,
    node_command,
    output_tail,
    process_state,
    spawn_node,
    stop_processes,
)
from network.testnet.services import (
    metrics_ports,
    mqtt_protocol_for,
    relay_info,
    relay_processes,
    start_relay,
    start_testnet_broker,
)
from network.testnet.setup import prepare
from network.testnet.unjail import AutoUnjail
from network.testnet.zonedelay import process_zones
from network.transport.broker import BrokerProcess
from node.core.behaviours import HONEST
from node.runtime.eventlog import format_pretty

POLL_S = 0.25


# ------------------------------------------------------------------ up


@dataclass
class UpConfig:
    """What `posnet testnet up` was asked for."""

    directory: Path
    validators: int
    duration: float | None = None
    broker: str = "auto"
    behaviours: dict[str, str] = field(default_factory=dict)
    slot_ms: int | None = None
    base_metrics_port: int | None = None
    chain_id: str | None = None
    mqtt_protocol: str | None = None
    quiet: bool = False
    netfaults: bool = True  # nodes reach the broker through the fault relay
    # genesis-only options: None = not asked for (the default for a new genesis, unchecked on an old one)
    cold_keys: bool | None = None  # a new genesis separates each pool's owner key from its signing key
    accounts: int | None = None  # a new genesis funds this many accounts (DIR/accounts/), for `testnet load`
    prometheus: bool = False  # write a scrape config for the nodes and start a local Prometheus if installed
    processes: int | None = None  # node processes the validators are spread over (None: one each)
    auto_unjail: bool = False  # send each jailed validator's unjail once the ledger allows it
    zones: Zones | None = None  # a geography the relay imposes between the processes' zones


def check_same_placement(layout: Layout, hosts: dict[str, list[str]]) -> None:
    """Refuse to regroup the validators of a directory that already ran with another grouping.

    A process's store (its finalized chain and the last-signed record that
    keeps a restarted validator from signing twice) lives in the process's
    home. Moving a validator to another process would start it from a store
    that never heard of what it signed: the one thing the slashing-protection
    discipline forbids. So a directory keeps the grouping it first ran with.
    """
    if not layout.state.exists():
        return
    try:
        old = read_state(layout).hosts
    except TestnetError:
        return
    if old != hosts:
        one_each = all(vs == [n] for n, vs in old.items())
        before = "one process per validator" if one_each else f"{len(old)} processes"
        keep = "the default --processes" if one_each else f"--processes {len(old)}"
        raise TestnetError(
            f"{layout.root} ran its validators in {before}; its stores hold what each signed, "
            f"so keep {keep} or use a fresh --dir"
        )


def process_behaviours(hosts: dict[str, list[str]], behaviours: dict[str, str]) -> dict[str, str]:
    """`--behaviour vI=MODE` as a behaviour per process: a process runs all its validators one way.

    Two validators of one process asked to behave differently cannot both be
    had, so that is refused rather than one silently winning.
    """
    validators = [v for vs in hosts.values() for v in vs]
    out: dict[str, str] = {}
    for name, mode in behaviours.items():
        process = host_of(hosts, name)
        if process is None:
            raise TestnetError(
                f"--behaviour names unknown validator {name}; validators are {validators[0]}..{validators[-1]}"
            )
        if out.get(process, mode) != mode:
            raise TestnetError(
                f"--behaviour: {', '.join(hosts[process])} run in one process ({process}), "
                f"which cannot be both {out[process]} and {mode}"
            )
        out[process] = mode
    return out


class RunHooks:
    """What a run adds to the supervisor's loop: called at fixed points, each doing nothing here.

    Subclass it and pass an instance to `Supervisor`; these public methods are
    made to be overridden. They run on the supervisor's own thread, between
    its polls, so nothing they do races process supervision: a node a hook
    kills is recorded in testnet.json before the loop looks for dead nodes again.
    """

    def started(self, supervisor: Supervisor) -> None:
        """Every process is up and testnet.json records them; the watch loop starts next."""

    def tick(self, supervisor: Supervisor) -> None:
        """One poll of the watch loop (every POLL_S), after dead nodes and services were noticed."""


def clear_leftovers(layout: Layout, echo: Echo) -> None:
    """Refuse to start over a live testnet; stop the orphans of one whose orchestrator was killed."""
    if not layout.state.exists():
        return
    try:
        old = read_state(layout)
    except TestnetError:
        return
    if old.supervisor_pid and process_state(old.supervisor_pid, old.supervisor_command) != "dead":
        raise TestnetError(
            f"a testnet is already running in {layout.root} (pid {old.supervisor_pid}); stop it first"
        )
    leftovers = [
        (n.pid, n.command, None) for n in old.nodes.values() if process_state(n.pid, n.command) != "dead"
    ]
    stop_after = [
        (pid, command, None)
        for pid, command in [(old.broker.pid, old.broker.command), *relay_processes(layout, old)]
        if pid and process_state(pid, command) != "dead"
    ]
    with contextlib.suppress(TestnetError):
        stop_prometheus(layout)  # a Prometheus a killed supervisor left behind
    if leftovers or stop_after:
        echo(
            f"stopping {len(leftovers)} node(s) and {len(stop_after)} broker/relay process(es) "
            "left over from an earlier run"
        )
        stop_processes(leftovers)
        stop_processes(stop_after)


class Supervisor:
    """Runs one testnet in the foreground: start, watch, stream, stop, judge."""

    def __init__(self, config: UpConfig, echo: Echo = ansi.echo, hooks: RunHooks | None = None) -> None:
        self.config = config
        self.hooks = hooks if hooks is not None else RunHooks()
        self.layout = Layout.of(config.directory)
        self._echo = echo
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.broker: BrokerProcess | None = None
        self.relay: subprocess.Popen[bytes] | None = None
        self.relay_failed = False
        self.prometheus: PrometheusInfo | None = None
        self.unjailer: AutoUnjail | None = None
        self.state: TestnetState | None = None
        self.tails: dict[str, LogTail] = {}
        self.failures: list[str] = []
        self.recorded = False  # testnet.json describes this run (not a previous one)
        self.broker_failed = False
        self.signals = 0
        self.output_closed = False
        self.color = sys.stdout.isatty()

    # -- lifecycle

    def run(self) -> int:
        """Start everything, watch until Ctrl-C/SIGTERM/--duration, stop, print the verdict; the exit code."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        started = time.monotonic()
        try:
            self._start()
            self._watch(started)
        finally:
            self._stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self._summary(time.monotonic() - started)

    def _on_signal(self, _signum: int, _frame: object) -> None:
        self.signals += 1

    def echo(self, line: str) -> None:
        """Print, treating a closed output (`up | head`, a closed pager) as a request to stop.

        Without this the first failed write would abort the run with the nodes
        still running; instead they are stopped as after a Ctrl-C.
        """
        if self.output_closed:
            return
        try:
            self._echo(line)
        except BrokenPipeError:
            self.output_closed = True
            self.signals += 1
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush is silent too
            os.close(devnull)

    def note(self, line: str) -> None:
        """A line that describes the run (its header, what it stops), which `--quiet` leaves out.

        Problems (a node that died, a broker that exited) and the summary go
        through `echo` and print whatever `--quiet` says.
        """
        if not self.config.quiet:
            self.echo(line)

    def _start(self) -> None:
        layout, config = self.layout, self.config
        layout.root.mkdir(parents=True, exist_ok=True)
        clear_leftovers(layout, self.note)
        doc = prepare(
            layout, config.validators, config.chain_id, config.slot_ms, config.cold_keys, config.accounts
        )
        validators = [v.name for v in doc.validators]
        hosts = spread(validators, config.processes)
        check_same_placement(layout, hosts)
        behaviours = process_behaviours(hosts, config.behaviours)
        names = list(hosts)
        ports = metrics_ports(len(names), config.base_metrics_port)
        if config.zones is not None and not config.netfaults:
            raise TestnetError("--zones needs the relay between nodes and broker: drop --no-netfaults")
        placement, zoned = process_zones(config.zones, hosts) if config.zones is not None else ({}, {})
        info, self.broker = start_testnet_broker(layout, config.broker)
        if info.kind == "external":  # a broker we did not start may carry another testnet of this chain
            refuse_shared_broker(info.url, doc.chain_id)
        protocol = mqtt_protocol_for(info.kind, config.mqtt_protocol)
        relay = None
        urls = dict.fromkeys(names, info.url)
        if config.netfaults:
            self.relay = start_relay(layout, info, names, config.zones, zoned)
            relay = relay_info(layout, self.relay)
            urls = {name: f"mqtt://127.0.0.1:{relay.ports[name]}" for name in names}
        nodes = {}
        for name, port in zip(names, ports, strict=True):
            behaviour = behaviours.get(name, HONEST)
            command = node_command(layout, name, urls[name], port, behaviour, protocol, hosts[name])
            nodes[name] = NodeProc(
                name=name,
                command=command,
                metrics_port=port,
                behaviour=behaviour,
                was_byzantine=behaviour != HONEST,
                validators=[] if hosts[name] == [name] else hosts[name],
            )
        self.state = TestnetState(
            chain_id=doc.chain_id,
            broker=info,
            nodes=nodes,
            relay=relay,
            supervisor_pid=os.getpid(),
            supervisor_command=cmdline(os.getpid()),
        )
        layout.logs.mkdir(parents=True, exist_ok=True)
        self.tails = {name: LogTail(layout.log(name)) for name in names}
        pace = "fast" if doc.params.commit_wait_ms == 0 else f"slot {doc.params.commit_wait_ms} ms"
        spread_note = "" if len(names) == len(validators) else f" in {len(names)} processes"
        self.note(
            f"testnet {doc.chain_id}: {len(validators)} validators{spread_note} ({pace}), "
            f"{info.kind} broker {info.url}, dir {layout.root}"
        )
        if relay is not None:
            self.note(
                f"  network-fault relay: pid {relay.pid}, each node reaches the broker through its own port"
            )
        if config.zones is not None:
            self.note(
                f"  zones {config.zones.path}: {describe_zones(config.zones, placement)}; each message "
                "held for its zones' one-way latency (RTT/2) by the relay"
            )
        for node in nodes.values():
            process = spawn_node(layout, node)
            self.children[node.name] = process
            node.pid, node.status = process.pid, RUNNING
            note = "" if node.behaviour == HONEST else f", {node.behaviour}"
            if node.validators:
                note += f", hosts {', '.join(node.validators)}"
            self.note(f"  {node.name}: pid {node.pid}, metrics :{node.metrics_port}{note}")
        write_state(layout, self.state)
        self.recorded = True
        if config.auto_unjail:
            self.unjailer = AutoUnjail(layout, doc, info.url, self.echo)
            self.unjailer.start(self.state)
            self.note("  auto-unjail: a jailed validator's unjail is sent once its jail has ended")
        if config.prometheus:
            self._start_prometheus({name: node.metrics_port for name, node in nodes.items()})
        self.note("streaming finality logs; Ctrl-C stops the testnet" + self._duration_note())
        self.hooks.started(self)

    def _start_prometheus(self, targets: dict[str, int]) -> None:
        config, self.prometheus = start_prometheus(self.layout, targets)
        if self.prometheus is None:
            self.note(
                f"  prometheus: not installed (apt install prometheus); scrape config written to {config}"
            )
        else:
            self.note(
                f"  prometheus: {self.prometheus.url} (pid {self.prometheus.pid}), scrape config {config}"
            )

    def _duration_note(self) -> str:
        return f" (or after {self.config.duration:g} s)" if self.config.duration else ""

    def _watch(self, started: float) -> None:
        duration = self.config.duration
        while not self.signals:
            self._stream()
            self._check_processes()
            self.hooks.tick(self)
            if duration is not None and time.monotonic() - started >= duration:
                break
            time.sleep(POLL_S)

    def _stream(self) -> None:
        for tail in self.tails.values():
            for event in tail.read_events():
                if not self.config.quiet:
                    self.echo(format_pretty(event, color=self.color))

    def _check_processes(self) -> None:
        """Notice nodes that died without being told to, and a broker that died at all."""
        with contextlib.suppress(TestnetError):
            self.state = read_state(self.layout)  # fault commands from other terminals edit it
        assert self.state is not None
        if self.unjailer is not None:
            self.unjailer.update(self.state)
        for name, node in self.state.nodes.items():
            self._reap(name, node)
            if node.status not in (RUNNING, PAUSED) or self._alive(name, node):
                continue
            with locked_state(self.layout) as state:  # re-read: a kill may have just been recorded
                current = state.node(name)
                if current.pid != node.pid or current.status not in (RUNNING, PAUSED):
                    continue
                current.status, current.exit_code = DIED, self._exit_code(name, current)
            self._report_death(name, current)
        broker = self.broker
        if (
            broker is not None
            and broker.process is not None
            and not broker.running
            and not self.broker_failed
        ):
            self.broker_failed = True
            self.failures.append(f"the {broker.kind} broker exited (code {broker.process.returncode})")
            self.echo(style(f"!! {self.failures[-1]}; log {broker.log_path}", fg="red", bold=True))
        if self.relay is not None and self.relay.poll() is not None and not self.relay_failed:
            self.relay_failed = True
            self.failures.append(f"the network-fault relay exited ({describe_exit(self.relay.returncode)})")
            self.echo(style(f"!! {self.failures[-1]}; log {self.layout.relay_log}", fg="red", bold=True))

    def _reap(self, name: str, node: NodeProc) -> None:
        """Collect exit codes of our children that were replaced by a restart (no zombies left behind)."""
        child = self.children.get(name)
        if child is not None and child.pid != node.pid and child.poll() is not None:
            del self.children[name]

    def _alive(self, name: str, node: NodeProc) -> bool:
        child = self.children.get(name)
        if child is not None and child.pid == node.pid:
            return child.poll() is None
        return process_state(node.pid, node.command) != "dead"

    def _exit_code(self, name: str, node: NodeProc) -> int | None:
        child = self.children.get(name)
        return child.returncode if child is not None and child.pid == node.pid else None

    def _report_death(self, name: str, node: NodeProc) -> None:
        self.failures.append(f"{name} died unexpectedly ({describe_exit(node.exit_code)})")
        self.echo(style(f"!! {self.failures[-1]}; last output:", fg="red", bold=True))
        for line in output_tail(self.layout, name):
            self.echo(f"   {line}")

    def _stop(self) -> None:
        """Nodes first (so they leave the broker cleanly), then the broker; record the outcome."""
        if self.unjailer is not None:
            self.unjailer.stop()
        state = self.state
        if state is not None:
            if self.recorded:
                with contextlib.suppress(TestnetError):
                    state = read_state(self.layout)
            # every node whose process lives, whatever its status says (a restart cut short included)
            live = [
                (n.pid, n.command, self._child_of(n)) for n in state.nodes.values() if self._alive(n.name, n)
            ]
            if live:
                self.note(f"stopping {len(live)} node(s)...")
            stop_processes(live, force=lambda: self.signals > 1)
        if self.relay is not None:  # after the nodes (they leave cleanly), before the broker
            stop_processes([(self.relay.pid, None, self.relay)], force=lambda: self.signals > 1)
        if self.broker is not None:
            self.broker.stop()
        if self.prometheus is not None:
            stop_prometheus(self.layout, self.prometheus)
        for child in self.children.values():
            child.poll()
        self._stream()
        if state is None or not self.recorded:
            return
        with contextlib.suppress(TestnetError), locked_state(self.layout) as final:
            for node in final.nodes.values():
                child = self._child_of(node)
                if node.status in (RUNNING, PAUSED, RESTARTING):
                    node.status = STOPPED
                    node.exit_code = child.returncode if child is not None else node.exit_code
            final.supervisor_pid = None
            final.broker.pid = None
            if final.relay is not None:
                final.relay.pid = None
            self.state = final

    def _child_of(self, node: NodeProc) -> subprocess.Popen[bytes] | None:
        child = self.children.get(node.name)
        return child if child is not None and child.pid == node.pid else None

    def _summary(self, elapsed: float) -> int:
        """Heights per node and the safety verdict from the logs; 1 if a node died or safety broke."""
        self.echo(f"summary after {elapsed:.1f} s:")
        if self.state is None:
            return 1
        logs = {name: read_log(self.layout.log(name)).events for name in self.state.nodes}
        report = analyse(logs, exclude=byzantine_names(self.state))
        notes = {}
        for name, node in self.state.nodes.items():
            code = "" if node.exit_code is None else f" ({describe_exit(node.exit_code)})"
            notes[name] = node.status + code + (f", restarted {node.restarts}x" if node.restarts else "")
            if node.validators:
                notes[name] += f", hosts {', '.join(node.validators)}"
        for line in format_report(report, notes):
            self.echo(line)
        if not any(s.max_height for s in report.nodes.values()):
            self.echo(style("warning: no node finalized a block", fg="yellow"))
        for failure in self.failures:
            self.echo(style(f"failure: {failure}", fg="red"))
        return 0 if report.ok and not self.failures else 1


def run_up(config: UpConfig, echo: Echo = ansi.echo) -> int:
    """`posnet testnet up`: the exit code (0 clean, 1 a node died or safety broke)."""
    return Supervisor(config, echo).run()
