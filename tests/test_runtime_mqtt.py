"""Real node processes over a real broker: finality, crashes, restarts, broker loss.

Every test starts its own broker subprocess (mosquitto, or the embedded amqtt
one) on a free loopback port and real ``posnet node run`` processes; nothing
is mocked. What the nodes did is read from their JSON-lines logs, their
stores, and (for the double-sign check) from the broker itself. Waits are
generous bounded polls, never timing assertions, so a loaded 2-core machine
only makes them slower.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from network.testnet.logcheck import read_log
from network.transport.broker import (
    BrokerProcess,
    free_port,
    mosquitto_available,
    parse_broker_url,
    start_broker,
)
from node.core.admission import StatusMsg, admit
from node.core.codec import DecodeError
from node.core.genesis import Params
from node.core.messages import Kind, Proposal, Vote, parse_envelope, sha256
from node.core.safety import Step
from node.runtime.eventlog import EventLog, format_pretty
from node.runtime.store import Store
from node.runtime.testhooks import CRASH_AFTER_SIGN_RECORD_ENV
from tests.support.brokers import consensus_tap
from tests.support.nodes import REPO_ROOT, LocalNet, agree, make_localnet, running, wait_until

needs_mosquitto = pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed")


def min_height(net: LocalNet, names: list[str] | None = None) -> int:
    return min(node.height() for name, node in net.nodes.items() if names is None or name in names)


# --------------------------------------------------------------- raw broker watcher


Conflicts = dict[tuple[bytes, int, int, int], set[bytes | None]]


@contextlib.asynccontextmanager
async def consensus_watcher(broker: BrokerProcess, chain_id: str) -> AsyncIterator[Conflicts]:
    """Record every vote and proposal published on the chain's consensus topic, straight off the broker.

    Maps (signer, height, round, step) to the set of what was signed there:
    the block id for votes, the hash of the proposal body for proposals (the
    signing record's own notion of "the same proposal").
    """
    seen: Conflicts = {}
    async with consensus_tap(
        broker, chain_id, lambda payload: record_signed(seen, payload), "posnet-test-watcher"
    ):
        yield seen


def record_signed(seen: Conflicts, payload: bytes) -> None:
    try:
        envelope = parse_envelope(payload)
    except DecodeError:
        return
    if envelope.kind in (Kind.PREVOTE, Kind.PRECOMMIT):
        vote = Vote.from_body(envelope.kind, envelope.body, envelope.signature)
        key = (vote.validator, vote.height, vote.round, int(vote.kind))
        seen.setdefault(key, set()).add(vote.block_id)
    elif envelope.kind == Kind.PROPOSAL:
        proposal = Proposal.from_body(envelope.body, envelope.signature)
        key = (proposal.proposer, proposal.height, proposal.round, int(Step.PROPOSAL))
        seen.setdefault(key, set()).add(sha256(envelope.body))


def double_signs(seen: Conflicts) -> list[str]:
    return [
        f"{signer.hex()[:8]} signed {len(ids)} different things at (h, r, step) {(h, r, step)}"
        for (signer, h, r, step), ids in seen.items()
        if len(ids) > 1
    ]


# ------------------------------------------------------------------------ tests


@pytest.mark.integration
@needs_mosquitto
@pytest.mark.broker
async def test_four_nodes_finalize_one_chain_and_say_offline_when_stopped(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 4)
    with running(net):
        await wait_until(lambda: min_height(net) >= 12, what="all four nodes at height 12", net=net)
        codes = {}
        for name, node in net.nodes.items():
            codes[name] = node.terminate()
    assert codes == dict.fromkeys(net.nodes, 0), net.diagnostics()

    chain = agree(list(net.nodes.values()))
    assert set(range(1, 13)) <= set(chain)
    for node in net.nodes.values():
        finalized = node.events("finalized")
        assert [e["height"] for e in finalized] == list(range(1, len(finalized) + 1))
        for event in finalized:
            assert {"event", "node", "ts", "height", "round", "hash", "proposer", "latency_ms"} <= set(event)
            assert event["node"] == node.name and isinstance(event["ts"], float)
        kinds = [e["event"] for e in node.events()]
        assert kinds[0] == "started" and kinds[-1] == "stopped"
        # The store holds exactly what was logged as finalized.
        with Store(node.home / "node.sqlite3") as store:
            assert store.last_height() == max(node.finalized())
            for height, block_hash in node.finalized().items():
                stored = store.finalized(height)
                assert stored is not None and stored[0].hex() == block_hash

    # Each node left a retained, signed "offline" status behind.
    statuses = await retained_statuses(mosquitto, net)
    assert {name: status.online for name, status in statuses.items()} == dict.fromkeys(net.nodes, False)
    assert all(status.height >= 12 for status in statuses.values()), statuses  # where each one stopped


async def retained_statuses(broker: BrokerProcess, net: LocalNet) -> dict[str, StatusMsg]:
    """The retained status of every node, authenticated through admission."""
    from node.core.admission import AdmissionContext
    from node.core.genesis import load_genesis
    from node.core.state import genesis_state

    state = genesis_state(load_genesis(net.genesis_path))
    ctx = AdmissionContext(net.chain_id, state.public_keys, 1)
    host, port = parse_broker_url(broker.url)
    found: dict[str, StatusMsg] = {}
    async with aiomqtt.Client(host, port, identifier="posnet-test-status") as client:
        await client.subscribe(f"posnet/{net.chain_id}/status/+", qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                async for message in client.messages:
                    status = admit(bytes(message.payload), ctx)  # type: ignore[arg-type]
                    assert isinstance(status, StatusMsg), status
                    found[status.node] = status
                    if len(found) == len(net.nodes):
                        break
    return found


@pytest.mark.integration
@needs_mosquitto
@pytest.mark.broker
async def test_a_lone_validator_in_fast_mode_runs_its_chain_and_stays_responsive(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    """All the stake and no commit wait: it decides on its own messages, and every
    height still starts through the event loop, so the node keeps answering and
    stops on SIGTERM (it used to start the next height inside the same call)."""
    net = make_localnet(tmp_path / "net", mosquitto.url, 1, params=Params(commit_wait_ms=0), metrics=True)
    [node] = net.nodes.values()
    with running(net):
        await wait_until(lambda: node.height() >= 50, what="the lone validator at height 50", net=net)
        assert "posnet_" in node.metrics()  # the HTTP endpoint answers between heights
        later = node.height()
        await wait_until(lambda: node.height() > later + 20, what="20 more heights", net=net)
        assert node.terminate() == 0, net.diagnostics()
    chain = node.finalized()
    assert sorted(chain) == list(range(1, len(chain) + 1))


@pytest.mark.integration
@needs_mosquitto
@pytest.mark.broker
async def test_three_of_four_keep_finalizing_without_a_killed_node_which_then_catches_up(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 4)
    others = ["v1", "v2", "v3"]
    with running(net):
        await wait_until(lambda: min_height(net) >= 4, what="height 4", net=net)
        net.nodes["v4"].kill()
        killed_at = net.nodes["v4"].height()
        await wait_until(
            lambda: min_height(net, others) >= killed_at + 25, what="three nodes going on without v4", net=net
        )
        net.nodes["v4"].start()
        target = max(net.heights().values()) + 3
        await wait_until(lambda: net.nodes["v4"].height() >= target, what="v4 catching up", net=net)

    chain = agree(list(net.nodes.values()))
    v4 = net.nodes["v4"]
    assert set(v4.finalized()) == set(range(1, v4.height() + 1))
    assert all(v4.finalized()[h] == chain[h] for h in v4.finalized())
    # It caught up from peers' blocks (certificates verified), not by re-deciding them.
    via_sync = [e["height"] for e in v4.events("finalized") if e["via_sync"]]
    assert len(via_sync) >= 20, via_sync
    assert v4.events("synced")
    restarted = v4.events("started")[-1]
    assert restarted["height"] == killed_at or restarted["height"] == killed_at + 1


@pytest.mark.integration
@needs_mosquitto
@pytest.mark.broker
async def test_a_killed_node_restarts_from_its_newest_snapshot_and_finalizes_with_the_others(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 4)
    v4 = net.nodes["v4"]
    v4.extra_args = ["--snapshot-every", "5"]
    with running(net):
        await wait_until(lambda: v4.height() >= 17, what="v4 at height 17", net=net)
        v4.kill()
        killed_at = v4.height()
        v4.start()
        await wait_until(lambda: len(v4.events("started")) == 2, what="v4 started again", net=net)
        target = max(net.heights().values()) + 3
        await wait_until(lambda: v4.height() >= target, what="v4 finalizing again", net=net)
    restarted = v4.events("started")[-1]
    assert restarted["height"] >= killed_at
    snapshot = restarted["recovered_from"]
    assert snapshot % 5 == 0 and killed_at - 10 <= snapshot < restarted["height"], restarted
    assert restarted["replayed"] == restarted["height"] - snapshot
    assert v4.events("started")[0]["recovered_from"] == 0  # the first start had nothing to start from
    chain = agree(list(net.nodes.values()))
    assert all(v4.finalized()[h] == chain[h] for h in v4.finalized())


def records_until_prevote_after_own_proposal(net: LocalNet, victim: str, from_height: int) -> tuple[int, int]:
    """(n, height): the victim's n-th signing record is the prevote right after its own proposal at height.

    With every validator up, each height decides in round 0 and a validator
    records, in order, [its proposal if it proposes], its prevote, its
    precommit; the round-0 proposer of each height follows CometBFT's
    priorities, computed here exactly as the chain state does.
    """
    from node.core.genesis import load_genesis
    from node.core.selection import increment_proposer_priority, proposer_for_round
    from node.core.state import genesis_state

    priorities = genesis_state(load_genesis(net.genesis_path)).priorities
    address = net.keys[victim].address
    records = 0
    for height in range(1, 1000):
        proposes = proposer_for_round(priorities, 0) == address
        if proposes and height >= from_height:
            return records + 2, height
        records += 3 if proposes else 2
        priorities = increment_proposer_priority(priorities, 1)
    raise AssertionError(f"{victim} never proposes")


@pytest.mark.integration
@needs_mosquitto
@pytest.mark.broker
async def test_a_node_killed_between_its_signing_record_and_publishing_never_double_signs(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    """Three validators, all needed for a quorum. v3 proposes a block, and dies right after the mark
    of its prevote hits the disk, before that prevote is signed: the height stays open until v3 is
    back. Restarted, it must not propose anew (a new block would have a new timestamp: a second,
    conflicting proposal) but re-send the journaled one, and everything else it signs must agree
    with what it published before the crash. The broker's copy of every vote and proposal is checked."""
    net = make_localnet(tmp_path / "net", mosquitto.url, 3)
    victim, v3 = net.nodes["v3"], net.keys["v3"].address
    crash_after, crash_height = records_until_prevote_after_own_proposal(net, "v3", from_height=3)
    async with consensus_watcher(mosquitto, net.chain_id) as seen:
        try:
            net.start(["v1", "v2"])
            victim.start(env={CRASH_AFTER_SIGN_RECORD_ENV: str(crash_after)})
            await wait_until(
                lambda: not victim.running, what="v3 killing itself after a signing record", net=net
            )
            assert victim.process is not None and victim.process.returncode == -9, victim.stderr()
            with Store(victim.home / "node.sqlite3") as store:
                mark = store.last_signed(v3)
            assert mark is not None  # the record of a signature that was never made nor published
            if (mark.height, mark.round, mark.step) != (crash_height, 0, Step.PREVOTE):
                print(f"round timeouts shifted the crash point: crashed at {mark}")  # still a valid run

            await asyncio.sleep(1.5)  # v1 and v2 wait at the open height meanwhile
            assert max(net.nodes["v1"].height(), net.nodes["v2"].height()) <= mark.height
            published_before = {key: set(ids) for key, ids in seen.items() if key[0] == v3}

            victim.start()
            target = mark.height + 4
            await wait_until(
                lambda: min_height(net) >= target, what="all three deciding past the crash", net=net
            )
        finally:
            net.stop()
        await asyncio.sleep(0.5)  # let the last publications reach the watcher

    assert not double_signs(seen)
    agree(list(net.nodes.values()))
    signed_after = {key for key, ids in seen.items() if key[0] == v3 and ids != published_before.get(key)}
    assert any(key[1] == mark.height for key in signed_after), "v3 did not sign at the open height again"
    # At the crash position itself v3 published at most the one thing its record allows.
    at_mark = seen.get((v3, mark.height, mark.round, int(mark.step)), set())
    assert at_mark <= {mark.block_id} if mark.step != Step.PROPOSAL else len(at_mark) <= 1


@pytest.mark.integration
@needs_mosquitto
@pytest.mark.broker
async def test_the_network_finalizes_again_after_the_broker_is_killed_and_restarted(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 4)
    with running(net):
        await wait_until(lambda: min_height(net) >= 5, what="height 5", net=net)
        mosquitto.stop(kill=True)
        await wait_until(
            lambda: all(n.events("broker_disconnected") for n in net.nodes.values()),
            what="every node noticing the broker is gone",
            net=net,
        )
        outage_height = max(net.heights().values())
        mosquitto.start()  # same port
        await wait_until(
            lambda: min_height(net) >= outage_height + 8, what="finality after the broker restart", net=net
        )
    agree(list(net.nodes.values()))
    for node in net.nodes.values():
        assert any(e["reconnect"] for e in node.events("broker_connected")), node.name


@pytest.mark.integration
@pytest.mark.broker
async def test_four_nodes_finalize_over_the_embedded_broker(tmp_path: Path) -> None:
    broker = start_broker("embedded", workdir=tmp_path / "broker")
    try:
        net = make_localnet(tmp_path / "net", broker.url, 4, protocol=311)
        with running(net):
            await wait_until(lambda: min_height(net) >= 8, what="height 8 over amqtt", net=net)
        chain = agree(list(net.nodes.values()))
        assert set(range(1, 9)) <= set(chain)
    finally:
        broker.stop(kill=True)


@pytest.mark.integration
@needs_mosquitto
@pytest.mark.broker
async def test_one_node_process_can_host_two_validators(mosquitto: BrokerProcess, tmp_path: Path) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 4)
    shared = net.nodes["v3"]
    shared.key_files = [shared.home / "key.json", net.nodes["v4"].home / "key.json"]
    del (
        net.nodes["v1"],
        net.nodes["v4"],
    )  # v2, v3 and v4 are 3 of 4: nothing is final unless v3's process signs as v4 too
    with running(net):
        await wait_until(lambda: min_height(net) >= 6, what="height 6 with v3 and v4 in one process", net=net)
    chain = agree(list(net.nodes.values()))
    assert set(range(1, 7)) <= set(chain)


