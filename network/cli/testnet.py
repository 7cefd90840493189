"""`posnet testnet ...` and `posnet status`: run a local testnet and poke at it.

`up` runs in the foreground of one terminal; everything else is a short
command run from another terminal against the same `--dir`, which finds the
processes through DIR/testnet.json. The commands are thin: the work is in
`network.testnet` (supervisor, perturb, ...: processes and faults) and `network.testnet.logcheck`
(verdicts), so tests can drive the same code without a terminal.

Exit codes: 0 success, 1 the testnet failed (a node died, safety broke),
2 a usage problem (unknown node, missing testnet, bad option).

Past 500 lines: one click group whose commands are thin wrappers
over network/testnet; splitting the group would scatter one command tree.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from network.cli.errors import UserError
from network.cli.sim import read_zones
from network.testnet import perturb
from network.testnet.down import DownResult, stop_testnet
from network.testnet.errors import TestnetError
from network.testnet.faultfile import NetworkFaults, read_applied
from network.testnet.layout import (
    PAUSED,
    RUNNING,
    Layout,
    NodeProc,
    TestnetState,
    byzantine_names,
    read_state,
)
from network.testnet.logcheck import (
    Event,
    analyse_dir,
    describe_penalty,
    format_report,
    read_log,
    summarize_node,
    unique_penalties,
)
from network.testnet.perturb import describe_link, describe_partition, read_requested_faults
from network.testnet.placement import MAX_VALIDATORS, describe_islands, hosted_note
from network.testnet.processes import process_state
from network.testnet.quorum import newest_stake, penalised, quorum
from network.testnet.setup import DEFAULT_CHAIN_ID, DEFAULT_SLOT_MS
from network.testnet.supervisor import UpConfig, run_up
from node.core.behaviours import BEHAVIOURS
from node.core.genesis import GenesisError, load_genesis

DIR_OPTION = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default="testnet",
    show_default=True,
    help="the testnet directory",
)


def _broker_spec(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if value in ("auto", "embedded", "mosquitto") or value.startswith("mqtt://"):
        return value
    raise click.BadParameter("expected auto, embedded, mosquitto or mqtt://HOST:PORT")


def _behaviours(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in value:
        name, sep, mode = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r}: expected NODE=MODE, e.g. v4=equivocate")
        if mode not in BEHAVIOURS:
            raise click.BadParameter(f"{item!r}: mode must be one of {', '.join(BEHAVIOURS)}")
        out[name] = mode
    return out


def _run(action: Callable[[], object]) -> object:
    """Turn a TestnetError, or a file the OS refused, into a one-line error and exit code 2."""
    try:
        return action()
    except TestnetError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"{exc.filename or 'I/O'}: {exc.strerror or exc}") from None


@click.group()
def testnet() -> None:
    """A local testnet: validator processes and an MQTT broker on this machine."""


@testnet.command("up")
@click.option("--validators", type=click.IntRange(1, MAX_VALIDATORS), default=4, show_default=True)
@click.option(
    "--processes",
    type=click.IntRange(1, MAX_VALIDATORS),
    default=None,
    help="spread the validators over this many node processes p1..pP, in contiguous blocks "
    "[default: one process per validator, named after it]",
)
@DIR_OPTION
@click.option(
    "--duration", type=click.FloatRange(0, min_open=True), default=None, help="stop after S seconds"
)
@click.option(
    "--broker",
    default="auto",
    show_default=True,
    callback=_broker_spec,
    help="auto (mosquitto if installed, else embedded), embedded, mosquitto, or mqtt://HOST:PORT",
)
@click.option(
    "--behaviour",
    "behaviours",
    multiple=True,
    callback=_behaviours,
    metavar="NODE=MODE",
    help=f"make a validator misbehave, MODE one of {', '.join(BEHAVIOURS)} (repeatable)",
)
@click.option(
    "--slot-ms",
    type=click.IntRange(0),
    default=None,
    help=f"commit_wait_ms for a new genesis: 0 = fast [default: {DEFAULT_SLOT_MS}]",
)
@click.option(
    "--base-metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="vI gets P+I-1 [default: free ports]",
)
@click.option("--chain-id", default=None, help=f"for a new genesis [default: {DEFAULT_CHAIN_ID}]")
@click.option(
    "--mqtt-protocol", type=click.Choice(["5", "311"]), default=None, help="[default: 5, or 311 for embedded]"
)
@click.option("--quiet", is_flag=True, help="print only problems and the summary: no header, no node events")
@click.option(
    "--prometheus",
    is_flag=True,
    help="write DIR/prometheus/prometheus.yml scraping every node, and run Prometheus there when installed",
)
@click.option(
    "--accounts",
    type=click.IntRange(0, 999),
    default=None,
    help="for a new genesis: fund this many accounts (keys in DIR/accounts/) for `posnet testnet load` "
    "[default: 0]",
)
@click.option(
    "--cold-keys",
    is_flag=True,
    default=None,  # not given: no check against an existing genesis
    help="for a new genesis: each pool's owner key in DIR/owners/ (funds, pool changes, rotations), "
    "a separate signing key on the node",
)
@click.option(
    "--netfaults/--no-netfaults",
    default=True,
    show_default=True,
    help="connect nodes through the fault relay (delay/drop/partition); off: straight to the broker",
)
@click.option(
    "--auto-unjail",
    is_flag=True,
    help="for long soaks: send a jailed validator's unjail (signed with its owner key) once its jail has ended",
)
@click.option(
    "--scenario",
    "scenario_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="run a fault timeline (TOML) and judge the run by its checks; see scenarios/",
)
@click.option(
    "--zones",
    "zones_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="a geography (TOML, as `posnet sim --zones`): the relay holds each message for the one-way "
    "latency between its sender's zone and its receiver's (see scenarios/zones/)",
)
@click.option(
    "--time-scale",
    type=click.FloatRange(0, min_open=True),
    default=1.0,
    show_default=True,
    help="with --scenario: multiply its times and duration (0.5 = twice as fast)",
)
def up(
    validators: int,
    processes: int | None,
    directory: Path,
    duration: float | None,
    broker: str,
    behaviours: dict[str, str],
    slot_ms: int | None,
    base_metrics_port: int | None,
    chain_id: str | None,
    mqtt_protocol: str | None,
    quiet: bool,
    cold_keys: bool | None,
    accounts: int | None,
    prometheus: bool,
    netfaults: bool,
    auto_unjail: bool,
    scenario_file: Path | None,
    zones_file: Path | None,
    time_scale: float,
) -> None:
    """Start N validators and a broker, stream their finality, stop on Ctrl-C.

    Keys and genesis are created in DIR when absent and reused when present,
    so the same testnet can be stopped and started again; a genesis-only
    option (--validators, --chain-id, --slot-ms, --accounts, --cold-keys)
    that contradicts DIR's genesis is refused. Exits 1 when a node
    died unexpectedly or two nodes finalized different blocks at one height.
    """
    config = UpConfig(
        directory=directory,
        validators=validators,
        duration=duration,
        broker=broker,
        behaviours=behaviours,
        slot_ms=slot_ms,
        base_metrics_port=base_metrics_port,
        chain_id=chain_id,
        mqtt_protocol=mqtt_protocol,
        quiet=quiet,
        netfaults=netfaults,
        cold_keys=cold_keys,
        accounts=accounts,
        prometheus=prometheus,
        processes=processes,
        auto_unjail=auto_unjail,
        zones=read_zones(zones_file),
    )
    if processes is not None and processes > validators and scenario_file is None:
        raise UserError(f"--processes {processes}: at most --validators ({validators})")
    if scenario_file is not None:
        sys.exit(_run_scenario(config, scenario_file, time_scale))
    if time_scale != 1.0:
        raise UserError("--time-scale only applies to a --scenario run")
    code = _run(lambda: run_up(config, click.echo))
    sys.exit(code)


@testnet.command("down")
@DIR_OPTION
def down(directory: Path) -> None:
    """Stop the testnet in DIR as Ctrl-C in its `up` terminal would, and wait until it has stopped.

    Exits 0 once it stopped (or nothing ran), 1 when it still runs after a
    minute (run it again to kill what is left), 2 when DIR holds no testnet.
    """
    result = _run(lambda: stop_testnet(Layout.of(directory)))
    assert isinstance(result, DownResult)
    click.echo(result.line)
    sys.exit(0 if result.stopped else 1)


def _run_scenario(config: UpConfig, path: Path, time_scale: float) -> int:
    """`up --scenario`: the file sets validators, duration, slot and behaviours unless given here."""
    from network.testnet import scenario as sc
    from network.testnet import scenario_run

    ctx = click.get_current_context()
    explicit = [
        name
        for name in ("validators", "duration")
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    ]
    try:
        plan = sc.load_scenario(path)
        config, plan = scenario_run.apply_to_config(config, plan, explicit, time_scale)
    except sc.ScenarioError as exc:
        raise UserError(str(exc)) from None
    code = _run(lambda: scenario_run.run_scenario(config, plan, time_scale, click.echo))
    assert isinstance(code, int)
    return code


def _record(directory: Path, action: str, **args: Any) -> None:
    """Log a fault run by hand exactly as a scenario step is logged, so the report can shade it."""
    from network.testnet.scenario import TimelineStep
    from network.testnet.scenario_log import SCENARIO_LOG, append_event, step_event

    layout = Layout.of(directory)
    event = step_event(TimelineStep(action=action, at_s=0.0, **args), time.time(), "manual")
    with contextlib.suppress(OSError):
        append_event(layout.logs / SCENARIO_LOG, event)


def _state(layout: Layout) -> TestnetState:
    state = _run(lambda: read_state(layout))
    assert isinstance(state, TestnetState)
    return state


def _hosting(directory: Path, node: str) -> tuple[str, str]:
    """The process a command naming `node` acts on, and the note saying so (`v5 runs in p2 with ...: `).

    With one process per validator the process is the node itself and the
    note is empty. An unknown name or a missing testnet is left for the
    action itself to report, in its own words.
    """
    try:
        state = read_state(Layout.of(directory))
        return state.node(node).name, hosted_note(state.hosts, node)
    except TestnetError:
        return node, ""


def _fault_command(verb: str, action: Callable[[Layout, str], NodeProc], done: str) -> click.Command:
    @click.command(verb)
    @click.argument("node")
    @DIR_OPTION
    def command(node: str, directory: Path) -> None:
        _, note = _hosting(directory, node)
        proc = _run(lambda: action(Layout.of(directory), node))
        assert isinstance(proc, NodeProc)
        _record(directory, verb, node=node)
        click.echo(f"{note}{done} {proc.name} (pid {proc.pid})")

    command.help = action.__doc__
    return command


testnet.add_command(_fault_command("kill", perturb.kill_node, "killed"))
testnet.add_command(_fault_command("restart", perturb.restart_node, "restarted"))
testnet.add_command(_fault_command("pause", perturb.pause_node, "paused"))
testnet.add_command(_fault_command("resume", perturb.resume_node, "resumed"))


# ------------------------------------------------------------------ network faults (through the relay)


def _groups(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> list[list[str]]:
    groups = [[name.strip() for name in item.split(",")] for item in value]
    for item, group in zip(value, groups, strict=True):
        if not all(group):
            raise UserError(f"partition group {item!r}: expected comma-separated node names, e.g. v1,v2")
    return groups


def _links_line(faults: NetworkFaults, node: str) -> str:
    return f"{node}: {describe_link(faults, node)}".replace(": -", ": no link faults")


@testnet.command("delay")
@click.argument("node")
@click.argument("ms", metavar="MS")
@DIR_OPTION
def delay(node: str, ms: str, directory: Path) -> None:
    """Hold all traffic between NODE and its broker for MS milliseconds, both ways (0 clears)."""
    if not ms.isdigit():
        raise UserError(f"delay {ms!r}: must be a whole number of milliseconds, e.g. 200")
    process, note = _hosting(directory, node)
    faults = _run(lambda: perturb.delay(Layout.of(directory), node, int(ms)))
    assert isinstance(faults, NetworkFaults)
    _record(directory, "delay", node=node, ms=int(ms))
    click.echo(f"{note}delayed {_links_line(faults, process)}")


@testnet.command("drop")
@click.argument("node")
@click.argument("rate", metavar="RATE")
@DIR_OPTION
def drop(node: str, rate: str, directory: Path) -> None:
    """Lose each MQTT PUBLISH between NODE and its broker with probability RATE (0..1; 0 clears)."""
    try:
        value = float(rate)
    except ValueError:
        raise UserError(f"drop rate {rate!r}: must be a number in 0..1 (e.g. 0.3)") from None
    process, note = _hosting(directory, node)
    faults = _run(lambda: perturb.drop(Layout.of(directory), node, value))
    assert isinstance(faults, NetworkFaults)
    _record(directory, "drop", node=node, rate=value)
    click.echo(f"{note}dropping {_links_line(faults, process)}")


@testnet.command("partition")
@click.argument("groups", nargs=-1, required=True, callback=_groups, metavar="GROUP GROUP...")
@DIR_OPTION
def partition(groups: list[list[str]], directory: Path) -> None:
    """Split the nodes into islands, e.g. `v1,v2 v3,v4`; nodes not named join the first group.

    The first group keeps the main broker; each further group gets a broker
    of its own, and its nodes' connections are cut and re-made there.
    """
    layout = Layout.of(directory)
    faults = _run(lambda: perturb.partition(layout, groups))
    assert isinstance(faults, NetworkFaults)
    _record(directory, "partition", groups=tuple(tuple(g) for g in groups))
    islands = describe_islands(_state(layout).hosts, faults.groups)
    click.echo(f"partitioned: {islands} (each group reaches only its own broker)")


@testnet.command("heal")
@DIR_OPTION
def heal(directory: Path) -> None:
    """End the partition and clear every delay and drop: one network through the main broker."""
    layout = Layout.of(directory)
    before = _run(lambda: read_requested_faults(layout))
    _run(lambda: perturb.heal(layout))
    assert isinstance(before, NetworkFaults)
    _record(directory, "heal")
    was = [f"partition {describe_partition(before)} ended"] if len(before.groups) > 1 else []
    links = NetworkFaults(links=before.links)  # without the groups: only what was on each link
    was += [f"{name} {describe_link(links, name)} cleared" for name in before.links]
    click.echo(f"healed: {'; '.join(was) if was else 'nothing was in force'}")


@testnet.command("behave")
@click.argument("node")
@click.argument("mode", metavar="|".join(BEHAVIOURS))
@DIR_OPTION
def behave(node: str, mode: str, directory: Path) -> None:
    """Restart NODE as honest or in a Byzantine MODE; later restarts keep the behaviour.

    Needs the `up` that owns the testnet to be running, like `restart`.
    """
    _, note = _hosting(directory, node)
    proc = _run(lambda: perturb.behave(Layout.of(directory), node, mode))
    assert isinstance(proc, NodeProc)
    _record(directory, "behave", node=node, mode=mode)
    click.echo(f"{note}{proc.name} is now {proc.behaviour} (restarted, pid {proc.pid})")


@testnet.command("check")
@DIR_OPTION
def check(directory: Path) -> None:
    """Judge a run from its logs: no two nodes finalized different blocks at one height.

    Prints each node's height and median finality latency and the penalties
    seen. Exits 1 on a safety violation. Byzantine validators (from
    testnet.json) are reported but not held to the safety promise.
    """
    layout = Layout.of(directory)
    if not layout.logs.is_dir():
        raise UserError(f"{layout.logs} not found: no testnet has run in {layout.root}")
    byzantine: list[str] = []
    notes: dict[str, str] = {}
    if layout.state.exists():
        state = _state(layout)
        byzantine = byzantine_names(state)
        notes = {n.name: f"hosts {', '.join(n.validators)}" for n in state.nodes.values() if n.validators}
    report = analyse_dir(layout.logs, exclude=byzantine)
    if not report.nodes:
        raise UserError(f"no node logs (*.jsonl) in {layout.logs}")
    for line in format_report(report, notes):
        click.echo(line)
    sys.exit(0 if report.ok else 1)


@testnet.command("report")
@DIR_OPTION
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="where to write the PNG [default: DIR/report.png]",
)
def report(directory: Path, out: Path | None) -> None:
    """Draw the last run (height and finality latency per node over time, faults shaded, penalties marked).

    Also prints heights, median and p99 latency, round timeouts, penalties and
    the invariants checked (safety; liveness after the last heal; a scenario's
    checks). Exits 1 when one of them failed.
    """
    from network.testnet.report import make_report

    layout = Layout.of(directory)
    if not layout.logs.is_dir():
        raise UserError(f"{layout.logs} not found: no testnet has run in {layout.root}")
    result = _run(lambda: make_report(layout, out))
    assert isinstance(result, tuple)
    lines, ok, path = result
    for line in lines:
        click.echo(line)
    if path is not None:
        click.echo(f"wrote {path}")
    sys.exit(0 if ok else 1)


@click.command("status")
@DIR_OPTION
def status(directory: Path) -> None:
    """Each node of a testnet: process, height, round, last event, whether its validator is jailed.

    Below: the penalties applied, and whether the active validators online
    hold a quorum (more than 2/3 of the active stake) or the chain is stuck.
    """
    layout = Layout.of(directory)
    state = _run(lambda: read_state(layout))
    assert isinstance(state, TestnetState)
    for line in status_lines(layout, state, time.time()):
        click.echo(line)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _process_label(node: NodeProc) -> str:
    """The live process state, explained by the recorded status when the process is gone."""
    live = process_state(node.pid, node.command)
    if live != "dead":
        return live
    return "dead" if node.status in (RUNNING, PAUSED) else node.status


def status_lines(layout: Layout, state: TestnetState, now: float) -> list[str]:
    """The `posnet status` table, computed from testnet.json, /proc and the logs."""
    up_alive = (
        state.supervisor_pid and process_state(state.supervisor_pid, state.supervisor_command) != "dead"
    )
    runner = (
        f"up pid {state.supervisor_pid}, running {_age(now - state.started_at)}"
        if up_alive
        else "not running"
    )
    broker = state.broker
    broker_state = (
        "" if broker.pid is None else f", pid {broker.pid} {process_state(broker.pid, broker.command)}"
    )
    lines = [
        f"testnet {state.chain_id} in {layout.root}: {runner}",
        f"broker {broker.kind} {broker.url}{broker_state}",
    ]
    faults, applied = _network_lines(layout, state, lines)
    logs = {name: read_log(layout.log(name)).events for name in state.nodes}
    marks = penalised(logs.values())
    rows = [["node", "pid", "process", "height", "round", "last event", "penalties", "network"]]
    shared = any(node.validators for node in state.nodes.values())
    if shared:  # processes host several validators: say which
        rows[0].append("validators")
    offline: dict[str, str] = {}
    for name, node in state.nodes.items():
        summary = summarize_node(name, logs[name])
        last = "-"
        if summary.last_event is not None:
            age = _age(now - summary.last_ts) if summary.last_ts else "?"
            last = f"{summary.last_event} {age} ago"
        process = _process_label(node)
        if process != "alive":
            offline.update(dict.fromkeys(node.hosted, process))
        label = process + ("" if node.behaviour == "honest" else f" ({node.behaviour})")
        round_ = "-" if summary.last_round is None else str(summary.last_round)
        network = _network_cell(faults, applied, name)
        row = [name, str(node.pid or "-"), label, str(summary.max_height), round_, last]
        rows.append([*row, _marks_cell(node, marks), network, *([_span(node.hosted)] if shared else [])])
    lines.extend(_table(rows, right_aligned={1, 3, 4}))
    penalties = unique_penalties(list(logs.values()))
    if penalties:
        lines.append("penalties applied:")
        lines.extend(f"  {describe_penalty(e)}" for e in penalties)
    if up_alive:  # whether the chain can finalize now: said of a running testnet only
        lines.append(quorum(_stakes(layout, state, logs.values()), marks, offline).line())
    return lines


def _marks_cell(node: NodeProc, marks: dict[str, set[str]]) -> str:
    """The node's own validators that are jailed or tombstoned now (`jailed`, or `v5 jailed` for a process)."""
    out = [(v, " ".join(sorted(marks[v]))) for v in node.hosted if marks.get(v)]
    if node.hosted == [node.name]:
        return out[0][1] if out else "-"
    return ", ".join(f"{v} {m}" for v, m in out) or "-"


