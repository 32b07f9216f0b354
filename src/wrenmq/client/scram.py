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

Imports the stdlib (``hashlib``, ``hmac``, ``base64``, ``secrets``, ``stringprep``) and
``wrenmq.errors``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from typing import Final

from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import AuthError

__all__ = ["METHOD", "ScramSha256Authenticator", "saslprep"]

METHOD: Final = "SCRAM-SHA-256"
_GS2_HEADER: Final = "n,,"  # no channel binding, no authorization identity
_CHANNEL_BINDING: Final = base64.b64encode(_GS2_HEADER.encode()).decode()  # "biws"
_HASH: Final = "sha256"

_START, _FIRST_SENT, _FINAL_SENT, _DONE = range(4)

_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21,
    stringprep.in_table_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def saslprep(text: str, *, allow_unassigned: bool = False) -> str:
    """Prepare ``text`` with the SASLprep profile of stringprep (RFC 4013).

    Raises:
        ValueError: ``text`` holds a prohibited character or breaks the bidi rules.
    """
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c)
    )
    prepared = unicodedata.normalize("NFKC", mapped)
    for c in prepared:
        if any(check(c) for check in _PROHIBITED):
            raise ValueError(f"prohibited character U+{ord(c):04X}")
        if not allow_unassigned and stringprep.in_table_a1(c):
            raise ValueError(f"unassigned code point U+{ord(c):04X}")
    if any(stringprep.in_table_d1(c) for c in prepared):  # RFC 3454 section 6
        if any(stringprep.in_table_d2(c) for c in prepared):
            raise ValueError("mixes right-to-left and left-to-right characters")
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            raise ValueError("right-to-left text must start and end right-to-left")
    return prepared


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, _HASH).digest()


def _attributes(message: str) -> dict[str, str]:
    """Parse ``a=value,b=value`` (values may contain '=')."""
    attrs: dict[str, str] = {}
    for part in message.split(","):
        name, sep, value = part.partition("=")
        if not sep or len(name) != 1:
            raise AuthError(ReasonCode.NOT_AUTHORIZED, f"SCRAM: malformed attribute {part!r}")
        attrs.setdefault(name, value)
    return attrs


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
        return (_GS2_HEADER + self._client_first_bare).encode()

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
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c={_CHANNEL_BINDING},r={nonce}"
        auth_message = f"{self._client_first_bare},{server_first},{without_proof}".encode()
        signature = _hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
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
        salted = hashlib.pbkdf2_hmac(_HASH, self._password, salt, iterations)
        self._salted = (salt, iterations, salted)
        return salted
