from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pahopeer import Peer
from rawmqtt import Raw

from brokerthread import BrokerThread

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def make_broker() -> Iterator[Callable[..., BrokerThread]]:
    """Start a broker with a particular configuration: ``make_broker(max_qos=1)``."""
    made: list[BrokerThread] = []

    def make(**config: Any) -> BrokerThread:
        bt = BrokerThread(**config).start()
        made.append(bt)
        return bt

    yield make
    for bt in made:
        bt.stop()


@pytest.fixture
def peer() -> Iterator[Callable[..., Peer]]:
    """Make paho peers (``peer(port, "id", version=V311)``); all are closed at teardown."""
    made: list[Peer] = []

    def make(port: int, client_id: str = "", **kwargs: Any) -> Peer:
        p = Peer(port, client_id, **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture
def raw() -> Iterator[Callable[..., Raw]]:
    """Make raw-socket peers (``raw(port, version=5)``); all are closed at teardown."""
    made: list[Raw] = []

    def make(port: int, **kwargs: Any) -> Raw:
        r = Raw(port, **kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
