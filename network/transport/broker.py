"""Start, stop and restart an MQTT broker as a child process.

Validators talk through one MQTT broker. Tests and the testnet orchestrator need to
kill -9 it and bring it back on the same port to see how the network copes, so a
broker is always a subprocess, never a task inside the caller's event loop:

- ``mosquitto`` (fast, C) when the binary is installed, configured from a file we
  write into the broker's work directory;
- ``embedded``: amqtt, a pure-Python asyncio broker shipped as a dependency, run as
  ``python -m network.transport.broker --host H --port N`` so it works wherever posnet is
  installed.

What amqtt 0.12 does and does not do, as observed against this code:

- MQTT 3.1.1 only: an MQTT 5 CONNECT is refused ("unsupported protocol version").
- Retained messages and last-will (including retained wills) work.
- It never enforces keepalive, so a frozen (SIGSTOPped) client is not timed out and
  its will fires only when its TCP connection really breaks. mosquitto fires it
  after 1.5 x keepalive.
- A clean DISCONNECT that crosses a message the broker is still writing to that
  client is taken for an abnormal close and fires the will; the transport
  unsubscribes before disconnecting to avoid that.
- A new client is also sent retained messages matching other clients'
  subscriptions; the transport drops what it did not subscribe to.
- A will can overtake a publish the dying client sent just before it died.

Readiness is not guessed from a sleep: ``BrokerProcess.start`` sends a real MQTT
CONNECT and waits for the CONNACK.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlsplit

from network.transport.framing import CONNECT, encode_packet, mqtt_string
from network.transport.ports import free_port

BrokerKind = Literal["auto", "mosquitto", "embedded"]

DEFAULT_MQTT_PORT = 1883
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
MAX_PAYLOAD_BYTES = 1 << 20
# Room for the fixed header, topic and MQTT 5 properties on top of a maximal payload.
MAX_PACKET_BYTES = MAX_PAYLOAD_BYTES + 64 * 1024
_MOSQUITTO_FALLBACK = Path("/usr/sbin/mosquitto")
_REPO_ROOT = Path(__file__).resolve().parents[2]


class BrokerStartError(RuntimeError):
    """The broker process did not come up (bad config, port taken, crashed, too slow)."""


def mosquitto_path() -> str | None:
    """Where the mosquitto binary is, if anywhere.

    Debian installs it in /usr/sbin, which is often not on an unprivileged PATH.
    """
    found = shutil.which("mosquitto")
    if found:
        return found
    if _MOSQUITTO_FALLBACK.is_file() and os.access(_MOSQUITTO_FALLBACK, os.X_OK):
        return str(_MOSQUITTO_FALLBACK)
    return None


def mosquitto_available() -> bool:
    """True when a mosquitto binary can be started (``auto`` then prefers it)."""
    return mosquitto_path() is not None


def parse_broker_url(url: str) -> tuple[str, int]:
    """Split ``mqtt://host:port`` into ``(host, port)``.

    Raises ValueError naming the part that is wrong, because a broker URL usually
    comes from a command line or a config file and a bare "invalid URL" helps nobody.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"broker URL must be a non-empty string like mqtt://127.0.0.1:1883, got {url!r}")
    parts = urlsplit(url.strip())
    if parts.scheme != "mqtt":
        raise ValueError(
            f"broker URL {url!r}: scheme must be 'mqtt' (as in mqtt://127.0.0.1:1883), "
            f"got {parts.scheme or 'none'!r}"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"broker URL {url!r}: unexpected path, query or fragment after host:port")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"broker URL {url!r}: credentials are not supported")
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r}: host is missing")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"broker URL {url!r}: port must be an integer in 1..65535") from None
    if port is None:
        raise ValueError(f"broker URL {url!r}: port is missing (use mqtt://host:port)")
    if port == 0:
        raise ValueError(f"broker URL {url!r}: port 0 is not a connectable port")
    return parts.hostname, port


# --- readiness probe -------------------------------------------------------------


def _connect_packet(client_id: str) -> bytes:
    """A minimal MQTT 3.1.1 CONNECT: clean session, no will, no credentials."""
    body = mqtt_string("MQTT") + bytes([4, 0x02]) + (10).to_bytes(2, "big")
    body += mqtt_string(client_id)
    return encode_packet(CONNECT << 4, body)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection during the handshake")
        data += chunk
    return data


