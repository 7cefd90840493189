"""A RANDAO chain (`randao = 1`) over a real mosquitto: every block carries its proposer's reveal (issue 29).

Four real `posnet node run` processes on a genesis with RANDAO on and
epochs of 3 heights. The chain must finalize across several epoch
boundaries, which it can only do if every proposer put its one valid
reveal for the block's epoch in its block (a block without it, or with
another value, is invalid to every peer); read back from a node's store,
each block's reveal is exactly what its proposer's onion gives for the
epoch, and all nodes agree on the chain.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from network.transport.broker import BrokerProcess, mosquitto_available
from node.core import randao
from node.core.genesis import load_genesis
from node.core.messages import Block
from node.runtime.node import STORE_FILE
from node.runtime.store import Store
from tests.support.nodes import TEST_PARAMS, agree, make_localnet, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.broker,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed"),
]

EPOCH = 3
TARGET = 5 * EPOCH + 1  # past five epoch boundaries


async def test_a_randao_testnet_finalizes_across_epochs_with_every_proposers_reveal(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    params = replace(TEST_PARAMS, randao=1, epoch_length=EPOCH)
    net = make_localnet(tmp_path / "net", mosquitto.url, 4, params=params)
    genesis = load_genesis(net.genesis_path)
    assert genesis.params.randao == 1 and all(v.randao_commitment for v in genesis.validators)
    with_key = {key.address: key for key in net.keys.values()}
    try:
        net.start()
        await wait_until(lambda: min(net.heights().values()) >= TARGET, what=f"all at {TARGET}", net=net)
    finally:
        net.stop()
    agree(list(net.nodes.values()))
    store = Store(net.nodes["v1"].home / STORE_FILE)
    try:
        blocks = [Block.decode(raw) for _, _, raw, _ in store.finalized_range(1, TARGET)]
    finally:
        store.close()
    assert [b.height for b in blocks] == list(range(1, TARGET + 1))
    for block in blocks:
        epoch = (block.height - 1) // EPOCH
        assert block.reveal == randao.reveal(with_key[block.proposer].seed, epoch), block.height
    assert len({b.proposer for b in blocks}) > 1  # more than one onion was peeled
