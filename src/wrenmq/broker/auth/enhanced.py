"""MQTT 5 enhanced authentication, the broker's side (section 4.12): the method hook and
SCRAM-SHA-256.

A client names an Authentication Method in CONNECT; the broker looks it up in
``Broker(auth_methods={name: factory})`` (SCRAM-SHA-256 is there whenever a password file is
configured) and calls ``factory()`` for a fresh :class:`AuthMethod`, one per exchange: one for
the CONNECT, one per re-authentication (AUTH 0x19). The exchange answers each step with

* :class:`Continue` (data for an AUTH 0x18 Continue authentication),
* :class:`Success` (data for the CONNACK, or for AUTH 0x00 after a re-authentication, and the
  authenticated user name that ACLs then apply to), or
* :class:`Failure` (CONNACK / DISCONNECT with its reason code, 0x87 Not authorized by default).

``start`` and ``step`` may be plain functions or coroutine functions; while a coroutine runs the
broker stops reading from that connection. An exception in them is logged and taken as a failure.
A method that never finishes is cut off by the connect timeout.

:class:`ScramSha256` implements RFC 5802 / RFC 7677 without channel binding. It needs only the
user's :class:`~wrenmq.protocol.scram.ScramCredentials` (from a ``wrenmq passwd --scram`` line),
never the password. For an unknown user it answers with a salt derived from the name and a
per-broker secret, so the exchange looks the same as for a real user and fails only at the end.

Imports: stdlib, ``codec.reason_codes`` and ``protocol.scram``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.protocol.scram import (
    CHANNEL_BINDING,
    DEFAULT_ITERATIONS,
    METHOD,
    ScramCredentials,
    b64,
    hmac_sha256,
    parse_attributes,
    unb64,
    xor,
)

__all__ = [
    "AuthMethod",
    "AuthMethodFactory",
    "AuthOutcome",
    "Continue",
    "Failure",
    "ScramSha256",
    "Success",
]


@dataclass(frozen=True, slots=True)
class Continue:
    """Go on: send ``data`` to the client in AUTH 0x18 and wait for its answer."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Success:
    """Authenticated as ``username`` (None: no user name; ACL rules for anonymous apply).

    ``data`` goes to the client in the CONNACK (or AUTH 0x00 after a re-authentication).
    """

    username: str | None
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """Refused: CONNACK (or DISCONNECT after a re-authentication) with ``reason_code``."""

    reason: str = "authentication failed"
    reason_code: ReasonCode = ReasonCode.NOT_AUTHORIZED


AuthOutcome = Continue | Success | Failure


class AuthMethod(Protocol):
    """One enhanced authentication exchange, the server's side."""

    def start(
        self, client_id: str, username: str | None, data: bytes | None
    ) -> AuthOutcome | Awaitable[AuthOutcome]:
        """The client's first message: CONNECT's (or AUTH 0x19's) Authentication Data.

        Args:
            client_id: The client identifier (assigned by the broker if the client sent none).
            username: The CONNECT user name (unverified), or the current one when
                re-authenticating.
            data: The Authentication Data, None if absent.
        """
        ...

    def step(self, data: bytes | None) -> AuthOutcome | Awaitable[AuthOutcome]:
        """The client's answer to a :class:`Continue` (an AUTH 0x18's Authentication Data)."""
        ...


AuthMethodFactory = Callable[[], AuthMethod]

_FAILED = Failure("bad user name or password")


def _unescape(name: str) -> str | None:
    """A saslname back to the user name (RFC 5802 5.1); None if a '=' is not an escape."""
    if "=" in name.replace("=2C", "").replace("=3D", ""):
        return None
    return name.replace("=2C", ",").replace("=3D", "=")


