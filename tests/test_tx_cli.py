"""`posnet tx`, `posnet query` and `posnet genesis create --account`, against a served node view.

The node side is the real thing minus consensus: a `QueryView` over a real
`ChainState`, served by `NodeMetrics` on a free loopback port exactly as a
running node serves it. Publishing is checked against a real broker (the
broker-marked test); the end-to-end run on real node processes is in
test_penalties_real.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from network.cli import cli
from network.cli.format import pct, table
from network.testnet.client import QueryClient, parse_account
from network.testnet.layout import (
    STOPPED,
    BrokerInfo,
    Layout,
    NodeProc,
    TestnetState,
    read_state,
    write_state,
)
from network.testnet.logtail import LogTail
from network.testnet.processes import cmdline
from network.testnet.setup import prepare
from network.testnet.submit import wait_for_outcome
from network.testnet.target import ClientError, Target, protocol_of, target_from_dir
from network.transport.broker import BrokerProcess, start_broker
from node.core.admission import AdmissionContext, TxMsg, admit
from node.core.channels import TX
from node.core.genesis import Genesis as GenesisDoc
from node.core.genesis import GenesisAccount, GenesisValidator, Params, genesis_to_toml, load_genesis
from node.core.keys import Keypair, load_key_file, save_key_file
from node.core.query import supply_view
from node.core.state import ChainState, genesis_state
from node.core.tx import Transfer, decode_tx, verify_tx
from node.runtime.metrics import NodeMetrics
from node.runtime.queryview import QueryView
from tests.support import brokers

CHAIN_ID = "posnet-cli"
VALIDATORS = {name: Keypair.deterministic(f"cli/{name}") for name in ("v1", "v2", "v3")}
ALICE = Keypair.deterministic("cli/alice")  # funded with 5000
BOB = Keypair.deterministic("cli/bob")  # funded with 10


def make_doc() -> GenesisDoc:
    validators = tuple(GenesisValidator(n, kp.public, pledge=1000) for n, kp in VALIDATORS.items())
    accounts = (GenesisAccount(ALICE.public, 5000), GenesisAccount(BOB.public, 10))
    return GenesisDoc(CHAIN_ID, 0, Params(), validators, accounts)


@dataclass
class Served:
    url: str
    view: QueryView
    state: ChainState
    genesis: Path
    alice: Path
    bob: Path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A node's query endpoint over the genesis state, plus the key files and genesis a user would hold."""
    state = genesis_state(make_doc())
    view = QueryView(state)
    metrics = NodeMetrics("v1", CHAIN_ID, dropped=dict, signed=lambda: 0, refused=lambda: 0)
    metrics.serve(0, "127.0.0.1", query=view.answer)
    genesis = tmp_path / "genesis.toml"
    genesis.write_text(genesis_to_toml(make_doc()))
    save_key_file(tmp_path / "alice.json", "alice", ALICE)
    save_key_file(tmp_path / "bob.json", "bob", BOB)
    try:
        yield Served(
            f"http://127.0.0.1:{metrics.port}",
            view,
            state,
            genesis,
            tmp_path / "alice.json",
            tmp_path / "bob.json",
        )
    finally:
        metrics.close()


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result: Result) -> str:
    """The usage-error convention: exit 2 and a single "Error: ..." line."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


# ------------------------------------------------------------------ query


def test_query_pools_prints_a_table_and_json(served: Served) -> None:
    result = run("query", "pools", "--url", served.url)
    assert result.exit_code == 0, result.output
    header, *rows, where = result.output.splitlines()
    assert header.split()[:4] == ["NAME", "STATUS", "STAKE", "SHARE"]
    assert [row.split()[0] for row in rows] == ["v1", "v2", "v3"]
    assert "33.33%" in rows[0] and f"chain {CHAIN_ID} at height 0" in where
    answer = json.loads(run("query", "pools", "--url", served.url, "--json").output)
    assert [p["name"] for p in answer["pools"]] == ["v1", "v2", "v3"]


def test_query_balance_takes_a_key_file_an_address_or_a_pool_name(served: Served) -> None:
    result = run("query", "balance", served.alice, "--url", served.url)
    assert result.exit_code == 0, result.output
    assert f"account    {ALICE.address.hex()}" in result.output and "balance    5000" in result.output
    by_address = json.loads(
        run("query", "balance", ALICE.address.hex(), "--url", served.url, "--json").output
    )
    assert by_address["balance"] == 5000 and by_address["nonce"] == 0
    operator = json.loads(run("query", "balance", "v2", "--url", served.url, "--json").output)
    assert operator["address"] == VALIDATORS["v2"].address.hex() and operator["staked"] == 1000


def test_query_delegations_pool_supply_and_nakamoto(served: Served) -> None:
    delegations = run("query", "delegations", "v1", "--url", served.url)
    assert delegations.exit_code == 0 and "pledge" in delegations.output, delegations.output
    pool = run("query", "pool", "v3", "--url", served.url)
    assert pool.exit_code == 0 and f"pool        v3  {VALIDATORS['v3'].address.hex()}" in pool.output
    assert "performance 100.00% of its recent committee precommits counted" in pool.output, pool.output
    assert "saturation" not in pool.output  # saturation_k = 0: no saturation point to show
    assert "shares      0 at 1.000000 per share" in pool.output and "leverage    1.00x" in pool.output
    supply = run("query", "supply", "--url", served.url)
    assert supply.exit_code == 0 and "conservation holds" in supply.output, supply.output
    assert json.loads(run("query", "supply", "--url", served.url, "--json").output) == supply_view(
        served.state
    )
    nakamoto = run("query", "nakamoto", "--url", served.url)
    assert nakamoto.output.startswith("Nakamoto coefficient 2:"), nakamoto.output


def test_query_errors_are_one_line(served: Served, tmp_path: Path) -> None:
    assert "is not an address" in one_line_error(run("query", "balance", "nobody", "--url", served.url))
    assert "no pool" in one_line_error(run("query", "pool", "ab" * 20, "--url", served.url))
    assert "cannot reach a node at http://127.0.0.1:1" in one_line_error(
        run("query", "supply", "--url", "http://127.0.0.1:1")
    )
    assert "testnet.json not found" in one_line_error(run("query", "supply", "--dir", tmp_path / "none"))
    assert "not both" in one_line_error(run("query", "supply", "--dir", tmp_path, "--url", served.url))
    assert "expected http://" in one_line_error(run("query", "supply", "--url", "localhost:9"))


# ------------------------------------------------------------------ tx: checks before anything is sent


def test_a_doomed_transfer_is_refused_with_the_ledgers_reason_and_never_sent(served: Served) -> None:
    # the broker URL points nowhere: a refused tx must not even try to publish
    args = ("--key", served.bob, "--url", served.url, "--broker", "mqtt://127.0.0.1:1")
    result = run("tx", "transfer", served.alice, 50, *args)
    assert result.exit_code == 1, result.output
    assert result.output.strip().endswith(
        f"rejected, not sent: insufficient balance: 10 < 50 (checked against {served.url} at height 0)"
    )
    outcome = json.loads(run("tx", "transfer", served.alice, 50, *args, "--json").output)
    assert outcome["status"] == "rejected" and outcome["stage"] == "check"
    assert outcome["reason"] == "insufficient balance: 10 < 50" and outcome["nonce"] == 0
    unjail = json.loads(
        run(
            "tx",
            "unjail",
            "--key",
            served.alice,
            "--url",
            served.url,
            "--broker",
            "mqtt://127.0.0.1:1",
            "--json",
        ).output
    )
    assert unjail["reason"] == "not a pool operator"
    moved = run("tx", "redelegate", "v1", "v2", 5, *args)
    assert moved.output.strip().endswith(
        f"rejected, not sent: insufficient own stake in source pool: 0 < 5 (checked against {served.url} at height 0)"
    ), moved.output
    retire = json.loads(run("tx", "retire-pool", 3, *args, "--json").output)
    assert retire["status"] == "rejected" and retire["reason"] == "not a pool operator"
    shares = run("tx", "transfer-shares", "v1", served.alice, 5, *args)
    assert shares.exit_code == 1 and shares.output.strip().endswith(
        f"rejected, not sent: insufficient shares in pool: 0 < 5 (checked against {served.url} at height 0)"
    ), shares.output


def test_tx_usage_errors_are_one_line(served: Served, tmp_path: Path) -> None:
    key = ("--key", served.alice)
    assert "pass --nonce" in one_line_error(
        run("tx", "transfer", "v1", 1, *key, "--broker", "mqtt://127.0.0.1:1", "--genesis", served.genesis)
    )
    assert "--broker" in one_line_error(run("tx", "transfer", "v1", 1, *key, "--url", served.url))
    assert "which chain" in one_line_error(
        run("tx", "transfer", "ab" * 20, 1, *key, "--broker", "mqtt://127.0.0.1:1", "--nonce", 0)
    )
    assert "key file" in one_line_error(
        run(
            "tx",
            "transfer",
            "v1",
            1,
            "--key",
            tmp_path / "missing.json",
            "--url",
            served.url,
            "--broker",
            "mqtt://127.0.0.1:1",
        )
    )
    assert "cannot publish" in one_line_error(
        run("tx", "transfer", "v1", 1, *key, "--url", served.url, "--broker", "mqtt://127.0.0.1:1")
    )
    result = run("tx", "transfer", "v1", 0, *key, "--url", served.url)
    assert result.exit_code == 2 and "0 is not in the range x>=1" in result.output


# ------------------------------------------------------------------ tx: publishing and waiting


@pytest.mark.integration
@pytest.mark.broker
@pytest.mark.parametrize("kind", brokers.KINDS)
async def test_a_published_tx_reaches_a_subscriber_as_a_valid_signed_transaction(
    kind: str, served: Served, tmp_path: Path
) -> None:
    """Publishing needs no node: the CLI detects the broker's MQTT version (amqtt speaks only 3.1.1)."""
    broker: BrokerProcess = start_broker(kind, workdir=tmp_path / "broker")  # type: ignore[arg-type]
    try:
        listener = brokers.make_transport(broker, "listener", [TX], chain_id=CHAIN_ID)
        async with brokers.running(listener):
            args = ("--key", served.alice, "--broker", broker.url, "--genesis", served.genesis, "--nonce", 7)
            result = await asyncio.to_thread(run, "tx", "transfer", "v2", 123, *args, "--json")
            assert result.exit_code == 0, result.output
            outcome = json.loads(result.output)
            assert outcome["status"] == "published" and outcome["nonce"] == 7
            (message,) = await brokers.recv_n(listener, 1)
    finally:
        broker.stop(kill=True)
    admitted = admit(message.payload, AdmissionContext(CHAIN_ID, {}, 1))
    assert isinstance(admitted, TxMsg)
    signed = decode_tx(admitted.tx)
    assert signed.tx == Transfer(7, VALIDATORS["v2"].address, 123)
    assert signed.sender == ALICE.address and verify_tx(CHAIN_ID, signed)


