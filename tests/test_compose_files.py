"""The docker/ files: compose files valid against the compose-spec schema and
consistent with each other, the Dockerfile's contract, and the helper scripts
(init, broker password file, healthcheck) run for real on the host.

Fast and engine-free: no container engine is needed; docker/smoke.sh is the
test that builds the image and runs the testnet in containers.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from network.transport.broker import free_port
from node.core.genesis import validator_names

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yml"
FAULTS = sorted((DOCKER / "faults").glob("*.yml"))
SPLIT = DOCKER / "split" / "compose.yml"
SCHEMA_PATH = REPO.parent / "shared" / "schemas" / "compose-spec.json"
DEFAULT_NAMES = ["v1", "v2", "v3", "v4"]


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_compose", DOCKER / "gen-compose.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_compose = _load_generator()


@pytest.fixture(scope="module")
def schema_validator() -> jsonschema.Draft7Validator:
    if not SCHEMA_PATH.exists():
        pytest.skip(f"compose-spec schema not found at {SCHEMA_PATH}")
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR:-default} / ${VAR} interpolation, as the engine does before validating."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if isinstance(value, str):
        pattern = r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}"
        return re.sub(pattern, lambda m: env.get(m.group(1)) or m.group(2) or "", value)
    return value


def _errors(validator: jsonschema.Draft7Validator, doc: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _validators(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in doc["services"].items() if re.fullmatch(r"v\d+", name)}


def _merged_command(base: dict[str, Any], overlay: dict[str, Any], service: str) -> list[str]:
    return (overlay["services"].get(service) or {}).get("command", base["services"][service]["command"])


# ------------------------------------------------------------------ schema


@pytest.mark.parametrize("path", [COMPOSE, *FAULTS, SPLIT], ids=lambda p: str(p.relative_to(DOCKER)))
def test_compose_file_is_valid_against_the_compose_spec(
    path: Path, schema_validator: jsonschema.Draft7Validator
) -> None:
    doc = yaml.safe_load(path.read_text())
    assert _errors(schema_validator, doc) == []
    # the engine validates after interpolation: defaults and overrides must both fit
    assert _errors(schema_validator, _interpolate(doc, {})) == []
    env = {"BASE_IMAGE": "localhost/base:1", "MQTT_IMAGE": "localhost/base:1", "PIP_NO_INDEX": "1"}
    assert _errors(schema_validator, _interpolate(doc, env)) == []


def test_schema_check_catches_a_broken_file(schema_validator: jsonschema.Draft7Validator) -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    doc["services"]["v1"]["depends_on"]["init"]["condition"] = "service_finished"
    doc["services"]["v2"]["healthchek"] = doc["services"]["v2"].pop("healthcheck")
    errors = _errors(schema_validator, doc)
    assert any(e.startswith("services/v1/depends_on: ") for e in errors)
    assert any(e.startswith("services/v2: 'healthchek' does not match") for e in errors)


@pytest.mark.parametrize("n", [1, 7])
def test_generated_files_for_other_sizes_are_valid(
    n: int, schema_validator: jsonschema.Draft7Validator
) -> None:
    doc = yaml.safe_load(gen_compose.render(n))
    assert _errors(schema_validator, _interpolate(doc, {})) == []
    names = [f"v{i}" for i in range(1, n + 1)]
    assert list(_validators(doc)) == names
    assert doc["name"] == f"posnet-n{n}"  # its own project, so its own volumes
    assert doc["services"]["init"]["environment"]["POSNET_VALIDATORS"] == " ".join(names)
    published = [svc["ports"][0].split(":")[1] for svc in _validators(doc).values()]
    assert len(set(published)) == n


# ------------------------------------------------------------------ contents


def test_compose_yml_is_the_generator_output_for_four_validators() -> None:
    assert COMPOSE.read_text() == gen_compose.render(4), (
        "docker/compose.yml differs from docker/gen-compose.py's output: regenerate it with "
        "python3 docker/gen-compose.py -o docker/compose.yml"
    )


def test_images_come_from_variables_with_real_defaults(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("broker", "broker-init"):
        assert services[name]["image"] == "${MQTT_IMAGE:-eclipse-mosquitto:2}"
    for name in ("init", *DEFAULT_NAMES):
        build = services[name]["build"]
        assert build["args"]["BASE_IMAGE"] == "${BASE_IMAGE:-python:3.12-slim}"
        assert set(build["args"]) >= {"PIP_NO_INDEX", "PIP_FIND_LINKS"}
        assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
        assert services[name]["image"] == services["init"]["image"]


def test_validators_wait_for_init_and_a_healthy_broker(compose: dict[str, Any]) -> None:
    validators = _validators(compose)
    assert list(validators) == DEFAULT_NAMES
    for name, svc in validators.items():
        assert svc["depends_on"] == {
            "init": {"condition": "service_completed_successfully"},
            "broker": {"condition": "service_healthy"},
        }
        assert svc["healthcheck"]["test"][:2] == ["CMD", "posnet-healthcheck"]
        command = svc["command"]
        assert command[:2] == ["node", "run"]
        assert f"--name={name}" in command
        assert f"--home=/posnet/nodes/{name}" in command
        assert f"--mqtt-username={name}" in command
        assert f"--mqtt-password-file=/posnet/nodes/{name}/mqtt-password" in command
        metrics = next(a.split("=")[1] for a in command if a.startswith("--metrics-port="))
        assert svc["ports"] == [f"127.0.0.1:{9100 + int(name[1:])}:{metrics}"]
    services = compose["services"]
    assert services["broker-init"]["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
    assert services["broker"]["depends_on"] == {
        "broker-init": {"condition": "service_completed_successfully"}
    }
    assert "healthcheck" in services["broker"]


def test_broker_requires_the_password_file_that_broker_init_writes(compose: dict[str, Any]) -> None:
    conf = (DOCKER / "mosquitto" / "mosquitto.conf").read_text()
    assert re.search(r"^allow_anonymous false$", conf, re.M)
    password_file = re.search(r"^password_file (\S+)$", conf, re.M).group(1)  # type: ignore[union-attr]
    broker, broker_init = compose["services"]["broker"], compose["services"]["broker-init"]
    conf_mount = next(v for v in broker["volumes"] if v.startswith("./mosquitto/mosquitto.conf:"))
    assert broker["command"] == ["mosquitto", "-c", conf_mount.split(":")[1]]
    auth_dir = next(v.split(":")[1] for v in broker["volumes"] if v.startswith("broker-auth:"))
    assert os.path.dirname(password_file) == auth_dir
    init_auth = next(v.split(":")[1] for v in broker_init["volumes"] if v.startswith("broker-auth:"))
    assert os.path.dirname(broker_init["environment"]["MOSQUITTO_PASSWORD_FILE"]) == init_auth
    for svc in compose["services"].values():
        for volume in svc.get("volumes", []):
            if volume.startswith("./"):
                assert (DOCKER / volume.split(":")[0]).exists(), volume


@pytest.mark.parametrize("overlay", FAULTS, ids=lambda p: p.stem)
def test_fault_overlays_change_only_v4_behaviour(overlay: Path, compose: dict[str, Any]) -> None:
    doc = yaml.safe_load(overlay.read_text())
    assert list(doc["services"]) == ["v4"]
    assert list(doc["services"]["v4"]) == ["command"]
    assert _merged_command(compose, doc, "v4") == [
        *compose["services"]["v4"]["command"],
        f"--behaviour={overlay.stem}",
    ]


def test_split_overlay_puts_two_validators_behind_a_bridged_second_broker(compose: dict[str, Any]) -> None:
    split = yaml.safe_load(SPLIT.read_text())
    services = split["services"]
    sides = {name: services[name]["networks"] for name in ("broker", "broker-b", *DEFAULT_NAMES)}
    assert sides == {
        "broker": ["side-a"],
        "broker-b": ["side-a", "side-b"],
        "v1": ["side-a"],
        "v2": ["side-a"],
        "v3": ["side-b"],
        "v4": ["side-b"],
    }
    for name in ("v3", "v4"):
        assert _merged_command(compose, split, name) == [
            "--broker=mqtt://broker-b:1883" if arg.startswith("--broker=") else arg
            for arg in compose["services"][name]["command"]
        ]
        assert services[name]["depends_on"] == {"broker-b": {"condition": "service_healthy"}}
    assert "bridge" in services["init"]["environment"]["POSNET_BROKER_USERS"].split()
    broker_b = services["broker-b"]
    assert broker_b["image"] == compose["services"]["broker"]["image"]
    assert broker_b["healthcheck"] == compose["services"]["broker"]["healthcheck"]
    for volume in broker_b["volumes"]:
        if volume.startswith("./"):
            assert (DOCKER / volume.split(":")[0]).exists(), volume
    assert broker_b["entrypoint"][-1] in {v.split(":")[1] for v in broker_b["volumes"]}


def test_dockerfile_contract() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.12-slim$", text, re.M)
    for arg in ("PIP_NO_INDEX", "PIP_FIND_LINKS"):
        assert re.search(rf"^ARG {arg}=?$", text, re.M)
        assert re.search(rf"\b{arg}=\$\{{{arg}\}}", text)  # passed to pip as its environment
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) >= 2, "multi-stage build"
    final = stages[-1]
    assert "COPY --from=builder /opt/posnet /opt/posnet" in final
    user = re.findall(r"^USER (\S+)$", final, re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["posnet"\]$', final, re.M)


def test_every_copied_file_passes_dockerignore() -> None:
    """A COPY source left out of .dockerignore's allow list breaks the build only at build time."""
    allowed = [
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    text = (DOCKER / "Dockerfile").read_text()
    sources = [
        src.rstrip("/")
        for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M)
        for src in line.split()[:-1]
    ]
    assert sources
    for src in sources:
        assert (REPO / src).exists(), src
        assert any(src == a or src.startswith(a + "/") for a in allowed), (
            f"{src} is excluded by .dockerignore"
        )


