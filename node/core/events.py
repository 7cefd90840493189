"""The names of the events a node logs, defined once for every reader.

A node's JSON-lines log is a contract: the simulator's checkers, the
testnet's log checker, scenarios, the report and the live view all read it.
Each of them used to carry its own list of names, and the lists drifted
(one counted ``evidence`` as a penalty, another did not). They are here now,
with the fields each event always carries, so a reader can name a missing
field instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping

FINALIZED = "finalized"
ROUND_TIMEOUT = "round_timeout"
EVIDENCE = "evidence"
SYNCED = "synced"
TRUST = "trust"  # --trust: the checkpoint a node started with, and the weak subjectivity period
CHECKPOINT = "checkpoint"  # --trust: the trusted block was decided; the history below it is its own
EPOCH = "epoch"  # a new epoch began: the stake distribution and Nakamoto coefficient it starts with
DOPPELGANGER = "doppelganger"  # a message of a hosted key that this node did not sign: it signs no more
LISTENING = (
    "listening"  # a started node waits before signing: synced, and its keys quiet (node.core.doppelganger)
)
SIGNING_ENABLED = "signing_enabled"  # a hosted key's wait ended: it signs from this height on
SIGNING_KEY = "signing_key"  # the key a hosted validator signs with changed (an owner rotated it)
START_GATE = "start_gate"  # a node at genesis started its machine: why, after how long, who was missing
VOTE_CHANNELS = "vote_channels"  # the committee vote channels a node listens to changed (node.core.routes)

LEDGER_PENALTIES: tuple[str, ...] = ("slashed", "jailed", "tombstoned", "unjailed")
"""Ledger events that change a pool's standing: logged by every node that applies them."""

ACCOUNTABILITY_EVENTS: tuple[str, ...] = (EVIDENCE, *LEDGER_PENALTIES)
"""What a run's penalty accounting counts: evidence seen, then what the ledger did about it."""

TX_REFUSED = "tx_refused"  # a node's mempool refused a signed tx from an account on chain (never in a block)
PROPOSAL_UNSENT = "proposal_unsent"  # a proposal this node signed is too large for any peer to accept

TX_OUTCOMES: tuple[str, ...] = ("tx_applied", "tx_rejected", TX_REFUSED)
"""How a transaction ends as its sender learns it: applied or rejected by a block, or refused before one."""

LOGGED_LEDGER_EVENTS: tuple[str, ...] = (
    *LEDGER_PENALTIES,
    "tx_applied",
    "tx_rejected",
    "released",
    "retired",
    "key_rotated",
)
"""Ledger events a node writes to its log (the rest stay inside the state)."""

FIELDS: Mapping[str, tuple[str, ...]] = {
    FINALIZED: ("node", "height", "round", "hash", "proposer", "latency_ms"),
    ROUND_TIMEOUT: ("node", "height", "round", "step"),
    EVIDENCE: ("node", "height", "offender"),
    **{name: ("node", "height", "validator") for name in LEDGER_PENALTIES},
    SYNCED: ("node", "from_height", "to_height", "blocks"),
    EPOCH: ("node", "height", "epoch", "stake", "nakamoto"),
    SIGNING_KEY: ("node", "validator", "from_height", "key", "held"),
    DOPPELGANGER: ("node", "validator", "height", "round", "why"),
    SIGNING_ENABLED: ("node", "validator", "height", "network_height", "waited_ms", "adopted"),
    TX_REFUSED: ("node", "tx", "account", "type", "nonce", "reason", "code"),
    PROPOSAL_UNSENT: ("node", "height", "round", "bytes", "limit", "txs"),
}
"""The fields each event always carries besides ``event`` and ``ts``."""
