"""A testnet across hosts, the pure parts: inventory, certificates, broker configurations, compose files.

No process is started here (tests/test_hosts_tls.py runs the brokers on
loopback, tests/test_hosts_netns.py runs the whole thing in network
namespaces); these check the files every host gets, quickly.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from network.cli import cli
from network.hosts import brokers as hb
from network.hosts.certs import CA_DIR, clients_dir, host_certs_dir, make_inventory_pki
from network.hosts.inventory import InventoryError, load_inventory, parse_inventory
from network.hosts.pki import PkiError, common_name, load_issued
from network.transport import broker as broker_module
from network.transport import mqtt
from network.transport.tls import TlsFileError, TlsFiles, client_context, split_broker_url
from node.core import channels
from tests.test_compose_files import SCHEMA_PATH, _errors, _interpolate, gen_compose

EXAMPLE: dict[str, Any] = {
    "mode": "bridged",
    "hub": {"host": "hub", "port": 8884},
    "hosts": [
        {"name": "alpha", "address": "10.231.0.11", "validators": ["v1", "v2"]},
        {"name": "beta", "address": "beta.example.org", "validators": ["v3"], "broker_port": 9883},
        {"name": "gamma", "address": "10.231.0.13", "validators": ["v4"]},
        {"name": "hub", "address": "10.231.0.10"},
    ],
}


def example(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(EXAMPLE)
    data.update(changes)
    return data


def _toml(data: dict[str, Any]) -> str:
    lines = [f'mode = "{data["mode"]}"', "[hub]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in data["hub"].items()]
    for host in data["hosts"]:
        lines.append("[[hosts]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in host.items()]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ inventory


def test_the_example_inventory_says_who_runs_where() -> None:
    inventory = parse_inventory(EXAMPLE)
    assert inventory.validators == ("v1", "v2", "v3", "v4")
    assert inventory.host_of("v3").name == "beta"
    assert [h.name for h in inventory.validator_hosts()] == ["alpha", "beta", "gamma"]
    assert inventory.broker_for("beta") == ("beta.example.org", 9883)
    assert inventory.runs_broker("alpha") and not inventory.runs_broker("hub")
    shared = parse_inventory(
        example(
            mode="shared",
            hosts=[{k: v for k, v in h.items() if k != "broker_port"} for h in EXAMPLE["hosts"]],
        )
    )
    assert shared.broker_for("alpha") == ("10.231.0.10", 8884) and not shared.runs_broker("alpha")


def _with_host(i: int, **changes: Any) -> dict[str, Any]:
    data = example()
    data["hosts"][i].update(changes)
    return data


BAD = [
    (example(extra=1), "inventory.extra: unknown field"),
    (example(mode="mesh"), "mode: must be one of"),
    (example(hub={"port": 1}), "hub.host: missing"),
    (example(hub={"host": "nowhere"}), "hub.host: 'nowhere' is not one of the hosts"),
    (example(hub={"host": "hub", "port": 70000}), "hub.port: must be a port number"),
    (example(hosts=[]), "hosts: must be a non-empty array"),
    (_with_host(1, adress="x"), "hosts[1].adress: unknown field"),
    (_with_host(1, name="Beta_1"), "hosts[1].name: must be a DNS label"),
    (_with_host(2, name="alpha"), "hosts[2].name: 'alpha' is also hosts[0]"),
    (_with_host(2, validators=["v1"]), "hosts[2].validators: 'v1' also runs on host 'alpha'"),
    (_with_host(0, validators=["v/1"]), "hosts[0].validators[0]: must be a name"),
    (_with_host(0, validators=["bridge-x"]), "hosts[0].validators[0]: names starting 'bridge-'"),
    (_with_host(0, address="not an address!"), "hosts[0].address: 'not an address!' is neither"),
    (_with_host(0, broker_port="8883"), "hosts[0].broker_port: must be a port number"),
    (_with_host(0, validators="v1"), "hosts[0].validators: must be a list"),
    (example(mode="shared"), 'hosts[1].broker_port: only in mode = "bridged"'),
    (example(hub={"host": "alpha", "port": 8883}), "hub.port: 8883 is also the broker_port of host 'alpha'"),
    (example(hosts=[{"name": "hub", "address": "10.0.0.1"}]), "hosts: no host runs a validator"),
    (_with_host(3, name="clients"), "hosts[3].name: 'clients' is taken by the certificate layout"),
    (example(clients="wallet"), "clients: must be a list"),
    (example(clients=["v2"]), "clients[0]: 'v2' is a validator"),
    (example(clients=["w", "w"]), "clients[1]: 'w' is listed twice"),
    (example(clients=["bridge-alpha"]), "clients[0]: names starting 'bridge-'"),
]


def test_a_client_may_send_transactions_and_read_but_never_speak_in_consensus(tmp_path: Path) -> None:
    inventory = parse_inventory(example(clients=["wallet"]))
    for acl in (
        hb.host_acl(inventory, "beta"),
        hb.hub_acl(
            parse_inventory(
                example(
                    mode="shared",
                    clients=["wallet"],
                    hosts=[{k: v for k, v in h.items() if k != "broker_port"} for h in EXAMPLE["hosts"]],
                )
            )
        ),
    ):
        block = acl.split("user wallet\n", 1)[1].split("\n\n", 1)[0].splitlines()
        assert block == ["topic read posnet/#", "topic write posnet/+/tx"]
    make_inventory_pki(inventory, tmp_path)
    cert = x509.load_pem_x509_certificate((clients_dir(tmp_path) / "wallet.crt").read_bytes())
    assert common_name(cert) == "wallet" and (clients_dir(tmp_path) / "ca.crt").exists()


@pytest.mark.parametrize(("data", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_a_bad_inventory_is_one_line_naming_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(data)
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_inventory_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hosts.toml"
    path.write_text("mode = \n")
    with pytest.raises(InventoryError, match=f"^{path}: not valid TOML"):
        load_inventory(path)
    path.write_text(_toml(_with_host(1, name="x_y")))
    with pytest.raises(InventoryError, match=rf"^{path}: hosts\[1\]\.name"):
        load_inventory(path)
    assert load_inventory(_write(tmp_path, EXAMPLE)) == parse_inventory(EXAMPLE)


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "inventory.toml"
    path.write_text(_toml(data))
    return path


# ------------------------------------------------------------------ certificates


def test_every_host_gets_its_certificates_signed_by_one_ca(tmp_path: Path) -> None:
    inventory = parse_inventory(EXAMPLE)
    report = make_inventory_pki(inventory, tmp_path)
    assert report.new_ca
    ca = load_issued(tmp_path / CA_DIR / "ca.crt", tmp_path / CA_DIR / "ca.key").cert
    alpha = host_certs_dir(tmp_path, "alpha")
    assert sorted(p.name for p in alpha.rglob("*.crt")) == [
        "bridge.crt",
        "broker.crt",
        "ca.crt",
        "v1.crt",
        "v2.crt",
    ]
    assert sorted(p.name for p in host_certs_dir(tmp_path, "hub").rglob("*.crt")) == ["ca.crt", "hub.crt"]
    for cert_path in tmp_path.rglob("*.crt"):
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca)
        if cert_path.name != "ca.crt":
            assert cert_path.with_suffix(".key").stat().st_mode & 0o077 == 0, (
                f"{cert_path}: key readable by others"
            )
    v1 = load_issued(alpha / "validators" / "v1.crt", alpha / "validators" / "v1.key").cert
    assert common_name(v1) == "v1"
    assert list(v1.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    broker = x509.load_pem_x509_certificate((host_certs_dir(tmp_path, "beta") / "broker.crt").read_bytes())
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "beta.example.org" in names.get_values_for_type(x509.DNSName)
    assert "broker" in names.get_values_for_type(x509.DNSName)
    hub = x509.load_pem_x509_certificate((host_certs_dir(tmp_path, "hub") / "hub.crt").read_bytes())
    hub_ips = [
        str(a)
        for a in hub.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.IPAddress)
    ]
    assert "10.231.0.10" in hub_ips
    bridge = x509.load_pem_x509_certificate((alpha / "bridge.crt").read_bytes())
    assert common_name(bridge) == "bridge-alpha"


def test_running_pki_again_keeps_what_is_made_and_force_reissues_under_the_same_ca(tmp_path: Path) -> None:
    inventory = parse_inventory(EXAMPLE)
    make_inventory_pki(inventory, tmp_path)
    v1 = host_certs_dir(tmp_path, "alpha") / "validators" / "v1.crt"
    ca, first = (tmp_path / CA_DIR / "ca.crt").read_bytes(), v1.read_bytes()
    again = make_inventory_pki(inventory, tmp_path)
    assert not again.made and not again.new_ca and v1.read_bytes() == first
    forced = make_inventory_pki(inventory, tmp_path, force=True)
    assert (
        not forced.new_ca and v1.read_bytes() != first and (tmp_path / CA_DIR / "ca.crt").read_bytes() == ca
    )


def test_unusable_certificate_files_are_named(tmp_path: Path) -> None:
    make_inventory_pki(parse_inventory(EXAMPLE), tmp_path)
    certs = host_certs_dir(tmp_path, "alpha")
    with pytest.raises(PkiError, match=f"^{certs / 'v1.key'}: does not belong"):
        load_issued(certs / "validators" / "v1.crt", _copy(certs / "validators" / "v2.key", certs / "v1.key"))
    with pytest.raises(PkiError, match=f"^{tmp_path / 'missing.crt'}: not a readable"):
        load_issued(tmp_path / "missing.crt", certs / "broker.key")
    with pytest.raises(TlsFileError, match=f"^CA file {tmp_path / 'nope'}: cannot read"):
        client_context(TlsFiles(tmp_path / "nope"))
    with pytest.raises(TlsFileError, match="cannot be used together"):
        client_context(
            TlsFiles(certs / "ca.crt", certs / "validators" / "v1.crt", certs / "validators" / "v2.key")
        )
    with pytest.raises(TlsFileError, match="give both or neither"):
        TlsFiles(certs / "ca.crt", certs / "validators" / "v1.crt")
    assert client_context(
        TlsFiles(certs / "ca.crt", certs / "validators" / "v1.crt", certs / "validators" / "v1.key")
    )


def _copy(source: Path, target: Path) -> Path:
    target.write_bytes(source.read_bytes())
    return target


def test_broker_urls_say_whether_they_want_tls() -> None:
    assert split_broker_url("mqtts://10.0.0.1:8883") == ("10.0.0.1", 8883, True)
    assert split_broker_url("mqtt://broker:1883") == ("broker", 1883, False)
    with pytest.raises(ValueError, match="mqtts://"):
        split_broker_url("mqtts://host")
    with pytest.raises(ValueError, match="scheme must be 'mqtt'"):
        split_broker_url("https://host:1")


# ------------------------------------------------------------------ broker configurations


def test_the_configurations_restate_the_transport_constants_correctly() -> None:
    assert hb.TOPIC_ROOT == mqtt.TOPIC_ROOT
    config = hb.host_broker_config(parse_inventory(EXAMPLE), "alpha", hb.BrokerPaths("certs", "acl"))
    assert f"max_packet_size {broker_module.MAX_PACKET_BYTES}\n" in config
    written = {
        channels.CONSENSUS,
        channels.VOTES_PREFIX + "+",
        channels.EVIDENCE,
        channels.TX,
        channels.SYNC_REQ,
        channels.SYNC_RESP_PREFIX + "+",
    }
    assert set(hb.SHARED_CHANNELS) == written
    assert hb.STATUS_CHANNEL.format(name="v9") == channels.status_channel("v9")


def test_a_validator_may_write_only_its_own_status_besides_the_shared_channels() -> None:
    acl = hb.host_acl(parse_inventory(EXAMPLE), "alpha").splitlines()
    v1 = acl[acl.index("user v1") : acl.index("user v2")]
    assert "topic write posnet/+/status/v1" in v1
    assert not [line for line in v1 if "status/" in line and "write" in line and not line.endswith("/v1")]
    assert "user v3" not in acl  # beta's validator has no rights on alpha's broker


def test_bridges_export_under_their_own_prefix_and_import_every_other_one() -> None:
    inventory = parse_inventory(EXAMPLE)
    paths = hb.BrokerPaths(certs="/c", acl="/c/acl")
    conf = hb.host_broker_config(inventory, "alpha", paths).splitlines()
    topics = [line for line in conf if line.startswith("topic ")]
    assert topics == [
        'topic posnet/# out 1 "" hosts/alpha/',
        'topic posnet/# in 1 "" hosts/beta/',
        'topic posnet/# in 1 "" hosts/gamma/',
    ]
    assert "address 10.231.0.10:8884" in conf and "require_certificate true" in conf
    assert "use_identity_as_username true" in conf and "allow_anonymous false" in conf
    hub = hb.hub_acl(inventory)
    assert "user bridge-beta\ntopic read hosts/#\ntopic write hosts/beta/#" in hub
    with pytest.raises(ValueError, match="runs no broker"):
        hb.host_broker_config(inventory, "hub", paths)


# ------------------------------------------------------------------ compose files and the CLI


@pytest.fixture(scope="module")
def schema() -> jsonschema.Draft7Validator:
    if not SCHEMA_PATH.exists():
        pytest.skip(f"compose-spec schema not found at {SCHEMA_PATH}")
    return jsonschema.Draft7Validator(json.loads(SCHEMA_PATH.read_text()))


SHARED = example(
    mode="shared",
    hub={"host": "alpha", "port": 8883},
    hosts=[{k: v for k, v in h.items() if k != "broker_port"} for h in EXAMPLE["hosts"]],
)
HUB_ON_ALPHA = example(hub={"host": "alpha", "port": 8884})


@pytest.mark.parametrize(
    "data", [EXAMPLE, SHARED, HUB_ON_ALPHA], ids=["bridged", "shared", "hub-beside-alpha"]
)
def test_every_hosts_compose_file_is_valid_and_complete(
    data: dict[str, Any], tmp_path: Path, schema: jsonschema.Draft7Validator
) -> None:
    inventory_path = _write(tmp_path, data)
    inventory = parse_inventory(data)
    for host in inventory.hosts:
        out = tmp_path / host.name / "compose.yml"
        if not host.validators and host.name != inventory.hub_host:
            continue
        assert (
            gen_compose.main(["--inventory", str(inventory_path), "--host", host.name, "-o", str(out)]) == 0
        )
        doc = yaml.safe_load(out.read_text())
        assert not _errors(schema, _interpolate(doc, {})), _errors(schema, _interpolate(doc, {}))
        services = doc["services"]
        assert set(host.validators) <= set(services)
        assert ("broker" in services) == inventory.runs_broker(host.name)
        assert ("hub" in services) == (host.name == inventory.hub_host)
        for name in host.validators:
            command = services[name]["command"]
            assert any(arg.startswith("--broker=mqtts://") for arg in command)
            assert f"--tls-cert=/posnet-certs/validators/{name}.crt" in command
        for service in ("broker", "hub"):
            if service in services:
                assert (out.parent / service / "mosquitto.conf").is_file() and (
                    out.parent / service / "acl"
                ).is_file()
        if inventory.runs_broker(host.name) and host.name == inventory.hub_host:
            assert "address hub:8884" in (out.parent / "broker" / "mosquitto.conf").read_text()


def test_gen_compose_refuses_an_unknown_host_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory_path = _write(tmp_path, EXAMPLE)
    with pytest.raises(SystemExit) as stop:
        gen_compose.main(
            ["--inventory", str(inventory_path), "--host", "zeta", "-o", str(tmp_path / "c.yml")]
        )
    assert stop.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("host 'zeta' is not in the inventory (hosts: alpha, beta, gamma, hub)")
    )


def test_posnet_hosts_check_and_pki(tmp_path: Path) -> None:
    inventory_path = _write(tmp_path, EXAMPLE)
    runner = CliRunner()
    checked = runner.invoke(cli, ["hosts", "check", "--inventory", str(inventory_path)])
    assert checked.exit_code == 0, checked.output
    assert "beta (beta.example.org); validators v3 dial mqtts://beta.example.org:9883" in checked.output
    made = runner.invoke(
        cli, ["hosts", "pki", "--inventory", str(inventory_path), "--out", str(tmp_path / "d")]
    )
    assert made.exit_code == 0 and "made the CA" in made.output, made.output
    assert (tmp_path / "d" / "gamma" / "certs" / "validators" / "v4.key").is_file()
    bad = tmp_path / "bad.toml"
    bad.write_text(_toml(_with_host(0, port=1)))
    refused = runner.invoke(cli, ["hosts", "pki", "--inventory", str(bad), "--out", str(tmp_path / "e")])
    assert refused.exit_code == 2 and "hosts[0].port: unknown field" in refused.output
