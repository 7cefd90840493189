"""Many validators per node process (`posnet testnet up --processes P`).

- unit: how validators are spread over processes, how a fault named by
  validator finds its process and says so, why a partition that splits a
  process is refused, how a scenario written in validators is judged from
  process logs, and the command line each process is started with;
- end to end (`integration`, `slow`): a real 12-validator testnet in 3
  processes that finalizes; killing one validator by name kills its whole
  process (and, 4 of 12 validators gone, finality stops until it is back);
  the outputs and the summary name the co-hosted validators; a partition
  splitting a process is refused in one line.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from network.cli import cli
from network.testnet.errors import TestnetError
from network.testnet.layout import BrokerInfo, Layout, NodeProc, TestnetState, write_state
from network.testnet.placement import describe_islands, hosted_note, map_groups, spread
from network.testnet.processes import node_command
from network.testnet.scenario import parse_scenario
from network.testnet.scenario_checks import evaluate, in_validator_terms
from network.testnet.supervisor import check_same_placement, process_behaviours
from node.core.genesis import Params, validator_names
from tests.support.user_testnet import running_testnet

TWELVE = validator_names(12)
HOSTS = spread(TWELVE, 3)


# ------------------------------------------------------------------ spreading keys


def test_default_is_one_process_per_validator_named_after_it() -> None:
    assert spread(TWELVE[:4], None) == {"v1": ["v1"], "v2": ["v2"], "v3": ["v3"], "v4": ["v4"]}
    assert spread(TWELVE[:4], 4) == spread(TWELVE[:4], None)


def test_validators_are_spread_in_contiguous_blocks() -> None:
    assert HOSTS == {
        "p1": ["v1", "v2", "v3", "v4"],
        "p2": ["v5", "v6", "v7", "v8"],
        "p3": ["v9", "v10", "v11", "v12"],
    }
    uneven = spread(validator_names(10), 3)
    assert [len(vs) for vs in uneven.values()] == [4, 3, 3]  # the first N mod P take one more
    assert [v for vs in uneven.values() for v in vs] == validator_names(10)  # each exactly once, in order
    assert spread(validator_names(128), 8)["p8"] == [f"v{i}" for i in range(113, 129)]
    assert spread(TWELVE, 1) == {"p1": TWELVE}


@pytest.mark.parametrize("processes", [0, 13])
def test_more_processes_than_validators_is_refused(processes: int) -> None:
    with pytest.raises(TestnetError, match="between 1 and the number of validators"):
        spread(TWELVE, processes)


def test_process_command_hosts_its_validators_keys(tmp_path: Path) -> None:
    layout = Layout.of(tmp_path)
    command = node_command(layout, "p2", "mqtt://127.0.0.1:1", 0, "honest", None, HOSTS["p2"])
    keys = [command[i + 1] for i, arg in enumerate(command) if arg == "--key"]
    assert keys == [str(layout.key(v)) for v in ("v5", "v6", "v7", "v8")]
    assert command[command.index("--name") + 1] == "p2"
    assert command[command.index("--home") + 1] == str(layout.home("p2"))
    assert command[command.index("--log") + 1] == str(layout.log("p2"))
    # one process per validator: today's command line, no --key (the node reads HOME/key.json)
    assert "--key" not in node_command(layout, "v3", "mqtt://127.0.0.1:1", 0, "honest", None, ["v3"])


# ------------------------------------------------------------------ faults by validator name


def _state(hosts: dict[str, list[str]]) -> TestnetState:
    nodes = {
        name: NodeProc(name=name, command=["x"], metrics_port=1, validators=[] if vs == [name] else vs)
        for name, vs in hosts.items()
    }
    return TestnetState(
        chain_id="c", broker=BrokerInfo(kind="external", url="mqtt://127.0.0.1:1"), nodes=nodes
    )


def test_a_validator_name_finds_the_process_hosting_it() -> None:
    state = _state(HOSTS)
    assert state.node("v6").name == "p2"
    assert state.node("p3").name == "p3"
    with pytest.raises(TestnetError, match=r"processes p1\.\.p3 hosting v1\.\.v12"):
        state.node("v13")
    assert _state(spread(TWELVE[:4], None)).node("v2").name == "v2"


def test_fault_output_names_the_co_hosted_validators() -> None:
    assert hosted_note(HOSTS, "v5") == "v5 runs in p2 with v6, v7, v8: "
    assert hosted_note(HOSTS, "p2") == "p2 hosts v5, v6, v7, v8: "
    assert hosted_note(spread(TWELVE[:4], None), "v2") == ""  # one per validator: output as before


def test_partition_of_whole_processes_maps_to_processes() -> None:
    groups = map_groups(HOSTS, [TWELVE[:8], TWELVE[8:]])
    assert groups == [["p1", "p2"], ["p3"]]
    assert map_groups(HOSTS, [["p3"], ["v5", "v6", "v7", "v8"]]) == [["p1", "p3"], ["p2"]]
    assert describe_islands(HOSTS, [["p3"], ["p2"]]) == "p3 (v9,v10,v11,v12) | p2 (v5,v6,v7,v8)"


@pytest.mark.parametrize(
    ("groups", "needle"),
    [
        ([["v1", "v2"], ["v3", "v4"]], "splits p1 (v1,v2 | v3,v4)"),
        ([["v5", "v6", "v7", "v8"], ["v9"]], "splits p3 (v10,v11,v12 | v9)"),  # unnamed join group 1
    ],
)
def test_partition_splitting_a_process_is_refused_naming_it(groups: list[list[str]], needle: str) -> None:
    with pytest.raises(TestnetError) as caught:
        map_groups(HOSTS, groups)
    message = str(caught.value)
    assert needle in message and "a process cannot be on both sides" in message
    assert "\n" not in message


def test_partition_refuses_unknown_and_twice_named_validators() -> None:
    with pytest.raises(TestnetError, match="unknown node 'v99'"):
        map_groups(HOSTS, [["v99"], ["p2"]])
    with pytest.raises(TestnetError, match="v5 is named in two partition groups"):
        map_groups(HOSTS, [["v5"], ["p2"]])


def test_behaviours_apply_per_process_and_conflicts_are_refused() -> None:
    assert process_behaviours(HOSTS, {"v6": "equivocate"}) == {"p2": "equivocate"}
    with pytest.raises(TestnetError, match=r"v5, v6, v7, v8 run in one process \(p2\)"):
        process_behaviours(HOSTS, {"v6": "equivocate", "v7": "silent"})
    with pytest.raises(TestnetError, match="unknown validator v13"):
        process_behaviours(HOSTS, {"v13": "silent"})


def test_a_directory_keeps_its_grouping(tmp_path: Path) -> None:
    layout = Layout.of(tmp_path)
    check_same_placement(layout, HOSTS)  # nothing ran here yet
    write_state(layout, _state(HOSTS))
    check_same_placement(layout, HOSTS)
    with pytest.raises(TestnetError, match="keep --processes 3 or use a fresh --dir"):
        check_same_placement(layout, spread(TWELVE, 4))
    with pytest.raises(TestnetError, match="keep --processes 3"):
        check_same_placement(layout, spread(TWELVE, None))


# ------------------------------------------------------------------ scenarios judged by validator


def _finalized(node: str, heights: range, t0: float) -> list[dict[str, Any]]:
    return [
        {"event": "finalized", "node": node, "ts": t0 + h, "height": h, "round": 0, "hash": f"h{h}"}
        for h in heights
    ]


def test_a_scenario_in_validators_is_judged_from_process_logs() -> None:
    scenario = parse_scenario(
        {
            "name": "spread",
            "validators": 12,
            "duration_s": 30,
            "behaviours": {"v9": "silent"},
            "step": [{"at_s": 5, "action": "kill", "node": "v6"}],
            "checks": {"min_height": 10},
        }
    )
    t0 = 1000.0
    logs = {"p1": _finalized("p1", range(1, 21), t0), "p2": _finalized("p2", range(1, 5), t0), "p3": []}
    judged, by_validator, running = in_validator_terms(scenario, logs, ["p1", "p3"], HOSTS)
    assert by_validator["v3"] == logs["p1"] and by_validator["v7"] == logs["p2"]
    assert running == ["v1", "v2", "v3", "v4", "v9", "v10", "v11", "v12"]  # p2 was killed with v6
    assert set(judged.byzantine()) == {"v9", "v10", "v11", "v12"}  # co-hosted with a silent validator
    results = {r.name: r for r in evaluate(judged, by_validator, [], t0, t0 + 30, Params(), running)}
    assert results["min_height 10"].ok, results["min_height 10"].detail  # p3 is Byzantine, p2 down
    assert results["safety"].ok


# ------------------------------------------------------------------ end to end


def _height(layout: Layout, name: str) -> int:
    heights = [0]
    path = layout.log(name)
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "finalized":
                heights.append(event["height"])
    return max(heights)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.broker
def test_twelve_validators_in_three_processes(tmp_path: Path) -> None:
    directory = tmp_path / "net"
    args = ["--validators", "12", "--processes", "3", "--slot-ms", "200", "--duration", "120", "--quiet"]
    with running_testnet(tmp_path, directory, ["p1", "p2", "p3"], args, wait_s=90) as net:
        layout = net.layout
        net.wait_for(
            lambda: all(_height(layout, p) >= 3 for p in ("p1", "p2", "p3")), "3 heights in every process"
        )
        state = json.loads(layout.state.read_text())
        assert sorted(state["nodes"]) == ["p1", "p2", "p3"]
        assert state["nodes"]["p2"]["validators"] == ["v5", "v6", "v7", "v8"]

        refused = net.posnet("testnet", "partition", "v1,v5", "v2", "--dir", directory, check=2)
        assert refused.stderr.count("\n") == 1, refused.stderr
        assert "splits p1" in refused.stderr and "a process cannot be on both sides" in refused.stderr

        killed = net.posnet("testnet", "kill", "v6", "--dir", directory)
        assert killed.stdout.startswith("v6 runs in p2 with v5, v7, v8: killed p2 (pid"), killed.stdout
        status = net.posnet("status", "--dir", directory).stdout
        row = next(line for line in status.splitlines() if line.startswith("p2 "))
        assert "killed" in row and row.rstrip().endswith("v5..v8"), status
        # 4 of 12 equal stakes down leaves exactly 2/3, not more: the chain must stop
        stalled_at = _height(layout, "p1")
        time.sleep(4)
        assert _height(layout, "p1") <= stalled_at + 1, (
            "finality went on without v5..v8: p2 was not killed whole"
        )

        restarted = net.posnet("testnet", "restart", "v7", "--dir", directory)
        assert restarted.stdout.startswith("v7 runs in p2 with v5, v6, v8: restarted p2"), restarted.stdout
        net.wait_for(
            lambda: all(_height(layout, p) >= stalled_at + 3 for p in ("p1", "p2", "p3")),
            "finality resumed in every process after p2's restart",
        )
    summary = net.output.read_text()
    assert "safety OK: no conflicting finalized blocks across 3 nodes" in summary, summary[-3000:]
    assert "hosts v5, v6, v7, v8" in summary
    report = net.posnet("testnet", "report", "--dir", directory, "--out", tmp_path / "r.png", check=None)
    assert "12 validators in 3 processes" in report.stdout, report.stdout + report.stderr
    assert "hosts v5, v6, v7, v8" in report.stdout
    check = net.posnet("testnet", "check", "--dir", directory)
    assert "hosts v9, v10, v11, v12" in check.stdout


def test_up_refuses_more_processes_than_validators(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["testnet", "up", "--validators", "2", "--processes", "3", "--dir", str(tmp_path / "net")]
    )
    assert result.exit_code == 2
    assert "--processes 3: at most --validators (2)" in result.output
    assert not (tmp_path / "net").exists()
