"""Mosquitto password files (broker/auth/passwd.py) and the password authenticator."""

from __future__ import annotations

import ast
import asyncio
import base64
import hashlib
import hmac
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from wrenmq.broker.auth import passwd as passwd_mod
from wrenmq.broker.auth.base import AuthChain, PasswordFileAuthenticator
from wrenmq.broker.auth.passwd import PasswordFile, hash_password, validate_username
from wrenmq.broker.hooks import Verdict
from wrenmq.errors import ConfigError

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
needs_mosquitto_passwd = pytest.mark.skipif(
    MOSQUITTO_PASSWD is None, reason="mosquitto_passwd not installed"
)

# Written by mosquitto_passwd 2.0.11 (`-c -b f alice secret`, then `-H sha512`): golden lines that
# do not depend on our encoder.
GOLDEN_PBKDF2 = (
    "alice:$7$101$ZfbFXKsWeTeOU+xq$UM+Q66TtNhrBYN+r9iqdrYN1ymHQQkZlMCQSLulwi6Rv/JVWF2JRiygGvlgNsk55"
    "VQqtY17WsTRWrJNcOxvZQw=="
)
GOLDEN_SHA512 = (
    "alice:$6$851URwyxOYtFqHcA$Ze+scCOVYqmucYc4mEXghs9aT2sFdh0tqZr/T3soujXDFoKstRlOU0srxjiguYv6SN5g"
    "N2W+z+fkibgwld8lDg=="
)
B64 = "[A-Za-z0-9+/]"
PBKDF2_LINE = re.compile(rf"\$7\$101\${B64}{{16}}\${B64}{{86}}==")


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str | bytes], Path]:
    def make(content: str | bytes) -> Path:
        path = tmp_path / "passwd"
        if isinstance(content, str):
            content = content.encode("utf-8")
        path.write_bytes(content)
        return path

    return make


# -- hashing -----------------------------------------------------------------------------------


def test_hash_password_format_matches_mosquitto_passwd() -> None:
    text = hash_password(b"secret")
    assert PBKDF2_LINE.fullmatch(text), text
    _, seven, iterations, salt, digest = text.split("$")
    assert (seven, iterations) == ("7", "101")
    assert len(base64.b64decode(salt)) == 12
    assert base64.b64decode(digest) == hashlib.pbkdf2_hmac(
        "sha512", b"secret", base64.b64decode(salt), 101
    )


def test_hash_password_with_given_salt_and_iterations_is_reproducible() -> None:
    salt = bytes(range(12))
    expected = hashlib.pbkdf2_hmac("sha512", "pässword".encode(), salt, 500)
    text = hash_password("pässword", iterations=500, salt=salt)
    assert text == (
        f"$7$500${base64.b64encode(salt).decode()}${base64.b64encode(expected).decode()}"
    )


def test_hash_password_salts_are_random() -> None:
    assert hash_password(b"x") != hash_password(b"x")


