"""Fixtures every test module can use without importing them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from network.transport.broker import BrokerProcess, mosquitto_available, start_broker


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A real mosquitto on a free loopback port with its own config, killed after the test."""
    if not mosquitto_available():
        pytest.skip("mosquitto not installed")
    broker = start_broker("mosquitto", workdir=tmp_path / "mosquitto")
    try:
        yield broker
    finally:
        broker.stop(kill=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """An integration test is always slow: marking it ``integration`` keeps it out of ``-m "not slow"`` too.

    One marker per test then says what it needs, and the quick run cannot forget a real-process test.
    """
    for item in items:
        if item.get_closest_marker("integration") is not None:
            item.add_marker(pytest.mark.slow)
