"""Stake, delegation and penalties on a real testnet, driven the way a user drives it.

One `posnet testnet up` (real mosquitto, the fault relay, four real
`posnet node run` processes, v4 with ``--behaviour equivocate``) from a
genesis made by `posnet genesis create --account`; then every check goes
through the user's commands (`posnet tx ...`, `posnet query ...` as
subprocesses) and the nodes' JSON-line logs. Waits are generous bounded
polls, so a loaded 2-core machine only makes the run slower.

The checks run in file order against the one testnet (it is module-scoped:
starting four nodes costs more than all the checks together).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from network.cli import cli
from network.testnet.layout import Layout
from network.transport.broker import mosquitto_available
from node.core.genesis import load_genesis
from node.core.keys import load_key_file
from tests.support.user_testnet import UserTestnet, running_testnet

REPO_ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 60.0
HONEST = ("v1", "v2", "v3")

pytestmark = [
    pytest.mark.broker,
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed"),
]


class RunningTestnet(UserTestnet):
    def query(self, *args: object) -> dict[str, Any]:
        return json.loads(self.posnet("query", *args, "--dir", self.directory, "--json").stdout)  # type: ignore[no-any-return]


def wait_for(predicate: Callable[[], bool], what: str, net: RunningTestnet) -> None:
    net.wait_for(predicate, what)


def cli_ok(*args: object) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def _answers(net: RunningTestnet) -> bool:
    if not net.layout.state.exists():
        return False
    result = net.posnet("query", "supply", "--dir", net.directory, "--node", "v1", check=None)
    return result.returncode == 0


@pytest.fixture(scope="module")
def testnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTestnet]:
    """Keys and a genesis with funded accounts made by the CLI, then `posnet testnet up` until the module ends."""
    root = tmp_path_factory.mktemp("stake")
    directory = root / "net"
    layout = Layout.of(directory)
    for name in ("v1", "v2", "v3", "v4"):
        cli_ok("keys", "generate", "--name", name, "--out", layout.key(name))
    cli_ok("keys", "generate", "--name", "delegator", "--out", root / "delegator.json")
    cli_ok("keys", "generate", "--name", "poor", "--out", root / "poor.json")
    keys = [arg for name in ("v1", "v2", "v3", "v4") for arg in ("--key", layout.key(name))]
    cli_ok(
        "genesis", "create", "--out", layout.genesis, *keys,
        "--slot-ms", 100, "--epoch-length", 20, "--param", "unbonding_epochs=2",
        "--account", f"{root / 'delegator.json'}=5000", "--account", f"{root / 'poor.json'}=10",
    )  # fmt: skip
    up = ["--broker", "mosquitto", "--behaviour", "v4=equivocate", "--quiet"]
    with running_testnet(root, directory, (*HONEST, "v4"), up, WAIT_S) as running:
        net = RunningTestnet(**vars(running))
        wait_for(lambda: net.process.poll() is None and _answers(net), "the testnet to answer queries", net)
        yield net


def address(net: RunningTestnet, key: str) -> str:
    return load_key_file(net.root / key)[1].address.hex()


# ------------------------------------------------------------------ (a) equivocation is punished everywhere


def test_an_equivocator_is_slashed_and_tombstoned_in_every_honest_log(testnet: RunningTestnet) -> None:
    def punished_everywhere() -> bool:
        return all(
            any(e["validator"] == "v4" for e in testnet.events(node, kind))
            for node in HONEST
            for kind in ("slashed", "tombstoned")
        )

    wait_for(punished_everywhere, "v4 slashed and tombstoned in every honest node's log", testnet)
    slashes = {
        node: [e for e in testnet.events(node, "slashed") if e["validator"] == "v4"] for node in HONEST
    }
    first = slashes["v1"][0]
    assert first["amount"] > 0 and first["reason"].startswith("double sign at height")
    assert first["operator_loss"] + first["delegator_loss"] + first["unbonding_loss"] == first["amount"]
    for node, events in slashes.items():
        assert len(events) == 1, f"{node} slashed v4 {len(events)} times"  # one offence, punished once
        assert {k: events[0][k] for k in ("height", "amount", "reason")} == {
            k: first[k] for k in ("height", "amount", "reason")
        }, node
    pool = testnet.query("pool", "v4")["pool"]
    assert pool["status"] == "tombstoned" and pool["stake"] == 1000 - first["amount"]
    unjail = testnet.posnet(
        "tx", "unjail", "--key", testnet.layout.key("v4"), "--dir", testnet.directory, check=1
    )
    assert "rejected, not sent: pool is tombstoned" in unjail.stdout


# ------------------------------------------------------------------ (b) delegation by transaction


def test_a_funded_account_delegates_and_undelegates_into_unbonding(testnet: RunningTestnet) -> None:
    net, me = testnet, address(testnet, "delegator.json")
    before = net.query("balance", "delegator.json")
    assert (before["balance"], before["nonce"], before["staked"]) == (5000, 0, 0)

    delegated = net.posnet("tx", "delegate", "v1", 1200, "--key", "delegator.json", "--dir", net.directory)
    assert "delegate (nonce 0" in delegated.stdout and "applied at height" in delegated.stdout
    shown = net.posnet("query", "delegations", "delegator.json", "--dir", net.directory).stdout
    assert any(line.split()[:3] == ["v1", "delegation", "1200"] for line in shown.splitlines()), shown
    stakes = net.query("delegations", me)["delegations"]
    assert [(s["pool_name"], s["amount"]) for s in stakes] == [("v1", 1200)]
    v1 = net.query("pool", "v1")["pool"]
    assert v1["delegations"] == [{"account": me, "shares": 1200, "amount": 1200}] and v1["stake"] == 2200

    undelegated = net.posnet(
        "tx", "undelegate", "v1", 200, "--key", "delegator.json", "--dir", net.directory, "--json"
    )
    outcome = json.loads(undelegated.stdout)
    assert outcome["status"] == "applied" and outcome["nonce"] == 1
    after = net.query("delegations", me)
    assert [(s["pool_name"], s["amount"]) for s in after["delegations"]] == [("v1", 1000)]
    (entry,) = after["unbonding"]
    assert (entry["pool_name"], entry["amount"]) == ("v1", 200) and entry["release_epoch"] > after["epoch"]
    for node in HONEST:  # every node logged both outcomes with the sender and the tx id
        applied = {e["tx"]: e for e in net.events(node, "tx_applied")}
        assert applied[outcome["tx"]]["type"] == "undelegate" and applied[outcome["tx"]]["account"] == me

    # unbonding ends: the 200 comes back as balance once its epoch arrives
    wait_for(lambda: not net.query("delegations", me)["unbonding"], "the unbonding to be released", net)
    assert any(e["account"] == me and e["amount"] == 200 for e in net.events("v1", "released"))


def test_a_transfer_beyond_the_balance_is_rejected_with_its_reason(testnet: RunningTestnet) -> None:
    net, to = testnet, address(testnet, "delegator.json")
    args = ("--key", "poor.json", "--dir", net.directory)
    refused = net.posnet("tx", "transfer", to, 50, *args, check=1)
    assert "rejected, not sent: insufficient balance: 10 < 50" in refused.stdout

    # sent anyway, every node's mempool refuses it (nobody holds what it cannot pay for), and the user is told
    sent = net.posnet("tx", "transfer", to, 50, *args, "--no-check", check=1)
    assert "refused before any block" in sent.stdout and "10 < 50" in sent.stdout, sent.stdout
    poor = net.query("balance", "poor.json")
    assert (poor["balance"], poor["nonce"]) == (10, 0)  # nothing moved, the nonce is not spent
    for node in HONEST:
        assert any(e["code"] == "unfunded" for e in net.events(node, "tx_refused")), node
        assert not net.events(node, "tx_rejected"), node  # it never reached a block


# ------------------------------------------------------------------ (c) supply is conserved


def test_supply_equals_genesis_plus_issued_minus_slashed(testnet: RunningTestnet) -> None:
    net = testnet
    wait_for(lambda: all(net.events(node, "slashed") for node in HONEST), "v4's slash (burns stake)", net)
    doc = load_genesis(net.layout.genesis)
    genesis_supply = sum(v.stake for v in doc.validators) + sum(a.balance for a in doc.accounts)
    for node in HONEST:
        supply = json.loads(
            net.posnet("query", "supply", "--dir", net.directory, "--node", node, "--json").stdout
        )
        assert supply["genesis_supply"] == genesis_supply == 4 * 1000 + 5000 + 10
        assert supply["issued"] > 0 and supply["slashed"] > 0  # rewards minted, v4's slash burned
        assert supply["total_supply"] == supply["genesis_supply"] + supply["issued"] - supply["slashed"]
        assert supply["liquid"] + supply["staked"] + supply["unbonding"] == supply["total_supply"]
        assert supply["conserved"] is True
        assert [d["pool"] for d in supply["stake_distribution"]] == ["v1", "v2", "v3"]  # v4 is out
    shown = net.posnet("query", "supply", "--dir", net.directory).stdout
    assert "(conservation holds)" in shown
    nakamoto = net.query("nakamoto")
    stakes = [d["stake"] for d in nakamoto["stake_distribution"]]  # largest first
    halting = next(k for k in range(1, len(stakes) + 1) if 3 * sum(stakes[:k]) > sum(stakes))
    assert nakamoto["active_pools"] == 3 and nakamoto["nakamoto_coefficient"] == halting
