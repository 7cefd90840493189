"""The run report (`posnet testnet report`) and the live view (`posnet watch`).

Both are pure functions over log events with a thin layer of I/O, so most
tests feed hand-written events; the PNG is checked to exist, be a PNG and be
big enough to hold the three panels, and the live view is smoke-tested once
against a short real testnet (`broker` mark).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from network.cli import cli
from network.testnet import extras
from network.testnet import live as wt
from network.testnet import report as rp
from network.testnet import scenario as sc
from network.testnet import scenario_log as sc_log
from network.testnet.layout import STOPPED, BrokerInfo, Layout, NodeProc, TestnetState, write_state
from node.core.genesis import Params

REPO_ROOT = Path(__file__).resolve().parent.parent
T0 = 1_000_000.0


def ev(kind: str, node: str, at: float, **fields: Any) -> dict[str, Any]:
    return {"event": kind, "node": node, "ts": T0 + at, **fields}


def fin(node: str, height: int, at: float, latency: int = 200, **extra: Any) -> dict[str, Any]:
    return ev(
        "finalized",
        node,
        at,
        height=height,
        round=0,
        hash=f"h{height}",
        proposer="v1",
        latency_ms=latency,
        **extra,
    )


def steady(node: str, start: float, end: float, first: int = 1) -> list[dict[str, Any]]:
    return [fin(node, first + i, start + i) for i in range(int(end - start) + 1)]


def step(kind: str, action: str, at: float, **args: Any) -> dict[str, Any]:
    return {"event": kind, "ts": T0 + at, "action": action, **args}


# ------------------------------------------------------------------ report: pure parts


def test_fault_windows_pair_faults_with_their_repairs() -> None:
    timeline = [
        {"event": "scenario_started", "ts": T0},
        step("fault", "partition", 10, groups=[["v1", "v2"], ["v3", "v4"]]),
        step("fault", "kill", 12, node="v3"),
        step("heal", "heal", 25),
        step("fault", "delay", 26, node="v2", ms=200),
        step("heal", "restart", 30, node="v3"),
        step("heal", "restart", 31, node="v1"),  # a restart of a running node: no window
        step("heal", "delay", 33, node="v2", ms=0),
        step("fault", "pause", 40, node="v4"),  # never resumed
    ]
    windows = rp.fault_windows(timeline, T0 + 50)
    got = [(w.kind, w.label, w.start - T0, None if w.end is None else w.end - T0) for w in windows]
    assert got == [
        ("partition", "partition v1,v2 | v3,v4", 10, 25),
        ("down", "v3 killed", 12, 30),
        ("delay", "delay v2 200 ms", 26, 33),
        ("paused", "v4 paused", 40, None),
    ]


def test_down_windows_from_a_nodes_own_log() -> None:
    events = [
        ev("started", "v3", 0),
        fin("v3", 1, 1),
        fin("v3", 2, 2),  # then SIGKILL: nothing logged
        ev("started", "v3", 9),
        fin("v3", 3, 10),
        ev("stopped", "v3", 12),
        ev("started", "v3", 15),
        ev("stopped", "v3", 20),  # the end of the run is not an outage
    ]
    assert [(a - T0, b - T0) for a, b in rp.down_windows(events)] == [(2, 9), (12, 15)]


def test_percentile_is_nearest_rank() -> None:
    assert rp.percentile([], 99) is None
    values = list(range(1, 101))
    assert rp.percentile(values, 99) == 99 and rp.percentile(values, 50) == 50 and rp.percentile([7], 99) == 7


def test_latencies_leave_out_synced_blocks() -> None:
    assert rp.latencies(
        [fin("v1", 1, 0, 100), fin("v1", 2, 1, 9000, via_sync=True), ev("round_timeout", "v1", 2)]
    ) == [100.0]


def test_penalties_close_in_time_share_one_mark() -> None:
    logs = {
        "v1": [
            ev("evidence", "v1", 1.0, offender="v4", height=2),
            ev("slashed", "v1", 1.3, validator="v4", height=3),
            ev("tombstoned", "v1", 1.3, validator="v4", height=3),
            ev("jailed", "v1", 20, validator="v3", height=50),
        ],
        "v2": [ev("slashed", "v2", 1.2, validator="v4", height=3)],  # the same slash, seen first here
    }
    marks = rp.penalty_marks(logs, T0, span=30)
    assert [(round(x, 1), labels, severe) for x, labels, severe in marks] == [
        (1.0, ["evidence v4", "slashed v4", "tombstoned v4"], True),
        (20.0, ["jailed v3"], False),
    ]


def run_data(**changes: Any) -> rp.RunData:
    logs = {
        "v1": [ev("started", "v1", 0), *steady("v1", 1, 9), *steady("v1", 27, 30, first=10)],
        "v2": [ev("started", "v2", 0), *steady("v2", 1, 9), *steady("v2", 27, 30, first=10)],
    }
    logs["v2"].append(ev("slashed", "v2", 28, validator="v9", height=11, amount=5, reason="double_sign"))
    logs["v1"].append(ev("slashed", "v1", 27.5, validator="v9", height=11, amount=5, reason="double_sign"))
    base: dict[str, Any] = {
        "logs": logs,
        "timeline": [
            {"event": "scenario_started", "ts": T0},
            step("fault", "partition", 10, groups=[["v1"], ["v2"]]),
            step("heal", "heal", 25),
        ],
        "t0": T0,
        "end_ts": T0 + 30,
        "params": Params(),
    }
    base.update(changes)
    return rp.RunData(**base)


def test_summary_lists_heights_latency_faults_penalties_and_invariants() -> None:
    lines, ok = rp.summary_lines(run_data())
    text = "\n".join(lines)
    assert ok, text
    assert "finality latency (honest nodes, 26 blocks): median 200 ms, p99 200 ms" in text
    assert "v1     height    13" in text
    assert "10.0 s ..   25.0 s  partition v1 | v2" in text
    assert "27.5 s  height 11: slashed v9 5 (double_sign)" in text  # first seen, once
    assert text.count("slashed v9") == 1
    assert "PASS safety: no conflicting finalized blocks across 2 honest node(s)" in text
    assert (
        "liveness after the last heal (heal at 25.0 s): all 2 running honest node(s) finalized again" in text
    )


def test_summary_fails_on_a_fork_and_judges_a_recorded_scenario() -> None:
    forked = run_data()
    forked.logs["v2"].append(fin("v2", 3, 3.5) | {"hash": "other"})
    lines, ok = rp.summary_lines(forked)
    assert not ok and any(line.startswith("  FAIL safety: height 3") for line in lines)
    scenario = sc.parse_scenario(
        {
            "name": "split",
            "validators": 2,
            "duration_s": 30,
            "step": [
                {"at_s": 10, "action": "partition", "groups": [["v1"], ["v2"]]},
                {"at_s": 25, "action": "heal"},
            ],
            "checks": {"stalled_during": [[11, 25]], "min_height": 50},
        }
    )
    lines, ok = rp.summary_lines(run_data(scenario=scenario))
    text = "\n".join(lines)
    assert not ok
    assert "PASS stalled_during 11-25 s" in text and "FAIL min_height 50" in text


def test_liveness_line_without_a_scenario_uses_the_last_restart() -> None:
    logs = {
        "v1": [ev("started", "v1", 0), *steady("v1", 1, 20)],
        "v2": [ev("started", "v2", 0), *steady("v2", 1, 5), ev("started", "v2", 12), fin("v2", 14, 13.5)],
    }
    line = rp.liveness_line(run_data(logs=logs, timeline=[]))
    assert line == (
        "liveness after the last restart (v2 at 12.0 s): all 2 running honest node(s) finalized again, "
        "slowest v2 after 1.5 s"
    )
    quiet = {"v1": steady("v1", 0, 5)}
    assert "no fault healed" in rp.liveness_line(run_data(logs=quiet, timeline=[]))


def write_run(directory: Path, scenario: bool = True) -> Layout:
    """A testnet directory as a finished scenario run leaves it (logs, step log, testnet.json)."""
    layout = Layout.of(directory)
    layout.logs.mkdir(parents=True)
    data = run_data()
    for name, events in data.logs.items():
        layout.log(name).write_text("".join(json.dumps(e) + "\n" for e in events))
    if scenario:
        spec = {
            "name": "split",
            "validators": 2,
            "duration_s": 30,
            "step": [
                {"at_s": 10, "action": "partition", "groups": [["v1"], ["v2"]]},
                {"at_s": 25, "action": "heal"},
            ],
        }
        steps = [
            {
                "event": "scenario_started",
                "ts": T0,
                "name": "split",
                "time_scale": 1.0,
                "run_start_ts": T0 - 1,
                "spec": spec,
            },
            *data.timeline[1:],
            {"event": "scenario_finished", "ts": T0 + 30},
        ]
        (layout.logs / sc_log.SCENARIO_LOG).write_text("".join(json.dumps(e) + "\n" for e in steps))
    nodes = {name: NodeProc(name=name, command=["x"], metrics_port=1, status=STOPPED) for name in data.logs}
    state = TestnetState(chain_id="c", broker=BrokerInfo(kind="embedded", url="mqtt://x"), nodes=nodes)
    state.started_at = T0 - 0.5
    write_state(layout, state)
    return layout


def test_load_run_reads_back_the_last_scenario_run(tmp_path: Path) -> None:
    layout = write_run(tmp_path / "net")
    older = ev(
        "finalized", "v1", -5000, height=99, hash="old", round=0
    )  # an earlier run in the same directory
    text = layout.log("v1").read_text()
    layout.log("v1").write_text(json.dumps(older) + "\n" + text)
    run = rp.load_run(layout)
    assert run.scenario is not None and run.scenario.name == "split"
    assert run.t0 == T0 and run.end_ts == T0 + 30
    assert all(e["ts"] >= T0 - 1 for e in run.logs["v1"])  # this run only...
    assert run.history["v1"][0]["hash"] == "old"  # ...but safety looks at the whole history
    assert [w.label for w in rp.fault_windows(run.timeline, run.end_ts)] == ["partition v1 | v2"]


@pytest.mark.slow
def test_report_command_writes_a_png_and_prints_the_summary(tmp_path: Path) -> None:
    layout = write_run(tmp_path / "net")
    out = tmp_path / "pics" / "r.png"
    result = CliRunner().invoke(cli, ["testnet", "report", "--dir", str(layout.root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "PASS safety" in result.output and "scenario checks (split)" in result.output
    assert f"wrote {out}" in result.output
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 1000 and height >= 700


def test_report_without_matplotlib_still_prints_the_summary_and_says_how_to_get_the_png(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = write_run(tmp_path / "net")
    monkeypatch.setattr(rp, "matplotlib_available", lambda: False)
    result = CliRunner().invoke(cli, ["testnet", "report", "--dir", str(layout.root)])
    assert result.exit_code == 0, result.output
    assert "PASS safety" in result.output and "pip install" in result.output and "[report]" in result.output
    assert "wrote" not in result.output and not (layout.root / "report.png").exists()


def test_report_without_matplotlib_in_a_checkout_says_pip_install_editable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tests run from a checkout, installed editable: the index's `posnet[report]` is the wrong advice."""
    layout = write_run(tmp_path / "net")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    result = CliRunner().invoke(cli, ["testnet", "report", "--dir", str(layout.root)])
    assert result.exit_code == 0, result.output
    assert f"pip install -e '.[report]' in {extras.SOURCE_ROOT}" in result.output
    assert "posnet[report]" not in result.output
    assert (extras.SOURCE_ROOT / "pyproject.toml").is_file() and extras.installed_editable()


