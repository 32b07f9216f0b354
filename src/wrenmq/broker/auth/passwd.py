"""Mosquitto 2 password files: read, verify, change and write them.

One ``username:hash`` entry a line; the hash is one of

* ``$7$<iterations>$<base64 salt>$<base64 hash>``: PBKDF2-HMAC-SHA512, what ``mosquitto_passwd``
  2.0 writes (101 iterations, 12-byte salt, 64-byte hash, standard padded base64);
* ``$6$<base64 salt>$<base64 hash>``: SHA-512 of password + salt, the Mosquitto 1.x format (read
  and verified, never written);
* ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (PostgreSQL's format): a wrenmq
  extension, written by ``wrenmq passwd --scram``. Such a user can log in with a plain password
  and with MQTT 5 enhanced authentication ``SCRAM-SHA-256``; Mosquitto does not read these lines.

Like the Mosquitto broker, a line whose first character is ``#`` is a comment, blank lines are
skipped and blanks around the username and the hash are trimmed. Unlike it, a line that cannot be
decoded is a :class:`~wrenmq.errors.ConfigError` naming ``file:line`` (Mosquitto skips lines
without a ``:``), and so is a username given twice. Comments and blank lines survive a
load/save round trip, as they do through ``mosquitto_passwd``.

Plain passwords are never stored: :meth:`PasswordFile.set` keeps only the hash, and nothing here
logs. :meth:`PasswordFile.verify` compares digests in constant time and does the same work for an
unknown user as for a known one, so timing does not tell which usernames exist.

Pure module: stdlib (base64, binascii, hashlib, hmac, os, secrets, tempfile), ``wrenmq.errors``
and ``wrenmq.protocol.scram``; no asyncio, no clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

from wrenmq.errors import ConfigError
from wrenmq.protocol.scram import ScramCredentials

__all__ = [
    "DEFAULT_ITERATIONS",
    "SALT_BYTES",
    "PasswordFile",
    "hash_password",
    "validate_username",
]

DEFAULT_ITERATIONS = 101  # mosquitto_passwd 2.0 (PW_DEFAULT_ITERATIONS)
SALT_BYTES = 12  # mosquitto_passwd 2.0 (SALT_LEN)
_HASH_BYTES = 64  # SHA-512 digest size
_PBKDF2 = "7"
_SHA512 = "6"
_SCRAM = "SCRAM-SHA-256"
_MAX_ITERATIONS = 10_000_000  # a typo, not a policy: refuse instead of hanging every CONNECT
_MAX_USERNAME_BYTES = 65_535  # an MQTT UTF-8 string [MQTT-1.5.4]
_BLANKS = " \t"


def hash_password(
    password: bytes | str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> str:
    """Hash a password the way ``mosquitto_passwd`` 2.0 does.

    Args:
        password: The password; a ``str`` is encoded as UTF-8 (what clients send).
        iterations: PBKDF2 iteration count (Mosquitto uses 101).
        salt: The salt; a fresh random 12-byte one by default. Pass one only for reproducible tests.

    Returns:
        ``$7$<iterations>$<base64 salt>$<base64 hash>``, the part after ``username:``.

    Raises:
        ValueError: ``iterations`` is out of range or ``salt`` is empty.
    """
    if not 1 <= iterations <= _MAX_ITERATIONS:
        raise ValueError(f"iterations must be 1..{_MAX_ITERATIONS}, not {iterations}")
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    elif not salt:
        raise ValueError("empty salt")
    digest = hashlib.pbkdf2_hmac("sha512", _as_bytes(password), salt, iterations)
    return f"${_PBKDF2}${iterations}${_b64(salt)}${_b64(digest)}"


def validate_username(username: str) -> None:
    """Check that ``username`` can be written to a password file and read back unchanged.

    Refused: ``:`` (the separator), control characters such as a newline (which would inject a
    line), a leading ``#`` (Mosquitto reads the line as a comment), leading or trailing blanks
    (Mosquitto trims them), the empty name, and names over 65535 UTF-8 bytes.

    Raises:
        ValueError: The username is not usable; the message says why.
    """
    if not username:
        raise ValueError("empty username")
    if ":" in username:
        raise ValueError("username must not contain ':'")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in username):
        raise ValueError("username must not contain control characters")
    if username.startswith("#"):
        raise ValueError("username must not start with '#' (Mosquitto reads it as a comment)")
    if username != username.strip(_BLANKS):
        raise ValueError("username must not start or end with a blank")
    try:
        size = len(username.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("username is not valid UTF-8") from None
    if size > _MAX_USERNAME_BYTES:
        raise ValueError(f"username is {size} bytes, over {_MAX_USERNAME_BYTES}")


def _as_bytes(password: bytes | str) -> bytes:
    return password.encode("utf-8") if isinstance(password, str) else bytes(password)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError(f"{what} is not valid base64") from None


class _Hash:
    """A decoded hash; ``text`` is the exact string it was read from or written as."""

    __slots__ = ("digest", "iterations", "salt", "scheme", "scram", "text")

    def __init__(
        self,
        scheme: str,
        iterations: int,
        salt: bytes,
        digest: bytes,
        text: str,
        scram: ScramCredentials | None = None,
    ):
        self.scheme = scheme
        self.iterations = iterations
        self.salt = salt
        self.digest = digest
        self.text = text
        self.scram = scram

    @classmethod
    def parse(cls, text: str) -> _Hash:
        """Decode ``$7$...``, ``$6$...`` or ``SCRAM-SHA-256$...``; ValueError says what is wrong."""
        if text.startswith(_SCRAM):
            creds = ScramCredentials.parse(text)
            return cls(_SCRAM, creds.iterations, creds.salt, creds.stored_key, text, creds)
        parts = text.split("$")
        if len(parts) < 2 or parts[0] or parts[1] not in (_PBKDF2, _SHA512):
            raise ValueError("not a $7$ (PBKDF2-SHA512) or $6$ (SHA512) password hash")
        scheme = parts[1]
        if scheme == _PBKDF2:
            if len(parts) != 5:
                raise ValueError("expected $7$<iterations>$<salt>$<hash>")
            _, _, count, salt_b64, digest_b64 = parts
            if not (count.isascii() and count.isdigit()) or not 1 <= int(count) <= _MAX_ITERATIONS:
                raise ValueError(f"iteration count is not a number in 1..{_MAX_ITERATIONS}")
            iterations = int(count)
        else:
            if len(parts) != 4:
                raise ValueError("expected $6$<salt>$<hash>")
            _, _, salt_b64, digest_b64 = parts
            iterations = 1
        salt = _unb64(salt_b64, "salt")
        digest = _unb64(digest_b64, "hash")
        if not salt:
            raise ValueError("empty salt")
        if len(digest) != _HASH_BYTES:
            raise ValueError(f"hash is {len(digest)} bytes, expected {_HASH_BYTES}")
        return cls(scheme, iterations, salt, digest, text)

    def compute(self, password: bytes) -> bytes:
        if self.scram is not None:
            return self.scram.stored_key if self.scram.check_password(password) else b""
        if self.scheme == _PBKDF2:
            return hashlib.pbkdf2_hmac("sha512", password, self.salt, self.iterations)
        return hashlib.sha512(password + self.salt).digest()

    def matches(self, password: bytes) -> bool:
        return hmac.compare_digest(self.compute(password), self.digest)


# Verified against when the username is unknown, so that both cases cost the same.
_DUMMY = _Hash.parse(hash_password(b"", salt=bytes(SALT_BYTES)))


class PasswordFile:
    """The users and password hashes of one Mosquitto password file.

    A mapping-like container of usernames (``in``, ``len``, iteration in file order); change it
    with :meth:`set` / :meth:`delete` and write it with :meth:`save`.
    """

    def __init__(self) -> None:
        """An empty password file (``mosquitto_passwd -c``)."""
        self._hashes: dict[str, _Hash] = {}
        # File order: a username, or a verbatim comment/blank line (key None).
        self._lines: list[tuple[str | None, str]] = []

    # -- reading ----------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PasswordFile:
        """Read a password file.

        Args:
            path: The file.

        Returns:
            Its users.

        Raises:
            ConfigError: A line is not ``username:hash`` with a decodable hash, or a username
                appears twice; ``where`` is ``"<path>:<line number>"``.
            OSError: The file cannot be read.
        """
        return cls._read(path, plain=False)

    @classmethod
    def load_plain(cls, path: str | os.PathLike[str]) -> PasswordFile:
        """Read a file of plain ``username:password`` lines, hashing each password
        (``mosquitto_passwd -U``).

        The password is everything after the first ``:`` up to the end of the line, a CRLF
        ending excluded (``mosquitto_passwd -U`` stops at a second ``:``). A line whose password
        already is a valid ``$7$`` / ``$6$`` hash is kept as it is instead of being hashed again,
        so running the upgrade twice is harmless.

        Raises:
            ConfigError: A line has no ``:``, an unusable username or a duplicate username.
            OSError: The file cannot be read.
        """
        return cls._read(path, plain=True)

    @classmethod
    def _read(cls, path: str | os.PathLike[str], *, plain: bool) -> PasswordFile:
        pwfile = cls()
        with open(path, "rb") as f:
            data = f.read()
        raw_lines = data.split(b"\n")
        if raw_lines[-1] == b"":
            del raw_lines[-1]
        for lineno, raw in enumerate(raw_lines, start=1):
            where = f"{os.fspath(path)}:{lineno}"
            try:
                line = raw.decode("utf-8").removesuffix("\r")
            except UnicodeDecodeError:
                raise ConfigError(where, "not valid UTF-8") from None
            if not line.strip(_BLANKS) or line.startswith("#"):
                pwfile._lines.append((None, line))
                continue
            username, sep, secret = line.partition(":")
            if not sep:
                raise ConfigError(where, "expected username:password-hash")
            if plain:
                username = username.strip(_BLANKS)
            else:
                username, secret = username.strip(_BLANKS), secret.strip(_BLANKS)
            try:
                validate_username(username)
            except ValueError as exc:
                raise ConfigError(where, str(exc)) from None
            if username in pwfile._hashes:
                raise ConfigError(where, f"user {username!r} is defined twice")
            try:
                decoded = _Hash.parse(secret)
            except ValueError as exc:
                if not plain:
                    # The message names the format, never the (possibly plain) text itself.
                    raise ConfigError(where, f"user {username!r}: {exc}") from None
                decoded = _Hash.parse(hash_password(secret))
            pwfile._hashes[username] = decoded
            pwfile._lines.append((username, ""))
        return pwfile

    # -- queries ----------------------------------------------------------------------------

    def __contains__(self, username: object) -> bool:
        return username in self._hashes

    def __len__(self) -> int:
        return len(self._hashes)

    def __iter__(self) -> Iterator[str]:
        return iter(self._hashes)

    @property
    def max_iterations(self) -> int:
        """The largest hash iteration count in the file (0 when it is empty): the cost of the
        most expensive :meth:`verify`.
        """
        return max((h.iterations for h in self._hashes.values()), default=0)

    def verify(self, username: str, password: bytes) -> bool:
        """Tell whether ``password`` is the password of ``username``.

        The digest comparison is constant-time, and an unknown username costs one hash
        computation like a known one.

        Args:
            username: The CONNECT username.
            password: The CONNECT password, as sent.

        Returns:
            True only for a known user and the right password.
        """
        entry = self._hashes.get(username)
        if entry is None:
            _DUMMY.matches(password)
            return False
        return entry.matches(password)

    def scram(self, username: str) -> ScramCredentials | None:
        """The SCRAM-SHA-256 credentials of ``username``; None for an unknown user or one whose
        line holds a Mosquitto hash (which cannot answer a SCRAM exchange).
        """
        entry = self._hashes.get(username)
        return entry.scram if entry is not None else None

    # -- changes ----------------------------------------------------------------------------

    def set(
        self,
        username: str,
        password: bytes | str,
        *,
        iterations: int | None = None,
        scram: bool = False,
    ) -> None:
        """Add a user or change the password of one (``mosquitto_passwd -b``).

        Only a hash is kept: PBKDF2-SHA512 as Mosquitto (101 iterations by default), or with
        ``scram`` SCRAM-SHA-256 credentials (4096 iterations by default). A new user is appended
        at the end of the file.

        Raises:
            ValueError: The username is unusable (see :func:`validate_username`).
        """
        validate_username(username)
        if scram:
            creds = ScramCredentials.from_password(password, iterations=iterations or 4096)
            entry = _Hash.parse(str(creds))
        else:
            text = hash_password(password, iterations=iterations or DEFAULT_ITERATIONS)
            entry = _Hash.parse(text)
        if username not in self._hashes:
            self._lines.append((username, ""))
        self._hashes[username] = entry

    def delete(self, username: str) -> None:
        """Remove a user (``mosquitto_passwd -D``).

        Raises:
            KeyError: No such user.
        """
        del self._hashes[username]
        self._lines = [item for item in self._lines if item[0] != username]

    # -- writing ----------------------------------------------------------------------------

    def dumps(self) -> str:
        """The file contents: one ``username:hash`` line per user, comments kept in place."""
        out = []
        for username, text in self._lines:
            out.append(text if username is None else f"{username}:{self._hashes[username].text}")
        return "".join(line + "\n" for line in out)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the file atomically with mode 0600.

        The contents go to a temporary file in the same directory, which is flushed to disk and
        then renamed over ``path``: a reader sees the old file or the new one, never a mix.

        Raises:
            OSError: The directory is not writable, the disk is full...
        """
        target = Path(path)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(self.dumps())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