def _stakes(layout: Layout, state: TestnetState, logs: Iterable[list[Event]]) -> dict[str, int]:
    """Each validator's stake: the genesis's, updated by the newest epoch logged (equal without either)."""
    try:
        stakes = {v.name: v.stake for v in load_genesis(layout.genesis).validators}
    except GenesisError:
        stakes = {v: 1 for vs in state.hosts.values() for v in vs}
    newest = newest_stake(logs) or {}
    return {name: newest.get(name, stake) for name, stake in stakes.items()}


def _span(validators: list[str]) -> str:
    """`v5..v8` for a contiguous block (what `--processes` makes), else the names joined."""
    numbers = [int(v[1:]) if v[1:].isdigit() else None for v in validators]
    contiguous = (
        len(validators) > 2
        and None not in numbers
        and numbers == list(range(numbers[0] or 0, (numbers[0] or 0) + len(numbers)))
    )
    return f"{validators[0]}..{validators[-1]}" if contiguous else ",".join(validators)


def _network_cell(faults: NetworkFaults | None, applied: dict[str, Any], name: str) -> str:
    """A node's network faults, with the relay's count of publishes lost while a drop is on."""
    if faults is None:
        return "direct"
    stats = applied.get("stats", {}).get(name, {})
    lost = sum(stats.get(way, {}).get("dropped", 0) for way in ("up", "down"))
    return describe_link(faults, name, lost)


