"""Every event the core logs carries the fields node/core/events.py promises for it.

The log checker, the scenarios, the report and the live view all read these
fields by name; a driver that dropped or renamed one would leave them
reading None. A simulated run with an equivocator (evidence, slashing,
tombstoning), a crash (round timeouts, catch-up by sync) and loss records
every event the core logs, and each named event is held to its fields.
"""

from __future__ import annotations

from typing import Any

import pytest

from network.sim import node as sim_node
from network.sim.config import SimConfig
from network.sim.plans import parse_fault_spec
from network.sim.runner import run_simulation
from node.core import events
from node.core.events import FIELDS

pytestmark = pytest.mark.sim


def _missing(event: dict[str, Any]) -> list[str]:
    return [name for name in FIELDS.get(event["event"], ()) if name not in event]


def test_every_logged_event_carries_its_promised_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    def log(self: sim_node.SimNode, event: dict[str, Any]) -> None:
        seen.append({**event, "node": self.name})  # the runtime's event log adds the node's name

    monkeypatch.setattr(sim_node.SimNode, "log", log)
    config = SimConfig(
        validators=5,
        heights=40,
        seed=3,
        byzantine=1,
        byzantine_mode="equivocate",
        faults=parse_fault_spec("drop=0.05,crash=v2@300-6000"),
    )
    run_simulation(config)
    kinds = {event["event"] for event in seen}
    assert {events.FINALIZED, events.ROUND_TIMEOUT, events.EVIDENCE, events.SYNCED} <= kinds, kinds
    assert {"slashed", "tombstoned"} <= kinds, kinds
    broken = [(event["event"], _missing(event)) for event in seen if _missing(event)]
    assert not broken, broken[:5]


def test_the_field_check_notices_a_missing_field() -> None:
    assert _missing({"event": events.FINALIZED, "node": "v1", "height": 1}) == [
        "round",
        "hash",
        "proposer",
        "latency_ms",
    ]
