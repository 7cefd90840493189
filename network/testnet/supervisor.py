"""A local testnet: N validator processes and one MQTT broker on this machine.

Layout of a testnet directory (everything a later command needs is in it, so
`kill`, `restart`, `status` and `check` work from any terminal):

    DIR/genesis.toml            the chain (created once, reused on restart)
    DIR/nodes/vI/key.json       validator vI's key (0600); vI's home
    DIR/nodes/vI/node.out       vI's stdout/stderr, appended across restarts
    DIR/logs/vI.jsonl           vI's event log (JSON lines), the source of every verdict
    DIR/broker/                 broker config and log (island brokers of a partition under broker/island-I)
    DIR/testnet.json            who runs where: broker url/pid, relay, each node's pid and command line
    DIR/faults.json             network faults asked for (see network/netfaults.py)
    DIR/faults.applied.json     what the relay has applied, its island brokers and packet counters
    DIR/netfaults.log           the relay's log

Nodes run as real OS processes (`python -m network.cli node run ...`) in their
own sessions, so that a Ctrl-C in the terminal reaches only the orchestrator,
which then stops the nodes first and the broker last, in that order. Every
signal sent to a recorded pid is preceded by an identity check against its
command line (`/proc/PID/cmdline`), so a recycled pid is never signalled.

testnet.json is rewritten atomically and read-modify-written under a file
lock: the orchestrator and the fault commands from other terminals both edit it.
A fault command records its intent (`killed`, `restarting`) *before* it
signals, so the orchestrator never mistakes a deliberate kill for a crash.

Network faults (delay, drop, partition, heal) are real: each node reaches the
broker through its own port of a relay process (`network.testnet.relay`) that
`up` starts between the nodes and the broker; the commands here write the
relay's control file and return once the relay reports the change applied.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

from network.testnet import relay as netfaults
from network.testnet.logcheck import Event, analyse, format_report, read_log
from network.testnet.relay import NetworkFaults
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
from node.core.behaviours import BEHAVIOURS
from node.core.genesis import (
    Genesis,
    GenesisError,
    Params,
    genesis_to_toml,
    load_genesis,
    make_genesis,
    validator_names,
)
from node.core.keys import Keypair, load_key_file, save_key_file
from node.runtime.eventlog import format_pretty

STATE_VERSION = 1
DEFAULT_CHAIN_ID = "posnet-local"
DEFAULT_SLOT_MS = 1000  # paced heights: a human can read the stream
STOP_TIMEOUT_S = 10.0
POLL_S = 0.25
RELAY_START_TIMEOUT_S = 15.0
FAULT_APPLY_TIMEOUT_S = 30.0  # an island broker start (amqtt) is the slow part
REPO_ROOT = Path(__file__).resolve().parent.parent

# Node statuses in testnet.json. The first two mean "should be alive".
RUNNING, PAUSED = "running", "paused"
KILLED, RESTARTING, STOPPED, DIED = "killed", "restarting", "stopped", "died"


class TestnetError(Exception):
    """A problem the user can act on; the message is one line."""


Echo = Callable[[str], None]


# ------------------------------------------------------------------ layout


@dataclass(frozen=True)
class Layout:
    """Where each file of a testnet directory lives (absolute, so commands work from any cwd)."""

    root: Path

    @classmethod
    def of(cls, directory: Path | str) -> Layout:
        return cls(Path(directory).expanduser().resolve())

    @property
    def genesis(self) -> Path:
        return self.root / "genesis.toml"

    @property
    def state(self) -> Path:
        return self.root / "testnet.json"

    @property
    def lock(self) -> Path:
        return self.root / ".testnet.lock"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def broker_dir(self) -> Path:
        return self.root / "broker"

    @property
    def faults(self) -> Path:
        return netfaults.faults_path(self.root)

    @property
    def faults_applied(self) -> Path:
        return netfaults.applied_path(self.root)

    @property
    def relay_log(self) -> Path:
        return self.root / "netfaults.log"

    def home(self, name: str) -> Path:
        return self.root / "nodes" / name

    def key(self, name: str) -> Path:
        return self.home(name) / "key.json"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.jsonl"

    def output(self, name: str) -> Path:
        return self.home(name) / "node.out"


# ------------------------------------------------------------------ keys and genesis


def prepare(layout: Layout, validators: int, chain_id: str | None, slot_ms: int | None) -> Genesis:
    """Create the keys and genesis that are missing; reuse (and verify) the ones that exist.

    Reuse is what makes a testnet restartable: the nodes' stores belong to
    that genesis. Options that contradict an existing genesis are refused
    rather than ignored, since silently running a different chain than asked
    for is the worse surprise.
    """
    names = validator_names(validators)
    if layout.genesis.exists():
        return _reuse_genesis(layout, names, chain_id, slot_ms)
    keypairs = {name: _key_for(layout, name) for name in names}
    params = Params(commit_wait_ms=DEFAULT_SLOT_MS if slot_ms is None else slot_ms)
    doc = make_genesis(chain_id or DEFAULT_CHAIN_ID, keypairs, params=params)
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.genesis.write_text(genesis_to_toml(doc))
    try:
        return load_genesis(layout.genesis)  # the node's own checks, before any node starts
    except GenesisError as exc:
        layout.genesis.unlink()
        raise TestnetError(str(exc)) from None


def _key_for(layout: Layout, name: str) -> Keypair:
    path = layout.key(name)
    if not path.exists():
        keypair = Keypair.generate()
        save_key_file(path, name, keypair)
        return keypair
    stored_name, keypair = _load_key(path)
    if stored_name != name:
        raise TestnetError(f"{path}: key is named {stored_name!r}, expected {name!r}")
    return keypair


def _load_key(path: Path) -> tuple[str, Keypair]:
    try:
        return load_key_file(path)
    except ValueError as exc:
        raise TestnetError(str(exc)) from None


def _reuse_genesis(layout: Layout, names: list[str], chain_id: str | None, slot_ms: int | None) -> Genesis:
    try:
        doc = load_genesis(layout.genesis)
    except GenesisError as exc:
        raise TestnetError(str(exc)) from None
    existing = [v.name for v in doc.validators]
    fresh = "use a fresh --dir (or delete it) for a new chain"
    if existing != names:
        raise TestnetError(
            f"{layout.genesis} has validators {', '.join(existing)}, but --validators {len(names)} "
            f"means {names[0]}..{names[-1]}; {fresh}"
        )
    if chain_id is not None and chain_id != doc.chain_id:
        raise TestnetError(f"{layout.genesis} is chain {doc.chain_id!r}, not {chain_id!r}; {fresh}")
    if slot_ms is not None and slot_ms != doc.params.commit_wait_ms:
        raise TestnetError(
            f"{layout.genesis} has commit_wait_ms {doc.params.commit_wait_ms}, not --slot-ms {slot_ms}; {fresh}"
        )
    for validator in doc.validators:
        if not layout.key(validator.name).exists():
            raise TestnetError(
                f"{layout.key(validator.name)} is missing but {layout.genesis} names {validator.name}"
            )
        _, keypair = _load_key(layout.key(validator.name))
        if keypair.public != validator.public_key:
            raise TestnetError(
                f"{layout.key(validator.name)} does not match {validator.name}'s key in {layout.genesis}"
            )
    return doc


# ------------------------------------------------------------------ testnet.json


@dataclass
class NodeProc:
    """One validator process as recorded in testnet.json."""

    name: str
    command: list[str]
    metrics_port: int
    behaviour: str = "honest"
    pid: int | None = None
    status: str = STOPPED
    restarts: int = 0
    exit_code: int | None = None
    was_byzantine: bool = False  # ever ran non-honest: its log is not held to the safety promise


@dataclass
class BrokerInfo:
    kind: str  # mosquitto | embedded | external
    url: str
    pid: int | None = None
    command: list[str] | None = None
    log: str | None = None


@dataclass
class RelayInfo:
    """The network-fault relay: the port each node connects to instead of the broker."""

    pid: int | None
    command: list[str]
    ports: dict[str, int]
    log: str


@dataclass
class TestnetState:
    chain_id: str
    broker: BrokerInfo
    nodes: dict[str, NodeProc]
    relay: RelayInfo | None = None
    supervisor_pid: int | None = None
    supervisor_command: list[str] | None = None
    started_at: float = field(default_factory=time.time)
    version: int = STATE_VERSION

    def node(self, name: str) -> NodeProc:
        if name not in self.nodes:
            raise TestnetError(f"unknown node {name!r}; this testnet has {', '.join(self.nodes)}")
        return self.nodes[name]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TestnetState:
        return cls(
            chain_id=raw["chain_id"],
            broker=BrokerInfo(**raw["broker"]),
            nodes={name: NodeProc(**node) for name, node in raw["nodes"].items()},
            relay=RelayInfo(**raw["relay"]) if raw.get("relay") else None,
            supervisor_pid=raw.get("supervisor_pid"),
            supervisor_command=raw.get("supervisor_command"),
            started_at=raw.get("started_at", 0.0),
            version=raw.get("version", STATE_VERSION),
        )


def read_state(layout: Layout) -> TestnetState:
    """The recorded testnet; TestnetError with a hint when there is none."""
    try:
        raw = json.loads(layout.state.read_text())
        return TestnetState.from_json(raw)
    except FileNotFoundError:
        raise TestnetError(
            f"{layout.state} not found: start a testnet there first with `posnet testnet up --dir {layout.root}`"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise TestnetError(f"{layout.state}: unreadable ({type(exc).__name__}: {exc})") from None


def write_state(layout: Layout, state: TestnetState) -> None:
    """Atomic replace, so a reader in another terminal never sees half a file."""
    tmp = layout.state.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    os.replace(tmp, layout.state)


@contextlib.contextmanager
def testnet_lock(layout: Layout) -> Iterator[None]:
    """The exclusive lock every read-modify-write of the directory's state files takes."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.lock, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def locked_state(layout: Layout) -> Iterator[TestnetState]:
    """Read-modify-write testnet.json under an exclusive lock; written back when the block succeeds."""
    with testnet_lock(layout):
        state = read_state(layout)
        yield state
        write_state(layout, state)


