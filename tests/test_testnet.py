"""The local testnet: log verdicts, directory preparation, fault commands, and real runs.

Three layers, cheapest first:
- `network.testnet.logcheck` as pure functions over hand-written events;
- `network.testnet` (layout, setup, processes, perturb, supervisor) and its CLI
  against stand-in processes (`sleep`), so kill/pause/resume/restart are tested on real PIDs without a node runtime;
- end to end (`broker` mark): `posnet testnet up` as a subprocess with real
  node processes and a real broker, polled through the logs with generous
  timeouts and no timing asserts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from network.cli import cli
from network.testnet import logcheck
from network.testnet.errors import TestnetError
from network.testnet.layout import (
    DIED,
    KILLED,
    RUNNING,
    STOPPED,
    BrokerInfo,
    Layout,
    NodeProc,
    TestnetState,
    locked_state,
    read_state,
    write_state,
)
from network.testnet.logtail import LogTail
from network.testnet.processes import cmdline, process_state, signal_process, spawn_node, stop_processes
from network.testnet.services import metrics_ports
from network.testnet.setup import DEFAULT_CHAIN_ID, DEFAULT_SLOT_MS, prepare
from node.core.keys import load_key_file
from tests.support.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent
SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def fin(node: str, height: int, block_hash: str, **extra: Any) -> dict[str, Any]:
    event = {"event": "finalized", "node": node, "ts": 1000.0 + height, "height": height, "round": 0}
    event.update({"hash": block_hash, "proposer": "v1", "latency_ms": 40 + height, **extra})
    return event


def chain(node: str, heights: int, fork_at: int | None = None) -> list[dict[str, Any]]:
    return [fin(node, h, f"{'bad' if h == fork_at else 'h'}{h:04d}") for h in range(1, heights + 1)]


# ------------------------------------------------------------------ logcheck


def test_agreeing_logs_pass() -> None:
    report = logcheck.analyse({"v1": chain("v1", 10), "v2": chain("v2", 10), "v3": chain("v3", 7)})
    assert report.ok
    assert report.common_height == 7
    assert report.nodes["v1"].max_height == 10
    assert report.nodes["v3"].median_latency_ms == 44
    assert logcheck.format_report(report)[0].startswith("safety OK")


def test_conflicting_hash_at_one_height_fails() -> None:
    report = logcheck.analyse(
        {"v1": chain("v1", 10), "v2": chain("v2", 10, fork_at=6), "v3": chain("v3", 10)}
    )
    assert not report.ok
    assert [c.height for c in report.conflicts] == [6]
    assert report.conflicts[0].hashes == {"bad0006": ["v2"], "h0006": ["v1", "v3"]}
    lines = logcheck.format_report(report)
    assert lines[0].startswith("SAFETY VIOLATED")
    assert "height 6" in lines[1] and "v2" in lines[1]


def test_one_node_finalizing_two_hashes_at_one_height_fails() -> None:
    events = [*chain("v1", 5), fin("v1", 3, "other")]
    report = logcheck.analyse({"v1": events})
    assert [c.height for c in report.conflicts] == [3]


def test_same_block_logged_twice_after_restart_is_fine() -> None:
    events = [*chain("v1", 5), *chain("v1", 8)]
    assert logcheck.analyse({"v1": events, "v2": chain("v2", 8)}).ok


def test_excluded_byzantine_node_is_summarised_but_not_judged() -> None:
    logs = {"v1": chain("v1", 5), "v4": chain("v4", 5, fork_at=2)}
    report = logcheck.analyse(logs, exclude=["v4"])
    assert report.ok
    assert report.checked_nodes == ["v1"]
    assert any("byzantine" in line and "v4" in line for line in logcheck.format_report(report))


def test_truncated_last_line_is_tolerated(tmp_path: Path) -> None:
    lines = [json.dumps(e) for e in chain("v1", 4)]
    path = tmp_path / "v1.jsonl"
    path.write_text("\n".join(lines) + "\n" + lines[0][:17])
    parsed = logcheck.read_log(path)
    assert [e["height"] for e in parsed.events] == [1, 2, 3, 4]
    assert parsed.truncated_tail and parsed.malformed == 0


def test_malformed_line_in_the_middle_is_counted_not_fatal() -> None:
    lines = [json.dumps(e) for e in chain("v1", 3)]
    parsed = logcheck.parse_lines([lines[0], "{garbage", lines[1], "[1, 2]", lines[2]])
    assert [e["height"] for e in parsed.events] == [1, 2, 3]
    assert parsed.malformed == 2 and not parsed.truncated_tail


def test_synced_blocks_do_not_count_towards_latency() -> None:
    events = [fin("v1", 1, "a"), fin("v1", 2, "b", via_sync=True, latency_ms=90_000)]
    summary = logcheck.summarize_node("v1", events)
    assert summary.max_height == 2
    assert summary.median_latency_ms == 41


def test_penalties_are_reported_once_across_nodes() -> None:
    slash = {"event": "slashed", "height": 9, "validator": "v4", "amount": 50, "reason": "double_sign"}
    logs = {n: [*chain(n, 9), {**slash, "node": n, "ts": 5.0 + i}] for i, n in enumerate(("v1", "v2"))}
    report = logcheck.analyse(logs)
    assert len(report.penalties) == 1
    assert logcheck.describe_penalty(report.penalties[0]) == "height 9: slashed v4 50 (double_sign)"
    assert report.nodes["v1"].counts == {"finalized": 9, "slashed": 1}


def test_missing_log_is_empty_and_reported_at_height_zero(tmp_path: Path) -> None:
    assert logcheck.read_log(tmp_path / "absent.jsonl").events == []
    report = logcheck.analyse({"v1": chain("v1", 3), "v2": []})
    assert report.ok and report.common_height == 0


# ------------------------------------------------------------------ preparing a directory


def test_prepare_creates_keys_and_genesis_then_reuses_them(tmp_path: Path) -> None:
    layout = Layout.of(tmp_path / "net")
    doc = prepare(layout, 3, None, None)
    assert [v.name for v in doc.validators] == ["v1", "v2", "v3"]
    assert doc.chain_id == DEFAULT_CHAIN_ID
    assert doc.params.commit_wait_ms == DEFAULT_SLOT_MS
    for validator in doc.validators:
        key = layout.key(validator.name)
        assert key.stat().st_mode & 0o777 == 0o600
        assert load_key_file(key)[1].public == validator.public_key
    genesis_text = layout.genesis.read_text()
    again = prepare(layout, 3, doc.chain_id, doc.params.commit_wait_ms)
    assert again == doc
    assert layout.genesis.read_text() == genesis_text


@pytest.mark.parametrize(
    ("validators", "chain_id", "slot_ms", "needle"),
    [(4, None, None, "--validators 4"), (3, "other", None, "'other'"), (3, None, 5, "--slot-ms 5")],
)
def test_prepare_refuses_to_contradict_an_existing_genesis(
    tmp_path: Path, validators: int, chain_id: str | None, slot_ms: int | None, needle: str
) -> None:
    layout = Layout.of(tmp_path)
    prepare(layout, 3, None, None)
    with pytest.raises(TestnetError, match=".*".join(map(str, [layout.genesis, needle]))):
        prepare(layout, validators, chain_id, slot_ms)


@pytest.mark.parametrize(
    ("made", "asked", "needle"),
    [
        ({}, {"accounts": 3}, "funds 0 accounts, not --accounts 3"),
        ({"accounts": 2}, {"accounts": 0}, "funds 2 accounts, not --accounts 0"),
        ({}, {"cold_keys": True}, "no separate owner keys, not --cold-keys"),
    ],
)
def test_prepare_refuses_genesis_only_options_the_genesis_lacks(
    tmp_path: Path, made: dict[str, Any], asked: dict[str, Any], needle: str
) -> None:
    layout = Layout.of(tmp_path)
    prepare(layout, 2, None, None, **made)
    prepare(layout, 2, None, None)  # not asked for: nothing to contradict
    prepare(layout, 2, None, None, **made)  # asked for what it has
    with pytest.raises(TestnetError, match=f"{layout.genesis}.*{needle}.*fresh --dir"):
        prepare(layout, 2, None, None, **asked)


def test_up_refuses_accounts_on_an_existing_dir_in_one_line(tmp_path: Path) -> None:
    layout = Layout.of(tmp_path / "net")
    prepare(layout, 2, None, None)
    result = run(
        "testnet", "up", "--validators", "2", "--dir", layout.root, "--accounts", "4", "--duration", "1"
    )
    assert result.exit_code == 2, result.output
    assert "not --accounts 4; use a fresh --dir" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not layout.state.exists() and not layout.account_key(1).exists()


def test_prepare_refuses_a_key_that_does_not_match_genesis(tmp_path: Path) -> None:
    layout = Layout.of(tmp_path)
    prepare(layout, 2, None, None)
    assert run("keys", "generate", "--name", "v2", "--out", layout.key("v2"), "--force").exit_code == 0
    with pytest.raises(TestnetError, match="does not match v2"):
        prepare(layout, 2, None, None)


def test_log_tail_waits_for_complete_lines_and_survives_truncation(tmp_path: Path) -> None:
    path = tmp_path / "v1.jsonl"
    path.write_text(json.dumps(fin("v1", 1, "a")) + "\n")
    tail = LogTail(path, from_end=True)
    assert tail.read_events() == []
    line = json.dumps(fin("v1", 2, "b"))
    with open(path, "a") as fh:
        fh.write(line[:10])
    assert tail.read_events() == []
    with open(path, "a") as fh:
        fh.write(line[10:] + "\n")
    assert [e["height"] for e in tail.read_events()] == [2]
    path.write_text(json.dumps(fin("v1", 1, "a")) + "\n")  # replaced by a shorter file
    assert [e["height"] for e in tail.read_events()] == [1]


def test_metrics_ports_refuses_a_taken_base_port() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        with pytest.raises(TestnetError, match=str(taken)):
            metrics_ports(2, taken)


# ------------------------------------------------------------------ processes and fault commands


def test_process_state_alive_paused_dead_and_recycled() -> None:
    proc = subprocess.Popen(SLEEPER)
    try:
        # eventually: on a loaded machine /proc can still show the parent's command line for a moment
        assert _eventually(lambda: process_state(proc.pid, SLEEPER) == "alive")
        assert process_state(proc.pid, ["something", "else"]) == "dead"  # a recycled pid is not ours
        os.kill(proc.pid, signal.SIGSTOP)
        assert _eventually(lambda: process_state(proc.pid, SLEEPER) == "paused")
        os.kill(proc.pid, signal.SIGCONT)
        assert _eventually(lambda: process_state(proc.pid, SLEEPER) == "alive")
        os.kill(proc.pid, signal.SIGKILL)
        assert _eventually(lambda: process_state(proc.pid, SLEEPER) == "dead")  # a zombie is dead
    finally:
        proc.kill()
        proc.wait()
    assert process_state(proc.pid, SLEEPER) == "dead"
    assert process_state(None) == "dead"


def _eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def fake_testnet(tmp_path: Path) -> Iterator[Layout]:
    """A testnet.json whose nodes are sleeping processes and whose orchestrator is this test process."""
    layout = Layout.of(tmp_path / "net")
    nodes = {
        name: NodeProc(name=name, command=SLEEPER, metrics_port=0, status=RUNNING) for name in ("v1", "v2")
    }
    children = [spawn_node(layout, node) for node in nodes.values()]
    for node, child in zip(nodes.values(), children, strict=True):
        node.pid = child.pid
    state = TestnetState(
        chain_id="fake",
        broker=BrokerInfo(kind="external", url="mqtt://127.0.0.1:1"),
        nodes=nodes,
        supervisor_pid=os.getpid(),
        supervisor_command=cmdline(os.getpid()),
    )
    write_state(layout, state)
    yield layout
    for node in read_state(layout).nodes.values():
        signal_process(node.pid, node.command, signal.SIGKILL)
        _reap(node.pid)
    for child in children:
        child.kill()
        child.wait()


def _reap(pid: int | None) -> None:
    """Collect a child the test started itself (a restart from the in-process CLI); others are not ours."""
    if pid is not None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_kill_sigkills_and_records_the_intent(fake_testnet: Layout) -> None:
    pid = read_state(fake_testnet).nodes["v1"].pid
    result = run("testnet", "kill", "v1", "--dir", fake_testnet.root)
    assert result.exit_code == 0, result.output
    assert f"killed v1 (pid {pid})" in result.output
    assert process_state(pid, SLEEPER) == "dead"
    assert read_state(fake_testnet).nodes["v1"].status == KILLED
    again = run("testnet", "kill", "v1", "--dir", fake_testnet.root)
    assert again.exit_code == 2 and "v1 is not running" in again.stderr


def test_pause_and_resume(fake_testnet: Layout) -> None:
    pid = read_state(fake_testnet).nodes["v2"].pid
    assert run("testnet", "pause", "v2", "--dir", fake_testnet.root).exit_code == 0
    assert _eventually(lambda: process_state(pid, SLEEPER) == "paused")
    assert "paused" in run("status", "--dir", fake_testnet.root).output
    assert run("testnet", "pause", "v2", "--dir", fake_testnet.root).exit_code == 2
    assert run("testnet", "resume", "v2", "--dir", fake_testnet.root).exit_code == 0
    assert _eventually(lambda: process_state(pid, SLEEPER) == "alive")
    assert read_state(fake_testnet).nodes["v2"].status == RUNNING
    not_paused = run("testnet", "resume", "v2", "--dir", fake_testnet.root)
    assert not_paused.exit_code == 2 and "not paused" in not_paused.stderr


def test_restart_respawns_the_same_command(fake_testnet: Layout) -> None:
    old = read_state(fake_testnet).nodes["v1"]
    result = run("testnet", "restart", "v1", "--dir", fake_testnet.root)
    assert result.exit_code == 0, result.output
    new = read_state(fake_testnet).nodes["v1"]
    assert new.pid != old.pid and new.command == old.command
    assert (new.status, new.restarts) == (RUNNING, 1)
    assert process_state(old.pid, SLEEPER) == "dead"
    assert process_state(new.pid, SLEEPER) == "alive"
    # a killed node restarts too
    assert run("testnet", "kill", "v1", "--dir", fake_testnet.root).exit_code == 0
    assert run("testnet", "restart", "v1", "--dir", fake_testnet.root).exit_code == 0
    assert process_state(read_state(fake_testnet).nodes["v1"].pid, SLEEPER) == "alive"


def test_restart_needs_a_running_testnet(fake_testnet: Layout) -> None:
    with locked_state(fake_testnet) as state:
        state.supervisor_pid = None
    result = run("testnet", "restart", "v1", "--dir", fake_testnet.root)
    assert result.exit_code == 2 and "not running" in result.stderr


def test_a_recycled_pid_is_never_signalled(fake_testnet: Layout) -> None:
    with locked_state(fake_testnet) as state:
        state.nodes["v2"].pid = os.getpid()  # this very test process, which is not v2's command
    result = run("testnet", "kill", "v2", "--dir", fake_testnet.root)
    assert result.exit_code == 2 and "not running" in result.stderr


def test_fault_commands_name_unknown_nodes_and_missing_testnets(fake_testnet: Layout, tmp_path: Path) -> None:
    unknown = run("testnet", "kill", "v9", "--dir", fake_testnet.root)
    assert unknown.exit_code == 2 and "v1, v2" in unknown.stderr
    missing = run("testnet", "pause", "v1", "--dir", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "testnet up" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["kill", "v1"],
        ["restart", "v1"],
        ["pause", "v1"],
        ["resume", "v1"],
        ["behave", "v1", "silent"],
        ["heal"],
        ["delay", "v1", "100"],
        ["drop", "v1", "0.5"],
        ["partition", "v1", "v2"],
    ],
)
def test_commands_needing_a_testnet_refuse_a_missing_dir_without_creating_it(
    tmp_path: Path, args: list[str]
) -> None:
    missing = tmp_path / "no-such-net"
    result = run("testnet", *args, "--dir", missing)
    assert result.exit_code == 2, result.output
    assert "not found: start a testnet there first" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not missing.exists()


def test_down_stops_what_a_killed_up_left_running(fake_testnet: Layout) -> None:
    with locked_state(fake_testnet) as state:
        state.supervisor_pid = None  # its `up` is gone; its nodes still run
    result = run("testnet", "down", "--dir", fake_testnet.root)
    assert result.exit_code == 0, result.output
    assert (
        result.output.strip()
        == f"the up of {fake_testnet.root} was gone; stopped 2 process(es) it left running"
    )
    state = read_state(fake_testnet)
    assert all(process_state(n.pid, SLEEPER) == "dead" for n in state.nodes.values())
    assert {n.status for n in state.nodes.values()} == {STOPPED}
    assert "nothing to stop" in run("testnet", "down", "--dir", fake_testnet.root).output


def test_status_shows_processes_heights_and_penalties(fake_testnet: Layout) -> None:
    fake_testnet.logs.mkdir(parents=True, exist_ok=True)
    slash = {"event": "slashed", "node": "v1", "ts": time.time(), "height": 4, "validator": "v2", "amount": 5}
    lines = [*chain("v1", 4), slash]
    fake_testnet.log("v1").write_text("".join(json.dumps(e) + "\n" for e in lines))
    run("testnet", "kill", "v2", "--dir", fake_testnet.root)
    result = run("status", "--dir", fake_testnet.root)
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("v")}
    assert (
        "alive" in rows["v1"] and " 4 " in rows["v1"] and rows["v1"].split()[-2] == "-"
    )  # v1 is not penalised
    assert "killed" in rows["v2"]
    assert "height 4: slashed v2 5" in result.output
    assert f"up pid {os.getpid()}" in result.output


def test_status_names_the_jailed_validators_and_a_lost_quorum(tmp_path: Path) -> None:
    """Each row says whether its own validator is out; one line says whether the rest can finalize."""
    layout = Layout.of(tmp_path / "net")
    names = ["v1", "v2", "v3", "v4"]
    nodes = {name: NodeProc(name=name, command=SLEEPER, metrics_port=0, status=RUNNING) for name in names}
    children = [spawn_node(layout, node) for node in nodes.values()]
    try:
        for node, child in zip(nodes.values(), children, strict=True):
            node.pid = child.pid
        me = cmdline(os.getpid())
        broker = BrokerInfo(kind="external", url="mqtt://127.0.0.1:1")
        write_state(
            layout, TestnetState("fake", broker, nodes, supervisor_pid=os.getpid(), supervisor_command=me)
        )
        now = time.time()
        jail = {"event": "jailed", "ts": now, "height": 9, "validator": "v3"}
        logs = {
            name: [
                *chain(name, 9),
                {**jail, "node": name},
                {**jail, "node": name, "event": "slashed", "amount": 3},
            ]
            for name in names
        }
        logs["v1"].insert(
            2, {"event": "jailed", "node": "v1", "ts": now - 50, "height": 2, "validator": "v4"}
        )
        logs["v1"].insert(
            3, {"event": "unjailed", "node": "v1", "ts": now - 40, "height": 3, "validator": "v4"}
        )
        _write_logs(layout, logs)
        result = run("status", "--dir", layout.root)
        assert result.exit_code == 0, result.output
        rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line[:2] in names}
        assert rows["v3"][-2] == "jailed" and [rows[v][-2] for v in ("v1", "v2", "v4")] == ["-", "-", "-"]
        assert "3 of 3 active validators online (v3 jailed): more than 2/3" in result.output
        assert run("testnet", "pause", "v2", "--dir", layout.root).exit_code == 0
        assert _eventually(lambda: process_state(nodes["v2"].pid, SLEEPER) == "paused")
        paused = run("status", "--dir", layout.root).output
        line = "2 of 3 active validators online (v3 jailed, v2 paused): no quorum, the chain cannot finalize"
        assert line in paused.splitlines(), paused
    finally:
        for child in children:
            child.kill()
            child.wait()


# ------------------------------------------------------------------ `testnet check` and `up` refusals


def _write_logs(layout: Layout, logs: dict[str, list[dict[str, Any]]]) -> None:
    layout.logs.mkdir(parents=True, exist_ok=True)
    for name, events in logs.items():
        layout.log(name).write_text("".join(json.dumps(e) + "\n" for e in events))


def test_check_command_exit_codes(tmp_path: Path) -> None:
    layout = Layout.of(tmp_path)
    assert run("testnet", "check", "--dir", tmp_path).exit_code == 2
    _write_logs(layout, {"v1": chain("v1", 5), "v2": chain("v2", 5)})
    ok = run("testnet", "check", "--dir", tmp_path)
    assert ok.exit_code == 0 and ok.output.startswith("safety OK")
    assert "median finality latency" in ok.output
    _write_logs(layout, {"v1": chain("v1", 5), "v2": chain("v2", 5, fork_at=5)})
    bad = run("testnet", "check", "--dir", tmp_path)
    assert bad.exit_code == 1 and "SAFETY VIOLATED" in bad.output


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--behaviour", "v1=evil"], "mode must be one of"),
        (["--behaviour", "v9=silent"], "unknown validator v9"),
        (["--broker", "carrier-pigeon"], "mqtt://HOST:PORT"),
        (["--broker", "mqtt://127.0.0.1:1"], "no MQTT broker"),
        (["--broker", "embedded", "--mqtt-protocol", "5"], "3.1.1"),
    ],
)
def test_up_refuses_bad_options_in_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    result = run("testnet", "up", "--validators", "2", "--dir", tmp_path / "net", "--duration", "1", *args)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr
    assert not (tmp_path / "net" / "testnet.json").exists()


# ------------------------------------------------------------------ end to end


def _posnet(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "network.cli", *map(str, args)]


ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def _heights(layout: Layout) -> dict[str, int]:
    return {
        name: logcheck.summarize_node(name, parsed.events).max_height
        for name, parsed in logcheck.read_log_dir(layout.logs).items()
    }


@pytest.fixture
def testnet_dir(tmp_path: Path) -> Iterator[Path]:
    """A testnet directory whose processes are all gone after the test, however it ended."""
    directory = tmp_path / "tmp"
    yield directory
    layout = Layout.of(directory)
    with contextlib.suppress(TestnetError):
        state = read_state(layout)
        procs = [(n.pid, n.command, None) for n in state.nodes.values()]
        stop_processes([*procs, (state.broker.pid, state.broker.command, None)], timeout=5)
        for node in state.nodes.values():
            _reap(node.pid)


@pytest.mark.integration
@pytest.mark.broker
def test_up_finalizes_on_all_nodes_and_check_passes(testnet_dir: Path) -> None:
    proc = subprocess.run(
        _posnet("testnet", "up", "--validators", "4", "--duration", "25", "--dir", testnet_dir),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "safety OK" in proc.stdout
    layout = Layout.of(testnet_dir)
    heights = _heights(layout)
    assert sorted(heights) == ["v1", "v2", "v3", "v4"]
    assert all(h >= 1 for h in heights.values()), heights
    state = read_state(layout)
    assert state.supervisor_pid is None
    assert all(process_state(n.pid, n.command) == "dead" for n in state.nodes.values())
    assert all(n.status == STOPPED for n in state.nodes.values())
    check = subprocess.run(
        _posnet("testnet", "check", "--dir", testnet_dir), env=ENV, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("safety OK")


UP_ARGS = (
    "testnet",
    "up",
    "--validators",
    "4",
    "--duration",
    "900",
)  # ended by SIGTERM; long for a loaded machine


@pytest.mark.integration
@pytest.mark.broker
def test_killed_node_restarts_and_catches_up(testnet_dir: Path) -> None:
    layout = Layout.of(testnet_dir)
    up = subprocess.Popen(
        _posnet(*UP_ARGS, "--dir", testnet_dir, "--slot-ms", "200", "--broker", "embedded", "--quiet"),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def diagnostics() -> str:
        """What a timeout needs to be explained: heights, whether `up` still runs, each log's last events."""
        running = "running" if up.poll() is None else f"exited {up.returncode}"
        tails = {
            name: [e.get("event") for e in parsed.events[-6:]]
            for name, parsed in logcheck.read_log_dir(layout.logs).items()
        }
        return f"heights {_heights(layout)}; up {running}; last events {tails}"

    try:
        wait_for(
            lambda: len(_heights(layout)) == 4 and min(_heights(layout).values()) >= 2,
            "all nodes at height 2",
            diagnostics=diagnostics,
        )
        killed = run("testnet", "kill", "v2", "--dir", testnet_dir)
        assert killed.exit_code == 0, killed.output
        stalled = _heights(layout)["v2"]
        wait_for(
            lambda: min(h for n, h in _heights(layout).items() if n != "v2") >= stalled + 3,
            "3 more heights",
            diagnostics=diagnostics,
        )
        restarted = run("testnet", "restart", "v2", "--dir", testnet_dir)
        assert restarted.exit_code == 0, restarted.output
        steps = [json.loads(line) for line in (layout.logs / "scenario.jsonl").read_text().splitlines()]
        assert [(e["event"], e["action"], e["node"]) for e in steps] == [
            ("fault", "kill", "v2"),
            ("heal", "restart", "v2"),
        ]
        target = max(_heights(layout).values())
        wait_for(lambda: _heights(layout)["v2"] >= target, f"v2 to catch up to height {target}")
        status = run("status", "--dir", testnet_dir)
        assert "v2" in status.output and "alive" in status.output
        # a crash nobody asked for (not `testnet kill`) makes the run fail
        v3 = read_state(layout).nodes["v3"]
        os.kill(v3.pid, signal.SIGKILL)  # type: ignore[arg-type]
        wait_for(lambda: read_state(layout).nodes["v3"].status == DIED, "up to notice v3 died")
    finally:
        up.send_signal(signal.SIGTERM)
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 1, output[-3000:]
    assert "v3 died unexpectedly (killed by SIGKILL)" in output
    assert "v2" in output and "restarted 1x" in output
    assert "v2 died" not in output  # the deliberate kill is not a failure
    check = run("testnet", "check", "--dir", testnet_dir)
    assert check.exit_code == 0, check.output
