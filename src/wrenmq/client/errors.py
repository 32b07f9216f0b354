"""Exceptions of the asyncio client beyond the shared ones in ``wrenmq.errors``."""

from __future__ import annotations

from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import MQTTError, WrenError

__all__ = ["DisconnectedError", "OfflineQueueFull", "StoreError"]


class DisconnectedError(MQTTError):
    """The client is not connected, or lost its connection, and will not get it back.

    ``reason_code`` is the DISCONNECT reason when the server sent one, Normal disconnection when
    this client closed, and Unspecified error for a network failure.
    """

    def __init__(
        self, reason_code: ReasonCode = ReasonCode.UNSPECIFIED_ERROR, message: str = ""
    ) -> None:
        super().__init__(reason_code, message or "not connected")


class OfflineQueueFull(WrenError):
    """The offline queue is full (policy ``"raise"``), or dropped this message
    (policy ``"drop_oldest"``)."""


class StoreError(WrenError):
    """A client session store cannot be opened, read or written.

    A client whose store fails stops (its pending calls fail with a ``DisconnectedError`` caused
    by this one): it no longer keeps what a durable session promises.
    """