def byzantine_names(state: TestnetState) -> list[str]:
    """Nodes that are, or ever were, told to misbehave: reported, but not judged for safety."""
    return [n.name for n in state.nodes.values() if n.behaviour != "honest" or n.was_byzantine]


# ------------------------------------------------------------------ processes


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def process_state(pid: int | None, command: Sequence[str] | None = None) -> str:
    """`alive`, `paused` (SIGSTOPped) or `dead` — where a zombie or a recycled pid counts as dead.

    `os.kill(pid, 0)` alone would call a zombie alive and a reused pid ours;
    /proc tells both apart. Without /proc (not Linux) it is the best we have.
    """
    if not pid:
        return "dead"
    if not Path("/proc/self").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "dead"
        except PermissionError:
            pass
        return "alive"
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "dead"
    fields_after_name = stat.rpartition(")")[2].split()
    code = fields_after_name[0] if fields_after_name else "?"
    if code in ("Z", "X", "x"):
        return "dead"
    if command is not None and _cmdline(pid) != list(command):
        return "dead"
    return "paused" if code in ("T", "t") else "alive"


def signal_process(pid: int | None, command: Sequence[str] | None, sig: int) -> bool:
    """Send `sig` if `pid` is still the process we started; False when it is gone."""
    if pid is None or process_state(pid, command) == "dead":
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def stop_processes(
    procs: Sequence[tuple[int | None, Sequence[str] | None, subprocess.Popen[bytes] | None]],
    timeout: float = STOP_TIMEOUT_S,
    force: Callable[[], bool] = lambda: False,
) -> None:
    """SIGTERM (and SIGCONT, or a paused process never sees it) all, wait, SIGKILL the stragglers.

    Stopping them together rather than one by one keeps shutdown at one
    timeout, not N. `force()` turning true (a second Ctrl-C) skips the wait.
    """

    def alive(pid: int | None, command: Sequence[str] | None, popen: subprocess.Popen[bytes] | None) -> bool:
        if popen is not None:
            return popen.poll() is None
        return process_state(pid, command) != "dead"

    for pid, command, _ in procs:
        if signal_process(pid, command, signal.SIGTERM):
            signal_process(pid, command, signal.SIGCONT)
    deadline = time.monotonic() + timeout
    while any(alive(*p) for p in procs) and time.monotonic() < deadline and not force():
        time.sleep(0.05)
    for pid, command, popen in procs:
        if alive(pid, command, popen):
            signal_process(pid, command, signal.SIGKILL)
            if popen is not None:
                popen.wait(timeout=STOP_TIMEOUT_S)


