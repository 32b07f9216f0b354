"""Fixtures of the conformance tests: brokers with a given configuration, and the WARNING check.

A case that breaks the protocol on purpose makes the broker log a WARNING ("misbehaving peer");
those tests request ``broker_warns``, which says so and checks that it happened (STYLE rule 12).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from brokerthread import BrokerThread


@pytest.fixture
def start_broker() -> Iterator[Callable[..., BrokerThread]]:
    """``start_broker(**config)`` -> a started BrokerThread, stopped after the test."""
    started: list[BrokerThread] = []

    def start(**config: Any) -> BrokerThread:
        bt = BrokerThread(**config).start()
        started.append(bt)
        return bt

    yield start
    for bt in started:
        bt.stop()


@pytest.fixture
def port(broker_thread: BrokerThread) -> int:
    """The port of a broker with the default configuration."""
    return broker_thread.port


@pytest.fixture
def broker_warns(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """This test expects the broker to log a WARNING about the peer, and checks it did."""
    caplog.set_level(logging.WARNING, logger="wrenmq.broker")
    yield
    warnings = [
        r
        for r in caplog.get_records("call")
        if r.name == "wrenmq.broker" and r.levelno == logging.WARNING
    ]
    assert warnings, "expected the broker to log a WARNING about the misbehaving peer"
