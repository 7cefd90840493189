"""What a user of `posnet testnet` meets with real nodes on a real broker (issue 28's CLI items).

Each test starts a real testnet (`posnet testnet up` as a subprocess, real
mosquitto or embedded broker, real keys and signatures) and drives it only
through `posnet ...` commands and the nodes' logs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from network.testnet.brokercheck import live_node
from network.testnet.layout import read_state
from network.testnet.processes import process_state
from network.transport.broker import BrokerProcess
from node.core.envelopes import status_bytes
from node.core.keys import Keypair
from tests.support.user_testnet import REPO_ROOT, running_testnet

# ------------------------------------------------------------------ a shared broker


def test_a_status_counts_as_live_only_when_online_recent_and_of_this_chain() -> None:
    key = Keypair.generate()
    now = int(time.time() * 1000)

    def status(online: bool = True, ts_ms: int = now, chain: str = "c1") -> bytes:
        return status_bytes(chain, "v1", 5, 0, online, key, ts_ms=ts_ms)

    assert live_node(status(), "c1", now) == "v1"
    assert live_node(status(online=False), "c1", now) is None  # the last will of a node that left
    assert live_node(status(ts_ms=now - 60_000), "c1", now) is None  # a testnet long gone
    assert live_node(status(chain="c2"), "c1", now) is None
    assert live_node(b"\x00garbage", "c1", now) is None


@pytest.mark.integration
@pytest.mark.broker
def test_up_refuses_a_broker_that_carries_a_running_testnet_of_its_chain(
    tmp_path: Path, mosquitto: BrokerProcess
) -> None:
    """The second `up` of chain posnet-local on one broker used to knock the first's nodes off."""
    args = ["--validators", "2", "--slot-ms", "200", "--quiet", "--no-netfaults", "--broker", mosquitto.url]
    with running_testnet(tmp_path, tmp_path / "first", ["v1", "v2"], [*args, "--duration", "600"]) as first:
        first.wait_for(
            lambda: min(first.height("v1"), first.height("v2")) >= 2, "the first testnet finalizes"
        )
        connects = len(first.events("v1", "broker_connected")) + len(first.events("v2", "broker_connected"))
        second = first.posnet(
            "testnet", "up", "--dir", tmp_path / "second", *args, "--duration", "5", check=2
        )
        assert "already carries a running testnet of chain 'posnet-local' (v1, v2 online)" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1, second.stderr
        assert not (tmp_path / "second" / "testnet.json").exists()
        height = first.height("v1")
        first.wait_for(lambda: first.height("v1") >= height + 2, "the first testnet keeps finalizing")
        again = len(first.events("v1", "broker_connected")) + len(first.events("v2", "broker_connected"))
        assert again == connects, "a node of the first testnet was knocked off the broker"
        assert not first.events("v1", "broker_disconnected") and not first.events("v2", "broker_disconnected")


# ------------------------------------------------------------------ --quiet


@pytest.mark.integration
@pytest.mark.broker
def test_quiet_up_prints_only_the_summary(tmp_path: Path) -> None:
    """No header (chain, broker, relay, each node's pid), no events, no "stopping": the summary alone."""
    proc = subprocess.run(
        [sys.executable, "-m", "network.cli", "testnet", "up", "--dir", str(tmp_path / "net"), "--quiet",
         "--validators", "1", "--slot-ms", "100", "--duration", "4"],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("summary after"), proc.stdout
    assert "safety OK" in proc.stdout and proc.stderr == ""
    for needle in ("testnet posnet-local", "relay", "pid", "streaming", "stopping", "finalized h"):
        assert needle not in proc.stdout, proc.stdout


# ------------------------------------------------------------------ account names, and down


@pytest.mark.integration
@pytest.mark.broker
def test_transfer_to_an_account_by_name_then_down_stops_the_testnet(tmp_path: Path) -> None:
    directory = tmp_path / "net"
    up = ["--validators", "2", "--accounts", "2", "--slot-ms", "200", "--quiet", "--broker", "mosquitto"]
    with running_testnet(tmp_path, directory, ["v1", "v2"], [*up, "--duration", "600"]) as net:
        net.wait_for(lambda: min(net.height("v1"), net.height("v2")) >= 2, "the testnet finalizes")
        key = net.layout.account_key(1)
        sent = net.posnet("tx", "transfer", "a02", "7", "--dir", directory, "--key", key, "--timeout", "60")
        assert "applied" in sent.stdout, sent.stdout
        balance = net.posnet("query", "balance", "a02", "--dir", directory)
        assert "1000007" in balance.stdout.replace(",", "").replace("_", ""), balance.stdout
        pid = net.process.pid
        stopped = net.posnet("testnet", "down", "--dir", directory)
        assert stopped.stdout.strip() == f"stopped the testnet in {net.layout.root} (up pid {pid} exited)"
        assert net.process.poll() is not None  # `up` has exited by the time `down` returns
        assert "summary after" in net.output.read_text()  # it stopped as after a Ctrl-C, with its verdict
        state = read_state(net.layout)
        assert state.supervisor_pid is None
        assert all(process_state(n.pid, n.command) == "dead" for n in state.nodes.values())
        again = net.posnet("testnet", "down", "--dir", directory)
        assert again.stdout.strip() == f"nothing to stop: no testnet is running in {net.layout.root}"


# ------------------------------------------------------------------ --auto-unjail


@pytest.mark.integration
@pytest.mark.broker
def test_auto_unjail_brings_a_jailed_validator_back_after_its_jail(tmp_path: Path) -> None:
    """Paused long enough to be jailed, resumed: with --auto-unjail it is active again once the jail ends."""
    names = ["v1", "v2", "v3", "v4"]
    up = ["--validators", "4", "--slot-ms", "200", "--quiet", "--broker", "mosquitto", "--auto-unjail"]
    with running_testnet(tmp_path, tmp_path / "net", names, [*up, "--duration", "900"], wait_s=180) as net:

        def penalty(kind: str) -> list[dict[str, object]]:
            return [e for e in net.events("v1", kind) if e.get("validator") == "v4"]

        net.wait_for(lambda: net.height("v1") >= 3, "the testnet finalizes")
        net.posnet("testnet", "pause", "v4", "--dir", net.directory)
        net.wait_for(lambda: bool(penalty("jailed")), "v4 jailed for downtime")
        net.posnet("testnet", "resume", "v4", "--dir", net.directory)
        net.wait_for(lambda: bool(penalty("unjailed")), "v4 unjailed by the auto-unjail")
        assert penalty("unjailed")[0]["height"] > penalty("jailed")[0]["height"]
        assert "auto-unjail: sent v4's unjail" in net.output.read_text()
        pool = net.posnet("query", "pool", "v4", "--dir", net.directory, "--json")
        assert json.loads(pool.stdout)["pool"]["status"] == "active", pool.stdout
