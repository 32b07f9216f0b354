"""MQTT 5 enhanced authentication (section 4.12), the client's side.

An ``Authenticator`` produces the Authentication Data of one exchange: ``initial()`` for CONNECT
(and for the AUTH that starts a re-authentication), ``challenge(data)`` for each AUTH (Continue
authentication) the server sends. Either may be a coroutine function. An authenticator may also
have ``complete(data)``, a plain function called with the Authentication Data of the server's
last word (CONNACK, or AUTH Success after a re-authentication; ``None`` when it carried none),
which raises ``AuthError`` if the server failed to prove itself (SCRAM's server signature).

``initial()`` is called once per network connection and per re-authentication: each one is a new
exchange (SCRAM needs a fresh nonce). ``wrenmq.client.scram.ScramSha256Authenticator`` is one.

``AuthExchange`` runs the exchanges for a ``Client``: it answers AUTH packets (a synchronous
``challenge`` inline, a coroutine on one task, in order), checks the server's last word and
drives ``reauthenticate()``. A failure on this side goes to the client's ``on_failure``, which
closes the connection. The protocol rules (method, reason codes, state) are checked by the
sans-IO ``ClientProtocol`` before an AUTH gets here.

Imports ``asyncio``, ``codec``, ``errors`` and the protocol.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from wrenmq.codec.packets import Auth
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import AuthError
from wrenmq.protocol.client import ClientProtocol

__all__ = ["AuthExchange", "Authenticator", "resolve"]

log = logging.getLogger("wrenmq.client")

_T = TypeVar("_T")


class Authenticator(Protocol):
    """The client side of an enhanced authentication method."""

    def initial(self) -> bytes | Awaitable[bytes | None] | None:
        """Start an exchange: the Authentication Data for CONNECT (or AUTH 0x19), or ``None``."""

    def challenge(self, data: bytes) -> bytes | Awaitable[bytes]:
        """Answer the server's Authentication Data with ours (sent in AUTH 0x18)."""


async def resolve(value: _T | Awaitable[_T]) -> _T:
    """Await ``value`` if it is awaitable (an ``async def`` authenticator method)."""
    if inspect.isawaitable(value):
        return await value
    return value


def _auth_error(exc: BaseException) -> AuthError:
    if isinstance(exc, AuthError):
        return exc
    error = AuthError(message=f"authenticator: {exc!r}")
    error.__cause__ = exc
    return error


class AuthExchange:
    """Runs a client's enhanced authentication exchanges.

    Args:
        authenticator: produces the Authentication Data.
        proto: the client's protocol (which checks and encodes AUTH packets).
        write: writes bytes to the current connection.
        on_failure: told when an exchange fails on this side; closes the connection.
    """

    def __init__(
        self,
        authenticator: Authenticator,
        proto: ClientProtocol,
        write: Callable[[bytes], None],
        on_failure: Callable[[AuthError], None],
    ) -> None:
        self.authenticator = authenticator
        self._proto = proto
        self._write = write
        self._on_failure = on_failure
        self._task: asyncio.Task[None] | None = None
        self._reauth: asyncio.Future[None] | None = None

    async def initial_data(self) -> bytes | None:
        """The Authentication Data that starts an exchange (errors become ``AuthError``)."""
        try:
            return await resolve(self.authenticator.initial())
        except Exception as exc:
            raise _auth_error(exc) from exc

    def verify(self, data: bytes | None) -> bool:
        """Run the authenticator's final check of the server; False (and fail) if it refused."""
        hook = getattr(self.authenticator, "complete", None)
        if not callable(hook):
            return True
        try:
            hook(data)
        except Exception as exc:
            self.fail(exc)
            return False
        return True

    def fail(self, exc: BaseException) -> None:
        """The exchange failed on this side: fail a pending re-authentication, tell the client."""
        error = _auth_error(exc)
        log.warning("enhanced authentication failed: %s", error.message)
        self.abandon(error)
        self._on_failure(error)

    def abandon(self, error: BaseException) -> None:
        """Fail a pending ``reauthenticate()`` with ``error`` (the connection ended)."""
        fut = self._reauth
        if fut is not None and not fut.done():
            fut.set_exception(error)
            fut.exception()

    def on_auth(self, auth: Auth) -> None:
        """An AUTH packet from the server (already checked by the protocol)."""
        data = auth.properties.authentication_data
        if auth.reason_code == ReasonCode.SUCCESS:  # re-authentication accepted
            if self.verify(data):
                log.info("re-authenticated")
                if self._reauth is not None and not self._reauth.done():
                    self._reauth.set_result(None)
            return
        epoch = self._proto.epoch
        previous = self._task
        answer: Any
        if previous is None or previous.done():
            try:
                answer = self.authenticator.challenge(data or b"")
            except Exception as exc:
                self.fail(exc)
                return
            if not inspect.isawaitable(answer):
                self._write(self._proto.auth_continue(answer))
                return
        else:  # a challenge still being answered: this one after it
            answer = self._after(previous, data or b"")
        self._task = asyncio.get_running_loop().create_task(
            self._answer(answer, epoch), name="wrenmq-auth"
        )

    async def _after(self, previous: asyncio.Task[None], data: bytes) -> bytes:
        await asyncio.gather(previous, return_exceptions=True)
        return await resolve(self.authenticator.challenge(data))

    async def _answer(self, answer: Awaitable[bytes], epoch: int) -> None:
        try:
            data = await answer
        except Exception as exc:
            if self._proto.epoch == epoch:
                self.fail(exc)
            return
        if self._proto.epoch == epoch:  # still the connection that asked
            self._write(self._proto.auth_continue(data))

    async def reauthenticate(self, data: bytes | None) -> None:
        """Send AUTH (Re-authenticate) with ``data``; return once the server accepted."""
        packet = self._proto.reauthenticate(data)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reauth = fut
        self._write(packet)
        try:
            await fut
        finally:
            if self._reauth is fut:
                self._reauth = None