def mqtt_handshake_ok(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when ``host:port`` answers an MQTT CONNECT with an accepting CONNACK.

    A listening socket alone is not enough: amqtt binds before its plugins are up,
    and we want "a client can connect now", which is what callers wait for.
    """
    client_id = f"posnet-probe-{uuid.uuid4().hex[:12]}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_connect_packet(client_id))
            connack = _recv_exact(sock, 4)
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")  # DISCONNECT, so no will and no noise
            return connack[0] == 0x20 and connack[3] == 0
    except (OSError, ConnectionError):
        return False


def _bind_problem(host: str, port: int) -> str | None:
    """Why a broker could not listen on ``host:port``, or None if it could.

    Checked before spawning because otherwise a port held by another broker would
    answer our readiness probe and look like success. SO_REUSEADDR as the brokers
    use it, so TIME_WAIT leftovers of a killed broker do not count as "in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"{host}:{port} is already in use by another process"
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


# --- the process -------------------------------------------------------------------


MOSQUITTO_LIMITS_AND_LOGS: tuple[str, ...] = (
    "persistence false",
    "set_tcp_nodelay true",
    "max_inflight_messages 1000",
    "max_queued_messages 100000",
    "max_queued_bytes 0",
    f"max_packet_size {MAX_PACKET_BYTES}",
    "log_dest stderr",
    "log_type error",
    "log_type warning",
    "log_type notice",
    "log_type information",
    "connection_messages true",
    "log_timestamp true",
)
"""What every posnet mosquitto sets, local or one host's of several: queues and packets past the
protocol's own limits, and a log the tests and operators can read."""


def mosquitto_config(host: str, port: int) -> str:
    """mosquitto.conf for one posnet broker.

    Limits are generous: 16 validators exchanging thousands of small messages a
    second must never hit a broker queue limit before the protocol's own limits.
    """
    return "\n".join(
        [
            "# written by posnet (network/transport/broker.py); regenerated on every start",
            "per_listener_settings false",
            f"listener {port} {host}",
            "allow_anonymous true",
            "sys_interval 0",
            "max_keepalive 600",
            *MOSQUITTO_LIMITS_AND_LOGS,
            "",
        ]
    )


@dataclass
class BrokerProcess:
    """One broker child process, restartable on the same port.

    ``workdir`` holds its config (mosquitto) and is where it runs; ``log_path``
    collects stdout/stderr across restarts, so a failure can be diagnosed after a
    kill -9 / restart cycle.
    """

    kind: str
    host: str
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    start_timeout: float = START_TIMEOUT_S
    log_level: str = "WARNING"  # amqtt's Python log level; mosquitto's is fixed in its config
    remove_workdir: bool = False  # set by start_broker when it made a temporary workdir
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The URL clients connect to, e.g. ``mqtt://127.0.0.1:18830``."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        """The argv that runs this broker (written config included for mosquitto)."""
        if self.kind == "mosquitto":
            binary = mosquitto_path()
            if binary is None:
                raise BrokerStartError("mosquitto is not installed (not on PATH nor /usr/sbin)")
            config = self.workdir / "mosquitto.conf"
            config.write_text(mosquitto_config(self.host, self.port))
            return [binary, "-c", str(config)]
        if self.kind == "embedded":
            return [
                sys.executable,
                "-m",
                "network.transport.broker",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--log-level",
                self.log_level,
            ]
        raise BrokerStartError(f"unknown broker kind {self.kind!r}")

    def start(self) -> None:
        """(Re)start the broker on ``self.port`` and wait until it accepts CONNECT.

        Raises BrokerStartError with the log tail if the port is taken, the process
        exits, or no CONNACK arrives within ``start_timeout`` seconds.
        """
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        problem = _bind_problem(self.host, self.port)
        if problem is not None:
            raise BrokerStartError(f"{self.kind} broker: {problem}")
        self.process = self._spawn(self.command())
        self._wait_ready()

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        self._close_log()
        if self.log_path is None:
            self.log_path = self.workdir / f"{self.kind}.log"
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        return subprocess.Popen(
            argv,
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise BrokerStartError(self._failure(f"exited with code {self._returncode()}"))
            if mqtt_handshake_ok(self.host, self.port, timeout=1.0) and self.running:
                return
            time.sleep(0.05)
        self.stop(kill=True)
        raise BrokerStartError(
            self._failure(f"did not accept an MQTT CONNECT within {self.start_timeout:.0f} s")
        )

    def _returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def _failure(self, what: str) -> str:
        return (
            f"{self.kind} broker on {self.host}:{self.port} {what}; log {self.log_path}:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the broker log, for error messages."""
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:]) or "(empty log)"

    def stop(self, kill: bool = False) -> None:
        """Stop the broker: SIGTERM (or SIGKILL when ``kill``), then wait for it.

        A broker ignoring SIGTERM for ``STOP_TIMEOUT_S`` is killed. Idempotent.
        """
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        self._close_log()

    def restart(self) -> None:
        """Stop gracefully (if still running) and start again on the same port."""
        self.stop()
        self.start()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> BrokerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop; also delete the workdir if it was a temporary one made for us."""
        self.stop()
        if self.remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def resolve_kind(kind: str) -> str:
    """Map ``auto`` to a concrete kind; reject unknown kinds with the valid choices."""
    if kind == "auto":
        return "mosquitto" if mosquitto_available() else "embedded"
    if kind not in ("mosquitto", "embedded"):
        raise ValueError(f"broker kind must be 'auto', 'mosquitto' or 'embedded', got {kind!r}")
    if kind == "mosquitto" and not mosquitto_available():
        raise BrokerStartError("broker kind 'mosquitto' requested but mosquitto is not installed")
    return kind


def start_broker(
    kind: BrokerKind = "auto",
    host: str = "127.0.0.1",
    port: int = 0,
    workdir: Path | None = None,
    log_path: Path | None = None,
    *,
    url: str | None = None,
    log_level: str = "WARNING",
) -> BrokerProcess:
    """Start a broker subprocess and return it once it accepts MQTT connections.

    ``port=0`` picks a free port. ``url`` (``mqtt://host:port``) is an alternative to
    host/port for callers that hold a broker URL. ``workdir`` defaults to a fresh
    temporary directory (deleted on leaving ``with start_broker(...)``, unless
    ``log_path`` points into it). ``log_level`` is amqtt's Python log level (embedded only;
    mosquitto always logs connections, warnings and errors).
    """
    if url is not None:
        if port != 0:
            raise ValueError("start_broker: give either url or port, not both")
        host, port = parse_broker_url(url)
    if not 0 <= port <= 65535:
        raise ValueError(f"start_broker: port must be in 0..65535, got {port}")
    concrete = resolve_kind(kind)
    temporary = workdir is None
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix=f"posnet-{concrete}-"))
    broker = BrokerProcess(
        kind=concrete,
        host=host,
        port=port or free_port(host),
        workdir=Path(workdir),
        log_path=log_path,
        log_level=log_level,
        remove_workdir=temporary and log_path is None,
    )
    broker.start()
    return broker


# --- the embedded broker (runs in the child process) -----------------------------------


def embedded_config(host: str, port: int) -> dict[str, Any]:
    """amqtt BrokerConfig dict: one TCP listener, anonymous clients, no $SYS topics.

    Giving ``plugins`` explicitly replaces amqtt's defaults, which add packet/event
    logging and a $SYS publisher we do not want.
    """
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 0}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


async def serve_embedded(host: str, port: int) -> None:
    """Run amqtt until SIGTERM or SIGINT, then shut it down cleanly."""
    from amqtt.broker import Broker  # local: only the child process needs amqtt

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    broker = Broker(embedded_config(host, port))
    await broker.start()
    print(f"posnet embedded broker (amqtt) listening on {host}:{port}", file=sys.stderr, flush=True)
    await stop.wait()
    await broker.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m network.transport.broker``: run the embedded amqtt broker."""
    parser = argparse.ArgumentParser(description="posnet embedded MQTT 3.1.1 broker (amqtt)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_MQTT_PORT, help="TCP port")
    parser.add_argument("--log-level", default="WARNING", help="Python log level for amqtt (default WARNING)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("transitions").setLevel(logging.WARNING)
    try:
        asyncio.run(serve_embedded(args.host, args.port))
    except Exception as exc:  # the parent reads this from the log
        logging.getLogger("posnet.broker").error("embedded broker failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