def node_argv(
    *,
    home: Path,
    genesis: Path,
    broker_url: str,
    log: Path,
    name: str | None = None,
    metrics_port: int = 0,
    behaviour: str = "honest",
    mqtt_protocol: str | None = None,
    key_files: Sequence[Path] = (),
    mqtt_username: str | None = None,
    mqtt_password_file: Path | None = None,
) -> list[str]:
    """The ``posnet node run`` argv: the one definition the testnet, benchmarks and tests all start nodes with.

    `python -m` (this interpreter) rather than the console script: it works
    before `pip install` and never picks up another installation. Metrics,
    when on, bind to loopback only: a local node has no business listening
    on every interface.
    """
    command = [
        sys.executable,
        "-m",
        "network.cli",
        "node",
        "run",
        "--home",
        str(home),
        "--genesis",
        str(genesis),
        "--broker",
        broker_url,
    ]
    if name is not None:
        command += ["--name", name]
    command += ["--log", str(log), "--behaviour", behaviour]
    if metrics_port:
        command += ["--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1"]
    if mqtt_protocol:
        command += ["--mqtt-protocol", mqtt_protocol]
    for key_file in key_files:
        command += ["--key", str(key_file)]
    if mqtt_username is not None:
        command += ["--mqtt-username", mqtt_username]
    if mqtt_password_file is not None:
        command += ["--mqtt-password-file", str(mqtt_password_file)]
    return command


