"""`posnet view`: the trace model, the HTTP API (a file and a growing testnet), bad input, and the page itself.

The last test is the acceptance test: a real partition-heal run of the
simulator, the real `posnet view` process, the real page in headless
Chromium; what the page's node panel shows is compared with what the trace
file says, computed here independently of the page and of network/view.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from network.cli import cli
from network.sim.config import SimConfig
from network.sim.plans import parse_fault_spec
from network.sim.runner import run_simulation
from network.transport.broker import free_port
from network.view import model
from network.view.server import ViewServer, static_file
from network.view.source import FileSource, TestnetSource

REPO = Path(__file__).resolve().parents[1]
SPLIT = "partition=v1+v2|v3+v4@100-6000"  # 2|2: neither half can finalize until the heal


def simulate(tmp_path: Path, faults: str = SPLIT, heights: int = 5, **config: Any) -> Path:
    out = io.StringIO()
    run_simulation(SimConfig(heights=heights, faults=parse_fault_spec(faults), **config), out)
    path = tmp_path / "run.jsonl"
    path.write_text(out.getvalue())
    return path


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- the model


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a trace: it is empty"),
        ("hello\n", "not a trace: line 1 is not JSON"),
        ('{"t":1,"ev":"deliver"}\n', 'not a trace: line 1 is not a {"ev":"run"} header'),
        ('{"ev":"run"}\n', "not a trace: its header has no validators list"),
        ('{"ev":"run","validators":[{"name":"v1"}]}\n{"t":1,"ev":"step"}\n{oops\n', "line 3 is not JSON"),
        ('{"ev":"run","validators":[{"name":"v1"}]}\n[1, 2]\n', 'line 2 is not a trace event (no "ev")'),
    ],
)
def test_what_is_not_a_trace_is_named_in_one_line(text: str, message: str) -> None:
    with pytest.raises(model.TraceError) as caught:
        model.parse_trace(text, "f.jsonl")
    assert str(caught.value).startswith("f.jsonl: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_last_line_still_being_written_is_skipped_not_fatal() -> None:
    header = '{"ev":"run","validators":[{"name":"v1","stake":5}]}'
    trace = model.parse_trace(header + '\n{"t":1,"ev":"boot","node":"v1"}\n{"t":2,"ev":"de', "f")
    assert [e["ev"] for e in trace.events] == ["boot"]
    assert model.parse_trace(header, "f").header["validators"] == [{"name": "v1", "stake": 5}]


def test_the_summary_has_shares_partitions_and_the_ledgers_nakamoto(tmp_path: Path) -> None:
    path = simulate(
        tmp_path, faults="partition=v1+v2|v3+v4@100-900", heights=2, stakes=(4000, 2000, 1000, 1000)
    )
    header = lines_of(path)[0]
    got = model.summary(header)
    assert [(v["name"], v["share"]) for v in got["validators"]] == [
        ("v1", 0.5), ("v2", 0.25), ("v3", 0.125), ("v4", 0.125),
    ]  # fmt: skip
    assert got["partitions"] == [{"start": 100, "end": 900, "groups": [["v1", "v2"], ["v3", "v4"]]}]
    assert got["nakamoto"] == 1  # v1 alone holds more than 1/3
    assert model.nakamoto({"a": 1000, "b": 1000, "c": 1000, "d": 1000}) == 2
    assert model.nakamoto({"a": 100, "b": 100, "c": 100, "d": 100, "e": 100, "f": 100, "g": 100}) == 3
    assert model.nakamoto({}) is None
    assert got["steps"] is True and model.has_steps({"kinds": ["decide", "timeout"]}) is False


def test_the_nakamoto_figure_is_the_one_the_simulator_reports(tmp_path: Path) -> None:
    for stakes in [(1000, 1000, 1000, 1000), (5000, 1000, 1000, 1000, 1000), (300, 300, 300, 100, 100)]:
        out = io.StringIO()
        result = run_simulation(SimConfig(validators=len(stakes), heights=1, stakes=stakes), out)
        header = json.loads(out.getvalue().splitlines()[0])
        assert model.summary(header)["nakamoto"] == result.to_json()["nakamoto_coefficient"], stakes


def test_round_marks_are_where_the_run_first_reached_each_height_and_round() -> None:
    def step(node: str, h: int, r: int) -> dict[str, Any]:
        return {"t": 0, "ev": "step", "node": node, "h": h, "r": r, "step": "propose"}

    events = [
        step("v1", 1, 0), step("v2", 1, 0), {"t": 1, "ev": "decide", "node": "v1", "h": 1, "r": 0},
        step("v1", 2, 0), step("v2", 2, 0), step("v2", 2, 1), step("v1", 2, 1), step("v1", 3, 0),
    ]  # fmt: skip
    assert model.round_marks(events, steps=True) == [
        {"i": 0, "h": 1, "r": 0}, {"i": 3, "h": 2, "r": 0}, {"i": 5, "h": 2, "r": 1}, {"i": 7, "h": 3, "r": 0},
    ]  # fmt: skip
    testnet = [
        {"t": 0, "ev": "decide", "node": "v1", "h": 1, "r": 0},
        {"t": 1, "ev": "timeout", "node": "v1", "h": 2, "r": 0, "step": "propose"},  # no new round
        {"t": 2, "ev": "timeout", "node": "v1", "h": 2, "r": 0, "step": "precommit"},
        {"t": 3, "ev": "decide", "node": "v2", "h": 1, "r": 0},  # behind the frontier
    ]
    assert model.round_marks(testnet, steps=False) == [{"i": 0, "h": 2, "r": 0}, {"i": 2, "h": 2, "r": 1}]


def test_the_verdict_names_a_fork() -> None:
    def decide(node: str, h: int, block: str) -> dict[str, Any]:
        return {"t": 0, "ev": "decide", "node": node, "h": h, "r": 0, "block": block}

    safe = model.verdict([decide("v1", 1, "aa"), decide("v2", 1, "aa"), decide("v1", 2, "bb")])
    assert safe.safe and safe.heights == 2 and safe.decisions == 3
    forked = model.verdict([decide("v1", 1, "aa"), decide("v2", 2, "cc"), decide("v3", 2, "dd")])
    assert not forked.safe and forked.conflicts == {2: {"cc": ["v2"], "dd": ["v3"]}}
    assert "UNSAFE" in forked.describe() and "dd by v3" in forked.describe()


# ---------------------------------------------------------------- the server


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ViewServer] = []

    def start(source: Any) -> str:
        server = ViewServer(("127.0.0.1", free_port()), source)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_the_server_serves_the_page_and_the_trace(tmp_path: Path, serve: Any) -> None:
    path = simulate(tmp_path)
    lines = lines_of(path)
    url = serve(FileSource(path))
    status, kind, body = get(url)
    assert status == 200 and kind.startswith("text/html") and b'id="node-panel"' in body
    for name, mime in (("view.js", "text/javascript"), ("view.css", "text/css")):
        status, kind, body = get(f"{url}static/{name}")
        assert status == 200 and kind.startswith(mime) and body == static_file(name)
    data = json.loads(get(f"{url}api/trace")[2])
    assert data["events"] == lines[1:] and data["total"] == len(lines) - 1 and data["since"] == 0
    assert data["live"] is False and data["summary"]["nakamoto"] == 2
    assert data["summary"]["partitions"][0]["groups"] == [["v1", "v2"], ["v3", "v4"]]
    assert [m["h"] for m in data["marks"]] == [1, 2, 3, 4, 5, 6]
    assert all(lines[m["i"] + 1]["ev"] == "step" for m in data["marks"])
    tail = json.loads(get(f"{url}api/trace?since=600")[2])
    assert tail["events"] == lines[601:] and tail["since"] == 600
    assert tail["marks"] == [m for m in data["marks"] if m["i"] >= 600]
    assert get(f"{url}api/trace?since=-1")[0] == 400
    assert get(f"{url}static/..%2Fmodel.py")[0] == 404
    assert get(f"{url}static/../model.py")[0] == 404
    assert get(f"{url}nothing")[0] == 404


def write_testnet(root: Path, events: dict[str, list[dict[str, Any]]]) -> None:
    from network.testnet.layout import Layout
    from node.core.genesis import genesis_to_toml, make_genesis
    from node.core.keys import Keypair

    layout = Layout.of(root)
    layout.logs.mkdir(parents=True, exist_ok=True)
    if not layout.genesis.exists():
        genesis = make_genesis("chain", {n: Keypair.deterministic(n) for n in ("v1", "v2", "v3")})
        layout.genesis.write_text(genesis_to_toml(genesis))
    for node, lines in events.items():
        with layout.log(node).open("a") as log:
            log.write("".join(json.dumps(e) + "\n" for e in lines))


def finalized(ts: float, height: int) -> dict[str, Any]:
    return {"event": "finalized", "ts": ts, "height": height, "round": 0, "hash": f"{height:02x}" * 32}


def test_a_testnet_is_followed_as_its_logs_grow(tmp_path: Path, serve: Any) -> None:
    root = tmp_path / "net"
    write_testnet(root, {"v1": [{"event": "started", "ts": 100.0, "height": 0}, finalized(100.5, 1)]})
    url = serve(TestnetSource(root))
    first = json.loads(get(f"{url}api/trace")[2])
    assert first["live"] is False  # logs without a running `up`: see the next test
    assert first["summary"]["source"] == "testnet"
    assert first["summary"]["steps"] is False and first["summary"]["nakamoto"] == 2
    assert [(e["ev"], e["t"]) for e in first["events"]] == [("boot", 0), ("decide", 500)]
    assert first["marks"] == [{"i": 1, "h": 2, "r": 0}]
    write_testnet(
        root,
        {
            "v1": [finalized(101.0, 2)],
            "v2": [
                {"event": "started", "ts": 100.2, "height": 0},  # earlier than what the page holds: appended
                {"event": "round_timeout", "ts": 101.5, "height": 3, "round": 0, "step": "precommit"},
            ],
        },
    )
    more = json.loads(get(f"{url}api/trace?since=2")[2])
    assert more["total"] == 5 and more["since"] == 2
    assert [(e["ev"], e["node"]) for e in more["events"]] == [
        ("boot", "v2"),
        ("decide", "v1"),
        ("timeout", "v2"),
    ]
    assert more["marks"] == [{"i": 3, "h": 3, "r": 0}, {"i": 4, "h": 3, "r": 1}]
    again = json.loads(get(f"{url}api/trace")[2])
    assert again["events"][:2] == first["events"] and again["events"][2:] == more["events"]
    assert json.loads(get(f"{url}api/trace?since=5")[2])["events"] == []


def record_up(root: Path, pid: int | None, command: list[str] | None, started_at: float = 0.0) -> None:
    """testnet.json naming `pid` (running `command`) as the testnet's `up`."""
    from network.testnet.layout import BrokerInfo, Layout, TestnetState, write_state

    state = TestnetState(
        "chain", BrokerInfo("embedded", "mqtt://127.0.0.1:1"), {}, None, pid, command, started_at
    )
    write_state(Layout.of(root), state)


