"""A testnet's logs as a trace: the shapes `posnet sim --trace` writes, from the nodes' own JSON lines.

A viewer that reads simulator traces reads a real testnet through this:
`posnet testnet trace --dir DIR` merges every node's log into one stream in
time order, `t` in milliseconds from the first event, with the trace's
names (`decide`, `timeout`, `h`, `r`, `block` as the first 4 bytes of the
hash), penalties and evidence as the nodes logged them, and a node's
`started`/`stopped` as `boot`/`stop`. Real nodes log no deliveries and no
steps (that would cost every message), so a testnet trace has none; its
header says which kinds it holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

from network.testnet.layout import Layout
from network.testnet.logcheck import read_log_dir
from node.core.events import ACCOUNTABILITY_EVENTS, FINALIZED, ROUND_TIMEOUT
from node.core.genesis import Genesis

KINDS = ("decide", "timeout", "boot", "stop", *ACCOUNTABILITY_EVENTS)
DROPPED_FIELDS = ("event", "node", "ts")


def trace_line(node: str, event: dict[str, Any], t0: float) -> dict[str, Any] | None:
    """One node log event in the trace's shape (None: not an event a trace carries)."""
    kind = event.get("event")
    t = round((float(event["ts"]) - t0) * 1000)
    if kind == FINALIZED:
        block = str(event.get("hash") or "")[:8] or None
        return {
            "t": t,
            "ev": "decide",
            "node": node,
            "h": event.get("height"),
            "r": event.get("round"),
            "block": block,
        }
    if kind == ROUND_TIMEOUT:
        return {
            "t": t,
            "ev": "timeout",
            "node": node,
            "h": event.get("height"),
            "r": event.get("round"),
            "step": event.get("step"),
        }
    if kind in ("started", "stopped"):
        return {
            "t": t,
            "ev": "boot" if kind == "started" else "stop",
            "node": node,
            "height": event.get("height"),
        }
    if kind in ACCOUNTABILITY_EVENTS:
        fields = {k: v for k, v in event.items() if k not in DROPPED_FIELDS}
        return {"t": t, "ev": kind, "node": node, **fields}
    return None


def testnet_trace(layout: Layout, genesis: Genesis) -> Iterator[dict[str, Any]]:
    """The header, then every node's events that a trace carries, in time order."""
    logs = read_log_dir(layout.logs)
    stamped = [
        (float(event["ts"]), node, event)
        for node, log in logs.items()
        for event in log.events
        if isinstance(event.get("ts"), int | float)
    ]
    stamped.sort(key=lambda item: (item[0], item[1]))
    t0 = stamped[0][0] if stamped else 0.0
    yield {
        "ev": "run",
        "source": "testnet",
        "chain_id": genesis.chain_id,
        "validators": [{"name": v.name, "stake": v.stake} for v in genesis.validators],
        "epoch_length": genesis.params.epoch_length,
        "kinds": list(KINDS),
        # the unix time of t = 0, so what other files stamp (the step log) can be put on this clock
        "t0_ts": t0 if stamped else None,
    }
    for _, node, event in stamped:
        line = trace_line(node, event, t0)
        if line is not None:
            yield line


def write_trace(lines: Iterator[dict[str, Any]], out: TextIO) -> int:
    count = 0
    for line in lines:
        out.write(json.dumps(line, separators=(",", ":")) + "\n")
        count += 1
    return count
