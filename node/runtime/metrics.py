"""Prometheus metrics of one node, on their own registry and HTTP port.

One registry per node (not the process-global default) so that several
nodes in one test process, or a node hosting several keys, never mix their
series. Values the runtime learns event by event (heights, rounds, latency,
messages) are pushed into ordinary metrics; counters that already live
elsewhere (admission rejections in the driver, refusals in the signer,
drops in the transport) are read at scrape time by a collector, so there
is exactly one count of each thing and nothing to keep in step.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from http import HTTPStatus
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _DerivedCounters(Collector):
    """Counters owned by other components, read when Prometheus scrapes."""

    def __init__(
        self,
        dropped: Callable[[], Mapping[str, int]],
        signed: Callable[[], int],
        refused: Callable[[], int],
    ) -> None:
        self._dropped = dropped
        self._signed = signed
        self._refused = refused

    def collect(self) -> Iterator[Metric]:
        dropped = CounterMetricFamily(
            "posnet_messages_dropped",
            "Inbound messages dropped, by reason (admission rejections and transport drops)",
            labels=["reason"],
        )
        for reason, count in sorted(_copy(self._dropped).items()):
            dropped.add_metric([reason], count)
        yield dropped
        yield CounterMetricFamily(
            "posnet_signed_messages", "Votes and proposals signed by the hosted keys", value=self._signed()
        )
        yield CounterMetricFamily(
            "posnet_signing_refused",
            "Signatures refused by the durable signing record (would conflict, or could not be recorded)",
            value=self._refused(),
        )


QueryHandler = Callable[[str], tuple[int, Mapping[str, Any]]]
"""A query path -> (HTTP status, JSON-able body); must not raise for a bad query."""


def _with_query(metrics_app: Any, query: QueryHandler) -> Any:
    """A WSGI app: ``/query`` paths to the query handler (GET only), everything else to Prometheus."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path != "/query" and not path.startswith("/query/"):
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            status, body = 405, {"error": "read-only: GET only"}
        else:
            try:
                status, body = query(path)
            except Exception as exc:  # a bug must not take the metrics server down
                status, body = 500, {"error": f"{type(exc).__name__}: {exc}"}
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [data]

    return app


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: a node's output is its JSON-lines log."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _server_class(host: str) -> type[WSGIServer]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Server(ThreadingWSGIServer):
        address_family = family

    return Server


def _copy(source: Callable[[], Mapping[str, int]]) -> dict[str, int]:
    """A snapshot of a mapping another thread may be updating (retry if it changed mid-copy)."""
    for _ in range(5):
        try:
            return dict(source())
        except RuntimeError:
            continue
    return {}


class NodeMetrics:
    """The metrics of one node; ``serve`` exposes them over HTTP (``/metrics``)."""

    def __init__(
        self,
        node: str,
        chain_id: str,
        *,
        dropped: Callable[[], Mapping[str, int]],
        signed: Callable[[], int],
        refused: Callable[[], int],
    ) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        info = Gauge(
            "posnet_node_info",
            "Constant 1, labelled with the node's identity",
            ["node", "chain_id"],
            registry=reg,
        )
        info.labels(node, chain_id).set(1)
        self.height = Gauge(
            "posnet_height", "Height the node is working on (last finalized + 1)", registry=reg
        )
        self.finalized_height = Gauge(
            "posnet_finalized_height", "Height of the last finalized block", registry=reg
        )
        self.round = Gauge("posnet_round", "Current round at the working height", registry=reg)
        self.rounds = Counter(
            "posnet_rounds", "Rounds run to finalize heights (round + 1 per finalized height)", registry=reg
        )
        self.round_timeouts = Counter("posnet_round_timeouts", "Rounds that ended in a timeout", registry=reg)
        self.finality_latency = Histogram(
            "posnet_finality_latency_seconds",
            "From the start of a height here to its finalization here",
            buckets=LATENCY_BUCKETS_S,
            registry=reg,
        )
        self.received = Counter(
            "posnet_messages_received",
            "Messages received from the broker, by channel",
            ["channel"],
            registry=reg,
        )
        self.sent = Counter(
            "posnet_messages_sent", "Messages handed to the transport, by channel", ["channel"], registry=reg
        )
        self.peers_online = Gauge(
            "posnet_peers_online", "Other nodes whose latest retained status says online", registry=reg
        )
        self.penalties = Counter(
            "posnet_penalties",
            "Penalties the chain applied, as this node applied them (slashed, jailed, tombstoned, unjailed)",
            ["kind"],
            registry=reg,
        )
        self.broker_connected = Gauge(
            "posnet_broker_connected", "1 while connected to the broker", registry=reg
        )
        reg.register(_DerivedCounters(dropped, signed, refused))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def serve(self, port: int, host: str = "0.0.0.0", query: QueryHandler | None = None) -> None:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread (OSError if the port is taken).

        With ``query``, paths under ``/query/`` are answered by it as JSON
        (the node's read-only query endpoint, see ``node.core.query``) on the same
        port, so a node exposes one HTTP port whatever it serves.
        """
        if query is None:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
            return
        app = _with_query(make_wsgi_app(self.registry), query)
        server = make_server(host, port, app, _server_class(host), handler_class=_QuietHandler)
        self._thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
        self._server = server
        self._thread.start()

    @property
    def port(self) -> int | None:
        """The port actually bound (useful when serving on port 0 in tests)."""
        return None if self._server is None else int(self._server.server_address[1])

    def close(self) -> None:
        """Stop the HTTP server, if any (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