def test_waiting_ends_on_the_nodes_answer_or_its_log(served: Served, tmp_path: Path) -> None:
    client = QueryClient(Target(served.url, "v1"))
    served.view.record(
        {"event": "tx_rejected", "tx": "aa" * 32, "height": 9, "reason": "bad nonce: expected 1, got 0"}
    )
    assert wait_for_outcome(client, None, "aa" * 32, timeout=5)["reason"] == "bad nonce: expected 1, got 0"
    log = tmp_path / "v1.jsonl"
    log.write_text(
        '{"event":"tx_applied","tx":"' + "bb" * 32 + '","height":3}\n'
    )  # before we started: ignored
    tail = LogTail(log)
    with log.open("a") as fh:
        fh.write('{"event":"tx_applied","tx":"' + "cc" * 32 + '","height":4,"reason":"transfer"}\n')
    assert wait_for_outcome(None, tail, "cc" * 32, timeout=5) == {
        "status": "applied",
        "tx_height": 4,
        "reason": "transfer",
    }
    assert wait_for_outcome(None, LogTail(log), "bb" * 32, timeout=0.3) is None


def test_dir_mode_finds_the_running_node_its_broker_and_protocol(served: Served, tmp_path: Path) -> None:
    """A testnet directory names the node's metrics port, the broker and the MQTT version to use."""
    layout = Layout.of(tmp_path / "net")
    layout.root.mkdir()
    layout.genesis.write_text(served.genesis.read_text())
    me = cmdline(os.getpid())
    assert me is not None
    port = int(served.url.rsplit(":", 1)[1])
    nodes = {
        "v1": NodeProc(name="v1", command=["gone"], metrics_port=1, pid=None, status=STOPPED),
        "v2": NodeProc(name="v2", command=me, metrics_port=port, pid=os.getpid()),
    }
    broker = BrokerInfo(kind="embedded", url="mqtt://127.0.0.1:1883")
    write_state(layout, TestnetState(chain_id=CHAIN_ID, broker=broker, nodes=nodes))
    result = run("query", "supply", "--dir", layout.root)
    assert result.exit_code == 0 and "(node v2)" in result.output, result.output
    target = target_from_dir(layout.root, None)
    assert (target.label, target.broker_url, target.mqtt_protocol) == ("v2", broker.url, 311)  # amqtt: 3.1.1
    state = read_state(layout)
    state.broker.kind = "mosquitto"
    assert protocol_of(state, state.nodes["v2"]) == 5
    state.nodes["v2"].command = ["posnet", "node", "run", "--mqtt-protocol", "311"]
    assert protocol_of(state, state.nodes["v2"]) == 311
    assert target.log_path == layout.log("v2") and target.names["v3"] == VALIDATORS["v3"].address
    assert "unknown node" in one_line_error(run("query", "supply", "--dir", layout.root, "--node", "v9"))


