"""A load generator: real signed transactions at a steady rate, and what became of each.

`posnet testnet load` signs transactions from the testnet's funded accounts
(`testnet up --accounts N`), publishes them on the chain's ``tx`` channel
over one MQTT connection at `tps` per second, and follows one node's log
for their ``tx_applied``/``tx_rejected`` events by tx id. It reports how
many were submitted, included, rejected (by the ledger's reason) and never
seen, with inclusion latency (publish to the node's log line) quantiles.

The mix names kinds with weights: `transfer` (1 unit to another load
account), `delegate` (1-10 units to a random pool), `undelegate` (part of
what this run delegated; a transfer when there is none), and `overspend`
(a transfer of more than the account holds: the ledger must refuse it,
so every run shows rejections counted by reason). Nonces are tracked
locally: a refused transaction leaves the nonce where it was, so an
overspend does not advance it.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from network.testnet.logtail import LogTail
from network.testnet.submit import broker_client
from network.testnet.target import Target
from network.transport.mqtt import topic
from node.core.channels import TX
from node.core.envelopes import tx_bytes
from node.core.events import TX_OUTCOMES
from node.core.keys import Keypair
from node.core.tx import Delegate, Transfer, Tx, Undelegate, sign_tx, tx_id
from node.runtime.keyfiles import KeyFileError, load_key_files

KINDS = ("transfer", "delegate", "undelegate", "overspend")
DEFAULT_MIX = {"transfer": 8, "delegate": 1, "undelegate": 1}
POLL_S = 0.1


class LoadError(ValueError):
    """A load run that cannot start: one line naming what is wrong."""


def parse_mix(text: str) -> dict[str, int]:
    """`transfer=8,delegate=1` as weights; LoadError naming a bad item."""
    mix: dict[str, int] = {}
    for item in text.split(","):
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or name not in KINDS:
            raise LoadError(f"--mix {item!r}: expected KIND=WEIGHT with KIND one of {', '.join(KINDS)}")
        try:
            weight = int(raw)
        except ValueError:
            raise LoadError(f"--mix {item!r}: the weight must be an integer") from None
        if weight < 0:
            raise LoadError(f"--mix {item!r}: the weight must not be negative")
        mix[name] = weight
    if not any(mix.values()):
        raise LoadError("--mix: at least one kind needs a positive weight")
    return mix


@dataclass
class Account:
    """A load account as this run tracks it: its key, next nonce, balance and what it delegated where."""

    keypair: Keypair
    nonce: int
    balance: int
    staked: Counter[bytes] = field(default_factory=Counter)


@dataclass
class Sent:
    kind: str
    at: float  # wall clock, seconds
    outcome: str | None = None  # applied | rejected
    reason: str | None = None
    latency_s: float | None = None


@dataclass
class LoadReport:
    """What a load run did and what became of it."""

    tps: float
    duration_s: float
    sent: dict[str, Sent]

    def counts(self) -> dict[str, Any]:
        applied = [s for s in self.sent.values() if s.outcome == "applied"]
        rejected = Counter(
            (s.reason or "?").split(":")[0] for s in self.sent.values() if s.outcome == "rejected"
        )
        latencies = sorted(s.latency_s for s in applied if s.latency_s is not None)
        return {
            "submitted": len(self.sent),
            "by_kind": dict(Counter(s.kind for s in self.sent.values())),
            "included": len(applied),
            "rejected": sum(rejected.values()),
            "rejected_by_reason": dict(rejected.most_common()),
            "unseen": sum(1 for s in self.sent.values() if s.outcome is None),
            "achieved_tps": round(len(self.sent) / self.duration_s, 2) if self.duration_s else 0.0,
            "latency_p50_ms": _quantile_ms(latencies, 0.50),
            "latency_p99_ms": _quantile_ms(latencies, 0.99),
        }

    def lines(self) -> list[str]:
        c = self.counts()
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(c["by_kind"].items()))
        lines = [
            f"submitted {c['submitted']} ({kinds}) at {c['achieved_tps']} tx/s (asked {self.tps:g})",
            f"included {c['included']}, rejected {c['rejected']}, never seen {c['unseen']}",
            f"inclusion latency p50 {c['latency_p50_ms']} ms, p99 {c['latency_p99_ms']} ms",
        ]
        lines += [f"  rejected {n}: {reason}" for reason, n in c["rejected_by_reason"].items()]
        return lines


def _quantile_ms(values: list[float], q: float) -> int | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0] * 1000)
    return round(statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1] * 1000)


class LoadGenerator:
    """One run: `await run()` publishes for `duration_s`, then waits up to `drain_s` for the outcomes."""

    def __init__(
        self,
        target: Target,
        chain_id: str,
        accounts: list[Account],
        pools: list[bytes],
        mix: dict[str, int],
        seed: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if len(accounts) < 2:
            raise LoadError(
                "the load needs at least two funded accounts: start the testnet with --accounts N"
            )
        if target.broker_url is None or target.log_path is None:
            raise LoadError("the load needs the testnet's broker and a node's log: pass --dir")
        self.target, self.chain_id, self.accounts, self.pools = target, chain_id, accounts, pools
        self.tls = tls  # for an mqtts:// broker (`testnet load --broker mqtts://... --tls-ca ...`)
        self.kinds = [k for k in KINDS if mix.get(k)]
        self.weights = [mix[k] for k in self.kinds]
        self.rng = random.Random(seed)
        self.sent: dict[str, Sent] = {}
        self.tail = LogTail(target.log_path)

    async def run(self, tps: float, duration_s: float, drain_s: float) -> LoadReport:
        async with await broker_client(self.target, "load", tls=self.tls) as client:
            started = time.monotonic()
            count = int(tps * duration_s)
            for i in range(count):
                delay = started + i / tps - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                kind, tx, account = self._next()
                wire = sign_tx(self.chain_id, tx, account.keypair)
                self.sent[tx_id(wire).hex()] = Sent(kind, time.time())
                await client.publish(
                    topic(self.chain_id, TX), tx_bytes(self.chain_id, wire, account.keypair), qos=1
                )
                self._collect()
            elapsed = time.monotonic() - started
        deadline = time.monotonic() + drain_s
        while any(s.outcome is None for s in self.sent.values()) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            self._collect()
        return LoadReport(tps, elapsed, self.sent)

    def _next(self) -> tuple[str, Tx, Account]:
        """The next transaction by the mix, from a random account, with its local state updated."""
        kind = self.rng.choices(self.kinds, self.weights)[0]
        account = self.rng.choice(self.accounts)
        others = [a for a in self.accounts if a is not account]
        if kind == "undelegate":
            held = [(pool, n) for pool, n in account.staked.items() if n > 0]
            if held:
                pool, n = self.rng.choice(sorted(held))
                amount = self.rng.randint(1, n)
                account.staked[pool] -= amount
                return kind, self._spend(account, Undelegate(account.nonce, pool, amount), 0), account
            kind = "transfer"
        if kind == "delegate" and self.pools and account.balance > 10:
            pool, amount = self.rng.choice(self.pools), self.rng.randint(1, 10)
            account.staked[pool] += amount
            return kind, self._spend(account, Delegate(account.nonce, pool, amount), amount), account
        if (
            kind == "overspend"
        ):  # refused, so the nonce stays; the amount differs each time, so no two are alike
            to = self.rng.choice(others).keypair.address
            return kind, Transfer(account.nonce, to, account.balance + 1 + len(self.sent)), account
        to = self.rng.choice(others)
        to.balance += 1
        return "transfer", self._spend(account, Transfer(account.nonce, to.keypair.address, 1), 1), account

    @staticmethod
    def _spend(account: Account, tx: Tx, amount: int) -> Tx:
        account.nonce += 1
        account.balance -= amount
        return tx

    def _collect(self) -> None:
        for event in self.tail.read_events():
            if event.get("event") not in TX_OUTCOMES:
                continue
            sent = self.sent.get(str(event.get("tx")))
            if sent is None or sent.outcome is not None:
                continue
            sent.outcome = "applied" if event["event"] == "tx_applied" else "rejected"
            sent.reason = event.get("reason")
            if isinstance(event.get("ts"), int | float):
                sent.latency_s = max(0.0, float(event["ts"]) - sent.at)


def load_accounts(paths: list[Path]) -> list[Keypair]:
    """The funded accounts' keys (read as a node reads its key files); LoadError naming a bad file."""
    try:
        return [keypair for _, keypair in load_key_files(paths, "start the testnet with --accounts N")]
    except KeyFileError as exc:
        raise LoadError(str(exc)) from None