# ------------------------------------------------------------------ scripts, run for real


@pytest.fixture
def posnet_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose `posnet` runs this checkout and whose `python3` is the tests' own environment.

    The scripts call `python3` and `posnet` by name, as in the image, where
    the venv's bin directory is first on PATH. Here the directory of
    `sys.executable` (the venv's bin, when the tests run in one) comes right
    after the `posnet` wrapper, for the same reason. No link to
    `sys.executable` elsewhere: a venv is found from the path the interpreter
    was started by, not from where a link points, so such a `python3` would be
    the base interpreter, without the project's dependencies.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "posnet"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m network.cli "$@"\n')
    wrapper.chmod(0o755)
    path = [str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]]
    return {**os.environ, "PATH": os.pathsep.join(path), "PYTHONPATH": str(REPO)}


def _dependency_modules() -> list[str]:
    """The import names of the project's runtime dependencies (each one's distribution name, `-` as `_`)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    return [
        re.split(r"[^A-Za-z0-9_.-]", req, maxsplit=1)[0].replace("-", "_")
        for req in pyproject["project"]["dependencies"]
    ]


@pytest.mark.integration
def test_scripts_run_by_the_tests_get_a_python3_with_the_projects_dependencies(
    posnet_path: dict[str, str],
) -> None:
    """A script's `python3` is this very environment, so it imports what the project installs.

    Fails when the `python3` a script finds leaves the tests' environment
    (e.g. a link to the venv's interpreter placed outside the venv): on a
    fresh machine that is the base interpreter, which has none of them.
    """
    modules = _dependency_modules()
    assert {"aiomqtt", "amqtt", "tomli_w", "prometheus_client"} <= set(modules)
    probe = "import sys; import {}; import node.core.genesis; print(sys.prefix)".format(", ".join(modules))
    found = subprocess.run(
        ["sh", "-c", 'python3 -c "$1" && posnet --version', "probe", probe],
        env=posnet_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    prefix, version = found.stdout.splitlines()
    assert prefix == sys.prefix, f"the scripts' python3 runs in {prefix}, the tests in {sys.prefix}"
    assert "version" in version, version  # `posnet` found and runnable too


def _run_init(env: dict[str, str], data: Path, names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(DOCKER / "init.sh")],
        env={
            **env,
            "POSNET_DATA": str(data),
            "POSNET_VALIDATORS": names,
            "POSNET_SLOT_MS": "250",
            "POSNET_BROKER_USERS": "bridge",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def _snapshot(data: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data)): p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file()}


@pytest.mark.integration
def test_init_creates_keys_genesis_and_passwords_once(tmp_path: Path, posnet_path: dict[str, str]) -> None:
    data = tmp_path / "data"
    first = _run_init(posnet_path, data, "v1 v2")
    assert first.returncode == 0, first.stderr
    files = _snapshot(data)
    assert set(files) == {
        "genesis.toml",
        "broker-users/bridge",
        *(f"nodes/{n}/{f}" for n in ("v1", "v2") for f in ("key.json", "mqtt-password")),
    }
    assert (data / "nodes" / "v1" / "key.json").stat().st_mode & 0o077 == 0
    assert (data / "nodes" / "v1" / "mqtt-password").stat().st_mode & 0o077 == 0
    passwords = {files[f"nodes/{n}/mqtt-password"] for n in ("v1", "v2")} | {files["broker-users/bridge"]}
    assert len(passwords) == 3 and all(len(p.strip()) >= 24 for p in passwords)
    genesis = files["genesis.toml"].decode()
    assert 'chain_id = "posnet-compose"' in genesis and "commit_wait_ms = 250" in genesis

    again = _run_init(posnet_path, data, "v1 v2")
    assert again.returncode == 0, again.stderr
    assert "keeping existing genesis" in again.stdout
    assert _snapshot(data) == files

    other = _run_init(posnet_path, data, "v1 v2 v3")
    assert other.returncode != 0
    assert "'v1 v2' but 'v1 v2 v3'" in other.stderr and "down -v" in other.stderr
    assert _snapshot(data)["genesis.toml"] == files["genesis.toml"]


def _mqtt_connect(port: int, username: str | None, password: str | None) -> str:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    if username is not None:
        client.username_pw_set(username, password)
    result: list[str] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: result.append(str(reason))
    client.connect("127.0.0.1", port, keepalive=5)
    deadline = time.monotonic() + 5
    while not result and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    client.disconnect()
    return result[0] if result else "no CONNACK"


@pytest.mark.integration
@pytest.mark.skipif(
    not (shutil.which("mosquitto") and shutil.which("mosquitto_passwd")), reason="mosquitto not installed"
)
def test_broker_config_and_password_file_refuse_anonymous_and_wrong_passwords(tmp_path: Path) -> None:
    nodes, others = tmp_path / "nodes", tmp_path / "broker-users"
    for name, password in (("v1", "pw-one"), ("v2", "pw-two")):
        (nodes / name).mkdir(parents=True)
        (nodes / name / "mqtt-password").write_text(password + "\n")
    others.mkdir()
    (others / "bridge").write_text("pw-bridge\n")
    passwd = tmp_path / "passwd"
    made = subprocess.run(
        ["sh", str(DOCKER / "mosquitto" / "make-passwd.sh")],
        env={
            **os.environ,
            "POSNET_NODES_DIR": str(nodes),
            "POSNET_BROKER_USERS_DIR": str(others),
            "MOSQUITTO_PASSWORD_FILE": str(passwd),
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert made.returncode == 0, made.stderr
    lines = passwd.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["v1", "v2", "bridge"]
    assert all("pw-" not in line for line in lines)  # hashed, not plain
    assert passwd.stat().st_mode & 0o077 == 0

    port = free_port()
    conf = (DOCKER / "mosquitto" / "mosquitto.conf").read_text()
    conf, n_listener = re.subn(r"^listener 1883$", f"listener {port} 127.0.0.1", conf, flags=re.M)
    conf, n_passwd = re.subn(r"^password_file .*$", f"password_file {passwd}", conf, flags=re.M)
    assert n_listener == n_passwd == 1
    # started as root, mosquitto would drop to its own user, who cannot enter pytest's tmp_path
    conf += f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
    (tmp_path / "mosquitto.conf").write_text(conf)
    broker = subprocess.Popen(
        ["mosquitto", "-c", str(tmp_path / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert broker.poll() is None, broker.stderr.read()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "mosquitto did not start listening"
                time.sleep(0.05)
        assert _mqtt_connect(port, "v1", "pw-one") == "Success"
        assert _mqtt_connect(port, "v2", "pw-two") == "Success"
        assert _mqtt_connect(port, "bridge", "pw-bridge") == "Success"
        assert _mqtt_connect(port, None, None) == "Not authorized"
        assert _mqtt_connect(port, "v1", "pw-two") == "Not authorized"
    finally:
        broker.terminate()
        broker.wait(timeout=10)


class _Metrics:
    """A /metrics endpoint on loopback whose finalized height the test sets."""

    def __init__(self) -> None:
        self.height = 0
        metrics = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"# TYPE posnet_finalized_height gauge\nposnet_finalized_height {metrics.height}.0\n"
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *_args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def metrics() -> Iterator[_Metrics]:
    server = _Metrics()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _health(tmp_path: Path, port: int, stall: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DOCKER / "healthcheck.py"), str(port), stall],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.integration
def test_healthcheck_wants_metrics_and_a_growing_finalized_height(tmp_path: Path, metrics: _Metrics) -> None:
    metrics.height = 5
    first = _health(tmp_path, metrics.port, "0.5")
    assert (first.returncode, first.stdout.strip()) == (0, "healthy: finalized height 5")
    time.sleep(0.6)
    stuck = _health(tmp_path, metrics.port, "0.5")
    assert stuck.returncode == 1 and "stuck at 5" in stuck.stdout
    metrics.height = 6
    grew = _health(tmp_path, metrics.port, "0.5")
    assert (grew.returncode, grew.stdout.strip()) == (0, "healthy: finalized height 6")
    down = _health(tmp_path, free_port(), "0.5")
    assert down.returncode == 1 and "unhealthy: metrics" in down.stdout


@pytest.mark.parametrize("n", [1, 4, 12])
def test_compose_generator_names_validators_as_every_testnet_does(n: int) -> None:
    """The generator runs on the standard library alone, so it restates the naming rule; they must agree."""
    assert gen_compose.validator_names(n) == validator_names(n)
