"""SCRAM-SHA-256, client side: RFC 7677's test vector, the checks on the server, SASLprep."""

from __future__ import annotations

import base64

import pytest

from wrenmq.client.scram import ScramSha256Authenticator, saslprep
from wrenmq.errors import AuthError

# RFC 7677 section 3.
CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def vector() -> ScramSha256Authenticator:
    return ScramSha256Authenticator("user", "pencil", nonce=CLIENT_NONCE)


def test_rfc7677_test_vector() -> None:
    scram = vector()
    assert scram.initial() == CLIENT_FIRST
    assert scram.challenge(SERVER_FIRST) == CLIENT_FINAL
    scram.complete(SERVER_FINAL)


def test_server_final_in_an_auth_packet() -> None:
    scram = vector()
    scram.initial()
    scram.challenge(SERVER_FIRST)
    assert scram.challenge(SERVER_FINAL) == b""
    scram.complete(None)  # CONNACK without data after that: fine


@pytest.mark.parametrize(
    "final",
    [
        None,
        b"v=" + base64.b64encode(b"\x00" * 32),
        b"v=not base64!",
        b"e=invalid-proof",
    ],
)
def test_a_server_that_cannot_prove_itself_is_refused(final: bytes | None) -> None:
    scram = vector()
    scram.initial()
    scram.challenge(SERVER_FIRST)
    with pytest.raises(AuthError):
        scram.complete(final)


@pytest.mark.parametrize(
    "server_first",
    [
        b"r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  # not our nonce
        b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  # no server part
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000",  # too few iterations
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=!!,i=4096",  # salt not base64
        b"r=rOprNGfwEbeRWgbNEkqOxyz,i=4096",  # no salt
        b"m=ext,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        b"e=unknown-user",
        b"garbage",
    ],
)
def test_bad_server_first_messages(server_first: bytes) -> None:
    scram = vector()
    scram.initial()
    with pytest.raises(AuthError):
        scram.challenge(server_first)


def test_each_exchange_has_a_fresh_nonce_and_order_is_enforced() -> None:
    scram = ScramSha256Authenticator("user", "pencil")
    first, second = scram.initial(), scram.initial()
    assert first != second and first.startswith(b"n,,n=user,r=")
    with pytest.raises(AuthError):
        ScramSha256Authenticator("u", "p").challenge(SERVER_FIRST)  # before initial()
    with pytest.raises(AuthError):
        ScramSha256Authenticator("u", "p").complete(SERVER_FINAL)
    assert "pencil" not in repr(scram)


def test_username_escaping_and_saslprep() -> None:
    scram = ScramSha256Authenticator("a=b,c", "x", nonce="n")
    assert scram.initial() == b"n,,n=a=3Db=2Cc,r=n"
    # RFC 4013 section 3 examples.
    assert saslprep("I\u00adX") == "IX"
    assert saslprep("user") == "user"
    assert saslprep("USER") == "USER"
    assert saslprep("\u00aa") == "a"
    assert saslprep("\u2168") == "IX"
    with pytest.raises(ValueError):
        saslprep("\u0007")
    with pytest.raises(ValueError):
        saslprep("\u0627\u0031")  # bidi: must end right-to-left
