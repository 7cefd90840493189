"""`posnet sim --trace`: every event of a run as JSON lines, in the shapes a viewer reads."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from network.cli import cli
from network.sim.config import SimConfig
from network.sim.plans import parse_fault_spec
from network.sim.runner import run_simulation

FAULTS = "partition=v1+v2+v3|v4@100-1500,crash=v2@2000-2600"


def traced(seed: int = 0, faults: str = FAULTS, heights: int = 8) -> tuple[list[dict[str, Any]], Any, str]:
    out = io.StringIO()
    result = run_simulation(
        SimConfig(validators=4, heights=heights, seed=seed, faults=parse_fault_spec(faults)), out
    )
    text = out.getvalue()
    return [json.loads(line) for line in text.splitlines()], result, text


def test_the_same_seed_traces_the_same_bytes_and_another_seed_does_not() -> None:
    _, _, first = traced(seed=3)
    _, _, again = traced(seed=3)
    _, _, other = traced(seed=4)
    assert first == again and first != other


def test_the_trace_opens_with_the_run_and_the_command_that_replays_it() -> None:
    lines, result, _ = traced()
    header = lines[0]
    assert header["ev"] == "run" and header["replay"] == result.replay
    assert [v["name"] for v in header["validators"]] == ["v1", "v2", "v3", "v4"]
    assert all("t" in line for line in lines[1:])
    assert [line["t"] for line in lines[1:]] == sorted(line["t"] for line in lines[1:])  # virtual-time order


def test_decisions_in_the_trace_agree_with_the_run() -> None:
    lines, result, _ = traced()
    decided: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for line in lines:
        if line["ev"] == "decide":
            decided[line["node"]].append((line["h"], line["block"]))
    assert {node: len(blocks) for node, blocks in decided.items()} == result.to_json()["node_heights"]
    by_height = {h: {b for blocks in decided.values() for hh, b in blocks if hh == h} for h in range(1, 9)}
    assert all(len(blocks) == 1 for blocks in by_height.values())  # one block per height across nodes
    for blocks in decided.values():
        assert [h for h, _ in blocks] == list(range(1, len(blocks) + 1))


def test_drops_say_why_and_faults_show_as_crash_and_boot() -> None:
    lines, result, _ = traced()
    drops = [line for line in lines if line["ev"] == "drop"]
    assert drops and {d["why"] for d in drops} <= {"partition", "down", "loss"}
    for drop in (d for d in drops if d["why"] == "partition"):
        assert 100 <= drop["t"] < 1500 and "v4" in (drop["from"], drop["to"])
    assert all(d["msg"] for d in drops)
    crash = [line for line in lines if line["ev"] in ("crash", "boot") and line["node"] == "v2"]
    assert [(c["ev"], c["t"]) for c in crash][-2:] == [("crash", 2000), ("boot", 2600)]
    delivered = sum(1 for line in lines if line["ev"] == "deliver")
    assert delivered == result.to_json()["messages_delivered"]
    assert len(drops) == result.to_json()["messages_dropped"]


def test_steps_show_each_nodes_height_round_step_and_lock() -> None:
    lines, _, _ = traced(faults="")
    steps = [line for line in lines if line["ev"] == "step" and line["node"] == "v1"]
    assert {s["step"] for s in steps} >= {"propose", "prevote", "precommit"}
    locked = [s for s in steps if s["locked"] >= 0]
    assert locked and all(s["lock"] for s in locked)


def test_the_cli_writes_a_trace_and_refuses_one_for_a_sweep(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    result = CliRunner().invoke(cli, ["sim", "--heights", "3", "--trace", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(path.read_text().splitlines()[0])["ev"] == "run"
    result = CliRunner().invoke(cli, ["sim", "--seeds", "3", "--trace", str(path)])
    assert result.exit_code == 2 and "a trace is of one run" in result.output


# ------------------------------------------------------------------ a testnet's logs, as a trace


def test_a_testnets_logs_become_a_trace_with_the_simulators_shapes(tmp_path: Path) -> None:
    from network.testnet.layout import Layout
    from network.testnet.tracefile import testnet_trace
    from node.core.genesis import genesis_to_toml, make_genesis
    from node.core.keys import Keypair

    layout = Layout.of(tmp_path / "net")
    layout.logs.mkdir(parents=True)
    genesis = make_genesis("chain", {n: Keypair.deterministic(n) for n in ("v1", "v2")})
    layout.genesis.write_text(genesis_to_toml(genesis))
    logs = {
        "v1": [
            {"event": "started", "ts": 100.0, "height": 0},
            {"event": "finalized", "ts": 100.5, "height": 1, "round": 0, "hash": "ab" * 32, "latency_ms": 9},
            {"event": "broker_connected", "ts": 100.6},
        ],
        "v2": [
            {"event": "started", "ts": 100.1, "height": 0},
            {"event": "round_timeout", "ts": 101.0, "height": 2, "round": 0, "step": "propose"},
            {
                "event": "slashed",
                "ts": 101.2,
                "height": 2,
                "validator": "v1",
                "amount": 5,
                "reason": "double sign",
            },
        ],
    }
    for node, events in logs.items():
        layout.log(node).write_text("".join(json.dumps(e) + "\n" for e in events))
    lines = list(testnet_trace(layout, genesis))
    assert lines[0]["ev"] == "run" and lines[0]["source"] == "testnet"
    assert [(line["t"], line["ev"], line["node"]) for line in lines[1:]] == [
        (0, "boot", "v1"), (100, "boot", "v2"), (500, "decide", "v1"), (1000, "timeout", "v2"), (1200, "slashed", "v2"),
    ]  # fmt: skip
    decide = lines[3]
    assert decide["block"] == "abababab" and (decide["h"], decide["r"]) == (1, 0)
    simulated, _, _ = traced(faults="", heights=2)
    sim_decide = next(line for line in simulated if line["ev"] == "decide")
    sim_timeout = {"t", "ev", "node", "h", "r", "step"}
    assert set(decide) == set(sim_decide) and set(lines[4]) == sim_timeout  # one viewer reads both