@pytest.mark.integration
@needs_mosquitto
@pytest.mark.broker
async def test_an_equivocating_validator_is_caught_slashed_and_tombstoned(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 4)
    net.nodes["v4"].behaviour = "equivocate"
    honest = [net.nodes[name] for name in ("v1", "v2", "v3")]

    def tombstoned_everywhere() -> bool:
        return all(any(e["validator"] == "v4" for e in node.events("tombstoned")) for node in honest)

    with running(net):
        await wait_until(tombstoned_everywhere, what="v4 tombstoned in every honest log", net=net)
        height = max(net.heights().values())
        await wait_until(
            lambda: min_height(net, ["v1", "v2", "v3"]) >= height + 3, what="finality without v4"
        )
    agree(honest)
    for node in honest:
        assert node.events("evidence") or node.events("slashed"), node.name
        assert any(e["validator"] == "v4" for e in node.events("slashed")), node.name


@dataclass
class PasswordMosquitto(BrokerProcess):
    """mosquitto refusing anonymous clients: users from a mosquitto_passwd file."""

    password_file: Path | None = None

    def command(self) -> list[str]:
        argv = super().command()  # writes the standard config
        config = self.workdir / "mosquitto.conf"
        text = config.read_text().replace("allow_anonymous true", "allow_anonymous false")
        # Started as root, mosquitto drops to user "mosquitto", who cannot read a private test directory.
        user = "user root\n" if os.geteuid() == 0 else ""
        config.write_text(f"{text}password_file {self.password_file}\n{user}")
        return argv

    def _wait_ready(self) -> None:
        """Ready when it answers CONNECT at all (our anonymous probe is refused, by design)."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=1) as sock,
            ):
                sock.sendall(b"\x10\x11\x00\x04MQTT\x04\x02\x00\x0a\x00\x05probe")
                if sock.recv(4)[:1] == b"\x20":
                    return
            time.sleep(0.05)
        raise AssertionError(f"password broker did not come up: {self.log_tail()}")


@pytest.mark.integration
@needs_mosquitto
@pytest.mark.broker
async def test_a_node_authenticates_to_a_broker_that_refuses_anonymous_clients(tmp_path: Path) -> None:
    password_file = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(password_file), "v1", "s3cret"],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/usr/sbin:/bin"},
    )
    password_file.chmod(0o600)
    broker = PasswordMosquitto(
        "mosquitto", "127.0.0.1", free_port(), tmp_path / "broker", password_file=password_file
    )
    broker.start()
    try:
        net = make_localnet(tmp_path / "net", broker.url, 1)
        node = net.nodes["v1"]
        node.start()  # no credentials: refused, retried, never connected
        await wait_until(lambda: "authoriz" in node.stderr().lower(), what="the broker refusing v1", net=net)
        assert not node.events("broker_connected")
        node.terminate()

        secret = tmp_path / "v1-password"
        secret.write_text("s3cret\n")
        node.mqtt_username, node.mqtt_password_file = "v1", secret
        node.start()
        await wait_until(
            lambda: bool(node.events("broker_connected")), what="v1 connecting with a password", net=net
        )
        assert node.terminate() == 0
    finally:
        broker.stop(kill=True)


# ---------------------------------------------------------------- CLI and logs


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "network.cli", "node", "run", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.integration
def test_bad_inputs_end_the_node_with_one_line_naming_them_and_exit_2(tmp_path: Path) -> None:
    net = make_localnet(tmp_path / "net", "mqtt://127.0.0.1:1", 1)
    home, genesis = str(net.nodes["v1"].home), str(net.genesis_path)
    stranger = make_localnet(tmp_path / "other", "mqtt://127.0.0.1:1", 1, chain_id="other-chain")
    cases = {
        "genesis": [
            "--home",
            home,
            "--genesis",
            str(tmp_path / "missing.toml"),
            "--broker",
            "mqtt://127.0.0.1:1",
        ],
        "broker URL": ["--home", home, "--genesis", genesis, "--broker", "http://127.0.0.1:1"],
        "key file": [
            "--home",
            str(tmp_path / "nobody"),
            "--genesis",
            genesis,
            "--broker",
            "mqtt://127.0.0.1:1",
        ],
        "not a validator": [
            "--home",
            str(stranger.nodes["v1"].home),
            "--genesis",
            genesis,
            "--broker",
            "mqtt://127.0.0.1:1",
        ],
    }
    for what, args in cases.items():
        result = run_cli(*args)
        assert result.returncode == 2, (what, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and what in lines[0], (what, result.stderr)
        assert "Traceback" not in result.stderr


def test_event_log_writes_one_json_object_per_line_and_pretty_lines_only_color_on_a_tty(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v1.jsonl"
    log = EventLog("v1", path)
    log.emit(
        {"event": "finalized", "height": 3, "round": 1, "hash": "ab" * 32, "proposer": "v2", "latency_ms": 41}
    )
    log.emit({"event": "round_timeout", "height": 4, "round": 0, "step": "propose"})
    log.close()
    with open(path, "a") as torn:
        torn.write('{"event": "finalized", "hei')  # a node killed mid-write
    events = read_log(path).events
    assert [e["event"] for e in events] == ["finalized", "round_timeout"]
    assert list(events[0])[:3] == ["event", "node", "ts"] and isinstance(events[0]["ts"], float)
    assert all(json.loads(line) for line in path.read_text().splitlines()[:2])

    line = format_pretty(events[0])
    assert "finalized" in line and "h=3" in line and "r=1" in line and "v2" in line and "41ms" in line
    assert "\x1b[" not in line and "\x1b[" in format_pretty(events[0], color=True)

    plain = io.StringIO()  # not a TTY: JSON lines, no color
    EventLog("v2", stream=plain).emit({"event": "started", "height": 0})
    assert json.loads(plain.getvalue())["node"] == "v2"

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    EventLog("v3", stream=terminal).emit({"event": "slashed", "validator": "v4", "height": 9, "amount": 50})
    assert "\x1b[" in terminal.getvalue() and "v4" in terminal.getvalue()
