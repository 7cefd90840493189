"""Soak: a real process testnet over mosquitto under random crashes, pauses and partitions.

The acceptance test for consensus liveness and safety on real parts: real
node processes, a real mosquitto started here on a free port, real signals
(SIGKILL, SIGSTOP/SIGCONT) and real partitions (the testnet's fault relay
moves islands to brokers of their own). For ``--duration`` seconds a seeded
fault loop injects one fault at a time, and every check below is made while
it runs and again at the end from the files the run left behind.

    python bench/soak.py                                 # 30 min, 4 validators, slot 250 ms
    python bench/soak.py --duration 300 --seed 7 --dir runs/soak --json runs/soak/summary.json

How it runs:

- ``network.testnet.setup.prepare`` writes the keys and the genesis first, so the
  observer knows the chain id and every validator key before any node
  speaks; then mosquitto is started (``network.transport.broker.start_broker``), the
  raw subscriber connects, and only then ``posnet testnet up --broker
  mqtt://...`` starts the relay and the N node processes as a subprocess,
  so no message of the run is published before the subscriber listens.
- Faults are the product's own commands (``network.testnet.perturb.kill_node``,
  ``restart_node``, ``pause_node``, ``resume_node``, ``partition``,
  ``heal``), called against the running ``up``. One fault is active at a
  time: a fault is held for a random time (``--hold``), repaired, and the
  next one starts only after finality has resumed (or its bound has passed)
  and a random gap (``--gap``). One at a time keeps every recovery
  attributable to one cause; overlapping faults would measure nothing
  cleanly. Kinds come from a shuffled bag, so every kind occurs once in
  every round of kinds even in a short run.

What it checks, and how:

- conflicting finality: every honest node's JSON-lines log, read through
  ``network.testnet.logcheck`` (progressively with the testnet's ``LogTail``, at the
  end with ``read_log`` and ``find_conflicts``): no height with two hashes.
- double signs: a raw MQTT subscriber on ``posnet/<chain_id>/#`` of every
  broker of the run: the main one from before the first node starts, and
  each partition island's broker from the moment it accepts connections
  (its config file appears before it listens, and the relay cuts the nodes
  over only after it answers, so the subscriber is normally connected
  first; the broker logs' connection order proves it per island, and a late
  subscriber fails the coverage check). Every envelope goes through the
  node's own admission (``node.core.admission.authenticate``: decoding, chain,
  known sender, signature), and every signed vote or proposal in it, also
  the ones nested in commit certificates, blocks and evidence (each
  verified with ``verify_signed``), is recorded by (signer, height, round,
  step). Two validly signed items of one key for one such slot with
  different block ids are a double sign; by an honest key it fails the run.
- finalized blocks lost: after every kill -9 the node's last logged
  ``finalized`` height is noted; its restarted process logs ``started``
  with the height it recovered from its store, which must not be lower.
  At the end each node's store (SQLite, read-only) must hold, with the
  same hash, every height the node ever logged as finalized.
- finality resumed: after every repair (restart, resume, heal) each honest
  node must log a ``finalized`` height above the one it held at the repair
  within the bound ``network.testnet.scenario_checks.recovery_bound_s(params, R)``, R =
  ``--resume-rounds`` (default 10, what the shipped scenarios promise):
  R rounds' worth of the genesis timeouts plus one slot, 65.2 s at the
  default timeouts. The clock starts when the repair command returns
  (a restarted node's boot counts against it). Measured times are printed
  per fault kind so the bound is not the only number.
- and: every honest node made progress, the ``up`` supervisor exited 0
  (no node died unasked, its own safety verdict held), no subscriber gap.

Also reported, not judged: the heights finalized while each fault was in
force, by fault shape. With all four validators active one node down still
leaves more than 2/3 of the stake, so a kill, a pause or a 3|1 split should
not stop the chain; a downtime-jailed validator shrinks the committee and
then a single fault can (the acceptance criteria do not ask for progress
during faults, so this stays a number).

The nodes run this checkout's code, and every restarted node reads it
afresh: editing the tree during a soak makes restarted nodes run other code
than the rest (a changed wire format then looks like a corrupt store). Run
it from a snapshot of a commit for numbers that mean something, e.g.
``git archive HEAD | tar -x -C SNAP && python SNAP/bench/soak.py``.

It prints a summary and exits 1 if any check failed. Bounds are not tuned
to the machine: a stall past them is reported as a failure, with the
testnet directory left behind for its logs.

One file past 500 lines: a bench is run as a script, and the detector, the
fault loop, the log follower and the verdict only make sense together
(tests/test_soak.py imports the pieces it checks).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_REPO_ROOT = Path(__file__).resolve().parent.parent
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

import aiomqtt  # noqa: E402

from network.testnet.errors import TestnetError  # noqa: E402
from network.testnet.faultfile import read_applied  # noqa: E402
from network.testnet.layout import DIED, PAUSED, RUNNING, Layout, read_state  # noqa: E402
from network.testnet.logcheck import Event, find_conflicts, read_log, unique_penalties  # noqa: E402
from network.testnet.logtail import LogTail  # noqa: E402
from network.testnet.perturb import heal, kill_node, partition, pause_node, restart_node, resume_node  # noqa: E402
from network.testnet.processes import output_tail, process_state, stop_processes  # noqa: E402
from network.testnet.scenario_checks import recovery_bound_s  # noqa: E402
from network.testnet.setup import prepare  # noqa: E402
from network.transport.broker import BrokerProcess, mosquitto_available, parse_broker_url, start_broker  # noqa: E402
from network.transport.mqtt import TOPIC_ROOT  # noqa: E402
from node.core.admission import EvidenceMsg, ProposalMsg, Rejected, SyncResponse, authenticate  # noqa: E402
from node.core.behaviours import BEHAVIOURS  # noqa: E402
from node.core.genesis import Genesis  # noqa: E402
from node.core.messages import (  # noqa: E402
    Block,
    CommitCertificate,
    Kind,
    Proposal,
    Vote,
    signed_kind,
    signer_of,
    verify_signed,
)

FAULT_KINDS = ("kill", "pause", "partition")
DEFAULT_CHAIN_ID = "posnet-soak"
TAP_PREFIX = "soak-tap"
POLL_S = 0.2
WARMUP_HEIGHT = 2  # every honest node finalized this much before the first fault
RESTART_START_TIMEOUT_S = 60.0  # a restarted process logs `started` (loaded 2-core machine: python + imports)
UP_STOP_TIMEOUT_S = 60.0
ISLAND_TAP_RETRY_S = 0.005

Echo = Callable[[str], None]


# ------------------------------------------------------------------ double-sign detector


@dataclass(frozen=True)
class DoubleSign:
    """Two validly signed items of one key for one (height, round, step) with different block ids."""

    signer: str
    honest: bool
    height: int
    round: int
    step: str
    block_ids: tuple[str, str]
    seen_in: tuple[str, str]

    def describe(self) -> str:
        who = self.signer + ("" if self.honest else " (byzantine)")
        return (
            f"{who} signed two {self.step}s at height {self.height} round {self.round}: "
            f"{self.block_ids[0]} ({self.seen_in[0]}) and {self.block_ids[1]} ({self.seen_in[1]})"
        )


def _short(block_id: bytes | None) -> str:
    return "nil" if block_id is None else block_id.hex()[:16]


class DoubleSignDetector:
    """Checks raw wire messages the way a node admits them and remembers every signed vote and proposal.

    It keeps, per (signer, height, round, step), the block ids it has seen
    signed, so memory grows with the chain (a few hundred bytes per height),
    not with the traffic: re-gossiped copies of one vote cost one lookup.
    """

    def __init__(
        self,
        chain_id: str,
        validators: Mapping[bytes, tuple[str, bytes]],
        honest: Iterable[str],
        on_double_sign: Callable[[DoubleSign], None] | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.names = {address: name for address, (name, _) in validators.items()}
        self.public_keys = {address: public for address, (_, public) in validators.items()}
        self.honest = set(honest)
        self.on_double_sign = on_double_sign
        self.seen: dict[tuple[bytes, int, int, int], dict[bytes | None, str]] = {}
        self.double_signs: list[DoubleSign] = []
        self.messages = 0
        self.by_kind: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.signed_observed = (
            0  # signed votes/proposals looked at, nested ones and re-gossiped copies included
        )
        self.bad_nested = 0  # nested items whose own signature does not verify (never recorded)
        self.errors: list[str] = []  # the detector itself failed on a message: that message went unchecked

    @classmethod
    def for_genesis(
        cls,
        genesis: Genesis,
        byzantine: Iterable[str] = (),
        on_double_sign: Callable[[DoubleSign], None] | None = None,
    ) -> DoubleSignDetector:
        """A detector for a chain: every genesis validator is known; those not in `byzantine` are honest."""
        validators = {v.address: (v.name, v.public_key) for v in genesis.validators}
        bad = set(byzantine)
        return cls(
            genesis.chain_id,
            validators,
            [v.name for v in genesis.validators if v.name not in bad],
            on_double_sign,
        )

    @property
    def signed_items(self) -> int:
        """Distinct signed (signer, height, round, step, block id) items recorded."""
        return sum(len(ids) for ids in self.seen.values())

    @property
    def honest_double_signs(self) -> list[DoubleSign]:
        return [d for d in self.double_signs if d.honest]

    def observe(self, payload: bytes, where: str = "") -> None:
        """One message off the wire: authenticate it as a node would, then record what it carries signed."""
        self.messages += 1
        message = authenticate(payload, self.chain_id, self.public_keys)
        if isinstance(message, Rejected):
            self.rejected[message.reason] += 1
            return
        if isinstance(message, Vote):
            self.by_kind[message.kind.name.lower()] += 1
            self._record(message, where, verified=True)  # the envelope's signature is the vote's own
        elif isinstance(message, ProposalMsg):
            self.by_kind["proposal"] += 1
            self._record(message.proposal, where, verified=True)
            self._block(message.block, f"{where} block")
        elif isinstance(message, EvidenceMsg):
            self.by_kind["evidence"] += 1
            for item in (message.evidence.first, message.evidence.second):
                self._record(item, f"{where} evidence", verified=False)
        elif isinstance(message, SyncResponse):
            self.by_kind["sync_response"] += 1
            for block, certificate in message.blocks:
                self._certificate(certificate, f"{where} certificate")
                self._block(block, f"{where} block")
        else:
            self.by_kind[type(message).__name__] += 1

    def _block(self, block: Block, where: str) -> None:
        if block.last_commit is not None:
            self._certificate(block.last_commit, f"{where} last_commit")
        for evidence in block.evidence:
            for item in (evidence.first, evidence.second):
                self._record(item, f"{where} evidence", verified=False)

    def _certificate(self, certificate: CommitCertificate, where: str) -> None:
        for vote in certificate.votes():
            self._record(vote, where, verified=False)

    def _record(self, item: Vote | Proposal, where: str, verified: bool) -> None:
        self.signed_observed += 1
        signer = signer_of(item)
        key = (signer, item.height, item.round, int(signed_kind(item)))
        ids = self.seen.get(key)
        if ids is not None and item.block_id in ids:
            return
        if not verified:
            public = self.public_keys.get(signer)
            if public is None or not verify_signed(self.chain_id, item, public):
                self.bad_nested += 1
                return
        if ids is None:
            self.seen[key] = {item.block_id: where}
            return
        first_id, first_where = next(iter(ids.items()))
        ids[item.block_id] = where
        name = self.names.get(signer, signer.hex()[:8])
        double = DoubleSign(
            signer=name,
            honest=name in self.honest,
            height=item.height,
            round=item.round,
            step=Kind(key[3]).name.lower(),
            block_ids=(_short(first_id), _short(item.block_id)),
            seen_in=(first_where, where),
        )
        self.double_signs.append(double)
        if self.on_double_sign is not None:
            self.on_double_sign(double)


# ------------------------------------------------------------------ raw subscribers


class Tap:
    """A raw MQTT subscriber on one broker: every message under posnet/<chain_id>/# goes to the detector.

    It reconnects until closed. A connection lost while it was not told to
    expect it (`expect_end`) is a gap in what was checked and is counted.
    """

    def __init__(
        self, label: str, url: str, chain_id: str, detector: DoubleSignDetector, retry_s: float = 0.05
    ) -> None:
        self.label = label
        self.url = url
        self.chain_id = chain_id
        self.detector = detector
        self.retry_s = retry_s
        self.client_id = f"{TAP_PREFIX}-{label}-{random.getrandbits(32):08x}"
        self.subscribed = asyncio.Event()
        self.subscribed_at: float | None = None
        self.connections = 0
        self.gaps = 0
        self.expect_end = False
        self.messages = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"tap {self.label}")

    async def close(self) -> None:
        self.expect_end = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _observe(self, payload: bytes, topic: str) -> None:
        """Hand one message to the detector; a bug there is recorded, not allowed to end the subscription."""
        try:
            self.detector.observe(payload, topic)
        except Exception as exc:
            self.detector.errors.append(f"{type(exc).__name__}: {exc} (on {topic})")

    async def _run(self) -> None:
        host, port = parse_broker_url(self.url)
        topic = f"{TOPIC_ROOT}/{self.chain_id}/#"
        while True:
            try:
                client = aiomqtt.Client(
                    host,
                    port,
                    identifier=self.client_id,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    keepalive=30,
                    timeout=5,
                )
                async with client:
                    await client.subscribe(topic, qos=0)
                    self.connections += 1
                    if self.subscribed_at is None:
                        self.subscribed_at = time.time()
                    self.subscribed.set()
                    async for message in client.messages:
                        payload = message.payload
                        if isinstance(payload, bytes | bytearray):
                            self.messages += 1
                            self._observe(bytes(payload), str(message.topic))
            except aiomqtt.MqttError:
                pass
            if self.subscribed.is_set() and not self.expect_end:
                self.gaps += 1
            self.subscribed.clear()
            if self.expect_end:
                return
            await asyncio.sleep(self.retry_s)


_CONNECTED = re.compile(r"New client connected from \S+ as (\S+) \(")


def broker_log_sessions(text: str) -> list[list[str]]:
    """The client ids that connected to a mosquitto, in order, per start of it (the log is appended)."""
    sessions: list[list[str]] = []
    for line in text.splitlines():
        if "mosquitto version" in line and line.rstrip().endswith("starting"):
            sessions.append([])
            continue
        match = _CONNECTED.search(line)
        if match and sessions:
            sessions[-1].append(match.group(1))
    return sessions


def late_sessions(sessions: Sequence[Sequence[str]], node_clients: Iterable[str]) -> list[int]:
    """Indexes of broker sessions in which a node connected before any subscriber of ours (messages may be unseen)."""
    nodes = set(node_clients)
    late = []
    for index, clients in enumerate(sessions):
        for client in clients:
            if client.startswith(TAP_PREFIX):
                break
            if client in nodes:
                late.append(index)
                break
    return late


# ------------------------------------------------------------------ following the node logs


class LogFollower:
    """Every node's JSON-lines log, read as it grows: finalized heights, starts, penalties, conflicts."""

    def __init__(self, layout: Layout, names: Sequence[str], honest: Iterable[str]) -> None:
        self.tails = {name: LogTail(layout.log(name), from_end=False) for name in names}
        self.honest = set(honest)
        self.ts: dict[str, list[float]] = {name: [] for name in names}
        self.heights: dict[str, list[int]] = {name: [] for name in names}
        self.prefix_max: dict[str, list[int]] = {name: [] for name in names}
        self.max_height: dict[str, int] = dict.fromkeys(names, 0)
        self.started: dict[str, list[Event]] = {name: [] for name in names}
        self.counts: Counter[str] = Counter()
        self.hash_at: dict[int, tuple[str, str]] = {}  # height -> (hash, first honest node to log it)
        self.conflicts: dict[int, str] = {}
        self.on_conflict: Callable[[str], None] | None = None

    def poll(self) -> None:
        for name, tail in self.tails.items():
            for event in tail.read_events():
                self._take(name, event)

    def _take(self, name: str, event: Event) -> None:
        kind = str(event.get("event"))
        self.counts[kind] += 1
        if kind == "started":
            self.started[name].append(event)
        if kind != "finalized":
            return
        height, ts, block_hash = event.get("height"), event.get("ts"), event.get("hash")
        if not isinstance(height, int) or not isinstance(ts, int | float):
            return
        self.ts[name].append(float(ts))
        self.heights[name].append(height)
        self.max_height[name] = max(self.max_height[name], height)
        self.prefix_max[name].append(self.max_height[name])
        if name not in self.honest or not isinstance(block_hash, str):
            return
        first = self.hash_at.setdefault(height, (block_hash, name))
        if first[0] != block_hash and height not in self.conflicts:
            self.conflicts[height] = (
                f"height {height}: {first[1]} finalized {first[0][:16]}, {name} finalized {block_hash[:16]}"
            )
            if self.on_conflict is not None:
                self.on_conflict(self.conflicts[height])

    def height_at(self, name: str, ts: float) -> int:
        """The highest height `name` had logged as finalized at time `ts`."""
        index = bisect.bisect_right(self.ts[name], ts)
        return self.prefix_max[name][index - 1] if index else 0

    def first_above(self, name: str, height: int, since: float) -> float | None:
        """When `name` first logged a finalized height above `height` after `since`, or None."""
        start = bisect.bisect_right(self.ts[name], since)
        for ts, h in zip(self.ts[name][start:], self.heights[name][start:], strict=True):
            if h > height:
                return ts
        return None

    def started_with_pid(self, name: str, pid: int) -> Event | None:
        return next((e for e in reversed(self.started[name]) if e.get("pid") == pid), None)