def _network_lines(
    layout: Layout, state: TestnetState, lines: list[str]
) -> tuple[NetworkFaults | None, dict[str, Any]]:
    """Append the relay's state and the partition to `lines`; the faults in force (None: no relay).

    Faults are shown only while the relay runs (once it is gone nothing is
    in force, whatever faults.json still asks for); a requested change it
    has not reported applied yet is shown as pending.
    """
    relay = state.relay
    if relay is None:
        return None, {}
    relay_state = process_state(relay.pid, relay.command) if relay.pid else "dead"
    if relay_state == "dead":
        lines.append("network-fault relay not running: no network faults in force")
        return NetworkFaults(), {}
    try:
        requested = read_requested_faults(layout)
    except TestnetError as exc:
        lines.append(f"network-fault relay pid {relay.pid} {relay_state}; {exc}")
        return NetworkFaults(), {}
    applied = read_applied(layout.root) or {}
    pending = ", change pending" if applied.get("generation", -1) < requested.generation else ""
    error = f", last change failed: {applied['error']}" if applied.get("error") else ""
    lines.append(f"network-fault relay pid {relay.pid} {relay_state}{pending}{error}")
    if len(requested.groups) > 1:
        islands = applied.get("islands", {})
        where = ", ".join(f"group {int(i) + 1} on {v.get('url')}" for i, v in sorted(islands.items()))
        lines.append(f"partition {describe_partition(requested)}" + (f" ({where})" if where else ""))
    return requested, applied


def _table(rows: list[list[str]], right_aligned: set[int]) -> list[str]:
    """Columns as wide as their widest cell: a paused Byzantine node's label must not shear the table."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(widths[i]) if i in right_aligned else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]
