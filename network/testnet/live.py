"""The live terminal view of a running testnet behind `posnet watch`, refreshed every second.

It reads what any other terminal can read: testnet.json and /proc for the
processes, the node logs and the scenario's step log for everything else. It
never talks to the broker or the nodes, so watching cannot disturb the run and
works the same for a testnet started by `up`, by a scenario or by hand.

The work is split so the screen is testable: `WatchState` is folded from log
events by pure functions (`fold`), `render` turns a state into text with no
I/O, and only `Watcher` (tails files, asks /proc) and `run_watch` (the loop,
the escape codes) touch the world. Plain ANSI escape codes are enough for one
redrawn table, so there is no terminal library to install.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO

from network.testnet.ansi import strip_ansi
from network.testnet.errors import TestnetError
from network.testnet.layout import PAUSED, RUNNING, Layout, TestnetState, read_state
from network.testnet.logcheck import Event
from network.testnet.logtail import LogTail
from network.testnet.perturb import describe_link, describe_partition, read_requested_faults
from network.testnet.processes import process_state
from network.testnet.scenario_log import SCENARIO_LOG
from node.core.behaviours import HONEST
from node.core.events import ACCOUNTABILITY_EVENTS, EPOCH, FINALIZED, ROUND_TIMEOUT
from node.runtime.eventlog import RESET, format_pretty

RECENT = 10  # recent events shown
RATE_WINDOW_S = 10.0  # heights/s is measured over this window
QUIET_EVENTS = ("finalized", "broker_connected", EPOCH)  # too frequent or too routine for the recent list
GREEN, RED, YELLOW, BOLD, DIM = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[1m", "\x1b[2m"


@dataclass
class NodeRow:
    """What the watcher knows about one node."""

    name: str
    process: str = "-"  # alive | paused | dead | killed | stopped | ... (testnet.json + /proc); "-" unknown
    behaviour: str = "honest"
    height: int = 0  # last finalized height
    round: int = 0  # round at the height it works on (after a timeout at round r: r + 1)
    last_latency_ms: float | None = None
    last_synced: bool = False  # the last block came by sync (catching up), not by its own votes
    last_event: str | None = None
    last_ts: float | None = None
    online: bool | None = None  # from its log: started/connected vs stopped/disconnected
    network: str = "-"  # its network faults in force (delay, drop, partition group), from the relay's files
    validators: list[str] = field(default_factory=list)  # hosted validators, when not just its namesake


@dataclass
class WatchState:
    """Everything the screen shows, folded from events plus the latest process states."""

    nodes: dict[str, NodeRow]
    title: str = ""
    penalties: dict[str, set[str]] = field(default_factory=dict)  # validator -> {"jailed", "tombstoned"}
    recent: deque[Event] = field(default_factory=lambda: deque(maxlen=RECENT))
    new_heights: deque[float] = field(
        default_factory=lambda: deque(maxlen=10_000)
    )  # when each height first appeared
    top_height: int = 0
    scenario: str | None = None
    scenario_t0: float | None = None
    steps_done: int = 0
    steps_total: int | None = None
    scenario_finished: bool = False
    last_step: str | None = None
    partition: str | None = None  # `v1,v2 | v3,v4` while one is requested
    # (epoch, pool -> active stake, Nakamoto coefficient) of the newest epoch seen
    stake: tuple[int, dict[str, int], int] | None = None
    _seen_penalties: set[tuple[object, ...]] = field(default_factory=set)

    def node(self, name: str) -> NodeRow:
        if name not in self.nodes:
            self.nodes[name] = NodeRow(name)
        return self.nodes[name]


def fold(state: WatchState, event: Event) -> None:
    """Apply one log event (a node's or the scenario's) to the state."""
    kind = event.get("event")
    ts = event.get("ts") if isinstance(event.get("ts"), int | float) else None
    if kind in ("scenario_started", "fault", "heal", "step_failed", "scenario_finished"):
        _fold_scenario(state, event, ts)
        return
    name = event.get("node")
    if not isinstance(name, str):
        return
    view = state.node(name)
    view.last_event, view.last_ts = str(kind), ts if ts is not None else view.last_ts
    height, round_ = event.get("height"), event.get("round")
    if kind == FINALIZED and isinstance(height, int):
        if height >= view.height:
            view.height, view.round = height, 0
            latency = event.get("latency_ms")
            view.last_synced = bool(event.get("via_sync"))
            if isinstance(latency, int | float) and not view.last_synced:
                view.last_latency_ms = float(latency)
        if height > state.top_height:
            state.top_height = height
            if ts is not None:
                state.new_heights.append(ts)
    elif kind == ROUND_TIMEOUT and isinstance(round_, int) and isinstance(height, int):
        if height > view.height:  # a timeout at the height it works on: the next round has begun
            view.round = round_ + 1
    elif kind in ("started", "broker_connected"):
        view.online = True
        if kind == "started":
            view.round = 0
            if isinstance(event.get("behaviour"), str):
                view.behaviour = event["behaviour"]
    elif kind in ("stopped", "broker_disconnected", "fatal"):
        view.online = False
    if kind == EPOCH:
        _fold_epoch(state, event)
    if kind in ACCOUNTABILITY_EVENTS:
        _fold_penalty(state, event)
    elif kind not in QUIET_EVENTS:
        state.recent.append(event)


def _fold_epoch(state: WatchState, event: Event) -> None:
    """Every node logs each epoch's stake; the newest epoch seen is the one shown."""
    epoch, stake, nakamoto = event.get("epoch"), event.get("stake"), event.get("nakamoto")
    if not (isinstance(epoch, int) and isinstance(stake, dict) and isinstance(nakamoto, int)):
        return
    if state.stake is None or epoch > state.stake[0]:
        state.stake = (epoch, {str(k): int(v) for k, v in stake.items() if isinstance(v, int)}, nakamoto)