# ------------------------------------------------------------------ faults


@dataclass
class Fault:
    """One injected fault and what happened after its repair."""

    kind: str
    target: str
    started_at: float
    hold_s: float
    healed_at: float | None = None
    resumed_s: dict[str, float | None] = field(default_factory=dict)
    error: str | None = None
    note: str = ""
    held_heights: int | None = None  # heights the honest nodes finalized while the fault was in force

    @property
    def slowest_s(self) -> float | None:
        """Seconds until the last judged node finalized again; None if one never did in time."""
        if not self.resumed_s or any(t is None for t in self.resumed_s.values()):
            return None
        return max(t for t in self.resumed_s.values() if t is not None)

    def describe(self) -> str:
        return f"{self.kind} {self.target}"


@dataclass
class SoakConfig:
    """What one soak run is asked to do (the command line's options)."""

    directory: Path
    duration: float = 1800.0
    validators: int = 4
    slot_ms: int = 250
    seed: int = 1
    faults: tuple[str, ...] = FAULT_KINDS
    gap_s: tuple[float, float] = (1.0, 4.0)
    hold_s: tuple[float, float] = (1.0, 8.0)
    resume_rounds: int = 10
    behaviours: dict[str, str] = field(default_factory=dict)
    chain_id: str = DEFAULT_CHAIN_ID
    warmup_timeout_s: float = 120.0
    progress_every_s: float = 30.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"  {'PASS' if self.ok else 'FAIL'} {self.name}: {self.detail}"


