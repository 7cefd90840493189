"""Helpers to run real ``posnet node run`` processes in tests.

A `LocalNet` is a directory with a genesis, one HOME (``key.json``) per
validator, and one JSON-lines log per node; nodes are real child processes
of the test, started with the command line the testnet orchestrator builds
(``network.testnet.processes.node_argv``), and killed with real signals. Everything
observed about them comes from their logs, their metrics endpoint, or the
broker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from network.testnet.logcheck import read_log
from network.testnet.processes import GENESIS_WAIT_S, node_argv
from network.transport.broker import free_port
from node.core.genesis import Params, genesis_to_toml, make_genesis
from node.core.keys import Keypair, save_key_file
from tests.support import waiting

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 90.0  # generous: these tests must pass on a loaded 2-core machine

TEST_PARAMS = Params(commit_wait_ms=100)
"""Slot pacing keeps a 4-node testnet from saturating two cores while tests watch it."""


@dataclass
class NodeProc:
    """One node process: its files, its command line, and the running child (if any)."""

    name: str
    home: Path
    log_path: Path
    genesis_path: Path
    broker_url: str
    metrics_port: int = 0
    protocol: int = 5
    behaviour: str = "honest"
    mqtt_username: str | None = None
    mqtt_password_file: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    key_files: list[Path] = field(default_factory=list)  # hosted validator keys; empty = HOME/key.json
    # at genesis, wait for the others (the testnet's own default): a node that boots late under
    # load is then never jailed for it, which could stall a test that kills another node later
    genesis_wait_s: float = GENESIS_WAIT_S
    extra_args: list[str] = field(
        default_factory=list
    )  # more `posnet node run` options, after the usual ones
    process: subprocess.Popen[bytes] | None = None
    stderr_path: Path | None = None

    def argv(self) -> list[str]:
        """The exact ``posnet node run`` command line, from the testnet's own definition."""
        return node_argv(
            home=self.home,
            genesis=self.genesis_path,
            broker_url=self.broker_url,
            log=self.log_path,
            metrics_port=self.metrics_port,
            behaviour=self.behaviour,
            mqtt_protocol=str(self.protocol),
            key_files=self.key_files,
            mqtt_username=self.mqtt_username,
            mqtt_password_file=self.mqtt_password_file,
            genesis_wait_s=self.genesis_wait_s,
        ) + list(self.extra_args)

    def start(self, env: Mapping[str, str] | None = None) -> None:
        """Spawn the node (again); ``env`` adds variables for this start only."""
        assert not self.running, f"{self.name} is already running"
        child_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **self.extra_env, **(env or {})}
        self.stderr_path = self.home / "stderr.log"
        with open(self.stderr_path, "ab") as err:
            self.process = subprocess.Popen(
                self.argv(), cwd=REPO_ROOT, env=child_env, stdin=subprocess.DEVNULL, stdout=err, stderr=err
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no goodbye, no offline status (the broker's last will says it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait for the graceful stop; SIGKILL if it hangs. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.process.returncode

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in read_log(self.log_path).events if kind is None or e["event"] == kind]

    def finalized(self) -> dict[int, str]:
        """height -> block hash, from this node's finalized events (across restarts)."""
        return {e["height"]: e["hash"] for e in self.events("finalized")}

    def height(self) -> int:
        """The highest height this node logged as finalized (0 if none)."""
        return max(self.finalized(), default=0)

    def stderr(self) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def metrics(self) -> str:
        """The node's /metrics text (the node must run with a metrics port)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()


@dataclass
class LocalNet:
    """A genesis plus N node directories under ``root``; nodes are started explicitly."""

    root: Path
    chain_id: str
    genesis_path: Path
    keys: dict[str, Keypair]
    nodes: dict[str, NodeProc]

    def start(self, names: list[str] | None = None) -> None:
        for name in names or list(self.nodes):
            self.nodes[name].start()

    def stop(self) -> None:
        """Stop every node still running: SIGTERM all at once, then wait (SIGKILL stragglers)."""
        running = [node for node in self.nodes.values() if node.running]
        for node in running:
            assert node.process is not None
            node.process.send_signal(signal.SIGTERM)
        for node in running:
            node.terminate()

    def heights(self) -> dict[str, int]:
        return {name: node.height() for name, node in self.nodes.items()}

    def diagnostics(self) -> str:
        """What to print when a wait fails: heights, exit codes, stderr tails, last events."""
        lines = []
        for name, node in self.nodes.items():
            code = None if node.process is None else node.process.poll()
            lines.append(f"--- {name}: height {node.height()}, exit code {code}")
            tail = node.events()[-5:]
            lines += [f"    {event}" for event in tail]
            if node.stderr().strip():
                lines.append(f"    stderr: {node.stderr()[-1500:]}")
        return "\n".join(lines)


@contextlib.contextmanager
def running(net: LocalNet) -> Iterator[LocalNet]:
    """Start every node; stop whatever still runs afterwards, whatever happened."""
    try:
        net.start()
        yield net
    finally:
        net.stop()


def make_localnet(
    root: Path,
    broker_url: str,
    validators: int = 4,
    *,
    chain_id: str = "posnet-test",
    params: Params = TEST_PARAMS,
    protocol: int = 5,
    metrics: bool = False,
    stakes: dict[str, int] | None = None,
) -> LocalNet:
    """Write genesis, key files and node directories for ``validators`` nodes v1..vN (stakes 1000 unless named)."""
    names = [f"v{i}" for i in range(1, validators + 1)]
    keys = {name: Keypair.deterministic(f"{chain_id}/{name}") for name in names}
    genesis = make_genesis(chain_id, keys, params=params, stakes=stakes)
    root.mkdir(parents=True, exist_ok=True)
    genesis_path = root / "genesis.toml"
    genesis_path.write_text(genesis_to_toml(genesis))
    nodes = {}
    for name in names:
        home = root / name
        save_key_file(home / "key.json", name, keys[name])
        nodes[name] = NodeProc(
            name=name,
            home=home,
            log_path=root / "logs" / f"{name}.jsonl",
            genesis_path=genesis_path,
            broker_url=broker_url,
            metrics_port=free_port() if metrics else 0,
            protocol=protocol,
        )
    return LocalNet(root, chain_id, genesis_path, keys, nodes)


async def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float = WAIT_S,
    what: str = "condition",
    net: LocalNet | None = None,
    interval: float = 0.2,
) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` (with the net's diagnostics) after ``timeout``."""
    diagnostics = net.diagnostics if net is not None else None
    await waiting.wait_until(predicate, what, timeout, interval=interval, diagnostics=diagnostics)


def agree(nodes: list[NodeProc]) -> dict[int, str]:
    """The common chain of ``nodes``: asserts no height has two hashes; returns height -> hash."""
    chain: dict[int, str] = {}
    for node in nodes:
        for height, block_hash in node.finalized().items():
            seen = chain.setdefault(height, block_hash)
            assert seen == block_hash, f"height {height}: {node.name} finalized {block_hash}, another {seen}"
    return chain
