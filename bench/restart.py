"""Restart time of a node with a long chain: from its newest snapshot vs replaying from genesis.

Builds a node store holding a real 4-validator chain (signed blocks with
state hashes, certificates of real precommits) and a snapshot every
`--snapshot-every` blocks, as a running node keeps them; then times what a
restart does before it can take part again (open the store, recover the
state: `node.runtime.recovery.recover_chain`). Beside it, measured in the same
run: the replay cost per block, which is what a restart without snapshots
pays for every block of the chain. The goal: 100,000 blocks, under 2 s.

    python bench/restart.py                        # 100,000 blocks (building them takes a few minutes)
    python bench/restart.py --blocks 20000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.core.codec import encode
from node.core.genesis import make_genesis
from node.core.keys import Keypair
from node.core.messages import Block, Kind, Vote, make_certificate, sign_item
from node.core.snapshot import encode_state
from node.core.state import apply_block, genesis_state, proposer_of
from node.runtime.recovery import SNAPSHOT_EVERY, recover_chain
from node.runtime.store import Store

GOAL_S = 2.0
CHAIN_ID = "posnet-bench"
BATCH = 1000


def build(store: Store, blocks: int, snapshot_every: int) -> float:
    """Finalize `blocks` blocks into `store`; seconds it took."""
    keys = {f"v{i}": Keypair.deterministic(f"bench/v{i}") for i in range(1, 5)}
    signers = list(keys.values())[:3]
    state = genesis_state(make_genesis(CHAIN_ID, keys))
    certificate, rows = None, []
    started = time.perf_counter()
    for height in range(1, blocks + 1):
        block = Block(
            height,
            state.last_block_hash,
            proposer_of(state, 0),
            state.last_timestamp_ms + 1000,
            (),
            (),
            certificate,
            state.digest,
        )
        state, _ = apply_block(state, block)
        votes = [Vote(Kind.PRECOMMIT, height, 0, block.hash, key.address) for key in signers]
        certificate = make_certificate(
            [
                replace(vote, signature=sign_item(CHAIN_ID, vote, key))
                for vote, key in zip(votes, signers, strict=True)
            ]
        )
        rows.append((height, block.hash, block.encoded, encode(certificate.to_wire())))
        if len(rows) == BATCH or height == blocks:
            store.put_finalized_many(rows)
            rows = []
        if snapshot_every and height % snapshot_every == 0:
            store.put_finalized_many(rows)
            rows = []
            store.put_snapshot(height, encode_state(state))
        if height % 10_000 == 0:
            print(f"  built {height} blocks ({time.perf_counter() - started:.0f} s)", flush=True)
    return time.perf_counter() - started


def restart(path: Path, genesis_keys: int = 4) -> tuple[float, int, int]:
    """(seconds, snapshot height, blocks replayed) of opening the store and recovering."""
    keys = {f"v{i}": Keypair.deterministic(f"bench/v{i}") for i in range(1, genesis_keys + 1)}
    started = time.perf_counter()
    with Store(path) as store:
        recovery = recover_chain(store, genesis_state(make_genesis(CHAIN_ID, keys)))
    return time.perf_counter() - started, recovery.snapshot_height, recovery.replayed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=100_000)
    parser.add_argument("--snapshot-every", type=int, default=SNAPSHOT_EVERY)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="posnet-restart-") as tmp:
        path = Path(tmp) / "node.sqlite3"
        print(f"store: {args.blocks} blocks of a 4-validator chain, a snapshot every {args.snapshot_every}")
        with Store(path) as store:
            build_s = build(store, args.blocks, args.snapshot_every)
        print(f"  built in {build_s:.0f} s ({path.stat().st_size / 1e6:.0f} MB)")
        seconds, height, replayed = restart(path)
        print(
            f"restart from the newest snapshot: {seconds:.2f} s (snapshot of height {height}, {replayed} replayed)"
        )
        with Store(path) as store, store._write() as conn:  # the same store without its snapshots
            conn.execute("DELETE FROM snapshots")
        sample = min(args.blocks, 5_000)
        with Store(path) as store:
            keys = {f"v{i}": Keypair.deterministic(f"bench/v{i}") for i in range(1, 5)}
            started = time.perf_counter()
            state = genesis_state(make_genesis(CHAIN_ID, keys))
            for _, _, data, _ in store.finalized_range(1, sample):
                state, _ = apply_block(state, Block.decode(data))
            per_block = (time.perf_counter() - started) / sample
        print("ceilings in this run:")
        print(
            f"  replaying one block: {per_block * 1000:.2f} ms, so replaying from genesis would take "
            f"{per_block * args.blocks:.0f} s for {args.blocks} blocks"
        )
        verdict = "meets" if seconds <= GOAL_S else "misses"
        print(f"goal: {args.blocks} blocks restarted in under {GOAL_S:.0f} s: {verdict} it ({seconds:.2f} s)")


if __name__ == "__main__":
    main()
