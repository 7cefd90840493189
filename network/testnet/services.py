"""What the nodes of a testnet connect to: the MQTT broker, the fault relay in front of it, their ports.

`up` starts the broker (or checks an external one answers), then the relay
that gives each node a port of its own so network faults can be applied per
node, and picks the nodes' metrics ports. The island brokers of a partition
are the relay's own business; `relay_processes` names them so a later `up`
can stop what a killed orchestrator left behind.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from network.sim.zones import Zones
from network.testnet import faultfile as netfaults
from network.testnet.errors import TestnetError
from network.testnet.faultfile import NetworkFaults
from network.testnet.layout import BrokerInfo, Layout, RelayInfo, TestnetState
from network.testnet.processes import output_tail_of, repo_env
from network.transport.broker import (
    BrokerProcess,
    BrokerStartError,
    free_port,
    mosquitto_available,
    mqtt_handshake_ok,
    parse_broker_url,
    resolve_kind,
    start_broker,
)

RELAY_START_TIMEOUT_S = 15.0


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Start children with SIGINT blocked (the mask survives exec).

    The broker is started by `network.transport.broker` in our process group, so a
    Ctrl-C in the terminal would reach it at the same moment as us and take
    the network down under the nodes while they shut down. With SIGINT
    blocked it stops only when we stop it, last, with SIGTERM.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def start_testnet_broker(layout: Layout, spec: str) -> tuple[BrokerInfo, BrokerProcess | None]:
    if spec.startswith("mqtt://"):
        try:
            host, port = parse_broker_url(spec)
        except ValueError as exc:
            raise TestnetError(str(exc)) from None
        if not mqtt_handshake_ok(host, port):
            raise TestnetError(f"no MQTT broker accepts connections at {spec}")
        return BrokerInfo(kind="external", url=spec), None
    try:
        kind = resolve_kind(spec)
        with _sigint_blocked():
            broker = start_broker(kind, workdir=layout.broker_dir)  # type: ignore[arg-type]
    except (ValueError, BrokerStartError) as exc:
        raise TestnetError(str(exc).splitlines()[0]) from None
    assert broker.process is not None
    info = BrokerInfo(
        kind=broker.kind,
        url=broker.url,
        pid=broker.process.pid,
        command=list(map(str, broker.process.args)),  # type: ignore[arg-type]
        log=str(broker.log_path),
    )
    return info, broker


def island_kind(broker: BrokerInfo) -> str:
    """Island brokers are the main broker's kind, so they speak the MQTT version the nodes do."""
    if broker.kind in ("mosquitto", "embedded"):
        return broker.kind
    return "mosquitto" if mosquitto_available() else "embedded"


def start_relay(
    layout: Layout,
    broker: BrokerInfo,
    names: Sequence[str],
    zones: Zones | None = None,
    placement: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start the fault relay with no faults in force, and wait until it listens on every node's port.

    Its own session, like the nodes, so a Ctrl-C reaches only the
    orchestrator; `--exit-with-parent` so a killed orchestrator leaves no
    relay (nor island brokers) behind.
    """
    netfaults.write_faults(layout.root, NetworkFaults())
    layout.faults_applied.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "network.testnet.relay",
        "--dir",
        str(layout.root),
        "--upstream",
        broker.url,
        "--island-broker",
        island_kind(broker),
        "--exit-with-parent",
    ]
    for name in names:
        command += ["--listen", f"{name}={free_port()}"]
    if zones is not None and placement:
        command += ["--zones", str(Path(zones.path).resolve())]
        for name in names:
            command += ["--zone", f"{name}={placement[name]}"]
    env = repo_env()
    with open(layout.relay_log, "ab") as out:
        process = subprocess.Popen(
            command,
            cwd=layout.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + RELAY_START_TIMEOUT_S
    while time.monotonic() < deadline:
        applied = netfaults.read_applied(layout.root)
        if applied and applied.get("pid") == process.pid:
            return process
        if process.poll() is not None:
            break
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
        process.wait()
    last = output_tail_of(layout.relay_log, 1)
    raise TestnetError(f"the network-fault relay did not start ({last[0] if last else 'no output'})")


def relay_info(layout: Layout, process: subprocess.Popen[bytes]) -> RelayInfo:
    applied = netfaults.read_applied(layout.root) or {}
    return RelayInfo(
        pid=process.pid,
        command=[str(a) for a in process.args],  # type: ignore[union-attr]
        ports={str(k): int(v) for k, v in applied.get("ports", {}).items()},
        log=str(layout.relay_log),
    )


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def metrics_ports(count: int, base: int | None) -> list[int]:
    """Consecutive ports from `base` (checked free), or kernel-chosen free ports."""
    if base is None:
        return [free_port() for _ in range(count)]
    ports = list(range(base, base + count))
    if ports[-1] > 65535:
        raise TestnetError(f"--base-metrics-port {base}: {count} ports would pass 65535")
    taken = [p for p in ports if not _port_free(p)]
    if taken:
        raise TestnetError(f"metrics port {taken[0]} is already in use; choose another --base-metrics-port")
    return ports


def mqtt_protocol_for(kind: str, requested: str | None) -> str | None:
    """amqtt speaks 3.1.1 only; mosquitto gets MQTT 5; an external broker gets what was asked."""
    if requested:
        if kind == "embedded" and requested != "311":
            raise TestnetError("the embedded broker speaks MQTT 3.1.1 only: use --mqtt-protocol 311")
        return requested
    return {"embedded": "311", "mosquitto": "5"}.get(kind)


def relay_processes(layout: Layout, state: TestnetState) -> list[tuple[int | None, list[str] | None]]:
    """The relay and the island brokers it last reported (a SIGKILLed relay cannot stop them)."""
    if state.relay is None:
        return []
    applied = netfaults.read_applied(layout.root) or {}
    islands = [(i.get("pid"), i.get("command")) for i in applied.get("islands", {}).values()]
    return [(state.relay.pid, state.relay.command), *islands]