def test_dir_mode_knows_the_account_names_up_made(tmp_path: Path) -> None:
    """`up --accounts 3` names its accounts a01..a03: a recipient named so is found in the directory."""
    layout = Layout.of(tmp_path / "net")
    doc = prepare(layout, 2, None, None, accounts=3)
    nodes = {"v1": NodeProc(name="v1", command=["gone"], metrics_port=1), "v2": NodeProc("v2", ["gone"], 2)}
    write_state(layout, TestnetState(doc.chain_id, BrokerInfo("embedded", "mqtt://127.0.0.1:1883"), nodes))
    target = target_from_dir(layout.root, "v1")
    a02 = load_key_file(layout.account_key(2))[1].address
    assert parse_account("a02", target) == a02 and a02 == doc.accounts[1].address
    assert parse_account("v2", target) == doc.validators[1].address
    with pytest.raises(ClientError, match=r"a04.*pool or account name.*a01, a02, a03, v1, v2"):
        parse_account("a04", target)


# ------------------------------------------------------------------ helpers and genesis


def test_parse_account_accepts_addresses_public_keys_names_and_key_files(served: Served) -> None:
    target = Target(None, "x", names={"v1": VALIDATORS["v1"].address})
    assert parse_account(ALICE.address.hex(), target) == ALICE.address
    assert parse_account("0x" + ALICE.address.hex(), target) == ALICE.address
    assert parse_account(ALICE.public.hex(), target) == ALICE.address
    assert parse_account("v1", target) == VALIDATORS["v1"].address
    assert parse_account(str(served.bob), target) == BOB.address


