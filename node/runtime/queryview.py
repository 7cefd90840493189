"""What a node's read-only HTTP query endpoint answers from, shared between the event loop and the server's threads.

The answers themselves are pure functions of the chain state
(``node.core.query.route``); this holder is the runtime's part: the latest
finalized state, the recent tx outcomes, and the lock that lets the HTTP
threads read while the event loop writes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from node.core.events import TX_OUTCOMES
from node.core.query import JSON, QueryError, route
from node.core.state import ChainState

TX_OUTCOMES_KEPT = 10_000


class QueryView:
    """The node's latest finalized state and its recent tx outcomes, shared with the HTTP threads.

    Writers are the event loop (`publish` after each finalized block,
    `record` for each logged tx outcome); readers are the server's threads
    (`answer`). The state is an immutable value, so publishing is one
    reference assignment; the outcome map is the only mutable part and is
    guarded by a lock.
    """

    def __init__(self, state: ChainState, keep: int = TX_OUTCOMES_KEPT) -> None:
        self.state = state
        self._keep = keep
        self._outcomes: OrderedDict[str, JSON] = OrderedDict()
        self._lock = threading.Lock()

    def publish(self, state: ChainState) -> None:
        """Make `state` the answer to queries; never goes back (co-hosted keys decide each height)."""
        if state.height > self.state.height:
            self.state = state

    def record(self, event: Mapping[str, Any]) -> None:
        """Remember a logged tx outcome by its tx id, so a client can ask how its tx ended."""
        tx = event.get("tx")
        if event.get("event") not in TX_OUTCOMES or not isinstance(tx, str):
            return
        status = {"tx_applied": "applied", "tx_rejected": "rejected"}.get(event["event"], "refused")
        outcome = {"status": status, "tx_height": event.get("height"), "reason": event.get("reason")}
        with self._lock:
            self._outcomes[tx] = outcome
            self._outcomes.move_to_end(tx)
            while len(self._outcomes) > self._keep:
                self._outcomes.popitem(last=False)

    def outcome(self, tx: str) -> JSON | None:
        """How the tx with this id ended on this node, if it is among the recent ones."""
        with self._lock:
            outcome = self._outcomes.get(tx)
        return None if outcome is None else dict(outcome)

    def answer(self, path: str) -> tuple[int, JSON]:
        """(HTTP status, JSON body) for a query path; never raises for a bad query."""
        try:
            return 200, route(self.state, path, self.outcome)
        except QueryError as exc:
            return exc.status, {"error": str(exc)}
