"""Prometheus for a process testnet: a scrape config for every node, and a local Prometheus when installed.

`posnet testnet up --prometheus` writes ``DIR/prometheus/prometheus.yml``
(every node's metrics port, scraped each second) and, when a `prometheus`
binary is on PATH (Debian: ``apt install prometheus``), starts it on a free
loopback port with its data under ``DIR/prometheus/``, records it in
``DIR/prometheus/prometheus.json`` (URL, pid, command) and stops it with the
testnet. Without the binary the config is still written, for a Prometheus
run elsewhere.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from network.testnet.errors import TestnetError
from network.testnet.layout import Layout
from network.testnet.processes import process_state, stop_processes
from network.transport.broker import free_port

SCRAPE_INTERVAL = "1s"
JOB = "posnet"


@dataclass(frozen=True)
class PrometheusInfo:
    url: str
    pid: int
    command: list[str]
    process: subprocess.Popen[bytes] | None = None  # when this process started it


def folder(layout: Layout) -> Path:
    return layout.root / "prometheus"


def scrape_config(targets: Mapping[str, int], host: str = "127.0.0.1") -> str:
    """A prometheus.yml scraping each node's metrics port, labelled with the node's name."""
    lines = [
        "# written by posnet testnet up --prometheus: one target per node",
        "global:",
        f"  scrape_interval: {SCRAPE_INTERVAL}",
        f"  evaluation_interval: {SCRAPE_INTERVAL}",
        "scrape_configs:",
        f"  - job_name: {JOB}",
        "    static_configs:",
    ]
    for name, port in sorted(targets.items()):
        lines += [f"      - targets: ['{host}:{port}']", "        labels:", f"          node: {name}"]
    return "\n".join(lines) + "\n"


def start_prometheus(layout: Layout, targets: Mapping[str, int]) -> tuple[Path, PrometheusInfo | None]:
    """Write the scrape config; start Prometheus if installed. (config path, what runs or None)."""
    home = folder(layout)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "prometheus.yml"
    config.write_text(scrape_config(targets))
    binary = shutil.which("prometheus")
    if binary is None:
        return config, None
    port = free_port()
    command = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with open(home / "prometheus.log", "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    info = PrometheusInfo(f"http://127.0.0.1:{port}", process.pid, command, process)
    (home / "prometheus.json").write_text(json.dumps({"url": info.url, "pid": info.pid, "command": command}))
    return config, info


def read_prometheus(layout: Layout) -> PrometheusInfo | None:
    """The Prometheus a testnet started (None when it started none)."""
    path = folder(layout) / "prometheus.json"
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        return PrometheusInfo(str(raw["url"]), int(raw["pid"]), [str(part) for part in raw["command"]])
    except (ValueError, KeyError, TypeError) as exc:
        raise TestnetError(f"{path}: unreadable ({exc})") from None


def stop_prometheus(layout: Layout, started: PrometheusInfo | None = None) -> None:
    """Stop the testnet's Prometheus if it still runs (also one a killed supervisor left behind)."""
    info = started or read_prometheus(layout)
    if info is not None and process_state(info.pid, info.command) != "dead":
        stop_processes([(info.pid, info.command, info.process)])
    (folder(layout) / "prometheus.json").unlink(missing_ok=True)
