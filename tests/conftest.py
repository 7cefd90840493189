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