def test_install_hint_outside_a_checkout_names_the_published_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extras, "installed_editable", lambda: False)
    monkeypatch.setattr(extras, "SOURCE_ROOT", Path("/nonexistent-site-packages"))
    assert extras.install_hint("report") == "pip install 'posnet[report]'"


def test_faults_run_by_hand_are_shaded_and_listed_without_a_scenario(tmp_path: Path) -> None:
    """`testnet kill v2` ... `restart v2` by hand log as scenario "manual": the report draws their window."""
    layout = write_run(tmp_path / "net", scenario=False)
    log = layout.logs / sc_log.SCENARIO_LOG
    old_run = sc_log.step_event(sc.TimelineStep(action="kill", at_s=0.0, node="v1"), T0 - 500, "manual")
    sc_log.append_event(log, old_run)  # a fault of an earlier run of this directory: not this run's
    sc_log.append_event(
        log, sc_log.step_event(sc.TimelineStep(action="kill", at_s=0.0, node="v2"), T0 + 8, "manual")
    )
    restart = sc.TimelineStep(action="restart", at_s=0.0, node="v2")
    sc_log.append_event(log, sc_log.step_event(restart, T0 + 12, "manual"))
    run = rp.load_run(layout)
    windows = rp.fault_windows(run.timeline, run.end_ts)
    assert [(w.label, w.start - run.t0, w.end) for w in windows] == [("v2 killed", 8.5, T0 + 12)]
    result = CliRunner().invoke(
        cli, ["testnet", "report", "--dir", str(layout.root), "--out", str(tmp_path / "r.png")]
    )
    assert "faults:\n     8.5 s ..   12.5 s  v2 killed\n" in result.output, result.output
    assert "liveness after the last heal (restart at 12.5 s)" in result.output