def test_tables_align_numbers_right_and_shares_are_percent() -> None:
    assert table(("NAME", "STAKE"), [("v1", 5), ("v10", 1000)], frozenset({1})) == [
        "NAME  STAKE",
        "v1        5",
        "v10    1000",
    ]
    assert pct(333_333) == "33.33%" and pct(0) == "0.00%"


def test_genesis_create_funds_accounts_from_key_files(tmp_path: Path) -> None:
    for name, keypair in VALIDATORS.items():
        save_key_file(tmp_path / f"{name}.json", name, keypair)
    save_key_file(tmp_path / "alice.json", "alice", ALICE)
    keys = [arg for name in VALIDATORS for arg in ("--key", tmp_path / f"{name}.json")]
    out = tmp_path / "genesis.toml"
    result = run("genesis", "create", "--out", out, *keys, "--account", f"{tmp_path / 'alice.json'}=5000")
    assert result.exit_code == 0 and "1 funded accounts" in result.output, result.output
    doc = load_genesis(out)
    assert doc.accounts == (GenesisAccount(ALICE.public, 5000),)
    assert tomllib.loads(out.read_text())["accounts"] == [{"public_key": ALICE.public.hex(), "balance": 5000}]
    again = [*keys, "--force"]
    alice = tmp_path / "alice.json"
    assert "expected KEYFILE=BALANCE" in one_line_error(
        run("genesis", "create", "--out", out, *again, "--account", alice)
    )
    assert "must be an integer" in one_line_error(
        run("genesis", "create", "--out", out, *again, "--account", f"{alice}=lots")
    )
    assert "at least 1" in one_line_error(
        run("genesis", "create", "--out", out, *again, "--account", f"{alice}=0")
    )
    assert "already funded" in one_line_error(
        run("genesis", "create", "--out", out, *again, "--account", f"{alice}=1", "--account", f"{alice}=2")
    )
    missing = one_line_error(
        run("genesis", "create", "--out", out, *again, "--account", f"{tmp_path / 'no.json'}=1")
    )
    assert "no.json" in missing
