"""Owner and signing keys on a real testnet: rotate a signing key the way an operator would.

Four `posnet node run` processes over a real mosquitto, from a genesis made
with `posnet keys generate --kind owner|signing` and `posnet genesis create
--signing-key`: the nodes hold only their signing keys, the owners' keys
stay in the test's folder. v1's owner writes a fresh signing key into the
node's ``keys/`` folder and sends `posnet tx rotate-key`; from the next
epoch v1's votes verify under the new key (read from another node's store),
and the old signing key can move no funds.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from network.testnet.layout import Layout
from network.transport.broker import mosquitto_available
from node.core.codec import decode
from node.core.genesis import load_genesis
from node.core.keys import key_file_kind, load_key_file
from node.core.ledger import SIGNING_KEY_SENDS_NOTHING
from node.core.messages import CommitCertificate, verify_signed
from tests.support.user_testnet import REPO_ROOT, UserTestnet, running_testnet

WAIT_S = 90.0
NAMES = ("v1", "v2", "v3", "v4")
EPOCH_LENGTH = 10

pytestmark = [
    pytest.mark.broker,
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed"),
]


class Net(UserTestnet):
    def owner(self, name: str) -> Path:
        return self.root / "owners" / f"{name}.json"


def wait_for(net: Net, predicate: Any, what: str) -> None:
    net.wait_for(predicate, what)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("rotation")
    directory = root / "net"
    layout = Layout.of(directory)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    def cli(*args: object) -> None:
        argv = [sys.executable, "-m", "network.cli", *map(str, args)]
        subprocess.run(argv, check=True, capture_output=True, env=env, cwd=root)

    for name in NAMES:
        cli("keys", "generate", "--name", name, "--kind", "owner", "--out", root / "owners" / f"{name}.json")
        cli("keys", "generate", "--name", name, "--kind", "signing", "--out", layout.key(name))
    keys = [arg for name in NAMES for arg in ("--key", root / "owners" / f"{name}.json")]
    signing = [arg for name in NAMES for arg in ("--signing-key", layout.key(name))]
    cli(
        "genesis", "create", "--out", layout.genesis, *keys, *signing,
        "--slot-ms", 100, "--epoch-length", EPOCH_LENGTH,
    )  # fmt: skip
    with running_testnet(root, directory, NAMES, ["--broker", "mosquitto", "--quiet"], WAIT_S) as running:
        started = Net(**vars(running))
        wait_for(
            started,
            lambda: started.process.poll() is None and min(started.height(n) for n in NAMES) >= 2,
            "finality",
        )
        yield started


def running_store_copy(path: Path, into: Path) -> Path:
    """A copy of a running node's store to read: the node holds the store itself exclusively.

    The chain sits in the write-ahead log until a checkpoint (at 1,000 pages, more than
    this test writes), and SQLite replays the copied log up to its last whole commit.
    """
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    for source in (path, Path(f"{path}-wal")):
        if source.exists():
            shutil.copyfile(source, into / source.name)
    return into / path.name


def v1_keys_by_height(net: Net, node: str) -> dict[int, bytes]:
    """Height -> which of v1's keys its precommit in that height's certificate verifies under (read-only store)."""
    genesis = load_genesis(net.layout.genesis)
    v1 = next(v for v in genesis.validators if v.name == "v1")
    candidates = [v1.signing_key, load_key_file(net.layout.rotation_keys("v1") / "next.json")[1].public]
    store = sqlite3.connect(running_store_copy(net.layout.home(node) / "node.sqlite3", net.root / "copy"))
    try:
        rows = store.execute("SELECT height, cert FROM finalized ORDER BY height").fetchall()
    finally:
        store.close()
    found: dict[int, bytes] = {}
    for height, cert in rows:
        for vote in CommitCertificate.from_wire(decode(cert)).votes():
            for key in candidates:
                if vote.validator == v1.address and verify_signed(genesis.chain_id, vote, key):
                    found[height] = key
    return found


def test_the_nodes_hold_signing_keys_and_refuse_to_sign_with_an_owner_key(net: Net) -> None:
    assert key_file_kind(net.layout.key("v1")) == "signing" and key_file_kind(net.owner("v1")) == "owner"
    pool = net.posnet("query", "pool", "v1", "--dir", net.directory, "--json").stdout
    owner = load_key_file(net.owner("v1"))[1]
    assert f'"owner": "{owner.address.hex()}"' in pool
    assert f'"signing_key": "{load_key_file(net.layout.key("v1"))[1].public.hex()}"' in pool
    refused = net.posnet(
        "node", "run", "--home", net.root / "stray", "--genesis", net.layout.genesis,
        "--key", net.owner("v1"), "--broker", "mqtt://127.0.0.1:1", check=2,
    )  # fmt: skip
    assert "owner (cold) key" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_an_owner_rotates_the_signing_key_and_the_node_signs_with_it_from_the_next_epoch(net: Net) -> None:
    new_key = net.layout.rotation_keys("v1") / "next.json"
    net.posnet("keys", "generate", "--name", "v1", "--kind", "signing", "--out", new_key)
    rotated = net.posnet("tx", "rotate-key", new_key, "--key", net.owner("v1"), "--dir", net.directory)
    applied_at = int(rotated.stdout.split("applied at height ")[1].split()[0])
    boundary = -(-applied_at // EPOCH_LENGTH) * EPOCH_LENGTH
    new_public = load_key_file(new_key)[1].public.hex()
    wait_for(
        net,
        lambda: any(e["key"] == new_public for e in net.events("v1", "signing_key")),
        "v1 to log its new signing key",
    )
    switch = next(e for e in net.events("v1", "signing_key") if e["key"] == new_public)
    assert switch["held"] is True and switch["from_height"] == boundary + 1
    wait_for(net, lambda: net.height("v2") >= boundary + 5, "five heights past the rotation")
    keys = v1_keys_by_height(net, "v2")
    old, new = load_key_file(net.layout.key("v1"))[1].public, bytes.fromhex(new_public)
    assert any(h <= boundary for h in keys) and any(h > boundary for h in keys), keys
    assert all(key == old for h, key in keys.items() if h <= boundary)
    assert all(key == new for h, key in keys.items() if h > boundary)
    assert not any(e["validator"] == "v1" for node in NAMES for e in net.events(node, "jailed"))


def test_a_transfer_signed_by_the_old_signing_key_is_refused_with_its_reason(net: Net) -> None:
    owner = load_key_file(net.owner("v2"))[1].address.hex()
    refused = net.posnet(
        "tx", "transfer", owner, 1, "--key", net.layout.key("v1"), "--dir", net.directory, check=1
    )
    assert SIGNING_KEY_SENDS_NOTHING in refused.stdout
