"""Fast-forward: an economy over thousands of epochs without the messages, on the chain's own rules.

What is skipped is only what the messages decide: who proposed each height
and who signed its certificate. Both come from the same places a node asks
(`proposer_of` over the chain's proposer priorities, the committee the state
drew for that height), with each pool's behaviour from the economy file
saying whether it shows up: an offline pool neither proposes (its round
fails, the next proposer takes over) nor signs, and a pool with
`performance_ppm` below one signs each seat with that chance. Everything
else is the real chain: blocks go through `node.core.state.apply_block`,
delegators act through signed transactions in blocks, an equivocating pool
is slashed by evidence built from two of its signed precommits, a jailed
pool comes back by an `unjail` transaction. Certificates carry no
signatures (nothing verifies them here; `apply_block` trusts its caller
like a node trusts a block it already checked).

Each epoch: the timeline's events for it, then each delegator in a seeded
order asks its policy (on the pools as they stand after the moves decided
before it, so a crowd does not all jump into one pool blind), and every
transaction decided goes into the epoch's first blocks. Then the epoch's
blocks, then what `network.econ.metrics` measures.

It runs past 500 lines because one epoch's step (timeline, operators,
delegators, re-staking, blocks) reads and changes the engine's state
throughout; what stands alone already lives apart (the operators' rules in
`network.econ.operators`, quotes, policies, metrics, the attacker).
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import lru_cache
from typing import Any

from network.econ.attacker import resolve
from network.econ.config import EconomyConfig, TimelineEvent
from network.econ.operators import Operators
from network.econ.policies import (
    LEAVE,
    POLICIES,
    SETTLING,
    Holding,
    Market,
    Policy,
    loyal_policy,
    policy_miss,
    settles,
)
from network.econ.quotes import market_of, requote
from network.econ.record import EpochLog, class_holdings, epoch_record
from network.econ.world import Delegator, World, build_world
from node.core import ledger as L
from node.core.genesis import PPM
from node.core.messages import (
    Block,
    CommitCertificate,
    Evidence,
    Kind,
    Vote,
    make_evidence,
    sha256,
    sign_item,
)
from node.core.query import SetView
from node.core.shares import exchange_rate_ppm
from node.core.state import (
    ChainState,
    Committee,
    apply_block,
    committee_at,
    evidence_problem,
    genesis_state,
    proposer_of,
)
from node.core.tx import Delegate, Redelegate, RegisterPool, Tx, Undelegate, Unjail, UpdatePool, sign_tx

_JUDGED = ("yield", "nonmyopic")  # policies the ledger's quotes judge after each turn (`policy_miss`)
MAX_ROUNDS = 100  # rounds tried at one height before the chain counts as halted (every proposer offline)


class Halted(Exception):
    """The chain stopped: no round at a height found an online proposer and a quorum of signers."""


class FastForward:
    """One economy run: `run()` yields one JSON-able record per epoch (epoch -1: genesis, before anyone acted)."""

    def __init__(
        self, config: EconomyConfig, seed: int | None = None, policies: dict[str, Policy] | None = None
    ) -> None:
        """`policies` replaces the shipped ones by name (tests use it to plant a policy that misreads quotes)."""
        self.seed = config.seed if seed is None else seed
        config = self.config = resolve(config, self.seed)  # the attacker's pools, if the file has one
        self.world: World = build_world(config, self.seed)
        self.state: ChainState = genesis_state(self.world.genesis)
        self.rng = random.Random(f"econ/{self.seed}")  # the seed alone: a renamed file runs the same
        self.offline: set[bytes] = set()
        self.performance = {self.world.owners[p.name].address: p.performance_ppm for p in config.pools}
        self.performance.update((o.keypair.address, PPM) for o in self.world.operators)
        self._full_performance = all(p >= PPM for p in self.performance.values())
        self._everyone: tuple[Committee | None, tuple[bytes, ...], int] = (None, (), 0)  # see `_signers`
        self.where: dict[bytes, bytes] = self._genesis_positions()
        self.entry_rate: dict[bytes, int] = {}
        self.last_cert: CommitCertificate | None = None
        self.pending_evidence: list[Evidence] = []
        self.names = {key.address: name for name, key in self.world.owners.items()}
        self.classes = {c.name: c for c in config.delegators}
        self.policies = {**POLICIES, **(policies or {})}
        self.operators = Operators(config, self.world, self.names, self.rng)
        self._locked: dict[bytes, int] = {}  # delegator -> epoch its redelegated stake may hop again
        self._since: ChainState | None = None  # where the last record's epoch ended: what the next paid
        self._context = SetView.of(self.state)  # the totals the current quotes were made on
        self._last_quoted: tuple[ChainState | None, L.Ledger | None, Market, SetView] = (
            None, None, Market(()), self._context
        )  # fmt: skip
        # Each delegator with what its turn looks up every epoch: key address, class, policy, and
        # whether its miss is counted (yield seekers), in the world's order.
        self._roster = [
            (d, d.keypair.address, self.classes[d.cls], self.policies[d.policy], d.policy in _JUDGED)
            for d in self.world.delegators
        ]
        self._members = [(address, d.cls) for d, address, _, _, _ in self._roster]
        self._members_in_order = tuple(self._roster)  # the world's order (turns take a shuffled copy)
        self._restaking = any(c.restake for c in config.delegators)

    # ------------------------------------------------------------------ the run

    def run(
        self, epochs: int | None = None, progress: Callable[[int], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Run `epochs` epochs (the file's by default), yielding each one's record; stops early if the chain halts."""
        with _collector_spares_the_world():
            before = self._holdings()
            if self.state.height == 0:  # where everyone starts, before anyone acted
                yield self._record(-1, EpochLog(), before, before)
            for _ in range(self.config.epochs if epochs is None else epochs):
                log = EpochLog()
                epoch = self.state.epoch
                try:
                    self._epoch(log)
                except Halted as exc:
                    yield {"epoch": epoch, "halted": str(exc), "height": self.state.height}
                    return
                after = self._holdings()
                yield self._record(epoch, log, before, after)
                before = after
                if progress is not None:
                    progress(1)

    def _epoch(self, log: EpochLog) -> None:
        txs = self._boundary_txs(log)
        chunk = max(1, self.state.params.max_block_txs)
        for i in range(self.config.epoch_length):
            block_txs = tuple(txs[i * chunk : (i + 1) * chunk])
            evidence, self.pending_evidence = tuple(self.pending_evidence), []
            self._produce(block_txs, evidence, log)

    def _boundary_txs(self, log: EpochLog) -> list[bytes]:
        """What the timeline, the operators and the delegators send at this epoch's start.

        Nobody acts before the first boundary: at genesis everyone is where the
        file put them, and the first block is proposed the moment the chain
        starts (in the message-level mode, before any transaction could reach it).
        """
        if self.state.height == 0:
            return []
        txs = self._timeline(self.state.epoch, log)
        txs += self._unjails()
        txs += self._operators(txs, log)
        return txs + self._delegators(txs, log)

    # ------------------------------------------------------------------ blocks

    def _produce(self, txs: tuple[bytes, ...], evidence: tuple[Evidence, ...], log: EpochLog) -> None:
        """Propose, certify and apply one height, with its rounds failing while proposers are offline."""
        state = self.state
        committee = state.committee
        for round_ in range(MAX_ROUNDS):
            proposer = proposer_of(state, round_)
            if proposer in self.offline:
                continue
            signers, power = self._signers(committee)
            if committee.is_quorum(power):
                break
        else:
            raise Halted(f"height {state.height + 1}: no quorum of online signers in {MAX_ROUNDS} rounds")
        timestamp = state.last_timestamp_ms + self.config.slot_ms * (round_ + 1)
        block = Block(
            state.height + 1, state.last_block_hash, proposer, timestamp, txs, evidence, self.last_cert
        )
        self.state, events = apply_block(state, block)
        self.last_cert = CommitCertificate(block.height, round_, block.hash, _unsigned(signers))
        for event in events:
            if event.kind == "tx_rejected":
                log.rejected[event.reason.split(":")[0]] += 1
            elif event.kind in ("jailed", "tombstoned", "unjailed", "retired"):
                log.penalties.append(f"{self.names.get(event.validator, '?')} {event.kind}")

    def _signers(self, committee: Committee) -> tuple[tuple[bytes, ...], int]:
        """Who signs this round, and their power: each member online and, below full performance, drawn.

        While every pool is online at full performance that is the whole
        committee, and no chance is drawn for it, so it is worked out once per
        committee rather than once per height.
        """
        if not self.offline and self._full_performance:
            if self._everyone[0] is not committee:
                everyone = tuple(a for a, _ in committee.members)
                self._everyone = (committee, everyone, sum(committee.power_of(a) for a in everyone))
            return self._everyone[1], self._everyone[2]
        signers = tuple(address for address, _ in committee.members if self._signs(address))
        return signers, sum(committee.power_of(a) for a in signers)

    def _signs(self, address: bytes) -> bool:
        if address in self.offline:
            return False
        performance = self.performance.get(address, PPM)
        return performance >= PPM or self.rng.randrange(PPM) < performance

    # ------------------------------------------------------------------ the timeline

    def _timeline(self, epoch: int, log: EpochLog) -> list[bytes]:
        """Apply the events of `epoch`; the transactions some of them need (set_margin, new_pool)."""
        txs: list[bytes] = []
        for event in (e for e in self.config.events if e.epoch == epoch):
            log.events.append(f"{event.pool} {event.kind}")
            txs += self._event(event)
        return txs

    def _event(self, event: TimelineEvent) -> list[bytes]:
        key = self.world.owners[event.pool]
        pool = self.state.ledger.pools.get(key.address)
        if event.kind == "offline":
            self.offline.add(key.address)
        elif event.kind == "online":
            self.offline.discard(key.address)
        elif event.kind == "equivocate":
            self._equivocate(event.pool)
        elif event.kind == "set_margin" and pool is not None:
            margin = pool.margin_ppm if event.margin_ppm is None else event.margin_ppm
            cost = pool.fixed_cost if event.fixed_cost is None else event.fixed_cost
            return [self._sign(event.pool, UpdatePool(self._nonce(key.address), cost, margin))]
        elif event.kind == "new_pool":
            spec = next(p for p in self.config.pools if p.name == event.pool)
            tx = RegisterPool(
                self._nonce(key.address), spec.pledge, spec.fixed_cost, spec.margin_ppm, spec.compounding
            )
            return [self._sign(event.pool, tx)]
        return []

    def _equivocate(self, name: str) -> None:
        """Two conflicting precommits by the pool at the latest height it sat at, as evidence for the next block."""
        key = self.world.owners[name]
        for height in range(
            self.state.height, max(0, self.state.height - self.state.params.evidence_max_age), -1
        ):
            committee = committee_at(self.state, height)
            if committee is not None and committee.power_of(key.address):
                votes = [
                    Vote(
                        Kind.PRECOMMIT, height, 0, sha256(f"econ-twin/{height}/{side}".encode()), key.address
                    )
                    for side in (0, 1)
                ]
                signed = [replace(v, signature=sign_item(self.state.chain_id, v, key)) for v in votes]
                evidence = make_evidence(*signed)
                if evidence_problem(self.state, evidence) is None:
                    self.pending_evidence.append(evidence)
                return

    def _unjails(self) -> list[bytes]:
        """Online operators ask for their jailed pools back once the jail has ended."""
        ledger = self.state.ledger
        return [
            self._sign(name, Unjail(self._nonce(key.address)))
            for name, key in sorted(self.world.owners.items())
            if key.address not in self.offline
            and (pool := ledger.pools.get(key.address)) is not None
            and pool.status == L.JAILED
            and ledger.epoch >= pool.jailed_until_epoch
        ]

    # ------------------------------------------------------------------ operators

    def _operators(self, earlier: list[bytes], log: EpochLog) -> list[bytes]:
        """What the pools' owners and the potential operators send (`network.econ.operators.Operators`),
        decided on the ledger as the boundary's earlier transactions leave it."""
        if self.config.market is None:
            return []
        ledger = self.state.ledger
        for tx in earlier:
            ledger, _ = L.process_tx(ledger, self.state.chain_id, tx, self.state.params)
        market = self._quotes(ledger)  # the last record's market when nothing came before
        return self.operators.act(replace(self.state, ledger=ledger), market, log)

    # ------------------------------------------------------------------ delegators

    def _delegators(self, earlier: list[bytes], log: EpochLog) -> list[bytes]:
        """Every delegator's transaction this epoch, each decided on the pools as the earlier ones left them."""
        ledger = self.state.ledger
        for tx in earlier:
            ledger, _ = L.process_tx(ledger, self.state.chain_id, tx, self.state.params)
        quotes = self._quotes(ledger)
        self._locked = {}
        for entry in ledger.redelegations:
            self._locked[entry.delegator] = max(self._locked.get(entry.delegator, 0), entry.release_epoch)
        order = list(self._roster)
        rng = self.rng
        rng.shuffle(order)  # the same draws as shuffling the delegators: a shuffle reads only the length
        txs: list[bytes] = []
        for delegator, address, spec, policy, seeks_yield in order:
            attention = spec.attention_ppm
            if attention < PPM and rng.randrange(PPM) >= attention:
                continue  # not looking this epoch
            if policy is loyal_policy or (
                policy in SETTLING and self._stays(ledger, quotes, address, spec.switching_cost_ppm, policy)
            ):
                continue  # decided for its pool, not for it: see `_stays`
            holding = self._holding(ledger, address)
            target = policy(holding, quotes, spec, rng)
            tx = (
                None
                if target is None or target == holding.pool
                else self._move(ledger, delegator, holding, target)
            )
            if tx is not None:
                after, events = L.process_tx(ledger, self.state.chain_id, tx, self.state.params)
                if events[-1].kind == "tx_rejected":
                    log.rejected[events[-1].reason.split(":")[0]] += 1
                else:
                    quotes = self._requote(quotes, ledger, after, (holding.pool, target))
                    ledger = after
                    txs.append(tx)
                    log.moves += 1
                    self._moved(delegator, target, ledger)
                    holding = self._holding(ledger, address)  # unless it moved, it holds as before
            if seeks_yield:
                log.policy_misses += policy_miss(policy, holding, quotes, spec.switching_cost_ppm)
        if self._restaking:
            txs += self._restakes(ledger)
        return txs

    def _restakes(self, ledger: L.Ledger) -> list[bytes]:
        """Re-staking classes delegate their liquid balance (last epoch's rewards) to the pool they are in.

        After every move, in the world's order: nobody decides on them, so the
        market is not quoted again. Liquid delegation has nothing to do (the
        balance is the stake already); a pool closed or retiring gets nothing.
        """
        if ledger.liquid:
            return []
        txs = []
        for delegator, address, spec, _, _ in self._members_in_order:
            if not spec.restake:
                continue
            account = L.account_of(ledger, address)
            target = self.where.get(address)
            pool = ledger.pools.get(target) if target else None
            if not account.balance or pool is None or pool.status != L.ACTIVE or pool.retiring_epoch:
                continue
            tx = Delegate(account.nonce, pool.address, account.balance)
            txs.append(sign_tx(self.state.chain_id, tx, delegator.keypair))
        return txs

    def _stays(
        self, ledger: L.Ledger, market: Market, address: bytes, switching_cost_ppm: int, policy: Policy
    ) -> bool:
        """True when a `yield` delegator's turn is sure to leave it where it is, with no miss to count.

        `yield_policy` moves a holder only when its pool closed or the best
        quote beats its pool's by more than the switching cost, and weighs
        the holder's own stake only after that: so when its pool's quote
        holds its own (`Market.holds`, worked out once per pool and market),
        every holder in the pool stays, whatever it holds, and the miss count
        (the same rule) finds nothing; at 10,000 delegators the full turn
        was most of an epoch's decisions. `nonmyopic_policy` likewise with
        `Market.settled`. False means only "not sure": the turn is then
        taken in full.
        """
        if ledger.liquid:
            return False
        pool_address = self.where.get(address)
        pool = ledger.pools.get(pool_address) if pool_address else None
        if pool is None or not L.stake_of(pool, address):
            return False
        current = market.by_address.get(pool_address)
        if current is None or not current.open:
            return False
        return settles(policy, market, current, switching_cost_ppm)

    def _quotes(self, ledger: L.Ledger) -> Market:
        """Every pool quoted from scratch; the totals they were quoted on are kept for `_requote`.

        The same chain state and ledger quote the same: an epoch's record and
        the next epoch's first turn (when no event sent anything) share one market.
        """
        last_state, last_ledger, market, context = self._last_quoted
        if last_state is self.state and last_ledger is ledger:
            self._context = context
            return market
        state = replace(self.state, ledger=ledger)
        self._context = SetView.of(state)
        market = market_of(state, self._context)
        self._last_quoted = (self.state, ledger, market, self._context)
        return market

    def _requote(
        self, market: Market, before: L.Ledger, after: L.Ledger, touched: tuple[bytes | None, ...]
    ) -> Market:
        """The market after a move (`network.econ.quotes.requote`), and the totals it is quoted on."""
        state = replace(self.state, ledger=after)
        market, self._context = requote(market, self._context, state, before, touched)
        return market

    def _holding(self, ledger: L.Ledger, address: bytes) -> Holding:
        account = L.account_of(ledger, address)
        if ledger.liquid:
            pool = account.delegated_to or None
            return Holding(pool, account.balance if pool else 0, account.balance)
        pool_address = self.where.get(address)
        pool = ledger.pools.get(pool_address) if pool_address else None
        staked = L.stake_of(pool, address) if pool is not None else 0
        entry = self.entry_rate.get(address, PPM)
        locked = self._locked.get(address, 0)
        return Holding(pool_address if staked else None, staked, account.balance, entry, locked)

    def _move(
        self, ledger: L.Ledger, delegator: Delegator, holding: Holding, target: bytes | None
    ) -> bytes | None:
        """The transaction that puts the delegator's stake where its policy wants it (None: nothing to do)."""
        if target is None or target == holding.pool:
            return None
        nonce = L.account_of(ledger, delegator.keypair.address).nonce
        tx: Tx | None = None
        if ledger.liquid:
            if target == LEAVE:
                tx = Undelegate(nonce, holding.pool, 1) if holding.pool else None
            elif holding.balance:
                tx = Delegate(nonce, target, 1)  # a label: the amount is not used
        elif target == LEAVE:
            tx = Undelegate(nonce, holding.pool, holding.staked) if holding.pool else None
        elif holding.pool is not None:
            tx = Redelegate(nonce, holding.pool, target, holding.staked)
        elif holding.balance:
            tx = Delegate(nonce, target, holding.balance)
        return None if tx is None else sign_tx(self.state.chain_id, tx, delegator.keypair)

    def _moved(self, delegator: Delegator, target: bytes | None, ledger: L.Ledger) -> None:
        address = delegator.keypair.address
        if target == LEAVE or target is None:
            self.where.pop(address, None)
            return
        self.where[address] = target
        if ledger.redelegations and ledger.redelegations[-1].delegator == address:
            self._locked[address] = ledger.redelegations[-1].release_epoch
        pool = ledger.pools[target]
        self.entry_rate[address] = exchange_rate_ppm(pool.total_shares, pool.member_tokens)

    def _genesis_positions(self) -> dict[bytes, bytes]:
        return {
            d.keypair.address: validator.address
            for validator in self.world.genesis.validators
            for d in self.world.delegators
            if any(g.account == d.keypair.public for g in validator.delegations)
        }

    # ------------------------------------------------------------------ helpers

    def _nonce(self, address: bytes) -> int:
        return L.account_of(self.state.ledger, address).nonce

    def _sign(self, pool: str, tx: Tx) -> bytes:
        return sign_tx(self.state.chain_id, tx, self.world.owners[pool])

    # ------------------------------------------------------------------ the record

    def _holdings(self) -> dict[str, tuple[int, int]]:
        """Each delegator class's (holdings, staked) (`network.econ.record.class_holdings`)."""
        return class_holdings(self.state.ledger, self._members, self.where)

    def _record(
        self, epoch: int, log: EpochLog, before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
    ) -> dict[str, Any]:
        market = self._quotes(self.state.ledger)
        since, self._since = self._since, self.state
        return epoch_record(
            epoch, self.state, market, self.names, list(self.classes), log, before, after, since
        )


@contextmanager
def _collector_spares_the_world() -> Iterator[None]:
    """While a run lasts, the garbage collector leaves alone what existed before it (`gc.freeze`).

    The world (10,000 keys, their accounts, genesis) lives as long as the run,
    and every full collection walked all of it again: 7-18% of an epoch at the
    benchmark's size. Reference counting still frees what dies; the freeze
    ends with the run, so a process that runs many economies (tests, sweeps)
    collects what a finished run left behind.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@lru_cache(maxsize=4)
def _unsigned(signers: tuple[bytes, ...]) -> tuple[tuple[bytes, bytes], ...]:
    """A certificate's signer list in address order, signatures left empty (nothing verifies them here).

    The same signers sign height after height, so the sorted list is kept for them.
    """
    return tuple((address, b"") for address in sorted(signers))