@dataclass
class SoakResult:
    """Everything the summary prints; `ok` is the verdict."""

    config: SoakConfig
    checks: list[Check]
    summary: dict[str, Any]
    faults: list[Fault]
    double_signs: list[DoubleSign]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)


class FaultBag:
    """Fault kinds in a seeded shuffled order: each kind once per round of kinds, so short runs see all."""

    def __init__(self, kinds: Sequence[str], rng: random.Random) -> None:
        self.kinds = list(kinds)
        self.rng = rng
        self._bag: list[str] = []

    def next(self) -> str:
        if not self._bag:
            self._bag = list(self.kinds)
            self.rng.shuffle(self._bag)
        return self._bag.pop()


def random_split(names: Sequence[str], rng: random.Random) -> list[list[str]]:
    """Two non-empty groups of a random shuffle; the first keeps the main broker (so either side may)."""
    shuffled = list(names)
    rng.shuffle(shuffled)
    cut = rng.randint(1, len(shuffled) - 1)
    return [sorted(shuffled[:cut]), sorted(shuffled[cut:])]


# ------------------------------------------------------------------ the run


class Soak:
    """One soak run: testnet up, observers on, faults until the duration is over, then the verdict."""

    def __init__(self, config: SoakConfig, echo: Echo = print) -> None:
        if config.validators < 2:
            raise ValueError("a soak needs at least 2 validators")
        unknown = sorted(set(config.faults) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kind {unknown[0]!r}; kinds are {', '.join(FAULT_KINDS)}")
        self.config = config
        self.echo = echo
        self.layout = Layout.of(config.directory)
        self.rng = random.Random(config.seed)
        self.broker: BrokerProcess | None = None
        self.up: subprocess.Popen[bytes] | None = None
        self.up_code: int | None = None
        self.taps: list[Tap] = []
        self.faults: list[Fault] = []
        self.failures: list[str] = []  # things that went wrong outside the named checks
        self.restarts_checked = 0
        self.lost_at_restart: list[str] = []
        self.fault_phase: tuple[float, float] | None = None
        self.heights_at_start: dict[str, int] = {}
        self.island_sessions_expected = 0
        self.islands_unwatched: list[str] = []
        self.phase_start: float | None = None
        self.restarted_pids: list[int] = []  # restart_node spawns from this process: ours to reap
        self.deaths: set[tuple[str, int | None]] = set()

    # -- setup

    def _prepare(self) -> Genesis:
        if self.layout.genesis.exists() or self.layout.state.exists():
            raise TestnetError(f"{self.layout.root} already holds a testnet; a soak starts a fresh chain")
        if not mosquitto_available():
            raise TestnetError("mosquitto is not installed (not on PATH nor /usr/sbin)")
        genesis = prepare(self.layout, self.config.validators, self.config.chain_id, self.config.slot_ms)
        unknown = sorted(set(self.config.behaviours) - {v.name for v in genesis.validators})
        if unknown:
            raise TestnetError(f"--behaviour names unknown validator {unknown[0]}")
        return genesis

    def _start_broker(self) -> BrokerProcess:
        """The main mosquitto, with SIGINT blocked so a Ctrl-C does not pull it from under stopping nodes."""
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return start_broker("mosquitto", workdir=self.layout.broker_dir / "main")
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _up_command(self, broker_url: str) -> list[str]:
        cfg = self.config
        # a backstop only: the soak stops `up` itself; this ends it if the soak is killed -9
        backstop = cfg.duration + cfg.warmup_timeout_s + 900
        command = [
            sys.executable,
            "-m",
            "network.cli",
            "testnet",
            "up",
            "--dir",
            str(self.layout.root),
            "--validators",
            str(cfg.validators),
            "--broker",
            broker_url,
            "--chain-id",
            cfg.chain_id,
            "--slot-ms",
            str(cfg.slot_ms),
            "--duration",
            f"{backstop:.0f}",
            "--quiet",
        ]
        for name, mode in sorted(cfg.behaviours.items()):
            command += ["--behaviour", f"{name}={mode}"]
        return command

    def _start_up(self, broker_url: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.layout.root / "soak-up.out", "ab") as out:
            return subprocess.Popen(
                self._up_command(broker_url),
                cwd=_REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the soak decides when it stops, after the last check
            )

    async def _await_testnet(self, honest: Sequence[str]) -> None:
        """Until testnet.json names the running relay and every honest node finalized WARMUP_HEIGHT."""
        deadline = time.monotonic() + self.config.warmup_timeout_s
        while time.monotonic() < deadline:
            assert self.up is not None
            if self.up.poll() is not None:
                raise TestnetError(f"`posnet testnet up` exited ({self.up.returncode}); see {self._up_out()}")
            self.logs.poll()
            with contextlib.suppress(TestnetError):
                state = read_state(self.layout)
                if state.relay is not None and all(self.logs.max_height[n] >= WARMUP_HEIGHT for n in honest):
                    return
            await asyncio.sleep(POLL_S)
        heights = ", ".join(f"{n} {self.logs.max_height[n]}" for n in honest)
        raise TestnetError(
            f"the testnet did not reach height {WARMUP_HEIGHT} within {self.config.warmup_timeout_s:.0f} s ({heights})"
        )

    def _up_out(self) -> Path:
        return self.layout.root / "soak-up.out"

    # -- running

    async def run(self) -> SoakResult:
        cfg = self.config
        genesis = self._prepare()
        self.genesis = genesis
        self.names = [v.name for v in genesis.validators]
        self.byzantine = sorted(n for n, mode in cfg.behaviours.items() if mode != "honest")
        self.honest = [n for n in self.names if n not in self.byzantine]
        self.bound_s = recovery_bound_s(genesis.params, cfg.resume_rounds)
        self.detector = DoubleSignDetector.for_genesis(genesis, self.byzantine, self._on_double_sign)
        self.logs = LogFollower(self.layout, self.names, self.honest)
        self.logs.on_conflict = lambda line: self.echo(f"!! conflicting finality: {line}")
        pace = "fast" if cfg.slot_ms == 0 else f"slot {cfg.slot_ms} ms"
        self.echo(
            f"soak: {cfg.validators} validators ({pace}), {cfg.duration:g} s of faults "
            f"{'/'.join(cfg.faults) or 'none'}, seed {cfg.seed}, dir {self.layout.root}"
        )
        self.echo(
            f"  one fault at a time: hold {cfg.hold_s[0]:g}-{cfg.hold_s[1]:g} s, gap {cfg.gap_s[0]:g}-{cfg.gap_s[1]:g} s "
            f"after finality resumed; resume bound {self.bound_s:.1f} s ({cfg.resume_rounds} rounds of timeouts + a slot)"
        )
        try:
            self.broker = self._start_broker()
            main_tap = Tap("main", self.broker.url, genesis.chain_id, self.detector)
            self.taps.append(main_tap)
            main_tap.start()
            await asyncio.wait_for(main_tap.subscribed.wait(), 30)
            self.up = self._start_up(self.broker.url)
            await self._await_testnet(self.honest)
            self.heights_at_start = dict(self.logs.max_height)
            self.echo(
                f"  testnet up (mosquitto {self.broker.url}); heights "
                + ", ".join(f"{n} {h}" for n, h in self.heights_at_start.items())
            )
            start = self.phase_start = time.time()
            progress = asyncio.create_task(self._progress(start))
            try:
                await self._fault_loop(start + cfg.duration)
            finally:
                progress.cancel()
                await asyncio.gather(progress, return_exceptions=True)
            self.fault_phase = (start, time.time())
            self.logs.poll()
        except TestnetError as exc:
            self.failures.append(str(exc))
            self.echo(f"!! {exc}")
        finally:
            await self._stop()
        return self._verdict()

    def _on_double_sign(self, double: DoubleSign) -> None:
        if double.honest:
            self.echo(f"!! double sign by an honest key: {double.describe()}")

    async def _progress(self, start: float) -> None:
        while True:
            await asyncio.sleep(self.config.progress_every_s)
            self.logs.poll()
            heights = [self.logs.max_height[n] for n in self.honest]
            kinds = Counter(f.kind for f in self.faults)
            self.echo(
                f"  {time.time() - start:6.0f} s: heights {min(heights)}..{max(heights)}, faults "
                f"{sum(kinds.values())} ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items())) or '-'}), "
                f"messages {self.detector.messages}, double signs {len(self.detector.honest_double_signs)}, "
                f"conflicts {len(self.logs.conflicts)}"
            )

    async def _fault_loop(self, end: float) -> None:
        cfg = self.config
        if not cfg.faults:
            await asyncio.sleep(max(0.0, end - time.time()))
            return
        bag = FaultBag(cfg.faults, self.rng)
        while True:
            gap = self.rng.uniform(*cfg.gap_s)
            if time.time() + gap >= end:
                await asyncio.sleep(max(0.0, end - time.time()))
                return
            await asyncio.sleep(gap)
            fault = await self._inject(bag.next())
            self.faults.append(fault)
            if fault.healed_at is not None:
                await self._await_resumed(fault)
            self.echo("  " + self._fault_line(fault))
            if self.up is not None and self.up.poll() is not None:
                raise TestnetError(f"`posnet testnet up` exited ({self.up.returncode}); see {self._up_out()}")

    def _fault_line(self, fault: Fault) -> str:
        at = f"{fault.started_at - (self.phase_start or fault.started_at):7.1f} s"
        if fault.error:
            return f"{at} {fault.describe()}: FAILED {fault.error}"
        slowest = fault.slowest_s
        resumed = (
            f"finality resumed in {slowest:.1f} s"
            if slowest is not None
            else "NOT RESUMED: " + ", ".join(n for n, t in fault.resumed_s.items() if t is None)
        )
        note = f"; {fault.note}" if fault.note else ""
        return f"{at} {fault.describe()} held {fault.hold_s:.1f} s ({fault.held_heights} heights meanwhile), {resumed}{note}"

    async def _inject(self, kind: str) -> Fault:
        """Inject one fault, hold it, repair it; the repair time is when the liveness clock starts."""
        hold = self.rng.uniform(*self.config.hold_s)
        groups = random_split(self.names, self.rng) if kind == "partition" else []
        target = (
            " | ".join(",".join(g) for g in groups) if groups else self.rng.choice(self._live(self.names))
        )
        fault = Fault(kind, target, time.time(), hold)
        try:
            if kind == "kill":
                await self._kill_restart(fault)
            elif kind == "pause":
                await asyncio.to_thread(pause_node, self.layout, fault.target)
                await asyncio.sleep(hold)
                await asyncio.to_thread(resume_node, self.layout, fault.target)
                fault.healed_at = time.time()
            else:
                await self._partition(fault, groups)
        except TestnetError as exc:
            fault.error = str(exc)
        return fault

    async def _kill_restart(self, fault: Fault) -> None:
        """kill -9, note the last height the node logged as final, restart, and check it recovered at least that."""
        name = fault.target
        await asyncio.to_thread(kill_node, self.layout, name)
        self.logs.poll()
        last_logged = self.logs.max_height[name]
        await asyncio.sleep(fault.hold_s)
        node = await asyncio.to_thread(restart_node, self.layout, name)
        fault.healed_at = time.time()
        assert node.pid is not None
        self.restarted_pids.append(node.pid)
        deadline = time.monotonic() + RESTART_START_TIMEOUT_S
        started = None
        while started is None and time.monotonic() < deadline:
            self.logs.poll()
            started = self.logs.started_with_pid(name, node.pid)
            if started is None and process_state(node.pid, node.command) == "dead":
                tail = " | ".join(output_tail(self.layout, name, 2))
                raise TestnetError(f"{name} (pid {node.pid}) exited right after its restart: {tail}")
            if started is None:
                await asyncio.sleep(POLL_S)
        if started is None:
            raise TestnetError(
                f"{name} (pid {node.pid}) logged no `started` within {RESTART_START_TIMEOUT_S:.0f} s"
            )
        recovered = started.get("height")
        self.restarts_checked += 1
        fault.note = f"last logged final {last_logged}, recovered {recovered} from its store"
        if not isinstance(recovered, int) or recovered < last_logged:
            lost = f"{name} logged height {last_logged} as finalized before kill -9 but restarted from {recovered}"
            self.lost_at_restart.append(lost)
            self.echo(f"!! finalized blocks lost: {lost}")

    async def _partition(self, fault: Fault, groups: list[list[str]]) -> None:
        """Partition with a subscriber on every island broker from the moment it listens, then heal."""
        islands = len(groups) - 1
        self.island_sessions_expected += islands
        before = {p: p.stat().st_mtime_ns for p in self._island_configs()}
        watcher = asyncio.create_task(self._tap_islands(islands, before))
        try:
            await asyncio.to_thread(partition, self.layout, groups)
            try:
                island_taps = await asyncio.wait_for(asyncio.shield(watcher), 10)
            except TimeoutError:
                island_taps = []
                self.islands_unwatched.append(f"{fault.describe()}: no island broker config found")
            self._check_island_urls(fault, island_taps)
            await asyncio.sleep(fault.hold_s)
            for tap in island_taps:
                tap.expect_end = True  # the heal stops the island broker
            await asyncio.to_thread(heal, self.layout)
            fault.healed_at = time.time()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    def _island_configs(self) -> list[Path]:
        return sorted(self.layout.broker_dir.glob("island-*/mosquitto.conf"))

    async def _tap_islands(self, count: int, before: dict[Path, int]) -> list[Tap]:
        """Watch for the island brokers' config files (rewritten just before each start) and tap each one.

        The relay writes an island's mosquitto.conf, starts it, waits for its
        CONNACK and only then cuts the nodes over; a subscriber retrying every
        few ms from the moment the file changes is normally in first (the
        broker log's connection order is checked afterwards).
        """
        taps: dict[Path, Tap] = {}
        while len(taps) < count:
            for path in self._island_configs():
                if path in taps:
                    continue
                with contextlib.suppress(OSError):
                    mtime = path.stat().st_mtime_ns
                    if mtime == before.get(path):
                        continue
                    match = re.search(r"^listener (\d+) (\S+)$", path.read_text(), re.MULTILINE)
                    if match is None:
                        continue
                    url = f"mqtt://{match.group(2)}:{match.group(1)}"
                    tap = Tap(path.parent.name, url, self.genesis.chain_id, self.detector, ISLAND_TAP_RETRY_S)
                    tap.start()
                    self.taps.append(tap)
                    taps[path] = tap
            await asyncio.sleep(0.005)
        for tap in taps.values():
            await asyncio.wait_for(tap.subscribed.wait(), 30)
        return list(taps.values())

    def _check_island_urls(self, fault: Fault, taps: Sequence[Tap]) -> None:
        """The relay's own report of its islands must match the brokers we tapped."""
        applied = read_applied(self.layout.root) or {}
        urls = {str(i.get("url")) for i in applied.get("islands", {}).values()}
        tapped = {tap.url for tap in taps}
        if urls != tapped:
            self.islands_unwatched.append(
                f"{fault.describe()}: relay islands {sorted(urls)}, subscribed {sorted(tapped)}"
            )

    def _live(self, names: Sequence[str]) -> list[str]:
        """Those of `names` whose process runs as recorded; a node that died unasked is reported once and left out.

        Its death already fails the run (here and in the supervisor's exit
        code); judging it again after every later fault would only repeat it.
        """
        try:
            state = read_state(self.layout)
        except TestnetError:
            return list(names)
        live = []
        for name in names:
            node = state.nodes.get(name)
            if node is None:
                continue
            if node.status in (RUNNING, PAUSED) and process_state(node.pid, node.command) != "dead":
                live.append(name)
            elif node.status in (RUNNING, PAUSED, DIED) and (name, node.pid) not in self.deaths:
                self.deaths.add((name, node.pid))
                tail = " | ".join(output_tail(self.layout, name, 2))
                self.failures.append(f"{name} (pid {node.pid}) died unasked: {tail}")
                self.echo(f"!! {self.failures[-1]}")
        return live or list(names)

    async def _await_resumed(self, fault: Fault) -> None:
        """Each live honest node finalizes a height above the one it held at the repair, within the bound."""
        assert fault.healed_at is not None
        healed = fault.healed_at
        self.logs.poll()
        judged = self._live(self.honest)
        if len(judged) < len(self.honest):
            left_out = ", ".join(n for n in self.honest if n not in judged)
            fault.note = "; ".join(x for x in (fault.note, f"not judged (dead): {left_out}") if x)
        baseline = {n: self.logs.height_at(n, healed) for n in judged}
        fault.held_heights = max(self.logs.height_at(n, healed) for n in self.honest) - max(
            self.logs.height_at(n, fault.started_at) for n in self.honest
        )
        times: dict[str, float | None] = dict.fromkeys(judged)
        while True:
            self.logs.poll()
            for name in judged:
                if times[name] is None:
                    ts = self.logs.first_above(name, baseline[name], healed)
                    if ts is not None:
                        times[name] = ts - healed
            if all(t is not None for t in times.values()) or time.time() > healed + self.bound_s:
                break
            await asyncio.sleep(POLL_S)
        fault.resumed_s = times
        if fault.slowest_s is None:
            late = [n for n, t in times.items() if t is None]
            self.echo(
                f"!! finality did not resume within {self.bound_s:.1f} s after {fault.describe()}: "
                + ", ".join(f"{n} stuck at {self.logs.max_height[n]}" for n in late)
            )

    # -- stopping

    async def _stop(self) -> None:
        """Stop `up` (it stops the nodes and the relay and prints its own verdict), then the taps and the broker."""
        if self.up is not None:
            if self.up.poll() is None:
                self.up.send_signal(signal.SIGTERM)
            try:
                self.up_code = await asyncio.to_thread(self.up.wait, UP_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.failures.append(f"`posnet testnet up` did not stop within {UP_STOP_TIMEOUT_S:.0f} s")
                self.up.kill()
                self.up_code = await asyncio.to_thread(self.up.wait)
                self._stop_leftover_nodes()
        for tap in self.taps:
            await tap.close()
        if self.broker is not None:
            self.broker.stop()
        for (
            pid
        ) in self.restarted_pids:  # restarted nodes are our children: reap them (they are stopped by now)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)

    def _stop_leftover_nodes(self) -> None:
        with contextlib.suppress(TestnetError):
            state = read_state(self.layout)
            stop_processes([(n.pid, n.command, None) for n in state.nodes.values()])

    # -- verdict

    def _verdict(self) -> SoakResult:
        cfg = self.config
        logs = {name: read_log(self.layout.log(name)).events for name in self.names}
        conflicts = find_conflicts({n: logs[n] for n in self.honest})
        store_lost = self._store_check(logs)
        coverage = self._coverage()
        checks: list[Check] = []
        if self.failures:
            checks.append(Check("run", False, "; ".join(self.failures)))
        if self.detector.errors:
            checks.append(
                Check(
                    "observer",
                    False,
                    f"{len(self.detector.errors)} message(s) unchecked, first {self.detector.errors[0]}",
                )
            )
        checks.append(
            Check(
                "conflicting finality",
                not conflicts and not self.logs.conflicts,
                f"{len(conflicts)} height(s) with two hashes across {len(self.honest)} honest node(s)"
                + (f"; first {conflicts[0].describe()}" if conflicts else ""),
            )
        )
        honest_doubles = self.detector.honest_double_signs
        checks.append(
            Check(
                "double signs by honest keys",
                not honest_doubles and self.detector.messages > 0,
                f"{len(honest_doubles)} in {self.detector.messages} messages "
                f"({self.detector.signed_items} distinct signed votes/proposals)"
                + (f"; first {honest_doubles[0].describe()}" if honest_doubles else ""),
            )
        )
        lost = self.lost_at_restart + store_lost
        checks.append(
            Check(
                "finalized blocks lost",
                not lost,
                f"{len(lost)} ({self.restarts_checked} restart(s) checked against the last logged height; "
                f"every logged height checked in {len(self.names)} store(s))"
                + (f"; first: {lost[0]}" if lost else ""),
            )
        )
        healed = [f for f in self.faults if f.healed_at is not None]
        stuck = [f for f in healed if f.slowest_s is None]
        failed = [f for f in self.faults if f.error]
        checks.append(
            Check(
                "finality resumed after every repair",
                not stuck and not failed,
                f"{len(healed) - len(stuck)} of {len(healed)} within {self.bound_s:.1f} s"
                + (f"; first stuck after {stuck[0].describe()}" if stuck else "")
                + (
                    f"; {len(failed)} fault command(s) failed, first {failed[0].describe()}: {failed[0].error}"
                    if failed
                    else ""
                ),
            )
        )
        progress = {n: self.logs.max_height[n] - self.heights_at_start.get(n, 0) for n in self.honest}
        checks.append(
            Check(
                "progress",
                bool(self.heights_at_start) and all(p > 0 for p in progress.values()),
                "heights finalized during the soak: " + ", ".join(f"{n} {p}" for n, p in progress.items()),
            )
        )
        checks.append(
            Check(
                "subscriber coverage",
                not coverage["problems"],
                f"{coverage['sessions']} broker session(s), subscriber connected before any node in all of them"
                if not coverage["problems"]
                else "; ".join(coverage["problems"][:3]),
            )
        )
        checks.append(
            Check(
                "testnet supervisor",
                self.up_code == 0,
                f"`posnet testnet up` exited {self.up_code} (1: a node died unasked or its safety check failed; "
                f"see {self._up_out()})",
            )
        )
        summary = self._summary(logs, conflicts, lost, coverage)
        return SoakResult(cfg, checks, summary, self.faults, list(self.detector.double_signs))

    def _store_check(self, logs: Mapping[str, list[Event]]) -> list[str]:
        """Every height a node logged as finalized is in its store, with the same hash, after the run."""
        lost: list[str] = []
        for name in self.names:
            logged: dict[int, str] = {}
            for event in logs[name]:
                if event.get("event") == "finalized" and isinstance(event.get("height"), int):
                    logged.setdefault(event["height"], str(event.get("hash")))
            if not logged:
                continue
            path = self.layout.home(name) / "node.sqlite3"
            try:
                stored = read_store_hashes(path)
            except sqlite3.Error as exc:
                lost.append(f"{name}: store {path} unreadable ({exc})")
                continue
            missing = sorted(h for h in logged if h not in stored)
            differing = sorted(h for h in logged if h in stored and stored[h] != logged[h])
            if missing:
                lost.append(f"{name}: store lacks {len(missing)} logged height(s), first {missing[0]}")
            if differing:
                lost.append(
                    f"{name}: store holds other blocks at {len(differing)} height(s), first {differing[0]}"
                )
        return lost

    def _coverage(self) -> dict[str, Any]:
        """Did a subscriber of ours see every broker session from its first node connection, without gaps?"""
        problems: list[str] = []
        node_clients = {f"posnet-{self.genesis.chain_id}-{name}" for name in self.names}
        logs = [self.layout.broker_dir / "main" / "mosquitto.log"]
        logs += sorted(self.layout.broker_dir.glob("island-*/mosquitto.log"))
        sessions = 0
        for path in logs:
            try:
                found = broker_log_sessions(path.read_text(errors="replace"))
            except OSError:
                continue
            sessions += len(found)
            late = late_sessions(found, node_clients)
            if late:
                problems.append(
                    f"{path.parent.name}: a node connected before the subscriber in {len(late)} session(s)"
                )
        island_sessions = sessions - 1 if sessions else 0
        if island_sessions != self.island_sessions_expected:
            problems.append(
                f"{island_sessions} island broker session(s) logged, {self.island_sessions_expected} expected"
            )
        problems += self.islands_unwatched
        gaps = sum(tap.gaps for tap in self.taps)
        if gaps:
            problems.append(f"{gaps} unexpected subscriber disconnection(s)")
        return {"sessions": sessions, "problems": problems, "gaps": gaps}

    def _summary(
        self,
        logs: Mapping[str, list[Event]],
        conflicts: Sequence[Any],
        lost: Sequence[str],
        coverage: Mapping[str, Any],
    ) -> dict[str, Any]:
        phase = self.fault_phase or (0.0, 0.0)
        kinds = Counter(f.kind for f in self.faults)
        shapes = Counter(
            "|".join(str(len(g.split(","))) for g in f.target.split(" | "))
            for f in self.faults
            if f.kind == "partition"
        )
        resume: dict[str, dict[str, Any]] = {}
        for kind in sorted(kinds):
            times = [f.slowest_s for f in self.faults if f.kind == kind and f.slowest_s is not None]
            resume[kind] = {
                "count": kinds[kind],
                "resumed": len(times),
                "median_s": round(statistics.median(times), 2) if times else None,
                "max_s": round(max(times), 2) if times else None,
            }
        held: dict[str, dict[str, int]] = {}
        for fault in self.faults:
            if fault.held_heights is None:
                continue
            entry = held.setdefault(fault_shape(fault), {"faults": 0, "heights": 0, "stalled": 0})
            entry["faults"] += 1
            entry["heights"] += fault.held_heights
            entry["stalled"] += fault.held_heights == 0
        penalties = unique_penalties(logs.values())
        counts: Counter[str] = Counter()
        for events in logs.values():
            counts.update(str(e.get("event")) for e in events)
        return {
            "duration_s": round(phase[1] - phase[0], 1),
            "validators": self.config.validators,
            "slot_ms": self.config.slot_ms,
            "seed": self.config.seed,
            "dir": str(self.layout.root),
            "byzantine": self.byzantine,
            "faults": dict(kinds),
            "partition_shapes": dict(shapes),
            "fault_commands_failed": sum(1 for f in self.faults if f.error),
            "heights": {n: self.logs.max_height[n] for n in self.names},
            "heights_at_start": self.heights_at_start,
            "messages_checked": self.detector.messages,
            "messages_by_kind": dict(self.detector.by_kind),
            "messages_rejected": dict(self.detector.rejected),
            "signed_items_observed": self.detector.signed_observed,
            "signed_items_distinct": self.detector.signed_items,
            "nested_bad_signatures": self.detector.bad_nested,
            "double_signs_honest": len(self.detector.honest_double_signs),
            "double_signs_byzantine": len(self.detector.double_signs)
            - len(self.detector.honest_double_signs),
            "conflicting_heights": len(conflicts),
            "lost_blocks": len(lost),
            "restarts_checked": self.restarts_checked,
            "resume_bound_s": round(self.bound_s, 2),
            "resume": resume,
            "while_held": dict(sorted(held.items())),
            "events": dict(sorted(counts.items())),
            "penalties": [
                {
                    k: e.get(k)
                    for k in ("event", "height", "validator", "offender", "reason")
                    if e.get(k) is not None
                }
                for e in penalties
            ],
            "broker_sessions": coverage["sessions"],
            "subscriber_gaps": coverage["gaps"],
            "up_exit_code": self.up_code,
        }


def fault_shape(fault: Fault) -> str:
    """`kill`, `pause`, or a partition by group sizes, largest first (`partition 3|1`, `partition 2|2`)."""
    if fault.kind != "partition":
        return fault.kind
    sizes = sorted((len(group.split(",")) for group in fault.target.split(" | ")), reverse=True)
    return "partition " + "|".join(map(str, sizes))


def read_store_hashes(path: Path) -> dict[int, str]:
    """height -> block hash (hex) of a node's finalized chain, read-only (the node is stopped, or WAL lets us read)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return {int(h): bytes(b).hex() for h, b in conn.execute("SELECT height, block_hash FROM finalized")}
    finally:
        conn.close()


# ------------------------------------------------------------------ text


def format_result(result: SoakResult) -> Iterator[str]:
    """The summary a person reads: the numbers, then each check, then the verdict."""
    s = result.summary
    faults = ", ".join(f"{k} {v}" for k, v in sorted(s["faults"].items())) or "none"
    shapes = ", ".join(f"{k} x{v}" for k, v in sorted(s["partition_shapes"].items()))
    yield f"soak summary ({s['dir']})"
    yield f"  duration {s['duration_s']:.0f} s, {s['validators']} validators, slot {s['slot_ms']} ms, seed {s['seed']}"
    yield f"  faults injected: {faults}" + (f" (partitions {shapes})" if shapes else "")
    heights = s["heights"]
    grown = {n: heights[n] - s["heights_at_start"].get(n, 0) for n in heights}
    yield (
        f"  heights finalized: {min(heights.values())}..{max(heights.values())} "
        f"({min(grown.values())}..{max(grown.values())} during the soak)"
    )
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(s["messages_by_kind"].items()))
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(s["messages_rejected"].items())) or "none"
    yield f"  messages checked: {s['messages_checked']} ({kinds}); rejected: {rejected}"
    yield (
        f"  signed votes/proposals: {s['signed_items_observed']} observed, {s['signed_items_distinct']} distinct; "
        f"double signs: honest {s['double_signs_honest']}, byzantine {s['double_signs_byzantine']}"
    )
    yield (
        f"  conflicting heights: {s['conflicting_heights']}; lost blocks: {s['lost_blocks']} "
        f"({s['restarts_checked']} restarts checked)"
    )
    yield f"  time to resume finality after the repair (slowest honest node; bound {s['resume_bound_s']:.1f} s):"
    for kind, r in s["resume"].items():
        if r["median_s"] is None:
            yield f"    {kind:<9} {r['resumed']}/{r['count']} resumed"
        else:
            yield f"    {kind:<9} {r['resumed']}/{r['count']} resumed, median {r['median_s']:.1f} s, max {r['max_s']:.1f} s"
    yield "  heights finalized while a fault was in force (a number, not a check; with every validator active, one down of four leaves > 2/3, a 2|2 split no quorum):"
    for shape, h in s["while_held"].items():
        yield f"    {shape:<13} {h['faults']} fault(s), {h['heights']} heights, {h['stalled']} with none"
    penalties = Counter(
        f"{p['event']} {p.get('validator') or p.get('offender')}"
        for p in s["penalties"]
        if p["event"] != "unjailed"
    )
    yield "  penalties: " + (", ".join(f"{k} x{v}" for k, v in sorted(penalties.items())) or "none")
    yield "checks:"
    for check in result.checks:
        yield check.line()
    yield f"verdict: {'PASS' if result.ok else 'FAIL'}"


def _range(value: str) -> tuple[float, float]:
    low, sep, high = value.partition("-")
    try:
        pair = (float(low), float(high if sep else low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected MIN-MAX seconds, e.g. 1-8") from None
    if not 0 <= pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError(f"{value!r}: need 0 <= MIN <= MAX")
    return pair


def _behaviour(value: str) -> tuple[str, str]:
    name, sep, mode = value.partition("=")
    if not sep or mode not in BEHAVIOURS:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected NODE=MODE, MODE one of {', '.join(BEHAVIOURS)}"
        )
    return name, mode


def _kinds(value: str) -> tuple[str, ...]:
    kinds = tuple(k for k in value.split(",") if k and k != "none")
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown fault kind {unknown[0]!r}; kinds are {', '.join(FAULT_KINDS)}"
        )
    return kinds


def parse_args(argv: Sequence[str] | None = None) -> tuple[SoakConfig, Path | None]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of faults (default 1800)")
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument(
        "--slot-ms", type=int, default=250, help="commit_wait_ms of the genesis; 0 = fast (default 250)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="a fresh testnet directory (default: a new temporary one, kept)",
    )
    parser.add_argument("--faults", type=_kinds, default=FAULT_KINDS, help="comma-separated kinds, or none")
    parser.add_argument(
        "--gap", type=_range, default=(1.0, 4.0), help="seconds between faults, MIN-MAX (default 1-4)"
    )
    parser.add_argument(
        "--hold", type=_range, default=(1.0, 8.0), help="seconds a fault lasts, MIN-MAX (default 1-8)"
    )
    parser.add_argument(
        "--resume-rounds", type=int, default=10, help="liveness bound in rounds of timeouts (default 10)"
    )
    parser.add_argument("--behaviour", type=_behaviour, action="append", default=[], metavar="NODE=MODE")
    parser.add_argument("--progress-every", type=float, default=30.0, help="seconds between progress lines")
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the summary and checks as JSON here"
    )
    args = parser.parse_args(argv)
    if args.validators < 2:
        parser.error("--validators must be at least 2")
    if args.duration <= 0:
        parser.error("--duration must be positive")
    directory = args.dir
    if directory is None:
        import tempfile

        directory = Path(tempfile.mkdtemp(prefix="posnet-soak-"))
    config = SoakConfig(
        directory=directory,
        duration=args.duration,
        validators=args.validators,
        slot_ms=args.slot_ms,
        seed=args.seed,
        faults=args.faults,
        gap_s=args.gap,
        hold_s=args.hold,
        resume_rounds=args.resume_rounds,
        behaviours=dict(args.behaviour),
        progress_every_s=args.progress_every,
    )
    return config, args.json


def result_json(result: SoakResult) -> dict[str, Any]:
    """The summary, checks and per-fault record as one JSON object (for the note, or a later comparison)."""
    return {
        **result.summary,
        "ok": result.ok,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in result.checks],
        "fault_log": [
            {
                "kind": f.kind,
                "target": f.target,
                "started_at": round(f.started_at, 3),
                "hold_s": round(f.hold_s, 2),
                "healed_at": None if f.healed_at is None else round(f.healed_at, 3),
                "resumed_s": {n: None if t is None else round(t, 2) for n, t in f.resumed_s.items()},
                "error": f.error,
                "note": f.note,
                "held_heights": f.held_heights,
            }
            for f in result.faults
        ],
        "double_sign_list": [d.describe() for d in result.double_signs[:100]],
    }


def main(argv: Sequence[str] | None = None) -> int:
    config, json_path = parse_args(argv)
    try:
        result = asyncio.run(Soak(config).run())
    except TestnetError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    for line in format_result(result):
        print(line)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result_json(result), indent=2) + "\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