def node_command(
    layout: Layout,
    name: str,
    broker_url: str,
    metrics_port: int,
    behaviour: str,
    mqtt_protocol: str | None,
) -> list[str]:
    """The argv of testnet node `name`: its files where `layout` puts them."""
    return node_argv(
        home=layout.home(name),
        genesis=layout.genesis,
        broker_url=broker_url,
        log=layout.log(name),
        name=name,
        metrics_port=metrics_port,
        behaviour=behaviour,
        mqtt_protocol=mqtt_protocol,
    )


def spawn_node(layout: Layout, node: NodeProc) -> subprocess.Popen[bytes]:
    """Start the node's recorded command in its own session, output appended to node.out."""
    output = layout.output(node.name)
    output.parent.mkdir(parents=True, exist_ok=True)
    layout.logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    with open(output, "ab") as out:
        out.write(
            f"--- posnet testnet: starting {node.name} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode()
        )
        out.flush()
        return subprocess.Popen(
            node.command,
            cwd=layout.home(node.name),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def describe_exit(code: int | None) -> str:
    """`exit code 1`, `killed by SIGKILL`, or `exit code unknown` for a process that was not our child."""
    if code is None:
        return "exit code unknown"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def output_tail(layout: Layout, name: str, lines: int = 5) -> list[str]:
    """The last lines a node printed: usually the reason it died."""
    return output_tail_of(layout.output(name), lines)


def output_tail_of(path: Path, lines: int = 5) -> list[str]:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return text[-lines:]


# ------------------------------------------------------------------ fault commands


def kill_node(layout: Layout, name: str) -> NodeProc:
    """SIGKILL: the crash a real machine has, with no chance to flush or say goodbye."""
    with locked_state(layout) as state:
        node = state.node(name)
        if process_state(node.pid, node.command) == "dead":
            raise TestnetError(f"{name} is not running (status {node.status})")
        node.status = KILLED  # recorded before the signal, so the orchestrator reads it as deliberate
    signal_process(node.pid, node.command, signal.SIGKILL)
    _wait_dead(node.pid, node.command, 5.0)
    return node


def pause_node(layout: Layout, name: str) -> NodeProc:
    """SIGSTOP: the process keeps its sockets but stops answering, like a long GC pause or a hung VM."""
    with locked_state(layout) as state:
        node = state.node(name)
        current = process_state(node.pid, node.command)
        if current != "alive":
            raise TestnetError(
                f"{name} is {current if current != 'dead' else 'not running'}; cannot pause it"
            )
        signal_process(node.pid, node.command, signal.SIGSTOP)
        node.status = PAUSED
    return node


def resume_node(layout: Layout, name: str) -> NodeProc:
    """SIGCONT a paused node."""
    with locked_state(layout) as state:
        node = state.node(name)
        current = process_state(node.pid, node.command)
        if current != "paused":
            raise TestnetError(f"{name} is {current if current != 'dead' else 'not running'}, not paused")
        signal_process(node.pid, node.command, signal.SIGCONT)
        node.status = RUNNING
    return node


def restart_node(layout: Layout, name: str, behaviour: str | None = None) -> NodeProc:
    """Stop the node if it runs (SIGTERM, then SIGKILL), then start its recorded command again.

    With `behaviour`, the recorded command line (and so every later restart)
    switches to that `--behaviour` first.
    """
    if behaviour is not None and behaviour not in BEHAVIOURS:
        raise TestnetError(f"behaviour {behaviour!r}: must be one of {', '.join(BEHAVIOURS)}")
    with locked_state(layout) as state:
        node = state.node(name)
        _require_running(layout, state)
        node.status = RESTARTING
        old_pid, old_command = node.pid, list(node.command)
        if behaviour is not None:
            node.behaviour = behaviour
            node.command = with_behaviour(node.command, behaviour)
            node.was_byzantine = node.was_byzantine or behaviour != "honest"
    stop_processes([(old_pid, old_command, None)])
    _wait_dead(old_pid, old_command, STOP_TIMEOUT_S)
    process = spawn_node(layout, node)
    with locked_state(layout) as state:
        node = state.node(name)
        node.pid, node.status, node.exit_code = process.pid, RUNNING, None
        node.restarts += 1
    return node


def _require_running(layout: Layout, state: TestnetState) -> None:
    if not state.supervisor_pid or process_state(state.supervisor_pid, state.supervisor_command) == "dead":
        raise TestnetError(f"the testnet in {layout.root} is not running; start it with `posnet testnet up`")


def with_behaviour(command: Sequence[str], behaviour: str) -> list[str]:
    """`command` with its `--behaviour` value replaced (or added)."""
    out = list(command)
    if "--behaviour" in out[:-1]:
        out[out.index("--behaviour") + 1] = behaviour
    else:
        out += ["--behaviour", behaviour]
    return out


def behave(layout: Layout, node: str, mode: str) -> NodeProc:
    """Restart a running testnet's node as `honest`, `equivocate` or `silent`; later restarts keep it.

    A restart rather than a signal: behaviour is fixed on the node's command
    line, which is also what makes it survive `restart`.
    """
    return restart_node(layout, node, behaviour=mode)


def _wait_dead(pid: int | None, command: Sequence[str] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_state(pid, command) != "dead":
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ------------------------------------------------------------------ network faults


def partition(layout: Layout, groups: Sequence[Sequence[str]]) -> NetworkFaults:
    """Split the nodes into islands that cannot reach each other; nodes not named join the first group.

    The first group keeps the main broker, every further group gets an island
    broker of its own; a node that changes island loses its connection and
    reconnects into the new one. Replaces any earlier partition; delays and
    drops stay.
    """
    names = _node_names(layout)
    islands = [list(group) for group in groups]
    if len(islands) < 2:
        raise TestnetError("a partition needs at least two groups, e.g. `v1,v2 v3,v4`")
    seen: set[str] = set()
    for group in islands:
        if not group:
            raise TestnetError("a partition group is empty")
        for name in group:
            _known(names, name)
            if name in seen:
                raise TestnetError(f"{name} is named in two partition groups")
            seen.add(name)
    islands[0] += [name for name in names if name not in seen]

    def change(faults: NetworkFaults) -> None:
        faults.groups = islands

    return _change_faults(layout, change)


def heal(layout: Layout) -> NetworkFaults:
    """One network again: every node back on the main broker; every delay and drop cleared."""

    def change(faults: NetworkFaults) -> None:
        faults.groups, faults.links = [], {}

    return _change_faults(layout, change)


def delay(layout: Layout, node: str, ms: int) -> NetworkFaults:
    """Hold every chunk between `node` and its broker for `ms` milliseconds, both ways (0 = none)."""
    _known(_node_names(layout), node)
    whole = isinstance(ms, int | float) and not isinstance(ms, bool) and float(ms).is_integer()
    if not whole or not 0 <= ms <= netfaults.MAX_DELAY_MS:
        raise TestnetError(f"delay {ms!r}: must be a whole number of ms in 0..{netfaults.MAX_DELAY_MS}")

    def change(faults: NetworkFaults) -> None:
        faults.links[node] = netfaults.LinkFaults(int(ms), faults.link(node).drop)
        _forget_inactive(faults, node)

    return _change_faults(layout, change)


def drop(layout: Layout, node: str, rate: float) -> NetworkFaults:
    """Lose each MQTT PUBLISH between `node` and its broker with probability `rate`, both ways (0 = none)."""
    _known(_node_names(layout), node)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
        raise TestnetError(f"drop rate {rate!r}: must be a number in 0..1 (e.g. 0.3)")

    def change(faults: NetworkFaults) -> None:
        faults.links[node] = netfaults.LinkFaults(faults.link(node).delay_ms, float(rate))
        _forget_inactive(faults, node)

    return _change_faults(layout, change)


def _forget_inactive(faults: NetworkFaults, node: str) -> None:
    if not faults.link(node).active:
        faults.links.pop(node, None)


def _node_names(layout: Layout) -> list[str]:
    return list(read_state(layout).nodes)


def _known(names: Sequence[str], name: str) -> None:
    if name not in names:
        raise TestnetError(f"unknown node {name!r}; this testnet has {', '.join(names)}")


def _change_faults(layout: Layout, change: Callable[[NetworkFaults], None]) -> NetworkFaults:
    """Edit DIR/faults.json under the lock, then wait until the relay has made it real.

    If the relay cannot apply it (an island broker does not start), the file
    goes back to what was in force, so the next command starts from the truth.
    """
    with testnet_lock(layout):
        state = read_state(layout)
        relay = _running_relay(layout, state)
        before = read_requested_faults(layout)
        after = NetworkFaults.from_json(before.to_json())
        change(after)
        after.generation = before.generation + 1
        netfaults.write_faults(layout.root, after)
        try:
            _await_applied(layout, relay, after.generation)
        except TestnetError:
            before.generation = after.generation + 1
            netfaults.write_faults(layout.root, before)
            raise
    return after


def read_requested_faults(layout: Layout) -> NetworkFaults:
    try:
        return netfaults.read_faults(layout.root)
    except ValueError as exc:
        raise TestnetError(str(exc)) from None


def _running_relay(layout: Layout, state: TestnetState) -> RelayInfo:
    _require_running(layout, state)
    relay = state.relay
    if relay is None:
        raise TestnetError(
            f"the testnet in {layout.root} runs without the fault relay (--no-netfaults); "
            "restart `up` without that option for network faults"
        )
    if process_state(relay.pid, relay.command) == "dead":
        raise TestnetError(f"the network-fault relay of {layout.root} is not running; see {relay.log}")
    return relay


def _await_applied(layout: Layout, relay: RelayInfo, generation: int) -> None:
    deadline = time.monotonic() + FAULT_APPLY_TIMEOUT_S
    while time.monotonic() < deadline:
        applied = netfaults.read_applied(layout.root)
        if applied and applied.get("pid") == relay.pid and applied.get("generation", -1) >= generation:
            if applied.get("error"):
                raise TestnetError(f"the relay could not apply it: {applied['error']}")
            return
        if process_state(relay.pid, relay.command) == "dead":
            raise TestnetError(f"the network-fault relay exited; see {relay.log}")
        time.sleep(0.05)
    raise TestnetError(
        f"the relay did not apply the change within {FAULT_APPLY_TIMEOUT_S:.0f} s; see {relay.log}"
    )


def describe_link(faults: NetworkFaults, node: str, lost: int | None = None) -> str:
    """One node's network faults in a few words (`delay 200ms, drop 30%, group 2/2`), or ``-``.

    `lost`, the relay's count of dropped publishes, is shown beside an active drop.
    """
    parts = []
    link = faults.link(node)
    if link.delay_ms:
        parts.append(f"delay {link.delay_ms}ms")
    if link.drop:
        parts.append(f"drop {link.drop * 100:g}%" + ("" if lost is None else f" ({lost} lost so far)"))
    if len(faults.groups) > 1:
        parts.append(f"group {faults.group_of(node) + 1}/{len(faults.groups)}")
    return ", ".join(parts) or "-"


def describe_partition(faults: NetworkFaults) -> str:
    """`v1,v2 | v3,v4`, or `none`."""
    if len(faults.groups) < 2:
        return "none"
    return " | ".join(",".join(group) for group in faults.groups)


# ------------------------------------------------------------------ log streaming


class LogTail:
    """New complete lines of a growing file; a partial last line waits for its newline."""

    def __init__(self, path: Path, from_end: bool = True) -> None:
        self.path = path
        self.offset = path.stat().st_size if from_end and path.exists() else 0
        self._partial = b""

    def read_events(self) -> list[Event]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:  # truncated or replaced: start over
            self.offset, self._partial = 0, b""
        if size == self.offset:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read(size - self.offset)
        self.offset += len(chunk)
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        events = []
        for line in lines:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and "event" in event:
                    events.append(event)
        return events


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


def _start_broker(layout: Layout, spec: str) -> tuple[BrokerInfo, BrokerProcess | None]:
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


def _island_kind(broker: BrokerInfo) -> str:
    """Island brokers are the main broker's kind, so they speak the MQTT version the nodes do."""
    if broker.kind in ("mosquitto", "embedded"):
        return broker.kind
    return "mosquitto" if mosquitto_available() else "embedded"


def _start_relay(layout: Layout, broker: BrokerInfo, names: Sequence[str]) -> subprocess.Popen[bytes]:
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
        _island_kind(broker),
        "--exit-with-parent",
    ]
    for name in names:
        command += ["--listen", f"{name}={free_port()}"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
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


def _relay_info(layout: Layout, process: subprocess.Popen[bytes]) -> RelayInfo:
    applied = netfaults.read_applied(layout.root) or {}
    return RelayInfo(
        pid=process.pid,
        command=[str(a) for a in process.args],  # type: ignore[union-attr]
        ports={str(k): int(v) for k, v in applied.get("ports", {}).items()},
        log=str(layout.relay_log),
    )


def _port_free(port: int) -> bool:
    import socket

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


def _mqtt_protocol(kind: str, requested: str | None) -> str | None:
    """amqtt speaks 3.1.1 only; mosquitto gets MQTT 5; an external broker gets what was asked."""
    if requested:
        if kind == "embedded" and requested != "311":
            raise TestnetError("the embedded broker speaks MQTT 3.1.1 only: use --mqtt-protocol 311")
        return requested
    return {"embedded": "311", "mosquitto": "5"}.get(kind)


def _clear_leftovers(layout: Layout, echo: Echo) -> None:
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
        for pid, command in [(old.broker.pid, old.broker.command), *_relay_processes(layout, old)]
        if pid and process_state(pid, command) != "dead"
    ]
    if leftovers or stop_after:
        echo(
            f"stopping {len(leftovers)} node(s) and {len(stop_after)} broker/relay process(es) "
            "left over from an earlier run"
        )
        stop_processes(leftovers)
        stop_processes(stop_after)


def _relay_processes(layout: Layout, state: TestnetState) -> list[tuple[int | None, list[str] | None]]:
    """The relay and the island brokers it last reported (a SIGKILLed relay cannot stop them)."""
    if state.relay is None:
        return []
    applied = netfaults.read_applied(layout.root) or {}
    islands = [(i.get("pid"), i.get("command")) for i in applied.get("islands", {}).values()]
    return [(state.relay.pid, state.relay.command), *islands]


class Supervisor:
    """Runs one testnet in the foreground: start, watch, stream, stop, judge."""

    def __init__(self, config: UpConfig, echo: Echo = click.echo) -> None:
        self.config = config
        self.layout = Layout.of(config.directory)
        self._echo = echo
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.broker: BrokerProcess | None = None
        self.relay: subprocess.Popen[bytes] | None = None
        self.relay_failed = False
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

    def _start(self) -> None:
        layout, config = self.layout, self.config
        layout.root.mkdir(parents=True, exist_ok=True)
        _clear_leftovers(layout, self.echo)
        doc = prepare(layout, config.validators, config.chain_id, config.slot_ms)
        names = [v.name for v in doc.validators]
        unknown = sorted(set(config.behaviours) - set(names))
        if unknown:
            raise TestnetError(
                f"--behaviour names unknown validator {unknown[0]}; validators are {names[0]}..{names[-1]}"
            )
        ports = metrics_ports(len(names), config.base_metrics_port)
        info, self.broker = _start_broker(layout, config.broker)
        protocol = _mqtt_protocol(info.kind, config.mqtt_protocol)
        relay = None
        urls = dict.fromkeys(names, info.url)
        if config.netfaults:
            self.relay = _start_relay(layout, info, names)
            relay = _relay_info(layout, self.relay)
            urls = {name: f"mqtt://127.0.0.1:{relay.ports[name]}" for name in names}
        nodes = {}
        for name, port in zip(names, ports, strict=True):
            behaviour = config.behaviours.get(name, "honest")
            command = node_command(layout, name, urls[name], port, behaviour, protocol)
            nodes[name] = NodeProc(
                name=name,
                command=command,
                metrics_port=port,
                behaviour=behaviour,
                was_byzantine=behaviour != "honest",
            )
        self.state = TestnetState(
            chain_id=doc.chain_id,
            broker=info,
            nodes=nodes,
            relay=relay,
            supervisor_pid=os.getpid(),
            supervisor_command=_cmdline(os.getpid()),
        )
        layout.logs.mkdir(parents=True, exist_ok=True)
        self.tails = {name: LogTail(layout.log(name)) for name in names}
        pace = "fast" if doc.params.commit_wait_ms == 0 else f"slot {doc.params.commit_wait_ms} ms"
        self.echo(
            f"testnet {doc.chain_id}: {len(names)} validators ({pace}), {info.kind} broker {info.url}, "
            f"dir {layout.root}"
        )
        if relay is not None:
            self.echo(
                f"  network-fault relay: pid {relay.pid}, each node reaches the broker through its own port"
            )
        for node in nodes.values():
            process = spawn_node(layout, node)
            self.children[node.name] = process
            node.pid, node.status = process.pid, RUNNING
            note = "" if node.behaviour == "honest" else f", {node.behaviour}"
            self.echo(f"  {node.name}: pid {node.pid}, metrics :{node.metrics_port}{note}")
        write_state(layout, self.state)
        self.recorded = True
        self.echo("streaming finality logs; Ctrl-C stops the testnet" + self._duration_note())

    def _duration_note(self) -> str:
        return f" (or after {self.config.duration:g} s)" if self.config.duration else ""

    def _watch(self, started: float) -> None:
        duration = self.config.duration
        while not self.signals:
            self._stream()
            self._check_processes()
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
            self.echo(click.style(f"!! {self.failures[-1]}; log {broker.log_path}", fg="red", bold=True))
        if self.relay is not None and self.relay.poll() is not None and not self.relay_failed:
            self.relay_failed = True
            self.failures.append(f"the network-fault relay exited ({describe_exit(self.relay.returncode)})")
            self.echo(
                click.style(f"!! {self.failures[-1]}; log {self.layout.relay_log}", fg="red", bold=True)
            )

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
        self.echo(click.style(f"!! {self.failures[-1]}; last output:", fg="red", bold=True))
        for line in output_tail(self.layout, name):
            self.echo(f"   {line}")

    def _stop(self) -> None:
        """Nodes first (so they leave the broker cleanly), then the broker; record the outcome."""
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
                self.echo(f"stopping {len(live)} node(s)...")
            stop_processes(live, force=lambda: self.signals > 1)
        if self.relay is not None:  # after the nodes (they leave cleanly), before the broker
            stop_processes([(self.relay.pid, None, self.relay)], force=lambda: self.signals > 1)
        if self.broker is not None:
            self.broker.stop()
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
        for line in format_report(report, notes):
            self.echo(line)
        if not any(s.max_height for s in report.nodes.values()):
            self.echo(click.style("warning: no node finalized a block", fg="yellow"))
        for failure in self.failures:
            self.echo(click.style(f"failure: {failure}", fg="red"))
        return 0 if report.ok and not self.failures else 1


def run_up(config: UpConfig, echo: Echo = click.echo) -> int:
    """`posnet testnet up`: the exit code (0 clean, 1 a node died or safety broke)."""
    return Supervisor(config, echo).run()
