"""`posnet testnet load` against a real testnet: every submitted transaction included or refused with its reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from network.cli import cli
from network.hosts.pki import make_ca
from network.testnet.layout import BrokerInfo, Layout, NodeProc, TestnetState, write_state
from network.testnet.load import LoadError, parse_mix
from network.testnet.setup import prepare
from network.transport.broker import mosquitto_available
from tests.support.user_testnet import UserTestnet, running_testnet

NAMES = ("v1", "v2", "v3", "v4")


def test_a_mix_is_weights_by_kind_and_a_bad_one_is_named() -> None:
    assert parse_mix("transfer=8,delegate=1,overspend=0") == {"transfer": 8, "delegate": 1, "overspend": 0}
    for bad, why in (("swap=1", "KIND=WEIGHT"), ("transfer=x", "integer"), ("transfer=0", "positive")):
        with pytest.raises(LoadError, match=why):
            parse_mix(bad)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserTestnet]:
    if not mosquitto_available():
        pytest.skip("mosquitto not installed")
    root = tmp_path_factory.mktemp("load")
    up = ["--accounts", "6", "--slot-ms", "200", "--broker", "mosquitto", "--quiet"]
    with running_testnet(root, root / "net", NAMES, up, wait_s=90) as running:
        running.wait_for(lambda: min(running.height(n) for n in NAMES) >= 2, "finality")
        yield running


@pytest.mark.broker
@pytest.mark.integration
def test_every_submitted_transaction_is_included_or_refused_with_its_reason(net: UserTestnet) -> None:
    result = net.posnet(
        "testnet", "load", "--dir", net.directory, "--tps", 20, "--duration", 6,
        "--mix", "transfer=5,delegate=2,undelegate=2,overspend=1", "--json",
    )  # fmt: skip
    counts = json.loads(result.stdout)
    assert counts["submitted"] == 120 and counts["unseen"] == 0
    assert counts["included"] + counts["rejected"] == counts["submitted"]
    assert counts["rejected_by_reason"] == {"insufficient balance": counts["by_kind"]["overspend"]}
    assert counts["latency_p50_ms"] is not None and counts["latency_p99_ms"] >= counts["latency_p50_ms"]
    assert len(net.events("v1", "tx_applied")) >= counts["included"]  # the node's own log agrees


@pytest.mark.broker
@pytest.mark.integration
def test_a_testnet_without_funded_accounts_is_refused_in_one_line(net: UserTestnet, tmp_path: Path) -> None:
    empty = tmp_path / "elsewhere"
    result = net.posnet("testnet", "load", "--dir", empty, "--duration", 1, check=2)
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    moved = net.layout.root / "accounts"
    moved.rename(tmp_path / "accounts")
    try:
        result = net.posnet("testnet", "load", "--dir", net.directory, "--duration", 1, check=2)
        assert "--accounts N" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    finally:
        (tmp_path / "accounts").rename(moved)


# ------------------------------------------------------------------ TLS options, as `posnet tx` has them


@pytest.fixture
def recorded_testnet(tmp_path: Path) -> Path:
    """A testnet directory with funded accounts and a testnet.json (nothing runs: refusals come first)."""
    layout = Layout.of(tmp_path / "net")
    doc = prepare(layout, 2, None, None, accounts=2)
    nodes = {"v1": NodeProc("v1", ["gone"], 1), "v2": NodeProc("v2", ["gone"], 2)}
    write_state(layout, TestnetState(doc.chain_id, BrokerInfo("mosquitto", "mqtt://127.0.0.1:1"), nodes))
    return layout.root


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (
            ["--tls-ca", "{ca}"],
            "broker URL 'mqtt://127.0.0.1:1': TLS files given but the URL is not mqtts://",
        ),
        (
            ["--broker", "mqtts://127.0.0.1:1"],
            "broker URL 'mqtts://127.0.0.1:1': mqtts needs a CA file (--tls-ca)",
        ),
        (["--broker", "mqtts://127.0.0.1:1", "--tls-cert", "{ca}"], "--tls-cert and --tls-key need --tls-ca"),
        (["--broker", "mqtts://127.0.0.1:1", "--tls-ca", "{tmp}/nope.pem"], "nope.pem"),
        (["--broker", "carrier-pigeon"], "--broker:"),
    ],
)
def test_load_takes_the_tls_options_of_posnet_tx(
    recorded_testnet: Path, tmp_path: Path, extra: list[str], needle: str
) -> None:
    ca = tmp_path / "ca.pem"
    make_ca().write(ca, tmp_path / "ca.key")
    args = [a.format(ca=ca, tmp=tmp_path) for a in extra]
    result = CliRunner().invoke(
        cli, ["testnet", "load", "--dir", str(recorded_testnet), "--node", "v1", *args]
    )
    assert result.exit_code == 2, result.output
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