@pytest.mark.parametrize("kwargs", [{"iterations": 0}, {"iterations": -1}, {"salt": b""}])
def test_hash_password_rejects_bad_parameters(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        hash_password(b"x", **kwargs)  # type: ignore[arg-type]


# -- reading and verifying ---------------------------------------------------------------------


@pytest.mark.parametrize("line", [GOLDEN_PBKDF2, GOLDEN_SHA512], ids=["$7$", "$6$"])
def test_golden_mosquitto_lines_verify(write: Callable[[str], Path], line: str) -> None:
    pwfile = PasswordFile.load(write(line + "\n"))
    assert "alice" in pwfile
    assert len(pwfile) == 1
    assert pwfile.verify("alice", b"secret")
    assert not pwfile.verify("alice", b"Secret")
    assert not pwfile.verify("alice", b"")
    assert not pwfile.verify("bob", b"secret")


@needs_mosquitto_passwd
def test_file_made_by_mosquitto_passwd_verifies(tmp_path: Path) -> None:
    assert MOSQUITTO_PASSWD is not None
    path = tmp_path / "pw"
    run = [MOSQUITTO_PASSWD, "-b", str(path)]
    subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", str(path), "alice", "s3cret"], check=True)
    subprocess.run([*run, "bob", "pässwörd with spaces"], check=True)
    subprocess.run([*run, "sp ace", ""], check=True)
    subprocess.run([MOSQUITTO_PASSWD, "-H", "sha512", "-b", str(path), "old", "legacy"], check=True)
    pwfile = PasswordFile.load(path)
    assert list(pwfile) == ["alice", "bob", "sp ace", "old"]
    assert pwfile.verify("alice", b"s3cret")
    assert pwfile.verify("bob", "pässwörd with spaces".encode())
    assert pwfile.verify("sp ace", b"")
    assert pwfile.verify("old", b"legacy")
    assert not pwfile.verify("alice", b"s3cre")
    assert not pwfile.verify("old", b"s3cret")


@needs_mosquitto_passwd
def test_plain_file_upgraded_by_mosquitto_passwd_verifies(tmp_path: Path) -> None:
    assert MOSQUITTO_PASSWD is not None
    path = tmp_path / "pw"
    path.write_text("alice:one\nbob:two\n", encoding="utf-8")
    subprocess.run([MOSQUITTO_PASSWD, "-U", str(path)], check=True)
    pwfile = PasswordFile.load(path)
    assert pwfile.verify("alice", b"one")
    assert pwfile.verify("bob", b"two")


def test_comments_blank_lines_blanks_and_crlf(write: Callable[[str], Path]) -> None:
    text = f"# users\n\n  \r\n {GOLDEN_PBKDF2.replace(':', ' :', 1)} \r\n#bob:$7$junk\n"
    pwfile = PasswordFile.load(write(text))
    assert list(pwfile) == ["alice"]
    assert pwfile.verify("alice", b"secret")


BAD_LINES = [
    ("nocolon", "expected username:password-hash"),
    (":$7$101$AAAA$AAAA", "empty username"),
    ("bob:hunter2", "not a $7$"),  # a plain password: refused like Mosquitto 2 does
    ("bob:", "not a $7$"),
    ("bob:$5$abc$def", "not a $7$"),
    ("bob:$7$101$AAAAAAAAAAAAAAAA", "expected $7$<iterations>"),
    ("bob:$7$0$AAAAAAAAAAAAAAAA$" + "A" * 86 + "==", "iteration count"),
    ("bob:$7$x$AAAAAAAAAAAAAAAA$" + "A" * 86 + "==", "iteration count"),
    ("bob:$7$101$!!!$" + "A" * 86 + "==", "salt is not valid base64"),
    ("bob:$7$101$$" + "A" * 86 + "==", "empty salt"),
    ("bob:$7$101$AAAAAAAAAAAAAAAA$AAAA", "hash is 3 bytes"),
    ("bob:$6$AAAAAAAAAAAAAAAA", "expected $6$<salt>$<hash>"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES, ids=[b[0][:20] for b in BAD_LINES])
def test_malformed_line_is_config_error_with_file_and_line(
    write: Callable[[str], Path], line: str, reason: str
) -> None:
    path = write(f"# first\n{GOLDEN_PBKDF2}\n{line}\n")
    with pytest.raises(ConfigError) as info:
        PasswordFile.load(path)
    assert info.value.where == f"{path}:3"
    assert reason in info.value.reason
    assert "hunter2" not in str(info.value)


def test_duplicate_user_is_config_error(write: Callable[[str], Path]) -> None:
    path = write(f"{GOLDEN_PBKDF2}\n{GOLDEN_SHA512}\n")
    with pytest.raises(ConfigError, match="defined twice") as info:
        PasswordFile.load(path)
    assert info.value.where == f"{path}:2"


def test_non_utf8_line_is_config_error(write: Callable[[bytes], Path]) -> None:
    path = write(GOLDEN_PBKDF2.encode() + b"\n\xff\xfe:x\n")
    with pytest.raises(ConfigError, match="UTF-8") as info:
        PasswordFile.load(path)
    assert info.value.where == f"{path}:2"


def test_missing_file_is_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        PasswordFile.load(tmp_path / "nope")


def test_unknown_user_costs_one_hash_like_a_known_one(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = hashlib.pbkdf2_hmac

    def counting(*args: object) -> bytes:
        calls.append(args[0])
        return real(*args)  # type: ignore[arg-type]

    pwfile = PasswordFile()
    pwfile.set("alice", b"pw")
    monkeypatch.setattr("wrenmq.broker.auth.passwd.hashlib.pbkdf2_hmac", counting)
    assert not pwfile.verify("alice", b"wrong")
    assert not pwfile.verify("mallory", b"wrong")
    assert calls == ["sha512", "sha512"]


def test_verify_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    pwfile = PasswordFile()
    pwfile.set("alice", b"pw")
    monkeypatch.setattr("wrenmq.broker.auth.passwd.hmac.compare_digest", spy)
    assert pwfile.verify("alice", b"pw")
    assert compared == [(64, 64)]


# -- changing and saving -----------------------------------------------------------------------


def test_set_delete_save_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    pwfile = PasswordFile()
    pwfile.set("alice", b"one")
    pwfile.set("bob", "twö")
    pwfile.set("alice", b"three")  # a change keeps alice first
    pwfile.save(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [line.split(":")[0] for line in lines] == ["alice", "bob"]
    assert all(PBKDF2_LINE.fullmatch(line.split(":", 1)[1]) for line in lines)
    loaded = PasswordFile.load(path)
    assert loaded.verify("alice", b"three")
    assert not loaded.verify("alice", b"one")
    assert loaded.verify("bob", "twö".encode())
    loaded.delete("alice")
    with pytest.raises(KeyError):
        loaded.delete("alice")
    loaded.save(path)
    assert list(PasswordFile.load(path)) == ["bob"]


def test_plain_passwords_are_never_kept() -> None:
    pwfile = PasswordFile()
    pwfile.set("alice", b"hunter2-plain")
    assert "hunter2-plain" not in pwfile.dumps()
    assert "hunter2-plain" not in repr(pwfile.__dict__)


def test_save_keeps_comments_and_unchanged_lines_verbatim(write: Callable[[str], Path]) -> None:
    original = f"# managed by hand\n{GOLDEN_SHA512}\n\n# end\n"
    path = write(original)
    pwfile = PasswordFile.load(path)
    pwfile.save(path)
    assert path.read_text(encoding="utf-8") == original
    pwfile.set("bob", b"x")
    pwfile.save(path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith(original)
    assert text.count("\n") == original.count("\n") + 1


def test_save_is_0600_and_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("old\n", encoding="utf-8")
    path.chmod(0o644)
    pwfile = PasswordFile()
    pwfile.set("alice", b"x")
    pwfile.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pw"]


def test_failed_save_leaves_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "pw"
    path.write_text(GOLDEN_PBKDF2 + "\n", encoding="utf-8")
    pwfile = PasswordFile()
    pwfile.set("bob", b"x")

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("wrenmq.broker.auth.passwd.os.replace", fail)
    with pytest.raises(OSError, match="No space"):
        pwfile.save(path)
    assert path.read_text(encoding="utf-8") == GOLDEN_PBKDF2 + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pw"]


BAD_USERNAMES = ["", "a:b", "a\nb", "a\rb", "a\x00b", "a\x7fb", "#admin", " alice", "alice\t"]


@pytest.mark.parametrize("username", BAD_USERNAMES)
def test_unusable_usernames_are_refused(username: str) -> None:
    with pytest.raises(ValueError):
        validate_username(username)
    with pytest.raises(ValueError):
        PasswordFile().set(username, b"x")


@pytest.mark.parametrize("username", ["alice", "sp ace", "u#", "ünï", "a+b/c", "x" * 1000])
def test_usable_usernames(username: str, tmp_path: Path) -> None:
    pwfile = PasswordFile()
    pwfile.set(username, b"pw")
    pwfile.save(tmp_path / "pw")
    assert PasswordFile.load(tmp_path / "pw").verify(username, b"pw")


def test_load_plain_hashes_plain_lines_and_keeps_hashed_ones(write: Callable[[str], Path]) -> None:
    path = write(f"# comment\nbob:pw\ncarol:x:y\r\ndave: spaced \n{GOLDEN_SHA512}\n")
    pwfile = PasswordFile.load_plain(path)
    assert pwfile.verify("bob", b"pw")
    assert pwfile.verify("carol", b"x:y")
    assert pwfile.verify("dave", b" spaced ")
    assert pwfile.verify("alice", b"secret")
    text = pwfile.dumps()
    assert text.startswith("# comment\n")
    assert GOLDEN_SHA512 in text  # not hashed a second time
    assert "pw" not in text.replace("$", " ").split()  # no plain password written back
    pwfile.save(path)
    assert PasswordFile.load(path).verify("carol", b"x:y")


def test_load_plain_errors_name_the_line(write: Callable[[str], Path]) -> None:
    path = write("bob:pw\nnocolon\n")
    with pytest.raises(ConfigError) as info:
        PasswordFile.load_plain(path)
    assert info.value.where == f"{path}:2"


def test_max_iterations() -> None:
    pwfile = PasswordFile()
    assert pwfile.max_iterations == 0
    pwfile.set("a", b"x")
    pwfile.set("b", b"x", iterations=2000)
    assert pwfile.max_iterations == 2000


def test_passwd_module_is_pure() -> None:
    tree = ast.parse(Path(passwd_mod.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"asyncio", "socket", "ssl", "selectors", "time", "logging"}


# -- the authenticator and the chain -----------------------------------------------------------


@pytest.fixture
def alice_file() -> PasswordFile:
    pwfile = PasswordFile()
    pwfile.set("alice", b"secret")
    return pwfile


@pytest.mark.parametrize(
    ("username", "password", "expected"),
    [
        ("alice", b"secret", Verdict.ALLOW),
        ("alice", b"wrong", Verdict.DENY),
        ("alice", None, Verdict.DENY),
        ("mallory", b"secret", Verdict.DEFER),
        (None, None, Verdict.DEFER),
    ],
)
async def test_password_file_authenticator(
    alice_file: PasswordFile, username: str | None, password: bytes | None, expected: Verdict
) -> None:
    auth = PasswordFileAuthenticator(alice_file)
    assert await auth.authenticate("c1", username, password, "127.0.0.1:1") is expected


async def test_empty_password_never_authenticates() -> None:
    pwfile = PasswordFile()
    pwfile.set("guest", b"")
    assert pwfile.verify("guest", b"")  # the file itself is faithful...
    auth = PasswordFileAuthenticator(pwfile)
    # ...but like Mosquitto 2.0.11 the authenticator refuses an empty or missing password.
    assert await auth.authenticate("c", "guest", b"", "p") is Verdict.DENY
    assert await auth.authenticate("c", "guest", None, "p") is Verdict.DENY


async def test_expensive_hashes_are_verified_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    offloaded: list[object] = []
    original = asyncio.to_thread

    async def spy(fn: Callable[..., object], /, *args: object) -> object:
        offloaded.append(fn)
        return await original(fn, *args)

    monkeypatch.setattr("wrenmq.broker.auth.base.asyncio.to_thread", spy)
    cheap, dear = PasswordFile(), PasswordFile()
    cheap.set("alice", b"secret")
    dear.set("alice", b"secret", iterations=5000)
    assert await PasswordFileAuthenticator(cheap).authenticate("c", "alice", b"secret", "p") is (
        Verdict.ALLOW
    )
    assert offloaded == []
    assert await PasswordFileAuthenticator(dear).authenticate("c", "alice", b"secret", "p") is (
        Verdict.ALLOW
    )
    assert len(offloaded) == 1


@pytest.mark.parametrize(
    ("allow_anonymous", "username", "password", "expected"),
    [
        (False, "alice", b"secret", Verdict.ALLOW),
        (False, "alice", b"bad", Verdict.DENY),
        (False, None, None, Verdict.DENY),
        (True, None, None, Verdict.ALLOW),  # anonymous, allowed
        (True, "mallory", b"x", Verdict.DENY),  # unknown user: not anonymous, so refused
        (True, "alice", b"bad", Verdict.DENY),
    ],
)
async def test_chain_authentication(
    alice_file: PasswordFile,
    allow_anonymous: bool,
    username: str | None,
    password: bytes | None,
    expected: Verdict,
) -> None:
    chain = AuthChain([PasswordFileAuthenticator(alice_file)], [], allow_anonymous=allow_anonymous)
    assert await chain.authenticate("c1", username, password, "peer") is expected


@pytest.mark.parametrize("allow_anonymous", [True, False])
async def test_chain_without_authenticators_follows_allow_anonymous(allow_anonymous: bool) -> None:
    chain = AuthChain([], [], allow_anonymous=allow_anonymous)
    expected = Verdict.ALLOW if allow_anonymous else Verdict.DENY
    # Like Mosquitto without a password_file: a username is not checked.
    assert await chain.authenticate("c", "anyone", b"x", "p") is expected
    assert await chain.authenticate("c", None, None, "p") is expected


class Fixed:
    def __init__(self, verdict: object) -> None:
        self.verdict = verdict
        self.calls = 0

    async def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, peer: str
    ) -> Verdict:
        self.calls += 1
        if isinstance(self.verdict, Exception):
            raise self.verdict
        return self.verdict  # type: ignore[return-value]


async def test_chain_first_decision_wins_and_defer_goes_on(alice_file: PasswordFile) -> None:
    defer, allow, deny = Fixed(Verdict.DEFER), Fixed(Verdict.ALLOW), Fixed(Verdict.DENY)
    chain = AuthChain([defer, allow, deny], [], allow_anonymous=False)
    assert await chain.authenticate("c", "x", b"y", "p") is Verdict.ALLOW
    assert (defer.calls, allow.calls, deny.calls) == (1, 1, 0)
    # An unknown user defers past the file to the next authenticator.
    chain = AuthChain([PasswordFileAuthenticator(alice_file), allow], [], allow_anonymous=False)
    assert await chain.authenticate("c", "mallory", b"y", "p") is Verdict.ALLOW
    assert await chain.authenticate("c", "alice", b"bad", "p") is Verdict.DENY


async def test_chain_fails_closed_on_errors(caplog: pytest.LogCaptureFixture) -> None:
    boom, later = Fixed(RuntimeError("boom")), Fixed(Verdict.ALLOW)
    chain = AuthChain([boom, later], [], allow_anonymous=True)
    with caplog.at_level("ERROR", logger="wrenmq.broker.auth"):  # expected: the error is logged
        assert await chain.authenticate("c", None, b"pw-not-logged", "p") is Verdict.DENY
        assert await chain.authenticate("c", None, None, "p") is Verdict.DENY
        chain = AuthChain([Fixed(None)], [], allow_anonymous=True)
        assert await chain.authenticate("c", None, None, "p") is Verdict.DENY
    assert later.calls == 0
    assert chain.errors == 1
    assert "pw-not-logged" not in caplog.text
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 3


def test_mode_helper_is_not_umask_dependent(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        pwfile = PasswordFile()
        pwfile.set("a", b"b")
        pwfile.save(tmp_path / "pw")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "pw").stat().st_mode) == 0o600