@pytest.mark.slow
def test_report_without_a_scenario_defaults_to_dir_report_png(tmp_path: Path) -> None:
    layout = write_run(tmp_path / "net", scenario=False)
    result = CliRunner().invoke(cli, ["testnet", "report", "--dir", str(layout.root)])
    assert result.exit_code == 0, result.output
    assert (layout.root / "report.png").exists()
    assert "faults:" not in result.output and "liveness after" in result.output


def test_report_usage_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["testnet", "report", "--dir", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no testnet has run" in result.output
    (tmp_path / "empty" / "logs").mkdir(parents=True)
    result = CliRunner().invoke(cli, ["testnet", "report", "--dir", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "nothing to report" in result.output


# ------------------------------------------------------------------ watch: fold and render


def watched(events: list[dict[str, Any]]) -> wt.WatchState:
    state = wt.WatchState(nodes={n: wt.NodeRow(n, process="alive") for n in ("v1", "v2", "v3", "v4")})
    return wt.fold_all(state, events)


def test_fold_tracks_height_round_latency_and_online() -> None:
    state = watched(
        [
            ev("started", "v1", 0, height=0, behaviour="honest"),
            ev("broker_connected", "v1", 0.1),
            fin("v1", 5, 1, latency=240),
            ev("round_timeout", "v1", 2, height=6, round=0, step="propose"),
            ev("round_timeout", "v1", 3, height=6, round=1, step="prevote"),
            fin("v2", 4, 1, latency=300),
            fin("v2", 5, 2, latency=9000, via_sync=True),
            ev("stopped", "v3", 1, height=3),
        ]
    )
    v1, v2, v3 = state.nodes["v1"], state.nodes["v2"], state.nodes["v3"]
    assert (v1.height, v1.round, v1.last_latency_ms, v1.online) == (5, 2, 240, True)
    assert (v2.height, v2.last_latency_ms, v2.last_synced) == (5, 300, True)
    assert v3.online is False and state.top_height == 5
    assert [e["event"] for e in state.recent] == ["started", "round_timeout", "round_timeout", "stopped"]


def test_fold_marks_penalties_once_and_unjails() -> None:
    jail = {"validator": "v4", "height": 30, "reason": "downtime"}
    state = watched([ev("jailed", n, 10, **jail) for n in ("v1", "v2", "v3")])
    assert state.penalties == {"v4": {"jailed"}} and len(state.recent) == 1
    wt.fold(state, ev("unjailed", "v1", 20, validator="v4", height=60))
    wt.fold(state, ev("tombstoned", "v1", 21, validator="v4", height=61))
    assert state.penalties == {"v4": {"tombstoned"}}


def test_render_shows_each_node_and_its_status() -> None:
    state = watched(
        [
            *[ev("started", n, 0, height=0) for n in ("v1", "v2", "v3", "v4")],
            fin("v3", 31, 5),
            ev("jailed", "v1", 9, validator="v3", height=38),
            *[fin(n, 40, 10) for n in ("v1", "v2", "v4")],
            {"event": "scenario_started", "ts": T0, "name": "crash", "spec": {"step": [{}, {}]}},
            step("fault", "kill", 4, node="v3"),
        ]
    )
    state.title = "testnet demo"
    state.nodes["v3"].process = "killed"
    state.nodes["v2"].process = "paused"
    state.nodes["v4"].behaviour = "equivocate"
    text = wt.render(state, now=T0 + 11, width=200)
    lines = text.splitlines()
    assert lines[0] == "testnet demo"
    assert "chain height 40" in lines[1] and "last new height 1.0s ago" in lines[1]
    assert "scenario crash: 1/2 steps done, 11 s in" in text
    rows = {line.split()[0]: line for line in lines if line[:2] in ("v1", "v2", "v3", "v4")}
    assert rows["v1"].split()[:4] == ["v1", "40", "0", "200"] and rows["v1"].endswith("online")
    assert rows["v2"].endswith("paused")
    assert rows["v3"].endswith("offline (killed), jailed") and " 31 " in rows["v3"]
    assert rows["v4"].endswith("online, equivocate")
    recent = text.split("recent events:")[1]
    assert "jailed" in recent and "scenario fault        kill v3" in recent
    assert "last: kill v3 at 4.0 s" in text
    assert "network" not in text  # no network faults: no column for them
    state.nodes["v1"].network = "delay 300ms, group 1/2"
    state.partition = "v1,v2 | v3,v4"
    text = wt.render(state, now=T0 + 11, width=200)
    assert "partition v1,v2 | v3,v4" in text.splitlines()
    header = next(line for line in text.splitlines() if line.startswith("node"))
    assert header.split() == ["node", "height", "round", "latency", "last", "event", "network", "status"]
    assert "delay 300ms, group 1/2  online" in text
    assert "\x1b" not in text
    assert "\x1b[32m" in wt.render(state, now=T0 + 11, width=200, color=True)


def test_scenario_steps_show_in_the_header_and_the_recent_events() -> None:
    state = watched(
        [
            {"event": "scenario_started", "ts": T0, "name": "net", "spec": {"step": [{}, {}, {}]}},
            step("fault", "delay", 2, node="v2", ms=300),
            step("fault", "partition", 3, groups=[["v1", "v2"], ["v3", "v4"]]),
            {**step("step_failed", "heal", 5), "error": "the relay is gone"},
            {"event": "scenario_finished", "ts": T0 + 9, "name": "net"},
        ]
    )
    text = wt.render(state, now=T0 + 10, width=200)
    assert "scenario net: 3/3 steps done, finished; last: heal at 5.0 s (failed)" in text
    recent = text.split("recent events:")[1]
    assert "fault        delay v2 300 ms" in recent
    assert "fault        partition v1,v2 | v3,v4" in recent
    assert "step_failed  heal: the relay is gone" in recent


def test_render_clips_long_lines_and_handles_an_empty_testnet() -> None:
    state = wt.WatchState(nodes={"v1": wt.NodeRow("v1")}, title="x" * 300)
    text = wt.render(state, now=T0, width=60)
    assert all(len(line) <= 60 for line in text.splitlines())
    assert "recent events: none yet" in text and "chain height 0" in text
    assert wt.status_text(wt.NodeRow("v1"), set()) == "?"
    assert wt.status_text(wt.NodeRow("v1", process="dead"), {"tombstoned"}) == "offline (died), tombstoned"


def test_watch_once_on_a_finished_run(tmp_path: Path) -> None:
    layout = write_run(tmp_path / "net")
    result = CliRunner().invoke(cli, ["watch", "--dir", str(layout.root), "--once"])
    assert result.exit_code == 0, result.output
    assert "chain height 13" in result.output and "scenario split: 2/2 steps done, finished" in result.output
    missing = CliRunner().invoke(cli, ["watch", "--dir", str(tmp_path / "none"), "--once"])
    assert missing.exit_code == 2 and "has no testnet" in missing.output


# ------------------------------------------------------------------ watch: smoke test on a real testnet

ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def _posnet(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "network.cli", *map(str, args)]


@pytest.mark.integration
@pytest.mark.broker
def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_watch_follows_a_real_testnet_and_quits_on_ctrl_c(tmp_path: Path) -> None:
    directory = tmp_path / "net"
    up = subprocess.Popen(
        _posnet("testnet", "up", "--dir", directory, "--slot-ms", "200", "--duration", "60", "--quiet"),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    watcher = None
    try:
        layout = Layout.of(directory)
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            if layout.log("v4").exists() and '"finalized"' in layout.log("v4").read_text():
                break
            time.sleep(0.25)
        screen = tmp_path / "watch.out"
        with screen.open("w") as sink:
            watcher = subprocess.Popen(
                _posnet("watch", "--dir", directory, "--interval", "0.5"),
                env=ENV,
                stdout=sink,
                stderr=subprocess.PIPE,
                text=True,
                # Ctrl-C as a terminal sends it: a run started in the background inherits SIGINT ignored,
                # and Python then never turns it into KeyboardInterrupt (the watch drew 122 frames on)
                preexec_fn=_sigint_default,
            )
        # three redraws, however long the CLI takes to start on a loaded machine
        deadline = time.monotonic() + 120
        while screen.read_text().count("Ctrl-C quits") < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        watcher.send_signal(signal.SIGINT)
        try:
            _, err = watcher.communicate(timeout=60)  # a loaded 2-core machine: it failed once at 10 s
        except subprocess.TimeoutExpired:
            frames_seen = screen.read_text().count("Ctrl-C quits")
            raise AssertionError(f"watch ignored Ctrl-C for 60 s after {frames_seen} frames") from None
        out = screen.read_text()
    finally:
        if watcher is not None and watcher.poll() is None:
            watcher.kill()
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
    assert watcher.returncode == 0, err
    frames = [f for f in out.split("Ctrl-C quits") if f.strip()]
    assert len(frames) >= 3  # redrawn every 0.5 s
    last = frames[-1]
    assert "up for" in last
    for name in ("v1", "v2", "v3", "v4"):
        row = next(line for line in last.splitlines() if line.startswith(name + " "))
        assert int(row.split()[1]) >= 1 and row.rstrip().endswith("online"), row
    assert "Traceback" not in err


def test_the_newest_epoch_stake_shows_in_the_live_view_and_the_report() -> None:
    epochs = [
        ev("epoch", "v1", 3, height=10, epoch=1, stake={"v1": 3000, "v2": 1000}, nakamoto=1),
        ev("epoch", "v2", 6, height=20, epoch=2, stake={"v1": 2000, "v2": 2000}, nakamoto=1),
        ev("epoch", "v1", 6.1, height=20, epoch=2, stake={"v1": 2000, "v2": 2000}, nakamoto=1),
    ]
    text = wt.render(watched(epochs), now=T0 + 7, width=200)
    assert "stake at epoch 2: v1 50.0%, v2 50.0% (Nakamoto coefficient 1)" in text
    assert "recent events: none yet" in text  # every node logs each epoch: not news
    run = run_data()
    run.logs["v1"].append(epochs[0])
    run.logs["v2"].append(epochs[1])
    lines, _ = rp.summary_lines(run)
    assert "stake at epoch 2: v1 50.0%, v2 50.0% (Nakamoto coefficient 1)" in lines
    assert not any("stake at epoch" in line for line in rp.summary_lines(run_data())[0])
