"""`posnet testnet down`: stop a testnet from another terminal, as Ctrl-C in the `up` terminal would.

The `up` process owns the testnet (it stops the nodes first and the broker
last, then writes its verdict), so `down` does not stop the nodes itself: it
sends that process SIGTERM, which `up` treats as Ctrl-C, and waits for it to
exit. A second `down` while it still stops is a second Ctrl-C: `up` then
kills what is left at once. If `up` is gone but left processes behind (it
was killed), `down` stops those itself.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from network.testnet.layout import PAUSED, RESTARTING, RUNNING, STOPPED, Layout, locked_state, read_state
from network.testnet.processes import process_state, signal_process, stop_processes, wait_dead
from network.testnet.services import relay_processes

DOWN_TIMEOUT_S = 60.0  # up waits STOP_TIMEOUT_S for the nodes, then stops relay, broker, Prometheus


@dataclass(frozen=True)
class DownResult:
    """What `down` found and did; `line` says it in one line."""

    line: str
    stopped: bool  # False: still running after the timeout


def stop_testnet(layout: Layout, timeout: float = DOWN_TIMEOUT_S) -> DownResult:
    """SIGTERM the `up` that owns the testnet in `layout` and wait for it; TestnetError without a testnet."""
    state = read_state(layout)
    pid, command = state.supervisor_pid, state.supervisor_command
    if pid and process_state(pid, command) != "dead":
        signal_process(pid, command, signal.SIGTERM)
        if not wait_dead(pid, command, timeout):
            return DownResult(
                f"the testnet in {layout.root} (up pid {pid}) is still stopping after {timeout:g} s; "
                "run `posnet testnet down` again to kill what is left",
                stopped=False,
            )
        return DownResult(f"stopped the testnet in {layout.root} (up pid {pid} exited)", stopped=True)
    leftovers = [
        (p, c, None)
        for p, c in [
            *((n.pid, n.command) for n in state.nodes.values()),
            *relay_processes(layout, state),
            (state.broker.pid, state.broker.command),
        ]
        if p and process_state(p, c) != "dead"
    ]
    if leftovers:
        stop_processes(leftovers)
        with locked_state(layout) as final:  # as `up` records a run it stopped itself
            for node in final.nodes.values():
                if node.status in (RUNNING, PAUSED, RESTARTING):
                    node.status = STOPPED
            final.broker.pid = None
            if final.relay is not None:
                final.relay.pid = None
        return DownResult(
            f"the up of {layout.root} was gone; stopped {len(leftovers)} process(es) it left running",
            stopped=True,
        )
    return DownResult(f"nothing to stop: no testnet is running in {layout.root}", stopped=True)
