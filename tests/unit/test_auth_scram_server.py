"""SCRAM-SHA-256, broker side: RFC 7677's test vector, malformed messages, the password file's
SCRAM lines, and the verdict cache the broker reads synchronously.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from wrenmq.broker.auth.acl import Access
from wrenmq.broker.auth.base import AuthChain
from wrenmq.broker.auth.enhanced import Continue, Failure, ScramSha256, Success
from wrenmq.broker.auth.passwd import PasswordFile
from wrenmq.broker.hooks import Verdict
from wrenmq.client.scram import ScramSha256Authenticator
from wrenmq.errors import ConfigError
from wrenmq.protocol.scram import ScramCredentials

# RFC 7677 section 3: user "user", password "pencil".
SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"


def rfc_credentials() -> ScramCredentials:
    return ScramCredentials.from_password("pencil", iterations=4096, salt=SALT)


def method(users: dict[str, ScramCredentials] | None = None) -> ScramSha256:
    return ScramSha256((users if users is not None else {"user": rfc_credentials()}).get)


def test_credentials_round_trip_in_postgresql_format() -> None:
    creds = rfc_credentials()
    text = str(creds)
    assert text.startswith("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$")
    assert ScramCredentials.parse(text) == creds
    assert creds.check_password("pencil") and not creds.check_password("pencil!")
    assert "pencil" not in repr(creds) and creds.stored_key.hex() not in repr(creds)


def test_rfc7677_exchange_against_the_real_client() -> None:
    client = ScramSha256Authenticator("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    exchange = method()()
    first = exchange.start("c", None, client.initial())
    assert isinstance(first, Continue)
    text = first.data.decode()
    assert (
        text.startswith("r=rOprNGfwEbeRWgbNEkqO") and ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096" in text
    )
    done = exchange.step(client.challenge(first.data))
    assert isinstance(done, Success) and done.username == "user"
    client.complete(done.data)  # raises unless the server signature is right


def test_server_signature_is_rfc_computed() -> None:
    """Compute the expected signature independently of both implementations."""
    client = ScramSha256Authenticator("user", "pencil", nonce="abc")
    exchange = method()()
    first = exchange.start("c", None, client.initial())
    assert isinstance(first, Continue)
    final = client.challenge(first.data)
    done = exchange.step(final)
    assert isinstance(done, Success)
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", SALT, 4096)
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    without_proof = final.decode().rsplit(",p=", 1)[0]
    auth_message = f"n=user,r=abc,{first.data.decode()},{without_proof}".encode()
    expected = base64.b64encode(hmac.new(server_key, auth_message, "sha256").digest())
    assert done.data == b"v=" + expected


@pytest.mark.parametrize(
    "first",
    [
        None,
        b"",
        b"\xff\xfe",
        b"p=tls-unique,,n=user,r=abc",  # channel binding
        b"n,a=admin,n=user,r=abc",  # authorization identity
        b"n,,n=user",  # no nonce
        b"n,,r=abc,n=user",  # wrong order
        b"n,,n=us=er,r=abc",  # a bare '=' in the name
        b"n,,m=ext,n=user,r=abc",
        b"x,,n=user,r=abc",
        b"garbage",
    ],
)
def test_malformed_client_first_fails(first: bytes | None) -> None:
    assert isinstance(method()().start("c", None, first), Failure)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda final: final.replace(b"c=biws", b"c=eSws"),  # other channel binding
        lambda final: final.replace(b"r=", b"r=x", 1),  # another nonce
        lambda final: final[: final.rindex(b",p=")],  # no proof
        lambda final: final[:-4] + b"AAA=",  # wrong proof
        lambda final: final.rsplit(b",p=", 1)[0] + b",p=!!",  # not base64
        lambda final: final.rsplit(b",p=", 1)[0] + b",p=" + base64.b64encode(b"short"),
        lambda final: b"\xff" + final,
    ],
)
def test_bad_client_final_fails(mangle) -> None:  # type: ignore[no-untyped-def]
    client = ScramSha256Authenticator("user", "pencil")
    exchange = method()()
    first = exchange.start("c", None, client.initial())
    assert isinstance(first, Continue)
    assert isinstance(exchange.step(mangle(client.challenge(first.data))), Failure)


def test_one_proof_per_exchange_and_no_step_before_start() -> None:
    assert isinstance(method()().step(b"c=biws,r=x,p=AAAA"), Failure)
    client = ScramSha256Authenticator("user", "pencil")
    exchange = method()()
    first = exchange.start("c", None, client.initial())
    assert isinstance(first, Continue)
    final = client.challenge(first.data)
    assert isinstance(exchange.step(final), Success)
    assert isinstance(exchange.step(final), Failure)  # no replay within the exchange


def test_unknown_user_looks_like_a_known_one_until_the_end() -> None:
    scram = method()
    a = scram().start("c", None, b"n,,n=ghost,r=abc")
    b = scram().start("c", None, b"n,,n=ghost,r=abc")
    assert isinstance(a, Continue) and isinstance(b, Continue)
    salt_a = a.data.decode().split(",s=")[1]
    assert salt_a == b.data.decode().split(",s=")[1]  # stable, so probing learns nothing
    assert a.data.decode().endswith(",i=4096")
    client = ScramSha256Authenticator("ghost", "anything")
    exchange = scram()
    first = exchange.start("c", None, client.initial())
    assert isinstance(first, Continue)
    assert isinstance(exchange.step(client.challenge(first.data)), Failure)


def test_password_file_scram_lines(tmp_path: Path) -> None:
    pw = PasswordFile()
    pw.set("s", "secret", scram=True)
    pw.set("m", "secret")
    path = tmp_path / "passwd"
    pw.save(path)
    loaded = PasswordFile.load(path)
    assert loaded.verify("s", b"secret") and not loaded.verify("s", b"other")
    assert loaded.verify("m", b"secret")
    creds = loaded.scram("s")
    assert creds is not None and creds.iterations == 4096 and loaded.scram("m") is None
    assert loaded.dumps() == pw.dumps()


@pytest.mark.parametrize(
    "line",
    [
        "u:SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",  # keys too short
        "u:SCRAM-SHA-256$x:c2FsdA==$" + "A" * 43 + "=:" + "A" * 43 + "=",
        "u:SCRAM-SHA-256$4096c2FsdA==",
        "u:SCRAM-SHA-256$4096:!!$" + "A" * 43 + "=:" + "A" * 43 + "=",
    ],
)
def test_bad_scram_lines_are_config_errors(tmp_path: Path, line: str) -> None:
    path = tmp_path / "passwd"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        PasswordFile.load(path)
    assert f"{path}:1" in str(err.value)


async def test_chain_cache_is_readable_synchronously() -> None:
    now = [0.0]

    class Allow:
        async def authorize(self, *args: object) -> Verdict:
            return Verdict.ALLOW

    chain = AuthChain((), [Allow()], allow_anonymous=False, cache_ttl=10, clock=lambda: now[0])
    assert chain.cached("c", None, "t", Access.WRITE) is None
    assert await chain.authorize("c", None, "t", Access.WRITE) is Verdict.ALLOW
    assert chain.cached("c", None, "t", Access.WRITE) is Verdict.ALLOW
    assert chain.cached("c", "u", "t", Access.WRITE) is None
    now[0] = 11
    assert chain.cached("c", None, "t", Access.WRITE) is None
    uncached = AuthChain((), [Allow()], allow_anonymous=False)
    await uncached.authorize("c", None, "t", Access.WRITE)
    assert uncached.cached("c", None, "t", Access.WRITE) is None


async def test_chain_listener_override_of_allow_anonymous() -> None:
    chain = AuthChain([], (), allow_anonymous=True)
    assert await chain.authenticate("c", None, None, "p") is Verdict.ALLOW
    assert await chain.authenticate("c", None, None, "p", allow_anonymous=False) is Verdict.DENY
