"""Faults on a running testnet, as commands: node faults by signal, network faults through the relay.

Node faults (kill, pause, resume, restart, behave) signal a node's recorded
process after checking it is still ours, and record their intent in
testnet.json first, so the supervisor reads a deliberate kill as one. A
fault may name a validator: it acts on the process hosting it, and so on
every validator that process hosts (network/testnet/placement.py).

Network faults (delay, drop, partition, heal) are real: each node reaches the
broker through its own port of a relay process (`network.testnet.relay`) that
`up` starts between the nodes and the broker; the commands here write the
relay's control file and return once the relay reports the change applied.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence

from network.testnet import faultfile as netfaults
from network.testnet.errors import TestnetError
from network.testnet.faultfile import NetworkFaults
from network.testnet.layout import (
    KILLED,
    PAUSED,
    RESTARTING,
    RUNNING,
    Layout,
    NodeProc,
    RelayInfo,
    TestnetState,
    locked_state,
    read_state,
    testnet_lock,
)
from network.testnet.placement import map_groups
from network.testnet.processes import (
    STOP_TIMEOUT_S,
    process_state,
    signal_process,
    spawn_node,
    stop_processes,
    wait_dead,
)
from node.core.behaviours import BEHAVIOURS, HONEST

FAULT_APPLY_TIMEOUT_S = 30.0  # an island broker start (amqtt) is the slow part


# ------------------------------------------------------------------ node faults


def kill_node(layout: Layout, name: str) -> NodeProc:
    """SIGKILL: the crash a real machine has, with no chance to flush or say goodbye."""
    with locked_state(layout) as state:
        node = state.node(name)
        if process_state(node.pid, node.command) == "dead":
            raise TestnetError(f"{_who(name, node)} is not running (status {node.status})")
        node.status = KILLED  # recorded before the signal, so the orchestrator reads it as deliberate
    signal_process(node.pid, node.command, signal.SIGKILL)
    wait_dead(node.pid, node.command, 5.0)
    return node


def pause_node(layout: Layout, name: str) -> NodeProc:
    """SIGSTOP: the process keeps its sockets but stops answering, like a long GC pause or a hung VM."""
    with locked_state(layout) as state:
        node = state.node(name)
        current = process_state(node.pid, node.command)
        if current != "alive":
            raise TestnetError(
                f"{_who(name, node)} is {current if current != 'dead' else 'not running'}; cannot pause it"
            )
        signal_process(node.pid, node.command, signal.SIGSTOP)
        node.status = PAUSED
    return node


def resume_node(layout: Layout, name: str) -> NodeProc:
    """SIGCONT a paused node."""
    with locked_state(layout) as state:
        node = state.node(name)
        current = process_state(node.pid, node.command)
        if current != "paused":
            raise TestnetError(
                f"{_who(name, node)} is {current if current != 'dead' else 'not running'}, not paused"
            )
        signal_process(node.pid, node.command, signal.SIGCONT)
        node.status = RUNNING
    return node


def restart_node(layout: Layout, name: str, behaviour: str | None = None) -> NodeProc:
    """Stop the node if it runs (SIGTERM, then SIGKILL), then start its recorded command again.

    With `behaviour`, the recorded command line (and so every later restart)
    switches to that `--behaviour` first.
    """
    if behaviour is not None and behaviour not in BEHAVIOURS:
        raise TestnetError(f"behaviour {behaviour!r}: must be one of {', '.join(BEHAVIOURS)}")
    with locked_state(layout) as state:
        node = state.node(name)
        _require_running(layout, state)
        node.status = RESTARTING
        old_pid, old_command = node.pid, list(node.command)
        if behaviour is not None:
            node.behaviour = behaviour
            node.command = with_behaviour(node.command, behaviour)
            node.was_byzantine = node.was_byzantine or behaviour != HONEST
    stop_processes([(old_pid, old_command, None)])
    wait_dead(old_pid, old_command, STOP_TIMEOUT_S)
    process = spawn_node(layout, node)
    with locked_state(layout) as state:
        node = state.node(name)
        node.pid, node.status, node.exit_code = process.pid, RUNNING, None
        node.restarts += 1
    return node


def _who(name: str, node: NodeProc) -> str:
    """`v3`, or `v3 (process p1)` when the name is a validator another process hosts."""
    return name if name == node.name else f"{name} (process {node.name})"


def _require_running(layout: Layout, state: TestnetState) -> None:
    if not state.supervisor_pid or process_state(state.supervisor_pid, state.supervisor_command) == "dead":
        raise TestnetError(f"the testnet in {layout.root} is not running; start it with `posnet testnet up`")


def with_behaviour(command: Sequence[str], behaviour: str) -> list[str]:
    """`command` with its `--behaviour` value replaced (or added)."""
    out = list(command)
    if "--behaviour" in out[:-1]:
        out[out.index("--behaviour") + 1] = behaviour
    else:
        out += ["--behaviour", behaviour]
    return out


def behave(layout: Layout, node: str, mode: str) -> NodeProc:
    """Restart a running testnet's node as `honest`, `equivocate` or `silent`; later restarts keep it.

    A restart rather than a signal: behaviour is fixed on the node's command
    line, which is also what makes it survive `restart`.
    """
    return restart_node(layout, node, behaviour=mode)


# ------------------------------------------------------------------ network faults


def partition(layout: Layout, groups: Sequence[Sequence[str]]) -> NetworkFaults:
    """Split the nodes into islands that cannot reach each other; nodes not named join the first group.

    The first group keeps the main broker, every further group gets an island
    broker of its own; a node that changes island loses its connection and
    reconnects into the new one. Replaces any earlier partition; delays and
    drops stay.
    """
    if len(groups) < 2:
        raise TestnetError("a partition needs at least two groups, e.g. `v1,v2 v3,v4`")
    if any(not group for group in groups):
        raise TestnetError("a partition group is empty")
    # validator names become the processes hosting them; a process split across groups is refused
    islands = map_groups(read_state(layout).hosts, groups)

    def change(faults: NetworkFaults) -> None:
        faults.groups = islands

    return _change_faults(layout, change)


def heal(layout: Layout) -> NetworkFaults:
    """One network again: every node back on the main broker; every delay and drop cleared."""

    def change(faults: NetworkFaults) -> None:
        faults.groups, faults.links = [], {}

    return _change_faults(layout, change)


def delay(layout: Layout, node: str, ms: int) -> NetworkFaults:
    """Hold every chunk between `node` and its broker for `ms` milliseconds, both ways (0 = none).

    `node` may name a validator: the delay is on its process's link, so it
    holds every validator that process hosts.
    """
    node = read_state(layout).node(node).name
    whole = isinstance(ms, int | float) and not isinstance(ms, bool) and float(ms).is_integer()
    if not whole or not 0 <= ms <= netfaults.MAX_DELAY_MS:
        raise TestnetError(f"delay {ms!r}: must be a whole number of ms in 0..{netfaults.MAX_DELAY_MS}")

    def change(faults: NetworkFaults) -> None:
        faults.links[node] = netfaults.LinkFaults(int(ms), faults.link(node).drop)
        _forget_inactive(faults, node)

    return _change_faults(layout, change)


def drop(layout: Layout, node: str, rate: float) -> NetworkFaults:
    """Lose each MQTT PUBLISH between `node` and its broker with probability `rate`, both ways (0 = none).

    `node` may name a validator: the drop is on its process's link.
    """
    node = read_state(layout).node(node).name
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
        raise TestnetError(f"drop rate {rate!r}: must be a number in 0..1 (e.g. 0.3)")

    def change(faults: NetworkFaults) -> None:
        faults.links[node] = netfaults.LinkFaults(faults.link(node).delay_ms, float(rate))
        _forget_inactive(faults, node)

    return _change_faults(layout, change)


def _forget_inactive(faults: NetworkFaults, node: str) -> None:
    if not faults.link(node).active:
        faults.links.pop(node, None)


def _change_faults(layout: Layout, change: Callable[[NetworkFaults], None]) -> NetworkFaults:
    """Edit DIR/faults.json under the lock, then wait until the relay has made it real.

    If the relay cannot apply it (an island broker does not start), the file
    goes back to what was in force, so the next command starts from the truth.
    """
    with testnet_lock(layout):
        state = read_state(layout)
        relay = _running_relay(layout, state)
        before = read_requested_faults(layout)
        after = NetworkFaults.from_json(before.to_json())
        change(after)
        after.generation = before.generation + 1
        netfaults.write_faults(layout.root, after)
        try:
            _await_applied(layout, relay, after.generation)
        except TestnetError:
            before.generation = after.generation + 1
            netfaults.write_faults(layout.root, before)
            raise
    return after


def read_requested_faults(layout: Layout) -> NetworkFaults:
    try:
        return netfaults.read_faults(layout.root)
    except ValueError as exc:
        raise TestnetError(str(exc)) from None


def _running_relay(layout: Layout, state: TestnetState) -> RelayInfo:
    _require_running(layout, state)
    relay = state.relay
    if relay is None:
        raise TestnetError(
            f"the testnet in {layout.root} runs without the fault relay (--no-netfaults); "
            "restart `up` without that option for network faults"
        )
    if process_state(relay.pid, relay.command) == "dead":
        raise TestnetError(f"the network-fault relay of {layout.root} is not running; see {relay.log}")
    return relay


def _await_applied(layout: Layout, relay: RelayInfo, generation: int) -> None:
    deadline = time.monotonic() + FAULT_APPLY_TIMEOUT_S
    while time.monotonic() < deadline:
        applied = netfaults.read_applied(layout.root)
        if applied and applied.get("pid") == relay.pid and applied.get("generation", -1) >= generation:
            if applied.get("error"):
                raise TestnetError(f"the relay could not apply it: {applied['error']}")
            return
        if process_state(relay.pid, relay.command) == "dead":
            raise TestnetError(f"the network-fault relay exited; see {relay.log}")
        time.sleep(0.05)
    raise TestnetError(
        f"the relay did not apply the change within {FAULT_APPLY_TIMEOUT_S:.0f} s; see {relay.log}"
    )


def describe_link(faults: NetworkFaults, node: str, lost: int | None = None) -> str:
    """One node's network faults in a few words (`delay 200ms, drop 30%, group 2/2`), or ``-``.

    `lost`, the relay's count of dropped publishes, is shown beside an active drop.
    """
    parts = []
    link = faults.link(node)
    if link.delay_ms:
        parts.append(f"delay {link.delay_ms}ms")
    if link.drop:
        parts.append(f"drop {link.drop * 100:g}%" + ("" if lost is None else f" ({lost} lost so far)"))
    if len(faults.groups) > 1:
        parts.append(f"group {faults.group_of(node) + 1}/{len(faults.groups)}")
    return ", ".join(parts) or "-"


def describe_partition(faults: NetworkFaults) -> str:
    """`v1,v2 | v3,v4`, or `none`."""
    if len(faults.groups) < 2:
        return "none"
    return " | ".join(",".join(group) for group in faults.groups)