def stake_line(stake: tuple[int, Mapping[str, int], int]) -> str:
    """`stake at epoch 3: v1 40.0%, v2 20.0%, ... (Nakamoto coefficient 1)`, largest first."""
    epoch, powers, nakamoto = stake
    total = sum(powers.values()) or 1
    shares = ", ".join(
        f"{name} {100 * power / total:.1f}%"
        for name, power in sorted(powers.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return f"stake at epoch {epoch}: {shares} (Nakamoto coefficient {nakamoto})"


def _fold_penalty(state: WatchState, event: Event) -> None:
    """Penalties are logged by every node that applies the block: show and count each once."""
    who = event.get("validator") or event.get("offender")
    key = (event.get("event"), event.get("height"), who)
    if key in state._seen_penalties:
        return
    state._seen_penalties.add(key)
    state.recent.append(event)
    if not isinstance(who, str):
        return
    marks = state.penalties.setdefault(who, set())
    if event.get("event") == "jailed":
        marks.add("jailed")
    elif event.get("event") == "unjailed":
        marks.discard("jailed")
    elif event.get("event") == "tombstoned":
        marks.add("tombstoned")


def _fold_scenario(state: WatchState, event: Event, ts: float | None) -> None:
    kind = event.get("event")
    if kind == "scenario_started":
        state.scenario = str(event.get("name", "?"))
        state.scenario_t0 = ts
        state.steps_done, state.scenario_finished = 0, False
        spec = event.get("spec")
        steps = spec.get("step") if isinstance(spec, dict) else None
        state.steps_total = len(steps) if isinstance(steps, list) else None
        return
    if kind in ("fault", "heal", "step_failed"):
        state.steps_done += 1
        at = f" at {ts - state.scenario_t0:.1f} s" if ts is not None and state.scenario_t0 else ""
        failed = " (failed)" if kind == "step_failed" else ""
        state.last_step = f"{_describe_step(event)}{at}{failed}"
    elif kind == "scenario_finished":
        state.scenario_finished = True
    state.recent.append({**event, "_scenario": True})  # its `node` is the step's target, not the author


def fold_all(state: WatchState, events: Iterable[Event]) -> WatchState:
    for event in events:
        fold(state, event)
    return state


# ------------------------------------------------------------------ rendering (pure)


def status_text(view: NodeRow, penalties: set[str]) -> str:
    """online/offline from the process and the log, then penalties and behaviour."""
    if view.process in ("alive", "-"):
        base = "offline" if view.online is False else "online" if view.online else "starting"
        if view.process == "-" and view.online is None:
            base = "?"
    elif view.process == "paused":
        base = "paused"
    elif view.process == "dead":
        base = "offline (died)"
    else:
        base = f"offline ({view.process})"
    marks = sorted(penalties)
    if view.behaviour != HONEST:
        marks.append(view.behaviour)
    return ", ".join([base, *marks])


def _paint(text: str, status: str, color: bool) -> str:
    if not color:
        return text
    if status.startswith("online") and "jailed" not in status and "tombstoned" not in status:
        return f"{GREEN}{text}{RESET}"
    if "tombstoned" in status or "died" in status:
        return f"{RED}{BOLD}{text}{RESET}"
    return f"{YELLOW}{text}{RESET}"


def _ago(now: float, ts: float | None) -> str:
    if ts is None:
        return "-"
    seconds = max(0.0, now - ts)
    return f"{seconds:.1f}s ago" if seconds < 100 else f"{seconds / 60:.0f}m ago"


def render(state: WatchState, now: float, width: int = 100, color: bool = False) -> str:
    """The whole screen as text: header, a row per node, recent events. Pure: no clock, no files."""
    lines = [state.title or "posnet watch", _progress_line(state, now)]
    if state.scenario:
        total = "?" if state.steps_total is None else str(state.steps_total)
        elapsed = f", {now - state.scenario_t0:.0f} s in" if state.scenario_t0 else ""
        if state.scenario_finished:
            elapsed = ", finished"
        last = f"; last: {state.last_step}" if state.last_step else ""
        lines.append(f"scenario {state.scenario}: {state.steps_done}/{total} steps done{elapsed}{last}")
    if state.partition:
        lines.append(f"partition {state.partition}")
    if state.stake is not None:
        lines.append(stake_line(state.stake))
    lines.append("")
    header = ["node", "height", "round", "latency", "last event", "status"]
    network = any(view.network != "-" for view in state.nodes.values())
    if network:
        header.insert(5, "network")
    shared = any(view.validators for view in state.nodes.values())
    if shared:  # `up --processes`: each row is a process; say which validators it runs
        header.insert(1, "validators")
    rows = []
    for view in state.nodes.values():
        latency = "-" if view.last_latency_ms is None else f"{view.last_latency_ms:.0f} ms"
        if view.last_synced:
            latency = "sync"
        last = "-" if view.last_event is None else f"{view.last_event} {_ago(now, view.last_ts)}"
        row = [view.name, str(view.height), str(view.round), latency, last]
        if shared:
            row.insert(1, ",".join(view.validators) if len(view.validators) < 3 else _span(view.validators))
        if network:
            row.append(view.network)
        penalties = set().union(*(state.penalties.get(v, set()) for v in view.validators or [view.name]))
        rows.append([*row, status_text(view, penalties)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {2, 3, 4} if shared else {1, 2, 3}

    def cells(row: list[str]) -> str:
        return "  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row))

    lines.append(f"{BOLD}{cells(header).rstrip()}{RESET}" if color else cells(header).rstrip())
    for row in rows:
        text = cells(row).rstrip()
        status = row[-1]
        prefix = text[: len(text) - len(status)]
        lines.append(prefix + _paint(status, status, color))
    lines.append("")
    lines.append("recent events:" if state.recent else "recent events: none yet")
    for event in list(state.recent)[-RECENT:]:
        lines.append("  " + _event_line(event, color))
    lines.append("")
    lines.append("Ctrl-C quits")
    return "\n".join(_clip(line, width) for line in lines)


def _span(validators: list[str]) -> str:
    """`v5..v8`: `--processes` hosts contiguous blocks, so the ends say it."""
    return f"{validators[0]}..{validators[-1]}"


def _describe_step(event: Event) -> str:
    """`partition v1,v2 | v3,v4`, `kill v3`, `delay v2 300 ms` from a step log line."""
    action = str(event.get("action"))
    if isinstance(event.get("groups"), list):
        return f"{action} " + " | ".join(",".join(map(str, g)) for g in event["groups"])
    text = f"{action} {event['node']}" if event.get("node") else action
    if "ms" in event:
        text += f" {event['ms']} ms"
    for key in ("rate", "mode"):
        if key in event:
            text += f" {event[key]}"
    return text


def _progress_line(state: WatchState, now: float) -> str:
    recent = [ts for ts in state.new_heights if now - ts <= RATE_WINDOW_S]
    rate = len(recent) / RATE_WINDOW_S
    since = _ago(now, state.new_heights[-1]) if state.new_heights else "-"
    return (
        f"chain height {state.top_height}, {rate:.1f} heights/s over the last {RATE_WINDOW_S:.0f} s, "
        f"last new height {since}"
    )


def _event_line(event: Event, color: bool) -> str:
    if event.get("_scenario"):
        kind = str(event.get("event"))
        stamp = format_pretty({"event": "", "node": "", "ts": event.get("ts")}).split(" ", 1)[0]
        line = f"{stamp} {'scenario':<6} {kind:<12}"
        if kind in ("fault", "heal", "step_failed"):
            detail = _describe_step(event) + (f": {event.get('error')}" if kind == "step_failed" else "")
        else:
            detail = str(event.get("name", ""))
        text = f"{line} {detail}".rstrip()
        if not color:
            return text
        tint = {"fault": YELLOW, "heal": GREEN, "step_failed": RED + BOLD}.get(kind, "")
        return f"{tint}{text}{RESET}" if tint else text
    if event.get("event") == "started":  # its chain id, key list, broker url and pid are noise here
        event = {k: event[k] for k in ("event", "node", "ts", "height", "behaviour") if k in event}
    return format_pretty(event, color=color)


def _clip(line: str, width: int) -> str:
    """Cut a line to the terminal width (escape codes are not counted, so colored lines are cut less)."""
    visible = len(strip_ansi(line))
    if visible <= width:
        return line
    if "\x1b" in line:
        return line  # a colored line: cutting could split an escape code; it wraps instead
    return line[: max(0, width - 1)] + "…"


# ------------------------------------------------------------------ reading the testnet


class Watcher:
    """Tails a testnet directory's logs into a WatchState and refreshes process states."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.state = WatchState(nodes={})
        self.tails: dict[str, LogTail] = {}
        self.scenario_tail = LogTail(layout.logs / SCENARIO_LOG, from_end=False)

    def _names(self, testnet: TestnetState | None) -> list[str]:
        if testnet is not None:
            return list(testnet.nodes)
        return sorted(p.stem for p in self.layout.logs.glob("*.jsonl") if p.name != SCENARIO_LOG)

    def refresh(self, now: float | None = None) -> WatchState:
        testnet = None
        with contextlib.suppress(TestnetError):
            testnet = read_state(self.layout)
        for name in self._names(testnet):
            if name not in self.tails:
                self.tails[name] = LogTail(self.layout.log(name), from_end=False)
                self.state.node(name)
        events = [e for tail in self.tails.values() for e in tail.read_events()]
        events += self.scenario_tail.read_events()
        events.sort(key=lambda e: e.get("ts") if isinstance(e.get("ts"), int | float) else 0.0)
        fold_all(self.state, events)
        self._processes(testnet, time.time() if now is None else now)
        return self.state

    def _processes(self, testnet: TestnetState | None, now: float) -> None:
        if testnet is None:
            self.state.title = f"posnet watch: {self.layout.root} (no testnet.json: logs only)"
            return
        up = (
            testnet.supervisor_pid
            and process_state(testnet.supervisor_pid, testnet.supervisor_command) != "dead"
        )
        running = f"up for {now - testnet.started_at:.0f} s" if up else "not running"
        clock = time.strftime("%H:%M:%S", time.localtime(now))
        self.state.title = f"testnet {testnet.chain_id} in {self.layout.root}: {running}  [{clock}]"
        faults = None
        if testnet.relay is not None:
            with contextlib.suppress(TestnetError, OSError):
                faults = read_requested_faults(self.layout)
        partition = describe_partition(faults) if faults is not None else "none"
        self.state.partition = None if partition == "none" or not up else partition
        for name, node in testnet.nodes.items():
            view = self.state.node(name)
            view.network = describe_link(faults, name) if faults is not None and up else "-"
            live = process_state(node.pid, node.command)
            view.process = live if live != "dead" or node.status in (RUNNING, PAUSED) else node.status
            view.behaviour = node.behaviour
            view.validators = list(node.validators)


def run_watch(layout: Layout, interval: float = 1.0, once: bool = False, out: IO[str] | None = None) -> int:
    """Redraw every `interval` seconds until Ctrl-C (or once); the exit code."""
    stream = out if out is not None else sys.stdout
    tty = stream.isatty()
    watcher = Watcher(layout)
    if tty and not once:
        stream.write("\x1b[?25l\x1b[2J")  # hide the cursor, clear once; later frames overwrite in place
    try:
        while True:
            now = time.time()
            width = shutil.get_terminal_size((100, 40)).columns
            frame = render(watcher.refresh(now), now, width=width, color=tty)
            if tty and not once:
                stream.write("\x1b[H" + frame.replace("\n", "\x1b[K\n") + "\x1b[K\x1b[J")
            else:
                stream.write(frame + "\n")
            stream.flush()
            if once:
                return 0
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0
    finally:
        if tty and not once:
            stream.write("\x1b[?25h\n")
            stream.flush()