def test_live_means_the_testnets_up_process_still_runs(tmp_path: Path, serve: Any) -> None:
    """Not "a node logged lately": a stalled testnet is quiet and live, a killed node logs no `stopped`."""
    root = tmp_path / "net"
    write_testnet(root, {"v1": [{"event": "started", "ts": 100.0, "height": 0}, finalized(100.5, 1)]})
    source = TestnetSource(root)
    assert source.live is False  # no testnet.json: logs copied from elsewhere
    up = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        command = [sys.executable, "-c", "import time; time.sleep(60)"]
        record_up(root, up.pid, command)
        url = serve(source)
        assert json.loads(get(f"{url}api/trace")[2])["live"] is True
        record_up(root, up.pid, ["something", "else"])  # the pid reused by another program: not our up
        assert source.live is False
        record_up(root, up.pid, command)
        assert source.live is True
    finally:
        up.kill()
        up.wait()
    assert json.loads(get(f"{url}api/trace?since=2")[2])["live"] is False


def test_a_testnets_faults_run_by_hand_are_windows_on_the_traces_clock(tmp_path: Path, serve: Any) -> None:
    """kill/restart, pause, partition/heal and delay from the step log, as the report reads it."""
    from network.testnet import scenario as sc
    from network.testnet import scenario_log as sc_log
    from network.testnet.layout import Layout

    root = tmp_path / "net"
    write_testnet(root, {"v1": [{"event": "started", "ts": 100.0, "height": 0}, finalized(110.0, 1)]})
    record_up(root, None, None, started_at=99.0)
    log = Layout.of(root).logs / sc_log.SCENARIO_LOG

    def step(action: str, ts: float, **args: Any) -> None:
        sc_log.append_event(
            log, sc_log.step_event(sc.TimelineStep(action=action, at_s=0.0, **args), ts, "manual")
        )

    step("kill", 50.0, node="v1")  # before this run's `up` started: an earlier run's
    step("partition", 101.0, groups=[["v1", "v2"], ["v3"]])
    step("heal", 103.5)
    step("kill", 102.0, node="v3")
    step("restart", 106.0, node="v3")
    step("pause", 107.0, node="v2")
    step("delay", 108.0, node="v1", ms=300)
    url = serve(TestnetSource(root))
    summary = json.loads(get(f"{url}api/trace")[2])["summary"]
    shown = [(w["kind"], w["start"], w["end"], w["node"]) for w in summary["windows"]]
    assert shown == [
        ("partition", 1000, 3500, None),
        ("down", 2000, 6000, "v3"),
        ("paused", 7000, None, "v2"),
        ("delay", 8000, None, "v1"),
    ]
    assert summary["windows"][0]["groups"] == [["v1", "v2"], ["v3"]]
    assert summary["partitions"] == [{"start": 1000, "end": 3500, "groups": [["v1", "v2"], ["v3"]]}]
    step("resume", 109.0, node="v2")  # a fault healed while the page watches: the next poll says so
    again = json.loads(get(f"{url}api/trace?since=2")[2])["summary"]
    assert [(w["kind"], w["end"]) for w in again["windows"]][2] == ("paused", 9000)


