"""SCRAM-SHA-256 (RFC 5802, RFC 7677) primitives shared by the client and the broker.

Both sides of the exchange derive the same keys from a salted password::

    SaltedPassword = PBKDF2-HMAC-SHA-256(SASLprep(password), salt, iterations)
    ClientKey      = HMAC(SaltedPassword, "Client Key")
    StoredKey      = SHA-256(ClientKey)
    ServerKey      = HMAC(SaltedPassword, "Server Key")

A server keeps only ``ScramCredentials`` (salt, iterations, StoredKey, ServerKey), never the
password: from them it can check a client's proof and prove itself, but not log in as the user.
They serialize in PostgreSQL's format, ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``
(standard base64), which is what a wrenmq password file holds for a SCRAM user.

Pure module: stdlib only (hashlib, hmac, base64, stringprep, unicodedata).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CHANNEL_BINDING",
    "GS2_HEADER",
    "METHOD",
    "ScramCredentials",
    "hmac_sha256",
    "parse_attributes",
    "salted_password",
    "saslprep",
    "xor",
]

METHOD: Final = "SCRAM-SHA-256"
GS2_HEADER: Final = "n,,"  # no channel binding, no authorization identity
CHANNEL_BINDING: Final = base64.b64encode(GS2_HEADER.encode()).decode()  # "biws"
DEFAULT_ITERATIONS: Final = 4096  # RFC 7677's minimum
_PREFIX: Final = METHOD + "$"
_MAX_ITERATIONS: Final = 10_000_000

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


def prepare_password(password: bytes | str) -> bytes:
    """The password as SCRAM hashes it: SASLprep'd UTF-8 (bytes that are not UTF-8, or that
    SASLprep refuses, are used as they are, so such a password still works both ways).
    """
    if isinstance(password, bytes):
        try:
            text = password.decode("utf-8")
        except UnicodeDecodeError:
            return password
    else:
        text = password
    try:
        return saslprep(text).encode("utf-8")
    except ValueError:
        return text.encode("utf-8")


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA-256 of ``data``."""
    return hmac.new(key, data, "sha256").digest()


def xor(a: bytes, b: bytes) -> bytes:
    """Bytewise XOR of two equally long strings."""
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def salted_password(password: bytes, salt: bytes, iterations: int) -> bytes:
    """``Hi(password, salt, i)`` of RFC 5802: PBKDF2-HMAC-SHA-256 (``password`` prepared)."""
    return hashlib.pbkdf2_hmac("sha256", password, salt, iterations)


def parse_attributes(message: str) -> dict[str, str]:
    """Parse ``a=value,b=value`` (values may contain '='); the first of a repeated name wins.

    Raises:
        ValueError: a part is not ``<letter>=<value>``.
    """
    attrs: dict[str, str] = {}
    for part in message.split(","):
        name, sep, value = part.partition("=")
        if not sep or len(name) != 1:
            raise ValueError(f"malformed attribute {part!r}")
        attrs.setdefault(name, value)
    return attrs


def b64(data: bytes) -> str:
    """Standard padded base64 as text."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Decode standard base64; ValueError if it is not."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("not valid base64") from None


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """What a server stores for one SCRAM-SHA-256 user (no password)."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def from_password(
        cls,
        password: bytes | str,
        *,
        iterations: int = DEFAULT_ITERATIONS,
        salt: bytes | None = None,
    ) -> ScramCredentials:
        """Derive the credentials of ``password`` (a fresh 16-byte salt unless given)."""
        if not 1 <= iterations <= _MAX_ITERATIONS:
            raise ValueError(f"iterations must be 1..{_MAX_ITERATIONS}, not {iterations}")
        if salt is None:
            salt = secrets.token_bytes(16)
        elif not salt:
            raise ValueError("empty salt")
        salted = salted_password(prepare_password(password), salt, iterations)
        stored = hashlib.sha256(hmac_sha256(salted, b"Client Key")).digest()
        return cls(salt, iterations, stored, hmac_sha256(salted, b"Server Key"))

    @classmethod
    def parse(cls, text: str) -> ScramCredentials:
        """Read ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``.

        Raises:
            ValueError: ``text`` is not in that format; the message says what is wrong.
        """
        if not text.startswith(_PREFIX):
            raise ValueError(f"not a {METHOD} verifier")
        head, sep, keys = text[len(_PREFIX) :].partition("$")
        count, sep1, salt_b64 = head.partition(":")
        stored_b64, sep2, server_b64 = keys.partition(":")
        if not (sep and sep1 and sep2):
            raise ValueError(f"expected {METHOD}$<iterations>:<salt>$<StoredKey>:<ServerKey>")
        if not (count.isascii() and count.isdigit()) or not 1 <= int(count) <= _MAX_ITERATIONS:
            raise ValueError(f"iteration count is not a number in 1..{_MAX_ITERATIONS}")
        salt, stored, server = unb64(salt_b64), unb64(stored_b64), unb64(server_b64)
        if not salt:
            raise ValueError("empty salt")
        if len(stored) != 32 or len(server) != 32:
            raise ValueError("StoredKey and ServerKey must be 32 bytes each")
        return cls(salt, int(count), stored, server)

    def __str__(self) -> str:
        return (
            f"{_PREFIX}{self.iterations}:{b64(self.salt)}"
            f"${b64(self.stored_key)}:{b64(self.server_key)}"
        )

    def __repr__(self) -> str:
        return f"ScramCredentials(iterations={self.iterations})"  # keys stay out of logs

    def check_password(self, password: bytes | str) -> bool:
        """Whether ``password`` derives these credentials (constant-time comparison)."""
        salted = salted_password(prepare_password(password), self.salt, self.iterations)
        stored = hashlib.sha256(hmac_sha256(salted, b"Client Key")).digest()
        return hmac.compare_digest(stored, self.stored_key)
