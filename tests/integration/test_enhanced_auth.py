"""MQTT 5 enhanced authentication in the broker: SCRAM-SHA-256 with the wrenmq client (whose
SCRAM side checks the server's signature, so a broker that did not really know the credentials
fails these tests), re-authentication, a custom method through the hook, and the protocol rules
on AUTH packets over raw sockets.

The SCRAM users come from a password file written by ``wrenmq passwd --scram`` (the real CLI).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from rawmqtt import AUTH, CONNACK, DISCONNECT, Packet, Raw, connect, parse_props, prop

from brokerthread import BrokerThread
from wrenmq.broker.auth.enhanced import Continue, Failure, Success
from wrenmq.broker.auth.passwd import PasswordFile
from wrenmq.broker.broker import Broker
from wrenmq.client import Client
from wrenmq.client.scram import ScramSha256Authenticator
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import ConnectError, NegativeAckError

WRENMQ = str(Path(sys.executable).with_name("wrenmq"))
SCRAM = "SCRAM-SHA-256"
AUTH_METHOD, AUTH_DATA, REASON_STRING = 0x15, 0x16, 0x1F


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "passwd"
    for flags, user, password in [
        (["-c", "--scram"], "alice", "wonderland"),
        (["--scram"], "b,o=b", "builder"),  # a name SCRAM must escape
        ([], "mosq", "plain"),  # a Mosquitto $7$ line: plain passwords only
    ]:
        subprocess.run(
            [WRENMQ, "passwd", *flags, "-b", str(path), user, password],
            check=True,
            capture_output=True,
            timeout=30,
        )
    return path


@pytest.fixture
async def broker(password_file: Path, tmp_path: Path) -> AsyncIterator[Broker]:
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic readwrite alice/#\n", encoding="utf-8")
    async with Broker(
        port=0,
        bind_address="127.0.0.1",
        sys_interval=0,
        password_file=str(password_file),
        acl_file=str(acl),
        allow_anonymous=False,
    ) as b:
        yield b


def scram_client(broker: Broker, user: str, password: str, **kwargs: object) -> Client:
    return Client(
        "127.0.0.1",
        broker.port,
        auth_method=SCRAM,
        authenticator=ScramSha256Authenticator(user, password),
        reconnect=False,
        **kwargs,  # type: ignore[arg-type]
    )


def test_the_scram_line_is_postgresql_format(password_file: Path) -> None:
    text = password_file.read_text(encoding="utf-8")
    assert text.startswith("alice:SCRAM-SHA-256$4096:")
    assert "wonderland" not in text
    assert "\nmosq:$7$101$" in text
    pwfile = PasswordFile.load(password_file)
    assert pwfile.verify("alice", b"wonderland") and not pwfile.verify("alice", b"x")
    assert pwfile.scram("alice") is not None and pwfile.scram("mosq") is None


async def test_scram_login_and_acl_apply_to_the_scram_user(broker: Broker) -> None:
    async with scram_client(broker, "alice", "wonderland", client_id="a1") as client:
        # The client checked the server signature in CONNACK (it raises otherwise).
        assert await client.subscribe("alice/#", qos=1) == ReasonCode.GRANTED_QOS_1
        with pytest.raises(NegativeAckError) as denied:
            await client.subscribe("other/#", qos=1)
        assert denied.value.reason_code == ReasonCode.NOT_AUTHORIZED
        await client.publish("alice/x", b"hello", qos=1)
        async with asyncio.timeout(5):
            message = await anext(aiter(client.messages))
        assert (message.topic, message.payload) == ("alice/x", b"hello")
    assert not any(s.connected for s in broker.list_sessions())


async def test_scram_user_name_with_escaped_characters(broker: Broker) -> None:
    async with scram_client(broker, "b,o=b", "builder") as client:
        assert client.is_connected


@pytest.mark.parametrize(
    ("user", "password"),
    [("alice", "wrong"), ("nobody", "wonderland"), ("mosq", "plain")],
    ids=["wrong-password", "unknown-user", "user-without-scram-credentials"],
)
async def test_scram_refusals(broker: Broker, user: str, password: str) -> None:
    with pytest.raises(ConnectError) as err:
        async with scram_client(broker, user, password):
            pass
    assert err.value.reason_code == ReasonCode.NOT_AUTHORIZED
    assert broker.connected_count == 0


async def test_a_scram_user_can_also_log_in_with_a_plain_password(broker: Broker) -> None:
    async with Client(
        "127.0.0.1", broker.port, username="alice", password="wonderland", reconnect=False
    ) as client:
        assert client.is_connected
    with pytest.raises(ConnectError):
        async with Client(
            "127.0.0.1", broker.port, username="alice", password="nope", reconnect=False
        ):
            pass


async def test_reauthentication_keeps_the_connection(broker: Broker) -> None:
    async with scram_client(broker, "alice", "wonderland", client_id="re") as client:
        await client.subscribe("alice/re", qos=1)
        for _ in range(3):
            await client.reauthenticate(timeout=5)
        await client.publish("alice/re", b"still here", qos=1)
        async with asyncio.timeout(5):
            message = await anext(aiter(client.messages))
        assert message.payload == b"still here"


async def test_reauthentication_after_the_password_changed_disconnects(
    broker: Broker, password_file: Path
) -> None:
    async with scram_client(broker, "alice", "wonderland") as client:
        pwfile = PasswordFile.load(password_file)
        pwfile.set("alice", "changed", scram=True)
        pwfile.save(password_file)
        broker.reload_auth()
        assert client.is_connected  # a reload drops no one
        with pytest.raises(Exception):  # noqa: B017 - DisconnectedError with 0x87
            await client.reauthenticate(timeout=5)
        assert not client.is_connected
    async with scram_client(broker, "alice", "changed") as client:
        await client.reauthenticate(timeout=5)


async def test_unknown_method_is_refused_with_0x8c(broker: Broker) -> None:
    with pytest.raises(ConnectError) as err:
        async with Client(
            "127.0.0.1",
            broker.port,
            auth_method="KERBEROS",
            authenticator=ScramSha256Authenticator("alice", "wonderland"),
            reconnect=False,
        ):
            pass
    assert err.value.reason_code == ReasonCode.BAD_AUTHENTICATION_METHOD


# -- a custom method through the hook ------------------------------------------------------------


class TokenMethod:
    """A two-step challenge/response method; its steps are coroutines that take a while (a
    database or an identity provider), so the broker must hold the connection meanwhile.
    """

    calls: list[str] = []

    def __init__(self) -> None:
        self.nonce = b""

    async def start(self, client_id: str, username: str | None, data: bytes | None) -> object:
        await asyncio.sleep(0.05)
        TokenMethod.calls.append(f"start {client_id} {data!r}")
        if data != b"hello":
            return Failure("say hello", ReasonCode.BAD_USER_NAME_OR_PASSWORD)
        self.nonce = b"n-" + client_id.encode()
        return Continue(self.nonce)

    async def step(self, data: bytes | None) -> object:
        await asyncio.sleep(0.05)
        TokenMethod.calls.append(f"step {data!r}")
        if data == b"token:" + self.nonce:
            return Success("token-user", b"welcome")
        if data == b"boom":
            raise RuntimeError("identity provider down")
        return Failure()


class TokenClient:
    def __init__(self, answer: bytes | None = None) -> None:
        self.answer = answer
        self.final: bytes | None = None

    def initial(self) -> bytes:
        return b"hello"

    def challenge(self, data: bytes) -> bytes:
        return self.answer if self.answer is not None else b"token:" + data

    def complete(self, data: bytes | None) -> None:
        self.final = data


@pytest.fixture
async def token_broker() -> AsyncIterator[Broker]:
    TokenMethod.calls = []
    async with Broker(
        port=0, bind_address="127.0.0.1", sys_interval=0, auth_methods={"TOKEN": TokenMethod}
    ) as b:
        yield b


async def test_custom_async_method(token_broker: Broker) -> None:
    auth = TokenClient()
    async with Client(
        "127.0.0.1",
        token_broker.port,
        client_id="tok",
        auth_method="TOKEN",
        authenticator=auth,
        reconnect=False,
    ) as client:
        assert auth.final == b"welcome"  # CONNACK's Authentication Data
        await client.reauthenticate(timeout=5)
        assert auth.final == b"welcome"
    assert TokenMethod.calls == [
        "start tok b'hello'",
        "step b'token:n-tok'",
        "start tok b'hello'",
        "step b'token:n-tok'",
    ]
    assert token_broker.connected_count == 0


@pytest.mark.parametrize(
    ("answer", "code"),
    [(b"wrong", ReasonCode.NOT_AUTHORIZED), (b"boom", ReasonCode.NOT_AUTHORIZED)],
    ids=["refused", "method-raises"],
)
async def test_custom_method_failures(token_broker: Broker, answer: bytes, code: int) -> None:
    with pytest.raises(ConnectError) as err:
        async with Client(
            "127.0.0.1",
            token_broker.port,
            auth_method="TOKEN",
            authenticator=TokenClient(answer),
            reconnect=False,
        ):
            pass
    assert err.value.reason_code == code
    # The broker is still fine.
    async with Client(
        "127.0.0.1",
        token_broker.port,
        auth_method="TOKEN",
        authenticator=TokenClient(),
        reconnect=False,
    ) as client:
        assert client.is_connected


# -- protocol rules over raw sockets -------------------------------------------------------------


@pytest.fixture
def token_thread() -> Iterator[BrokerThread]:
    TokenMethod.calls = []
    bt = BrokerThread(auth_methods={"TOKEN": TokenMethod}).start()
    try:
        yield bt
    finally:
        bt.stop()


def auth_packet(reason: int, method: str, data: bytes = b"") -> bytes:
    from rawmqtt import props

    body = bytes((reason,)) + props(prop(AUTH_METHOD, method) + prop(AUTH_DATA, data))
    return bytes((0xF0, len(body))) + body


def connect_token(r: Raw, client_id: str = "raw") -> Packet:
    r.send(
        connect(
            client_id, version=5, properties=prop(AUTH_METHOD, "TOKEN") + prop(AUTH_DATA, b"hello")
        )
    )
    pkt = r.recv()
    assert pkt is not None
    return pkt


def reason(pkt: Packet | None) -> int:
    assert pkt is not None
    return pkt.body[1] if pkt.type == CONNACK else pkt.body[0]


def test_raw_exchange_then_data_flows(token_thread: BrokerThread) -> None:
    r = Raw(token_thread.port, version=5)
    try:
        challenge = connect_token(r)
        assert challenge.type == AUTH and challenge.body[0] == 0x18
        items, _ = parse_props(challenge.body[1:])
        assert (AUTH_METHOD, "TOKEN") in items and (AUTH_DATA, b"n-raw") in items
        r.send(auth_packet(0x18, "TOKEN", b"token:n-raw"))
        connack = r.recv()
        assert connack is not None and connack.type == CONNACK and connack.body[1] == 0
        items, _ = parse_props(connack.body[2:])
        assert (AUTH_METHOD, "TOKEN") in items and (AUTH_DATA, b"welcome") in items
        # Re-authentication on the live connection, then AUTH Success.
        r.send(auth_packet(0x19, "TOKEN", b"hello"))
        again = r.recv()
        assert again is not None and again.type == AUTH and again.body[0] == 0x18
        r.send(auth_packet(0x18, "TOKEN", b"token:n-raw"))
        ok = r.recv()
        assert ok is not None and ok.type == AUTH and ok.body[0] == 0x00
    finally:
        r.close()


@pytest.mark.parametrize(
    ("during", "packet", "expected"),
    [
        # During the exchange: the answer is a CONNACK with the reason code.
        ("connect", auth_packet(0x18, "OTHER", b"x"), (CONNACK, 0x82)),
        ("connect", auth_packet(0x19, "TOKEN", b"hello"), (CONNACK, 0x82)),
        ("connect", auth_packet(0x00, "TOKEN"), (CONNACK, 0x82)),
        ("connect", connect("again", version=5), (CONNACK, 0x82)),
        ("connect", auth_packet(0x18, "TOKEN", b"wrong"), (CONNACK, 0x87)),
        # Once connected: a DISCONNECT with the reason code.
        ("connected", auth_packet(0x18, "TOKEN", b"x"), (DISCONNECT, 0x82)),
        ("connected", auth_packet(0x19, "OTHER", b"hello"), (DISCONNECT, 0x82)),
        ("reauth", auth_packet(0x18, "TOKEN", b"wrong"), (DISCONNECT, 0x87)),
    ],
    ids=[
        "other-method",
        "reauth-before-connack",
        "success-from-client",
        "second-connect",
        "wrong-answer",
        "continue-without-exchange",
        "reauth-other-method",
        "reauth-wrong-answer",
    ],
)
def test_raw_protocol_errors(
    token_thread: BrokerThread, during: str, packet: bytes, expected: tuple[int, int]
) -> None:
    r = Raw(token_thread.port, version=5)
    try:
        assert connect_token(r).type == AUTH
        if during in ("connected", "reauth"):
            r.send(auth_packet(0x18, "TOKEN", b"token:n-raw"))
            assert reason(r.recv()) == 0
        if during == "reauth":
            r.send(auth_packet(0x19, "TOKEN", b"hello"))
            assert r.recv() is not None
        r.send(packet)
        got = r.until_closed()
        assert got, "the broker closed without telling why"
        assert (got[-1].type, reason(got[-1])) == expected
    finally:
        r.close()


def test_auth_without_a_method_in_connect(token_thread: BrokerThread) -> None:
    r = Raw(token_thread.port, version=5)
    try:
        r.connect("plain")
        r.send(auth_packet(0x19, "TOKEN", b"hello"))
        (last,) = r.until_closed()
        assert (last.type, reason(last)) == (DISCONNECT, 0x82)
    finally:
        r.close()


def test_stalled_exchange_is_cut_by_the_connect_timeout() -> None:
    bt = BrokerThread(auth_methods={"TOKEN": TokenMethod}, connect_timeout=1.0).start()
    r = Raw(bt.port, version=5)
    try:
        assert connect_token(r).type == AUTH
        started = time.monotonic()
        r.until_closed(timeout=5)  # TimeoutError if the broker kept it open
        assert time.monotonic() - started < 4
        assert bt.broker is not None and bt.broker.connected_count == 0
    finally:
        r.close()
        bt.stop()


def test_reason_string_on_refusal(token_thread: BrokerThread) -> None:
    r = Raw(token_thread.port, version=5)
    try:
        r.send(
            connect(
                "bad", version=5, properties=prop(AUTH_METHOD, "TOKEN") + prop(AUTH_DATA, b"bye")
            )
        )
        connack = r.recv()
        assert connack is not None and connack.type == CONNACK and connack.body[1] == 0x86
        items, _ = parse_props(connack.body[2:])
        assert (REASON_STRING, "say hello") in items
    finally:
        r.close()


# -- wrenmq pub / sub --scram ---------------------------------------------------------------------


def test_cli_pub_and_sub_with_scram(password_file: Path) -> None:
    bt = BrokerThread(password_file=str(password_file), allow_anonymous=False).start()
    try:
        addr = ["-h", "127.0.0.1", "-p", str(bt.port)]
        creds = ["--scram", "-u", "alice", "-P", "wonderland"]
        with subprocess.Popen(
            [WRENMQ, "sub", *addr, *creds, "-t", "cli/#", "-v", "-C", "1", "-W", "20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as sub:
            assert bt.broker is not None
            broker = bt.broker
            deadline = time.monotonic() + 15
            while not bt.call(lambda: any(f == "cli/#" for _, f, _ in broker.list_subscriptions())):
                assert time.monotonic() < deadline, "the subscriber did not subscribe"
                time.sleep(0.05)
            pub = subprocess.run(
                [WRENMQ, "pub", *addr, *creds, "-t", "cli/x", "-m", "over scram", "-q", "1"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            assert pub.returncode == 0, pub.stderr
            out, err = sub.communicate(timeout=20)
        assert sub.returncode == 0, err
        assert out.strip() == "cli/x over scram"
        refused = subprocess.run(
            [WRENMQ, "pub", *addr, "--scram", "-u", "alice", "-P", "nope", "-t", "t", "-m", "x"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert refused.returncode != 0
        assert "Not authorized" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        bt.stop()


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["-V", "mqttv311", "-u", "a", "-P", "b"], "needs MQTT 5"),
        (["-u", "a"], "needs a user name and a password"),
    ],
)
def test_cli_scram_usage_errors(args: list[str], why: str) -> None:
    done = subprocess.run(
        [WRENMQ, "pub", "-p", "1", "--scram", *args, "-t", "t", "-m", "x"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode != 0 and why in done.stderr, done.stderr
