"""The operators' view: the Grafana dashboard, the compose monitor profile, and a real Prometheus scraping a testnet."""

from __future__ import annotations

import json
import re
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from network.testnet.monitor import read_prometheus, scrape_config
from network.testnet.processes import process_state
from network.transport.broker import mosquitto_available
from node.runtime.metrics import NodeMetrics
from tests.support.user_testnet import REPO_ROOT, UserTestnet, running_testnet
from tests.test_compose_files import gen_compose

DOCKER = REPO_ROOT / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "posnet.json"
NAMES = ("v1", "v2", "v3", "v4")


def exported_metric_names() -> set[str]:
    """Every sample name a node's /metrics serves (counters as NAME_total, histograms as _bucket/_sum/_count)."""
    metrics = NodeMetrics("v1", "chain", dropped=lambda: {"stale": 1}, signed=lambda: 0, refused=lambda: 0)
    metrics.received.labels("consensus").inc()
    metrics.sent.labels("consensus").inc()
    metrics.penalties.labels("slashed").inc()
    text = generate_latest(metrics.registry).decode()
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")
    }


def dashboard_queries() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in doc["panels"] for target in panel["targets"]]


def metric_names(exprs: list[str]) -> set[str]:
    """The posnet metrics PromQL expressions name."""
    return {name for expr in exprs for name in re.findall(r"\bposnet_[a-z_]+", expr)}


def test_every_dashboard_query_names_metrics_the_nodes_export() -> None:
    exported = exported_metric_names()
    named = metric_names(dashboard_queries())
    assert named and named <= exported, f"not exported: {sorted(named - exported)}"
    wanted = {
        "posnet_finalized_height", "posnet_finality_latency_seconds_bucket", "posnet_rounds_total",
        "posnet_round_timeouts_total", "posnet_messages_dropped_total", "posnet_peers_online",
        "posnet_penalties_total",
    }  # fmt: skip
    assert wanted <= named, f"the dashboard shows nothing of {sorted(wanted - named)}"


def test_the_checker_would_notice_a_query_for_a_metric_nobody_exports() -> None:
    typo = ["rate(posnet_finalised_height[1m])", "posnet_rounds_total"]
    assert metric_names(typo) - exported_metric_names() == {"posnet_finalised_height"}


def test_grafana_provisions_the_dashboards_data_source() -> None:
    source = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = source["datasources"][0]["uid"]
    doc = json.loads(DASHBOARD.read_text())
    assert {panel["datasource"]["uid"] for panel in doc["panels"]} == {uid}
    assert source["datasources"][0]["url"] == "http://prometheus:9090"


def test_the_monitor_profile_scrapes_every_validator_from_variables_images() -> None:
    compose = yaml.safe_load(gen_compose.render(4))
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitor"]
        assert services[name]["image"].startswith("${") and ":-" in services[name]["image"]
    assert (DOCKER / "prometheus" / "prometheus.yml").read_text() == gen_compose.render_prometheus(4)
    config = yaml.safe_load(gen_compose.render_prometheus(4))
    targets = [t for group in config["scrape_configs"][0]["static_configs"] for t in group["targets"]]
    assert targets == [f"{name}:9100" for name in NAMES]


def test_the_process_testnets_scrape_config_names_every_node() -> None:
    config = yaml.safe_load(scrape_config({"v2": 9102, "v1": 9101}))
    groups = config["scrape_configs"][0]["static_configs"]
    assert [(g["targets"], g["labels"]["node"]) for g in groups] == [
        (["127.0.0.1:9101"], "v1"),
        (["127.0.0.1:9102"], "v2"),
    ]


# ------------------------------------------------------------------ a real Prometheus


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserTestnet]:
    if shutil.which("prometheus") is None or not mosquitto_available():
        pytest.skip("needs Debian's prometheus and mosquitto packages")
    root = tmp_path_factory.mktemp("prometheus")
    up = ["--prometheus", "--slot-ms", "200", "--broker", "mosquitto", "--quiet"]
    with running_testnet(root, root / "net", NAMES, up, wait_s=120) as running:
        yield running


def prometheus_query(url: str, query: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(
        f"{url}/api/v1/query?{urllib.parse.urlencode({'query': query})}", timeout=5
    ) as answer:
        body = json.load(answer)
    assert body["status"] == "success"
    return body["data"]["result"]  # type: ignore[no-any-return]


@pytest.mark.broker
@pytest.mark.integration
def test_prometheus_scrapes_every_nodes_finalized_height(net: UserTestnet) -> None:
    net.wait_for(lambda: read_prometheus(net.layout) is not None, "the testnet to start Prometheus")
    info = read_prometheus(net.layout)
    assert info is not None
    heights: dict[str, float] = {}

    def every_node_scraped() -> bool:
        try:
            results = prometheus_query(info.url, "posnet_finalized_height")
        except OSError:
            return False  # Prometheus still starting
        heights.update({r["metric"]["node"]: float(r["value"][1]) for r in results})
        return set(heights) == set(NAMES) and min(heights.values()) >= 1

    net.wait_for(every_node_scraped, "Prometheus to have every node's posnet_finalized_height")
    assert process_state(info.pid, info.command) == "alive"
    net.process.send_signal(15)
    net.process.wait(timeout=90)
    assert process_state(info.pid, info.command) == "dead"  # stopped with the testnet
    assert not (net.layout.root / "prometheus" / "prometheus.json").exists()
