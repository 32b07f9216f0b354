"""SCRAM-SHA-256 (RFC 5802, RFC 7677), client side, as an MQTT 5 enhanced authenticator.

With ``Client(..., auth_method="SCRAM-SHA-256", authenticator=ScramSha256Authenticator(user,
password))`` the exchange runs over CONNECT / AUTH / CONNACK (MQTT 5 section 4.12):

    CONNECT   Authentication Data: client-first-message   n,,n=user,r=<client nonce>
    AUTH 0x18 Authentication Data: server-first-message   r=<nonce>,s=<salt>,i=<iterations>
    AUTH 0x18 Authentication Data: client-final-message   c=biws,r=<nonce>,p=<proof>
    CONNACK   Authentication Data: server-final-message   v=<server signature>

The server signature is checked (``complete``): a server that does not know the password cannot
fake it, so a successful CONNACK without it is refused. Some servers send the server-final
message in one more AUTH 0x18 instead; it is checked there and answered with empty data. No
channel binding (gs2 header ``n,,``). Each ``initial()`` starts a new exchange with a new nonce
(one per connection, and per re-authentication).

User name and password are prepared with SASLprep (RFC 4013) as RFC 5802 section 5.1 asks: the
user name as a query string, the password as a stored string. The salted password of the last
(salt, iteration count) is kept, so reconnecting does not cost another PBKDF2.

Imports the stdlib (``hashlib``, ``hmac``, ``base64``, ``secrets``), ``wrenmq.errors`` and the
primitives in ``wrenmq.protocol.scram`` (shared with the broker).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import AuthError
from wrenmq.protocol.scram import (
    CHANNEL_BINDING,
    GS2_HEADER,
    METHOD,
    hmac_sha256,
    parse_attributes,
    salted_password,
    saslprep,
    xor,
)

__all__ = ["METHOD", "ScramSha256Authenticator", "saslprep"]

_START, _FIRST_SENT, _FINAL_SENT, _DONE = range(4)


def _attributes(message: str) -> dict[str, str]:
    try:
        return parse_attributes(message)
    except ValueError as exc:
        raise AuthError(ReasonCode.NOT_AUTHORIZED, f"SCRAM: {exc}") from None


class ScramSha256Authenticator:
    """The client side of SCRAM-SHA-256 for ``Client(authenticator=...)``.

    Args:
        username: the user name (SASLprep'd, then '=' and ',' escaped as RFC 5802 asks).
        password: the password (SASLprep'd as a stored string).
        min_iterations: refuse a server asking for fewer PBKDF2 iterations (RFC 7677 asks for
            at least 4096; fewer would make a stolen exchange cheap to attack).
        max_iterations: refuse a server asking for more (it would burn this client's CPU).
        nonce: the client nonce; only for tests (RFC 7677 test vector). Default: 24 random
            bytes, base64.
    """

    method = METHOD

    def __init__(
        self,
        username: str,
        password: str,
        *,
        min_iterations: int = 4096,
        max_iterations: int = 1_000_000,
        nonce: str | None = None,
    ) -> None:
        name = saslprep(username, allow_unassigned=True)
        self._username = name.replace("=", "=3D").replace(",", "=2C")
        self._password = saslprep(password).encode()
        self.min_iterations = min_iterations
        self.max_iterations = max_iterations
        self._fixed_nonce = nonce
        self._state = _START
        self._nonce = ""
        self._client_first_bare = ""
        self._server_signature = b""
        self._salted: tuple[bytes, int, bytes] | None = None  # (salt, iterations, salted pw)

    def __repr__(self) -> str:
        return f"<ScramSha256Authenticator user={self._username!r}>"  # never the password

    def initial(self) -> bytes:
        """Start an exchange: the client-first-message."""
        self._nonce = self._fixed_nonce or base64.b64encode(secrets.token_bytes(24)).decode()
        self._client_first_bare = f"n={self._username},r={self._nonce}"
        self._server_signature = b""
        self._state = _FIRST_SENT
        return (GS2_HEADER + self._client_first_bare).encode()

    def challenge(self, data: bytes) -> bytes:
        """Answer the server-first-message (or check a server-final-message sent in AUTH)."""
        if self._state == _FINAL_SENT:
            self.complete(data)
            return b""
        if self._state != _FIRST_SENT:
            raise AuthError(ReasonCode.NOT_AUTHORIZED, "SCRAM: unexpected server message")
        try:
            server_first = data.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthError(ReasonCode.NOT_AUTHORIZED, "SCRAM: server-first is not UTF-8") from None
        attrs = _attributes(server_first)
        if "m" in attrs:
            raise AuthError(ReasonCode.NOT_AUTHORIZED, "SCRAM: unsupported mandatory extension")
        if "e" in attrs:
            raise AuthError(ReasonCode.NOT_AUTHORIZED, f"SCRAM: server error {attrs['e']!r}")
        nonce, salt_b64, count = attrs.get("r", ""), attrs.get("s"), attrs.get("i", "")
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise AuthError(ReasonCode.NOT_AUTHORIZED, "SCRAM: the server nonce is not ours")
        if salt_b64 is None or not count.isdigit():
            raise AuthError(ReasonCode.NOT_AUTHORIZED, "SCRAM: server-first lacks salt or count")
        try:
            salt = base64.b64decode(salt_b64, validate=True)
        except binascii.Error:
            raise AuthError(ReasonCode.NOT_AUTHORIZED, "SCRAM: the salt is not base64") from None
        iterations = int(count)
        if not self.min_iterations <= iterations <= self.max_iterations:
            raise AuthError(
                ReasonCode.NOT_AUTHORIZED, f"SCRAM: iteration count {iterations} refused"
            )
        salted = self._salted_password(salt, iterations)
        client_key = hmac_sha256(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c={CHANNEL_BINDING},r={nonce}"
        auth_message = f"{self._client_first_bare},{server_first},{without_proof}".encode()
        signature = hmac_sha256(stored_key, auth_message)
        proof = xor(client_key, signature)
        self._server_signature = hmac_sha256(hmac_sha256(salted, b"Server Key"), auth_message)
        self._state = _FINAL_SENT
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def complete(self, data: bytes | None) -> None:
        """Check the server-final-message (CONNACK's Authentication Data).

        Raises:
            AuthError: no (or a wrong) server signature, or a server error: the server does not
                know the password, so it is not the server it claims to be.
        """
        if self._state == _DONE and data is None:
            return  # checked already, in an AUTH packet
        if self._state != _FINAL_SENT:
            raise AuthError(ReasonCode.NOT_AUTHORIZED, "SCRAM: the server ended the exchange early")
        if data is None:
            raise AuthError(ReasonCode.NOT_AUTHORIZED, "SCRAM: no server signature")
        attrs = _attributes(data.decode("utf-8", "replace"))
        if "e" in attrs:
            raise AuthError(ReasonCode.NOT_AUTHORIZED, f"SCRAM: server error {attrs['e']!r}")
        try:
            verifier = base64.b64decode(attrs.get("v", ""), validate=True)
        except binascii.Error:
            verifier = b""
        if not verifier or not hmac.compare_digest(verifier, self._server_signature):
            raise AuthError(ReasonCode.NOT_AUTHORIZED, "SCRAM: wrong server signature")
        self._state = _DONE

    def _salted_password(self, salt: bytes, iterations: int) -> bytes:
        cached = self._salted
        if cached is not None and cached[0] == salt and cached[1] == iterations:
            return cached[2]
        salted = salted_password(self._password, salt, iterations)
        self._salted = (salt, iterations, salted)
        return salted
