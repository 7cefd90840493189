"""Where a testnet directory keeps its files, and testnet.json: who runs where, read and written under a lock.

Layout of a testnet directory (everything a later command needs is in it, so
`kill`, `restart`, `status` and `check` work from any terminal):

    DIR/genesis.toml            the chain (created once, reused on restart)
    DIR/nodes/vI/key.json       validator vI's key (0600); vI's home
    DIR/nodes/vI/node.out       vI's stdout/stderr, appended across restarts
    DIR/logs/vI.jsonl           vI's event log (JSON lines), the source of every verdict
    DIR/nodes/pK/, logs/pK.jsonl  with `up --processes P`: process pK's home, store, output and log;
                                  it signs with the hosted validators' nodes/vI/key.json
    DIR/broker/                 broker config and log (island brokers of a partition under broker/island-I)
    DIR/testnet.json            who runs where: broker url/pid, relay, each node's pid and command line
    DIR/faults.json             network faults asked for (see network/testnet/relay.py)
    DIR/faults.applied.json     what the relay has applied, its island brokers and packet counters
    DIR/netfaults.log           the relay's log

testnet.json is rewritten atomically and read-modify-written under a file
lock: the orchestrator and the fault commands from other terminals both edit it.
A fault command records its intent (`killed`, `restarting`) *before* it
signals, so the orchestrator never mistakes a deliberate kill for a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from network.testnet import faultfile as netfaults
from network.testnet.errors import TestnetError
from network.testnet.placement import describe_hosts, host_of

STATE_VERSION = 1

# Node statuses in testnet.json. The first two mean "should be alive".
RUNNING, PAUSED = "running", "paused"
KILLED, RESTARTING, STOPPED, DIED = "killed", "restarting", "stopped", "died"


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
        """The key the node signs with (its owner's too, unless the testnet has cold keys)."""
        return self.home(name) / "key.json"

    def owner_key(self, name: str) -> Path:
        """With cold keys: the pool owner's key, outside the node's home (what `posnet tx` signs with)."""
        return self.root / "owners" / f"{name}.json"

    def account_key(self, index: int) -> Path:
        """A funded account's key (`testnet up --accounts N`), for `posnet testnet load` and by-hand transactions."""
        return self.root / "accounts" / f"a{index:02d}.json"

    def account_keys(self) -> list[Path]:
        return sorted((self.root / "accounts").glob("a*.json"))

    def rotation_keys(self, name: str) -> Path:
        """The folder a node reads new signing keys from (`posnet tx rotate-key`)."""
        return self.home(name) / "keys"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.jsonl"

    def output(self, name: str) -> Path:
        return self.home(name) / "node.out"


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
    validators: list[str] = field(default_factory=list)  # the validators it hosts; empty means [name]

    @property
    def hosted(self) -> list[str]:
        """The validators this process signs for (its own name when one process runs one validator)."""
        return list(self.validators) or [self.name]


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
    """testnet.json: the chain, its broker and relay, each node's process, and the `up` that owns them."""

    __test__ = False  # named Test...: tests that import it must not have pytest collect it

    chain_id: str
    broker: BrokerInfo
    nodes: dict[str, NodeProc]
    relay: RelayInfo | None = None
    supervisor_pid: int | None = None
    supervisor_command: list[str] | None = None
    started_at: float = field(default_factory=time.time)
    version: int = STATE_VERSION

    @property
    def hosts(self) -> dict[str, list[str]]:
        """Process name -> the validators it hosts (see network/testnet/placement.py)."""
        return {name: node.hosted for name, node in self.nodes.items()}

    def node(self, name: str) -> NodeProc:
        """The process named `name`, or the one hosting validator `name`: faults name either."""
        process = host_of(self.hosts, name)
        if process is None:
            raise TestnetError(f"unknown node {name!r}; this testnet has {describe_hosts(self.hosts)}")
        return self.nodes[process]

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


def no_testnet(layout: Layout) -> TestnetError:
    """The error of a command that needs a testnet where none was started."""
    return TestnetError(
        f"{layout.state} not found: start a testnet there first with `posnet testnet up --dir {layout.root}`"
    )


def read_state(layout: Layout) -> TestnetState:
    """The recorded testnet; TestnetError with a hint when there is none."""
    try:
        raw = json.loads(layout.state.read_text())
        return TestnetState.from_json(raw)
    except FileNotFoundError:
        raise no_testnet(layout) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise TestnetError(f"{layout.state}: unreadable ({type(exc).__name__}: {exc})") from None


def write_state(layout: Layout, state: TestnetState) -> None:
    """Atomic replace, so a reader in another terminal never sees half a file."""
    tmp = layout.state.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    os.replace(tmp, layout.state)


@contextlib.contextmanager
def testnet_lock(layout: Layout) -> Iterator[None]:
    """The exclusive lock every read-modify-write of the directory's state files takes.

    The directory must exist: the lock is taken by commands that act on a
    testnet, and one pointed at a mistyped --dir must refuse without leaving
    a directory (and a lock file in it) behind. `up` creates it first.
    """
    if not layout.root.is_dir():
        raise no_testnet(layout)
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