class ScramSha256:
    """The SCRAM-SHA-256 method: ``ScramSha256(lookup)`` is a factory of exchanges.

    Args:
        lookup: The credentials of a user name, None for an unknown user (called once per
            exchange, so a reloaded password file takes effect at the next one).
        iterations: The iteration count announced for unknown users (match your real users').
    """

    name = METHOD

    def __init__(
        self,
        lookup: Callable[[str], ScramCredentials | None],
        *,
        iterations: int = DEFAULT_ITERATIONS,
    ) -> None:
        self._lookup = lookup
        self._iterations = iterations
        self._secret = secrets.token_bytes(32)  # fake salts for unknown users

    def __call__(self) -> _ScramExchange:
        """A new exchange."""
        return _ScramExchange(self)

    def credentials(self, username: str) -> tuple[ScramCredentials, bool]:
        """The user's credentials and whether they are real (False: a decoy for an unknown user)."""
        creds = self._lookup(username)
        if creds is not None:
            return creds, True
        salt = hmac_sha256(self._secret, b"salt:" + username.encode())[:16]
        keys = hmac_sha256(self._secret, b"keys:" + username.encode())
        return ScramCredentials(salt, self._iterations, keys, keys), False


class _ScramExchange:
    """One SCRAM-SHA-256 exchange (server side)."""

    __slots__ = ("_auth_prefix", "_creds", "_known", "_method", "_nonce", "_username")

    def __init__(self, method: ScramSha256) -> None:
        self._method = method
        self._username = ""
        self._nonce = ""
        self._auth_prefix = ""  # client-first-bare "," server-first
        self._creds: ScramCredentials | None = None
        self._known = False

    def start(self, client_id: str, username: str | None, data: bytes | None) -> AuthOutcome:
        """Answer client-first-message ``n,,n=<user>,r=<nonce>`` with server-first-message."""
        if not data:
            return Failure("SCRAM-SHA-256: no client-first-message")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return Failure("SCRAM-SHA-256: client-first-message is not UTF-8")
        cbind, _, rest = text.partition(",")
        authzid, sep, bare = rest.partition(",")
        if not sep or cbind not in ("n", "y"):
            # "p=...": channel binding, which MQTT over TLS here does not offer.
            return Failure("SCRAM-SHA-256: channel binding is not supported")
        if authzid:
            return Failure("SCRAM-SHA-256: an authorization identity is not supported")
        try:
            attrs = parse_attributes(bare)
        except ValueError as exc:
            return Failure(f"SCRAM-SHA-256: {exc}")
        if "m" in attrs:
            return Failure("SCRAM-SHA-256: unsupported mandatory extension")
        saslname, nonce = attrs.get("n"), attrs.get("r")
        if not saslname or not nonce or not bare.startswith("n="):
            return Failure("SCRAM-SHA-256: client-first-message lacks a user name or nonce")
        user = _unescape(saslname)
        if user is None or any(c < " " for c in nonce) or "," in nonce:
            return Failure("SCRAM-SHA-256: malformed client-first-message")
        creds, known = self._method.credentials(user)
        self._username, self._creds, self._known = user, creds, known
        self._nonce = nonce + b64(secrets.token_bytes(18))
        server_first = f"r={self._nonce},s={b64(creds.salt)},i={creds.iterations}"
        self._auth_prefix = f"{bare},{server_first}"
        return Continue(server_first.encode())

    def step(self, data: bytes | None) -> AuthOutcome:
        """Check client-final-message ``c=biws,r=<nonce>,p=<proof>``; prove ourselves."""
        creds = self._creds
        if creds is None:
            return Failure("SCRAM-SHA-256: unexpected message")
        self._creds = None  # one proof per exchange
        try:
            text = (data or b"").decode("utf-8")
            without_proof, sep, proof_attr = text.rpartition(",p=")
            attrs = parse_attributes(without_proof)
            proof = unb64(proof_attr)
        except (UnicodeDecodeError, ValueError):
            return Failure("SCRAM-SHA-256: malformed client-final-message")
        if not sep or attrs.get("c") != CHANNEL_BINDING or attrs.get("r") != self._nonce:
            return Failure("SCRAM-SHA-256: channel binding or nonce mismatch")
        if len(proof) != len(creds.stored_key):
            return _FAILED
        auth_message = f"{self._auth_prefix},{without_proof}".encode()
        client_key = xor(proof, hmac_sha256(creds.stored_key, auth_message))
        ok = hmac.compare_digest(hashlib.sha256(client_key).digest(), creds.stored_key)
        if not (ok and self._known):
            return _FAILED
        signature = hmac_sha256(creds.server_key, auth_message)
        return Success(self._username, f"v={b64(signature)}".encode())
