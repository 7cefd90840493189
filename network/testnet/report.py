"""`posnet testnet report`: a picture and a summary of one testnet run, from its directory alone.

The run is read back from what it left behind: the node logs (DIR/logs/vI.jsonl),
the step log (DIR/logs/scenario.jsonl: a scenario's steps, or faults run by hand)
and testnet.json (which validators were Byzantine, when the run started). So a
report can be made after the fact, on another machine, from a copied directory.

Everything up to the drawing is pure (events in, numbers and lines out) and
unit-tested; `plot` draws with matplotlib's object API on the Agg canvas (no
pyplot, no display, no global state), so it runs headless and in tests.

What the picture shows, top to bottom, on one time axis (seconds since the
run's timeline started):
- finalized height per node (blocks fetched by sync included: catching up is progress);
- finality latency per block per node (synced blocks excluded: their latency
  measures the outage, not finality);
- per node, when it was down (from its own log: a crash is a gap closed by a
  `started`), and its round timeouts as ticks;
and, across all panels, the fault windows shaded (a scenario's, or those run by hand) and the penalties
as labelled vertical lines.

Just past 500 lines: one figure and the summary printed beside it, which
read the same parsed logs and fault spans.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from network.testnet import scenario as sc
from network.testnet import scenario_checks as checks
from network.testnet.errors import TestnetError
from network.testnet.extras import install_hint
from network.testnet.layout import DIED, KILLED, Layout, TestnetState, read_state
from network.testnet.live import WatchState, fold, stake_line
from network.testnet.logcheck import (
    Event,
    describe_penalty,
    find_conflicts,
    read_log,
    unique_penalties,
)
from network.testnet.placement import host_of
from network.testnet.scenario_log import SCENARIO_LOG, read_timeline
from node.core.behaviours import HONEST
from node.core.events import EPOCH, FINALIZED, ROUND_TIMEOUT
from node.core.genesis import GenesisError, Params, load_genesis

# Which step opens a window and which closes it, and the window's colour.
_WINDOW_KEYS = {
    "kill": ("down", True),
    "restart": ("down", False),
    "pause": ("paused", True),
    "resume": ("paused", False),
    "partition": ("partition", True),
    "heal": ("partition", False),
}
WINDOW_COLORS = {
    "down": "tab:red",
    "paused": "tab:purple",
    "partition": "tab:orange",
    "delay": "tab:blue",
    "drop": "tab:cyan",
    "behave": "tab:gray",
}


@dataclass(frozen=True)
class FaultSpan:
    """A stretch of time during which a fault was in force; end None = until the end of the run."""

    kind: str
    label: str
    start: float
    end: float | None
    node: str | None = None
    groups: tuple[tuple[str, ...], ...] = ()  # a partition's sides


@dataclass
class RunData:
    """One run, as read back from a testnet directory."""

    logs: dict[str, list[Event]]
    timeline: list[Event] = field(default_factory=list)
    scenario: sc.Scenario | None = None
    byzantine: set[str] = field(default_factory=set)
    params: Params = field(default_factory=Params)
    t0: float = 0.0  # origin of the time axis
    end_ts: float = 0.0
    running: set[str] | None = None  # nodes alive at the end, when testnet.json says
    history: dict[str, list[Event]] = field(default_factory=dict)  # every run, for safety
    hosts: dict[str, list[str]] = field(default_factory=dict)  # process -> validators, when it hosts several

    @property
    def honest(self) -> list[str]:
        return [n for n in self.logs if n not in self.byzantine]


# ------------------------------------------------------------------ reading


def _process_of(state: TestnetState | None, name: str) -> str:
    """The process whose log speaks for validator `name` (itself with one process per validator)."""
    if state is None:
        return name
    try:
        return state.node(name).name
    except TestnetError:
        return name


def load_run(layout: Layout) -> RunData:
    """The last run in a testnet directory: node events since it started, its scenario if it had one."""
    state = None
    with contextlib.suppress(TestnetError):
        state = read_state(layout)
    names = list(state.nodes) if state else sorted(p.stem for p in layout.logs.glob("[vp]*.jsonl"))
    history = {name: read_log(layout.log(name)).events for name in names}
    steps = read_steps(layout, state)
    timeline, scenario, start, t0 = steps.timeline, steps.scenario, steps.start, steps.t0
    logs = {name: checks.since(events, start) for name, events in history.items()}
    if not t0:
        t0 = min((float(e["ts"]) for events in logs.values() for e in events[:1]), default=0.0)
    byzantine = {n.name for n in state.nodes.values() if n.behaviour != HONEST} if state else set()
    if scenario is not None:
        # a Byzantine validator makes its whole process Byzantine (the process runs all its keys one way)
        byzantine |= {_process_of(state, v) for v in scenario.byzantine()}
    params = Params()
    with contextlib.suppress(GenesisError, OSError):
        params = load_genesis(layout.genesis).params
    stamps = [float(e["ts"]) for events in logs.values() for e in events] + [
        float(e["ts"]) for e in timeline if e.get("event") in ("fault", "heal", "scenario_finished")
    ]
    running = None
    if state is not None:
        running = {n.name for n in state.nodes.values() if n.status not in (KILLED, DIED)}
    return RunData(
        logs=logs,
        timeline=timeline,
        scenario=scenario,
        byzantine=byzantine,
        params=params,
        t0=t0,
        end_ts=max(stamps, default=t0),
        running=running,
        history=history,
        hosts={n.name: n.validators for n in state.nodes.values() if n.validators} if state else {},
    )


@dataclass(frozen=True)
class RunSteps:
    """The last run's fault timeline: a scenario's steps, or the faults run by hand since `up` started."""

    timeline: list[Event]
    scenario: sc.Scenario | None
    start: float  # the run's start (unix seconds): node events before it belong to an earlier run
    t0: float  # the origin of the timeline's own clock (a scenario's start; else the run's)


def read_steps(layout: Layout, state: TestnetState | None) -> RunSteps:
    """Which steps of the step log belong to the last run, read one way for the report and the view.

    The step log is appended across runs of a directory: a scenario's steps
    count when that scenario started with the last `up`; otherwise the faults
    run by hand (`testnet kill ...`) since that `up` started are the timeline.
    """
    start = state.started_at if state else 0.0
    timeline = read_timeline(layout.logs / SCENARIO_LOG)
    began = timeline[0] if timeline and timeline[0].get("event") == "scenario_started" else None
    run_start = float(began.get("run_start_ts", began["ts"])) if began is not None else 0.0
    if began is not None and run_start >= start - 5:  # the step log belongs to the last run
        scenario = None
        with contextlib.suppress(sc.ScenarioError, KeyError, TypeError, ValueError):
            scenario = sc.parse_scenario(began["spec"]).scaled(float(began.get("time_scale", 1.0)))
        return RunSteps(timeline, scenario, run_start, float(began["ts"]))
    return RunSteps(manual_steps(layout.logs / SCENARIO_LOG, start), None, start, start)


def manual_steps(path: Path, since: float) -> list[Event]:
    """The faults and repairs run by hand (`posnet testnet kill v3`, `heal`, ...) from `since` on.

    Fault commands log to the step log as a scenario step is logged, named
    scenario "manual", so a run without a scenario still has fault windows
    to shade; a scenario run's own steps (and a stale scenario's) are not these.
    """
    return [
        e
        for e in read_log(path).events
        if e.get("scenario") == "manual"
        and e.get("event") in ("fault", "heal")
        and isinstance(e.get("ts"), int | float)
        and float(e["ts"]) >= since
    ]


# ------------------------------------------------------------------ pure analysis


def fault_windows(timeline: Sequence[Event], end_ts: float) -> list[FaultSpan]:
    """Windows from the step log: kill..restart, pause..resume, partition..heal, delay/drop/behave..cleared.

    A fault still in force at the end of the run has `end` None. A repair
    with nothing to repair (a restart of a running node) opens no window.
    """
    open_: dict[tuple[str, str | None], FaultSpan] = {}
    closed: list[FaultSpan] = []
    for event in timeline:
        if event.get("event") not in ("fault", "heal"):
            continue
        action, node, ts = str(event.get("action")), event.get("node"), float(event["ts"])
        if action in _WINDOW_KEYS:
            kind, opens = _WINDOW_KEYS[action]
        else:  # delay / drop / behave: a non-zero setting opens, clearing it (a heal) closes
            kind, opens = action, event.get("event") == "fault"
        key = (kind, None if kind == "partition" else node)
        if key in open_:
            closed.append(_close(open_.pop(key), ts))
        if opens:
            groups = (
                tuple(tuple(map(str, g)) for g in event.get("groups") or ()) if kind == "partition" else ()
            )
            open_[key] = FaultSpan(
                kind, _window_label(event), ts, None, node if kind != "partition" else None, groups
            )
    closed.extend(open_.values())
    return sorted(closed, key=lambda w: w.start)


def _close(window: FaultSpan, ts: float) -> FaultSpan:
    return dataclasses.replace(window, end=ts)


def _window_label(event: Event) -> str:
    action, node = event.get("action"), event.get("node")
    if action == "partition":
        return "partition " + " | ".join(",".join(g) for g in event.get("groups", []))
    if action == "delay":
        return f"delay {node} {event.get('ms')} ms"
    if action == "drop":
        return f"drop {node} {event.get('rate')}"
    if action == "behave":
        return f"{node} {event.get('mode')}"
    return f"{node} {'killed' if action == 'kill' else 'paused' if action == 'pause' else action}"


def down_windows(events: Sequence[Event]) -> list[tuple[float, float]]:
    """When one node was not running, from its own log: `stopped`..`started`, or a crash (a gap closed by `started`).

    A final `stopped` is the end of the run, not an outage; a node killed and
    never restarted shows as the scenario's fault window instead.
    """
    windows = []
    last_ts: float | None = None
    down_since: float | None = None
    for event in events:
        ts = event.get("ts")
        if not isinstance(ts, int | float):
            continue
        kind = event.get("event")
        if kind == "started" and last_ts is not None:
            windows.append((down_since if down_since is not None else last_ts, float(ts)))
            down_since = None
        elif kind == "stopped":
            down_since = float(ts)
        last_ts = float(ts)
    return windows


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): a value that was actually observed."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latencies(events: Iterable[Event]) -> list[float]:
    """Finality latencies of blocks this node decided itself (synced blocks measure the outage instead)."""
    out = []
    for e in events:
        value = e.get("latency_ms")
        if e.get("event") == FINALIZED and not e.get("via_sync") and isinstance(value, int | float):
            out.append(float(value))
    return out


def max_height(events: Iterable[Event]) -> int:
    return max(
        (e["height"] for e in events if e.get("event") == FINALIZED and isinstance(e.get("height"), int)),
        default=0,
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def summary_lines(run: RunData) -> tuple[list[str], bool]:
    """The text summary and whether every invariant checked held."""
    lines: list[str] = []
    ok = True
    duration = run.end_ts - run.t0
    what = f"scenario {run.scenario.name}, " if run.scenario else ""
    count = f"{len(run.logs)} validators"
    if run.hosts:
        count = f"{sum(len(vs) for vs in run.hosts.values())} validators in {len(run.logs)} processes"
    lines.append(f"run: {what}{count}, {duration:.1f} s of events")
    all_lat = [lat for name in run.honest for lat in latencies(run.logs[name])]
    lines.append(
        f"finality latency (honest nodes, {len(all_lat)} blocks): median {_ms(_median(all_lat))}, "
        f"p99 {_ms(percentile(all_lat, 99))}"
    )
    for name, events in run.logs.items():
        lat = latencies(events)
        counts = {k: sum(1 for e in events if e.get("event") == k) for k in ("round_timeout", "started")}
        synced = sum(1 for e in events if e.get("event") == FINALIZED and e.get("via_sync"))
        note = "  (byzantine)" if name in run.byzantine else ""
        if name in run.hosts:
            note += f"  hosts {', '.join(run.hosts[name])}"
        lines.append(
            f"  {name:<6} height {max_height(events):>5}  median {_ms(_median(lat)):>8}  "
            f"p99 {_ms(percentile(lat, 99)):>8}  round timeouts {counts['round_timeout']:>3}  "
            f"synced {synced:>3}  starts {counts['started']}{note}"
        )
    stake = latest_stake(run.logs.values())
    if stake is not None:
        lines.append(stake_line(stake))
    windows = fault_windows(run.timeline, run.end_ts)
    if windows:
        lines.append("faults:")
        for w in windows:
            end = "end" if w.end is None else f"{w.end - run.t0:.1f} s"
            lines.append(f"  {w.start - run.t0:6.1f} s .. {end:>8}  {w.label}")
    penalties = unique_penalties(run.logs.values())
    if penalties:
        lines.append("penalties:")
        for event in penalties:
            at = (
                f"{_first_seen(run.logs.values(), event) - run.t0:6.1f} s  "
                if isinstance(event.get("ts"), int | float)
                else ""
            )
            lines.append(f"  {at}{describe_penalty(event)}")
    else:
        lines.append("penalties: none")
    lines.append("invariants:")
    conflicts = find_conflicts({n: run.history.get(n, run.logs[n]) for n in run.honest})
    if conflicts:
        ok = False
        lines.append(f"  FAIL safety: {conflicts[0].describe()} ({len(conflicts)} height(s))")
    else:
        heights = [max_height(run.logs[n]) for n in run.honest]
        lines.append(
            f"  PASS safety: no conflicting finalized blocks across {len(run.honest)} honest node(s) "
            f"(heights {min(heights, default=0)}..{max(heights, default=0)})"
        )
    lines.append("  " + liveness_line(run))
    if run.scenario is not None:
        hosts = {name: run.hosts.get(name, [name]) for name in run.logs}
        scenario, logs, running = checks.in_validator_terms(run.scenario, run.logs, run.running, hosts)
        results = checks.evaluate(scenario, logs, run.timeline, run.t0, run.end_ts, run.params, running)
        lines.append(f"scenario checks ({run.scenario.name}):")
        for result in results:
            if result.name == "safety":
                continue  # judged above, over the whole history
            ok = ok and result.ok
            lines.append(result.line())
    return lines, ok


def latest_stake(logs: Iterable[Sequence[Event]]) -> tuple[int, dict[str, int], int] | None:
    """(epoch, pool -> active stake, Nakamoto coefficient) of the newest `epoch` line in any log."""
    state = WatchState(nodes={})
    for events in logs:
        for event in events:
            if event.get("event") == EPOCH:
                fold(state, event)
    return state.stake


def liveness_line(run: RunData) -> str:
    """How long each running honest node took to finalize a new height after the last heal."""
    heals = [e for e in run.timeline if e.get("event") == "heal"]
    restarts = [
        (float(e["ts"]), name)
        for name, events in run.logs.items()
        for i, e in enumerate(events)
        if e.get("event") == "started" and i > 0
    ]
    if heals:
        since, why = checks.last_recovery_ts(run.timeline, run.t0)
    elif restarts:
        since, node = max(restarts)
        why = f"the last restart ({node} at {since - run.t0:.1f} s)"
    else:
        return "liveness after last heal: no fault healed in this run"
    alive = run.running if run.running is not None else set(run.logs)
    if run.scenario is not None:
        alive = alive - {host_of(run.hosts, v) or v for v in sc.down_at_end(run.scenario)}
    nodes = [n for n in run.honest if n in alive]
    times = checks.recovery_times(run.logs, nodes, since)
    stuck = [n for n, t in times.items() if t is None]
    if stuck:
        return f"liveness after {why}: {', '.join(stuck)} finalized no new height before the end"
    if not times:
        return f"liveness after {why}: no running honest node"
    slowest = max(times, key=lambda n: times[n] or 0.0)
    return (
        f"liveness after {why}: all {len(times)} running honest node(s) finalized again, "
        f"slowest {slowest} after {times[slowest]:.1f} s"
    )


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# ------------------------------------------------------------------ drawing


def plot(run: RunData, out: Path) -> Path:
    """Draw the report to a PNG (Agg canvas, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    names = list(run.logs)
    fig = Figure(figsize=(13, 9), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    heights_ax, latency_ax, nodes_ax = fig.subplots(
        3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 3, max(1.2, 0.35 * len(names))]}
    )
    colors = {name: f"C{i % 10}" for i, name in enumerate(names)}
    rel = run.t0

    for name, events in run.logs.items():
        fin = [e for e in events if e.get("event") == FINALIZED and isinstance(e.get("height"), int)]
        xs = [float(e["ts"]) - rel for e in fin]
        style = "--" if name in run.byzantine else "-"
        label = name + (" (byzantine)" if name in run.byzantine else "")
        heights_ax.step(
            xs,
            [e["height"] for e in fin],
            where="post",
            color=colors[name],
            ls=style,
            lw=1.2 + 1.2 * (len(names) - 1 - names.index(name)) / max(1, len(names) - 1),
            label=label,
        )  # earlier nodes drawn wider, so nodes at the same height show as stacked colours, not one line
        own = [e for e in fin if not e.get("via_sync") and isinstance(e.get("latency_ms"), int | float)]
        latency_ax.plot(
            [float(e["ts"]) - rel for e in own],
            [max(1.0, float(e["latency_ms"])) for e in own],
            ".",
            ms=3,
            color=colors[name],
            alpha=0.7,
        )

    heights_ax.set_ylabel("finalized height")
    heights_ax.legend(loc="upper left", fontsize=8, ncols=min(len(names), 8))
    title = f"posnet testnet run: {run.scenario.name}" if run.scenario else "posnet testnet run"
    heights_ax.set_title(title, loc="left", fontsize=11)
    latency_ax.set_ylabel("finality latency (ms)")
    latency_ax.set_yscale("log")
    latency_ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    latency_ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    latency_ax.yaxis.set_minor_formatter(NullFormatter())

    # per-node lane: down windows from the node's own log, round timeouts as ticks
    for row, name in enumerate(names):
        for start, end in down_windows(run.logs[name]):
            nodes_ax.broken_barh([(start - rel, end - start)], (row - 0.35, 0.7), color="tab:red", alpha=0.5)
        ticks = [float(e["ts"]) - rel for e in run.logs[name] if e.get("event") == ROUND_TIMEOUT]
        nodes_ax.vlines(ticks, row - 0.3, row + 0.3, color=colors[name], lw=0.8)
    nodes_ax.set_yticks(range(len(names)), names)
    nodes_ax.set_ylim(len(names) - 0.5, -0.5)
    nodes_ax.set_ylabel("down (red), round\ntimeouts (ticks)", fontsize=8)
    nodes_ax.set_xlabel("seconds since the run started")

    for window in fault_windows(run.timeline, run.end_ts):
        end = (window.end if window.end is not None else run.end_ts) - rel
        color = WINDOW_COLORS.get(window.kind, "tab:gray")
        for ax in (heights_ax, latency_ax, nodes_ax):
            ax.axvspan(window.start - rel, end, color=color, alpha=0.12, lw=0)
        heights_ax.annotate(
            window.label,
            xy=(window.start - rel, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize=8,
            color=color,
            va="top",
        )
    span = max(1.0, run.end_ts - rel)
    for x, labels, severe in penalty_marks(run.logs, rel, span):
        color = "tab:red" if severe else "tab:brown"
        for ax in (heights_ax, latency_ax):
            ax.axvline(x, color=color, ls=":", lw=1.2)
        latency_ax.annotate(
            "\n".join(labels),
            xy=(x, 0.0),
            xycoords=("data", "axes fraction"),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=8,
            color=color,
            va="bottom",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": color, "alpha": 0.85, "lw": 0.6},
        )
    heights_ax.set_xlim(min([0.0, *(float(e["ts"]) - rel for ev in run.logs.values() for e in ev[:1])]), span)
    for ax in (heights_ax, latency_ax):
        ax.grid(True, alpha=0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def penalty_marks(
    logs: Mapping[str, Sequence[Event]], t0: float, span: float
) -> list[tuple[float, list[str], bool]]:
    """Penalties as plot marks: (x, labels, severe), with those close in time merged into one mark.

    An equivocation brings evidence, a slash and a tombstone within a block or
    two; drawn separately their labels would print over each other.
    """
    events = [e for e in unique_penalties(logs.values()) if isinstance(e.get("ts"), int | float)]
    points = sorted(((_first_seen(logs.values(), e) - t0, e) for e in events), key=lambda p: p[0])
    marks: list[tuple[float, list[str], bool]] = []
    for x, event in points:
        who = event.get("validator") or event.get("offender")
        label = f"{event.get('event')} {who}"
        severe = event.get("event") in ("slashed", "tombstoned")
        if marks and x - marks[-1][0] <= 0.03 * span:
            first, labels, was_severe = marks[-1]
            if label not in labels:
                labels.append(label)
            marks[-1] = (first, labels, was_severe or severe)
        else:
            marks.append((x, [label], severe))
    return marks


def _first_seen(logs: Iterable[Sequence[Event]], penalty: Event) -> float:
    """When the first node logged this penalty (each honest node logs it when it applies the block)."""
    key = (penalty.get("event"), penalty.get("height"), penalty.get("validator") or penalty.get("offender"))
    stamps = [
        float(e["ts"])
        for events in logs
        for e in events
        if (e.get("event"), e.get("height"), e.get("validator") or e.get("offender")) == key
        and isinstance(e.get("ts"), int | float)
    ]
    return min(stamps, default=float(penalty["ts"]))


def make_report(layout: Layout, out: Path | None = None) -> tuple[list[str], bool, Path | None]:
    """Read the run, draw the PNG, and return the summary lines, the verdict and where the PNG went."""
    run = load_run(layout)
    if not any(run.logs.values()):
        raise TestnetError(f"no node events in {layout.logs}: nothing to report")
    lines, ok = summary_lines(run)
    if not matplotlib_available():
        lines.append(f"no PNG: drawing it needs matplotlib ({install_hint('report')})")
        return lines, ok, None
    path = plot(run, out if out is not None else layout.root / "report.png")
    return lines, ok, path


def matplotlib_available() -> bool:
    """The PNG is optional: validators (and their container image) do not carry matplotlib."""
    return importlib.util.find_spec("matplotlib") is not None
