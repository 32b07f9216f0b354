from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from brokerthread import BrokerThread

_counter = itertools.count()


@pytest.fixture
def broker_thread() -> Iterator[BrokerThread]:
    """A fresh broker on an ephemeral loopback port, in a background thread."""
    bt = BrokerThread().start()
    try:
        yield bt
    finally:
        bt.stop()


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    """A topic no other test uses, so parallel tests never see each other's messages."""
    return f"test/{os.getpid()}/{request.node.name}/{next(_counter)}".replace("[", "_").replace(
        "]", "_"
    )