# ---------------------------------------------------------------- bad input


def one_line_error(result: Any) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "not a trace: it is empty"),
        ("not json at all\n", "not a trace: line 1 is not JSON"),
        ('{"t":3,"ev":"decide"}\n', 'not a trace: line 1 is not a {"ev":"run"} header'),
        (b"\xff\xfe\x00binary", "not a trace: not UTF-8 text"),
    ],
)
def test_posnet_view_refuses_what_is_not_a_trace(tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = tmp_path / "bad.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    result = CliRunner().invoke(cli, ["view", str(path), "--no-open", "--port", "0"])
    assert result.exit_code == 2
    line = one_line_error(result)
    assert str(path) in line and expected in line


def test_posnet_view_refuses_a_missing_path_and_a_directory_that_is_no_testnet(tmp_path: Path) -> None:
    missing = CliRunner().invoke(cli, ["view", str(tmp_path / "nope.jsonl"), "--no-open"])
    assert missing.exit_code == 2 and "does not exist" in missing.output and "nope.jsonl" in missing.output
    empty_dir = CliRunner().invoke(cli, ["view", str(tmp_path), "--no-open"])
    assert empty_dir.exit_code == 2
    assert f"{tmp_path} is not a testnet directory" in one_line_error(empty_dir)


def test_posnet_view_says_when_its_port_is_taken(tmp_path: Path) -> None:
    path = simulate(tmp_path, heights=1, faults="")
    port = free_port()
    holder = ViewServer(("127.0.0.1", port), FileSource(path))
    try:
        result = CliRunner().invoke(cli, ["view", str(path), "--no-open", "--port", str(port)])
    finally:
        holder.server_close()
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(result)


def test_the_page_ships_as_package_data() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["network.view"]
    static = REPO / "network" / "view" / "static"
    shipped = sorted(p.relative_to(static.parent).as_posix() for p in static.iterdir())
    assert {"static/index.html", "static/view.js", "static/view.css"} <= set(shipped)
    for name in shipped:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
    page = static_file("index.html") or b""
    assert b"http://" not in page and b"https://" not in page  # nothing fetched from elsewhere: works offline
    assert b"https://" not in (static_file("view.js") or b"")


# ---------------------------------------------------------------- the page, in a real browser


def expected_state(events: list[dict[str, Any]], index: int, node: str) -> dict[str, Any]:
    """What the trace says about `node` after event `index`: its last step line, and the votes it was given."""
    state: dict[str, Any] = {"h": None}
    for event in events[: index + 1]:
        if event["ev"] == "step" and event["node"] == node:
            state = {"h": event["h"], "r": event["r"], "step": event["step"], "lock": event["lock"]}
    voters = {
        event["from"]
        for event in events[: index + 1]
        if event["ev"] == "deliver"
        and event["to"] == node
        and event["msg"] == "prevote"
        and (event["h"], event["r"]) == (state["h"], state.get("r"))
    }
    return {**state, "prevotes": len(voters)}  # distinct voters, not deliveries (relays repeat them)


def expected_round_starts(events: list[dict[str, Any]]) -> list[int]:
    """The indices where a step line first reached a (height, round) beyond all before it."""
    starts, best = [], (-1, -1)
    for index, event in enumerate(events):
        if event["ev"] == "step" and (event["h"], event["r"]) > best:
            best = (event["h"], event["r"])
            starts.append(index)
    return starts


def browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(
            "needs chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)"
        )
    return chromium, driver


def wait_for(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the page")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.integration
def test_the_page_shows_what_the_trace_says_at_a_round_and_mid_partition(tmp_path: Path) -> None:
    chromium, driver_path = browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    trace = tmp_path / "split.jsonl"
    posnet = [sys.executable, "-m", "network.cli"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sim = subprocess.run(
        [*posnet, "sim", "--validators", "4", "--heights", "5", "--faults", SPLIT, "--trace", str(trace)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert sim.returncode == 0, sim.stdout + sim.stderr
    events = lines_of(trace)[1:]
    port = free_port()
    server = subprocess.Popen(
        [*posnet, "view", str(trace), "--no-open", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800"):
        options.add_argument(argument)
    browser = None
    try:
        wait_for(lambda: get(f"{url}api/trace?since={len(events)}")[0] == 200)
        browser = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)

        def text(element_id: str) -> str:
            return browser.find_element(By.ID, element_id).text.strip()

        def at() -> int:
            return int(browser.find_element(By.ID, "position").get_attribute("data-index"))

        def panel_matches(node: str, index: int) -> dict[str, Any]:
            want = expected_state(events, index, node)
            assert want["h"] is not None, "the test must look at a node that has started"
            wait_for(lambda: browser.find_element(By.ID, "node-panel").get_attribute("data-node") == node)
            lock = browser.find_element(By.ID, "sel-lock")
            prevotes = browser.find_element(By.ID, "sel-prevotes")
            shown = {
                "h": int(text("sel-height")),
                "r": int(text("sel-round")),
                "step": text("sel-step"),
                "lock": lock.get_attribute("data-block") or None,
                "prevotes": int(prevotes.get_attribute("data-count")),
            }
            assert shown == want, f"{node} after event {index}: page {shown}, trace {want}"
            if want["prevotes"]:  # equal stakes: each voter is a quarter of the stake
                share = f"{want['prevotes']} of 4 ({round(25 * want['prevotes'])}% of stake)"
                assert prevotes.text.startswith(share), prevotes.text
            if want["lock"]:
                assert want["lock"] in lock.text
            return want

        # 1. step by round: the third press lands where the run first reached height 3
        browser.get(f"{url}#node=v2")
        wait_for(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        assert at() == -1 and text("nakamoto") == "2"
        for _ in range(3):
            browser.find_element(By.ID, "btn-next-round").click()
        starts = expected_round_starts(events)
        assert at() == starts[2] and events[starts[2]]["h"] == 3
        panel_matches("v2", at())
        assert browser.find_element(By.ID, "light-safety").get_attribute("data-state") == "ok"
        assert browser.find_element(By.ID, "light-liveness").get_attribute("data-state") == "ok"
        for _ in range(7):
            browser.find_element(By.ID, "btn-next-event").click()
        assert at() == starts[2] + 7
        panel_matches("v2", at())
        # the raw event wraps inside its box and scrolls there, rather than running off the panel
        box = browser.execute_script(
            "const e = document.getElementById('event-text'), s = getComputedStyle(e);"
            "return [s.whiteSpace, s.overflowY, e.scrollWidth, e.clientWidth, e.textContent];"
        )
        assert box[0] == "pre-wrap" and box[1] in ("auto", "scroll") and box[2] <= box[3], box
        assert json.loads(box[4]) == events[at()]

        # 2. a link into the middle of the partition, with a node chosen; then another node clicked
        middle = max(i for i, e in enumerate(events) if e["t"] <= 3000)
        browser.get(f"{url}#event={middle}&node=v1")
        wait_for(lambda: at() == middle)
        locked = panel_matches("v1", middle)
        assert locked["lock"] is not None and locked["step"] == "precommit"  # v1+v2 locked, cannot commit
        browser.find_element(By.CSS_SELECTOR, 'g.node[data-node="v3"] circle.body').click()
        other = panel_matches("v3", middle)
        assert other["h"] == locked["h"] and other["lock"] is None  # the other half never saw a polka
        assert browser.find_element(By.ID, "light-liveness").get_attribute("data-state") == "warn"
        assert "partition v1+v2 | v3+v4" in text("ring-center-3")
        assert "#event=" in browser.current_url and "node=v3" in browser.current_url

        # 3. the same point by time: ?t= selects the last event at or before it
        browser.get(f"{url}?t=3000&node=v4")
        wait_for(lambda: at() == middle)
        panel_matches("v4", middle)

        # 4. a round link: where the run first reached height 4, after the heal
        browser.get(f"{url}#round=4.0&node=v3")
        wait_for(lambda: at() == starts[3])
        assert events[starts[3]]["h"] == 4 and events[starts[3]]["t"] >= 6000
        panel_matches("v3", starts[3])
    finally:
        if browser is not None:
            browser.quit()
        server.terminate()
        output, _ = server.communicate(timeout=10)
    assert "serving at" in output and "safe: 5 heights decided" in output
