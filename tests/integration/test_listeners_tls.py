"""TLS listeners (``mqtt+tls``) with real peers: paho-mqtt, mosquitto_pub/sub and raw ``ssl``
sockets; certificates are made per module with trustme.

Numbered by area as mosquitto's tests are: tls-1 basic, tls-2 mutual TLS and identity, tls-3
versions and ciphers, tls-4 configuration errors and certificate reload.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import rawmqtt as r
from pahopeer import TIMEOUT, V5, V311, Peer, wait_until
from tlscerts import CLIENT_CN, Certs, make_certs

from brokerthread import BrokerThread
from wrenmq.broker.broker import Broker
from wrenmq.cli.broker import _reload
from wrenmq.errors import ConfigError

Peers = Callable[..., Peer]
Brokers = Callable[..., BrokerThread]

try:
    import uvloop

    # The CLI runs on uvloop: the transports are checked on both loops.
    LOOPS = [
        pytest.param(asyncio.new_event_loop, id="asyncio"),
        pytest.param(uvloop.new_event_loop, id="uvloop"),
    ]
except ImportError:  # pragma: no cover - uvloop is a Linux dependency
    LOOPS = [pytest.param(asyncio.new_event_loop, id="asyncio")]
ON_BOTH_LOOPS = pytest.mark.parametrize("loop_factory", LOOPS)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def tls_peer(peer: Peers, port: int, client_id: str, ctx: ssl.SSLContext, **kw: object) -> Peer:
    p = peer(port, client_id, **kw)
    p.client.tls_set_context(ctx)
    return p


def port_of(bt: BrokerThread, index: int) -> int:
    assert bt.broker is not None
    return bt.broker.addresses[index][1]


def raw_tls(port: int, ctx: ssl.SSLContext, *, version: int = 4) -> r.Raw:
    """A raw MQTT peer whose socket is wrapped in TLS (the handshake is done here)."""
    raw = r.Raw(port, version=version)
    raw.sock = ctx.wrap_socket(raw.sock, server_hostname="127.0.0.1")
    return raw


def username_of(bt: BrokerThread, client_id: str) -> str | None:
    assert bt.broker is not None
    broker = bt.broker

    def get() -> str | None:
        conn = broker.sessions[client_id].conn
        assert conn is not None
        return conn.username

    return bt.call(get)


# ---------------------------------------------------------------------------------------------
# tls-1: a TLS listener serves MQTT like a TCP one


@pytest.mark.parametrize("version", [V311, V5])
@ON_BOTH_LOOPS
def test_tls1_paho_publish_subscribe(
    loop_factory: Any,
    make_broker: Brokers,
    peer: Peers,
    certs: Certs,
    version: int,
    unique_topic: str,
) -> None:
    bt = make_broker(loop_factory=loop_factory, listener=[certs.listener()])
    ctx = certs.client_context()
    sub = tls_peer(peer, bt.port, "tls-sub", ctx, version=version).connect()
    assert sub.subscribe(unique_topic, 1) == 1
    pub = tls_peer(peer, bt.port, "tls-pub", ctx, version=version).connect()
    pub.publish(unique_topic, b"over tls", 1)
    (msg,) = sub.wait_messages(1)
    assert msg.payload == b"over tls"
    sock = pub.client.socket()
    assert isinstance(sock, ssl.SSLSocket)
    assert sock.version() in ("TLSv1.2", "TLSv1.3")


def test_tls1_tls_and_plain_listeners_share_one_broker(
    make_broker: Brokers, peer: Peers, certs: Certs, unique_topic: str
) -> None:
    bt = make_broker(listener=[{"port": 0, "bind_address": "127.0.0.1"}, certs.listener()])
    sub = tls_peer(peer, port_of(bt, 1), "tls-sub", certs.client_context()).connect()
    assert sub.subscribe(unique_topic, 0) == 0
    peer(port_of(bt, 0), "plain-pub").connect().publish(unique_topic, b"from tcp", 1)
    assert sub.wait_messages(1)[0].payload == b"from tcp"


def test_tls1_plain_mqtt_on_a_tls_port_is_dropped(make_broker: Brokers, certs: Certs) -> None:
    bt = make_broker(listener=[certs.listener()])
    raw = r.Raw(bt.port)
    try:
        raw.send(r.connect("plain"))
        assert raw.until_closed() == []
    finally:
        raw.close()


# ---------------------------------------------------------------------------------------------
# tls-2: mutual TLS and the certificate as identity


def _fails_without_certificate(port: int, ctx: ssl.SSLContext) -> None:
    # With TLS 1.3 the client finishes its handshake before the server checks the (missing)
    # certificate, so the refusal may surface on the first read instead of in the handshake.
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        raw = raw_tls(port, ctx)
        try:
            raw.send(r.connect("no-cert"))
            if raw.recv() is None:
                raise ConnectionResetError("closed without CONNACK")
        finally:
            raw.close()


@ON_BOTH_LOOPS
def test_tls2_required_certificate_missing_is_refused(
    loop_factory: Any, make_broker: Brokers, certs: Certs
) -> None:
    bt = make_broker(
        loop_factory=loop_factory,
        listener=[certs.listener(cafile=certs.cafile, require_certificate=True)],
    )
    _fails_without_certificate(bt.port, certs.client_context())
    # TLS 1.2 shows it in the handshake itself.
    with pytest.raises(ssl.SSLError):
        raw_tls(bt.port, certs.client_context(maximum=ssl.TLSVersion.TLSv1_2)).close()
    assert bt.broker is not None and not bt.broker.sessions


def test_tls2_required_certificate_present_connects(
    make_broker: Brokers, peer: Peers, certs: Certs, unique_topic: str
) -> None:
    bt = make_broker(listener=[certs.listener(cafile=certs.cafile, require_certificate=True)])
    p = tls_peer(peer, bt.port, "mtls", certs.client_context(with_cert=True)).connect()
    assert p.subscribe(unique_topic, 1) == 1
    p.publish(unique_topic, b"mutual", 1)
    assert p.wait_messages(1)[0].payload == b"mutual"
    assert username_of(bt, "mtls") is None  # no identity mapping unless asked for


def test_tls2_certificate_from_another_ca_is_refused(
    make_broker: Brokers, certs: Certs, tmp_path: Path
) -> None:
    stranger = make_certs(tmp_path / "other")
    bt = make_broker(listener=[certs.listener(cafile=certs.cafile, require_certificate=True)])
    ctx = certs.client_context()
    ctx.load_cert_chain(stranger.client_certfile, stranger.client_keyfile)
    _fails_without_certificate(bt.port, ctx)


@pytest.mark.parametrize("version", [V311, V5])
@ON_BOTH_LOOPS
def test_tls2_use_identity_as_username(
    loop_factory: Any, make_broker: Brokers, peer: Peers, certs: Certs, tmp_path: Path, version: int
) -> None:
    # With a password file and anonymous clients refused, the certificate alone admits alice,
    # whatever user name and password the client sends (mosquitto's behaviour).
    passwd = tmp_path / "passwd"
    passwd.write_text("", encoding="utf-8")
    bt = make_broker(
        loop_factory=loop_factory,
        allow_anonymous=False,
        password_file=str(passwd),
        listener=[
            certs.listener(
                cafile=certs.cafile, require_certificate=True, use_identity_as_username=True
            )
        ],
    )
    ctx = certs.client_context(with_cert=True)
    tls_peer(peer, bt.port, "who-1", ctx, version=version).connect()
    assert username_of(bt, "who-1") == CLIENT_CN
    other = tls_peer(peer, bt.port, "who-2", ctx, version=version)
    other.client.username_pw_set("mallory", "wrong")
    other.connect()
    assert username_of(bt, "who-2") == CLIENT_CN


def test_tls2_identity_is_used_by_the_acl(
    make_broker: Brokers, peer: Peers, certs: Certs, tmp_path: Path
) -> None:
    acl = tmp_path / "acl"
    acl.write_text(f"user {CLIENT_CN}\ntopic readwrite {CLIENT_CN}/#\n", encoding="utf-8")
    bt = make_broker(
        acl_file=str(acl),
        listener=[
            certs.listener(
                cafile=certs.cafile, require_certificate=True, use_identity_as_username=True
            )
        ],
    )
    p = tls_peer(peer, bt.port, "acl", certs.client_context(with_cert=True)).connect()
    assert p.subscribe(f"{CLIENT_CN}/inbox", 1) == 1
    assert p.subscribe("bob/inbox", 1) == 0x87  # Not authorized


# ---------------------------------------------------------------------------------------------
# tls-2b: mosquitto's command line clients with a client certificate


@pytest.mark.skipif(
    shutil.which("mosquitto_sub") is None or shutil.which("mosquitto_pub") is None,
    reason="mosquitto-clients is not installed (make debs)",
)
def test_tls2_mosquitto_clients_with_client_certificate(
    make_broker: Brokers, certs: Certs, unique_topic: str
) -> None:
    bt = make_broker(
        listener=[
            certs.listener(
                cafile=certs.cafile, require_certificate=True, use_identity_as_username=True
            )
        ]
    )
    tls = ["--cafile", certs.cafile, "--cert", certs.client_certfile, "--key", certs.client_keyfile]
    common = ["-h", "localhost", "-p", str(bt.port), *tls]
    sub = subprocess.Popen(
        ["mosquitto_sub", *common, "-i", "msub", "-t", unique_topic, "-C", "1", "-W", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert bt.broker is not None
        broker = bt.broker
        wait_until(lambda: any(c == "msub" for c, _, _ in bt.call(broker.list_subscriptions)))
        assert username_of(bt, "msub") == CLIENT_CN
        done = subprocess.run(
            ["mosquitto_pub", *common, "-i", "mpub", "-t", unique_topic, "-m", "hi tls", "-q", "1"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert done.returncode == 0, done.stderr
        out, err = sub.communicate(timeout=TIMEOUT + 1)
        assert sub.returncode == 0, err
        assert out.splitlines() == ["hi tls"]
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.communicate(timeout=TIMEOUT)
    # Without --cert the required certificate is missing: mosquitto_pub fails.
    done = subprocess.run(
        ["mosquitto_pub", "-h", "localhost", "-p", str(bt.port), "--cafile", certs.cafile,
         "-t", unique_topic, "-m", "x"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode != 0


# ---------------------------------------------------------------------------------------------
# tls-3: protocol versions and ciphers


def _tls11_client(certs: Certs) -> ssl.SSLContext:
    ctx = certs.client_context()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is, on purpose
            ctx.minimum_version = ssl.TLSVersion.TLSv1_1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 disables TLS 1.0/1.1 at level >= 1
    except (ValueError, ssl.SSLError) as exc:
        pytest.skip(f"this OpenSSL cannot make a TLS 1.1 client context: {exc}")
    return ctx


def test_tls3_tls11_is_refused(make_broker: Brokers, certs: Certs) -> None:
    bt = make_broker(listener=[certs.listener()])
    ctx = _tls11_client(certs)
    # Prove that this client can speak TLS 1.1 at all, to a local TLS 1.1 server, so that the
    # broker's refusal below is the broker's and not the client's own inability.
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs.certfile, certs.keyfile)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            server_ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        server_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError) as exc:
        pytest.skip(f"this OpenSSL cannot make a TLS 1.1 server context: {exc}")
    if _local_handshake_version(server_ctx, ctx) != "TLSv1.1":
        pytest.skip("this OpenSSL build cannot negotiate TLS 1.1 even locally")
    # The broker ends the handshake (an alert, or asyncio closing before one is flushed).
    with pytest.raises(ssl.SSLError):
        raw_tls(bt.port, ctx).close()


def _local_handshake_version(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> str | None:
    """The version two in-memory TLS endpoints agree on, or None if their handshake fails."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done: set[str] = set()
    for _ in range(20):
        for name, end, out, into in (("c", client, c_out, s_in), ("s", server, s_out, c_in)):
            if name not in done:
                try:
                    end.do_handshake()
                    done.add(name)
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError:
                    return None
            into.write(out.read())
        if len(done) == 2:
            return client.version()
    return None


def test_tls3_minimum_tls13_refuses_tls12(make_broker: Brokers, peer: Peers, certs: Certs) -> None:
    bt = make_broker(listener=[certs.listener(tls_version="tlsv1.3")])
    with pytest.raises(ssl.SSLError):
        raw_tls(bt.port, certs.client_context(maximum=ssl.TLSVersion.TLSv1_2)).close()
    raw = raw_tls(bt.port, certs.client_context())
    try:
        assert isinstance(raw.sock, ssl.SSLSocket) and raw.sock.version() == "TLSv1.3"
        assert raw.connect("v13").body[1] == 0
    finally:
        raw.close()


def test_tls3_default_accepts_tls12(make_broker: Brokers, certs: Certs) -> None:
    bt = make_broker(listener=[certs.listener()])
    raw = raw_tls(bt.port, certs.client_context(maximum=ssl.TLSVersion.TLSv1_2))
    try:
        assert isinstance(raw.sock, ssl.SSLSocket) and raw.sock.version() == "TLSv1.2"
        assert raw.connect("v12").body[1] == 0
    finally:
        raw.close()


def test_tls3_ciphers(make_broker: Brokers, certs: Certs) -> None:
    # trustme's keys are ECDSA: ECDHE-ECDSA suites apply.
    chosen, other = "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384"
    bt = make_broker(listener=[certs.listener(ciphers=chosen)])
    ctx = certs.client_context(maximum=ssl.TLSVersion.TLSv1_2)
    raw = raw_tls(bt.port, ctx)
    try:
        assert isinstance(raw.sock, ssl.SSLSocket)
        cipher = raw.sock.cipher()
        assert cipher is not None and cipher[0] == chosen
    finally:
        raw.close()
    ctx = certs.client_context(maximum=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers(other)
    with pytest.raises(ssl.SSLError):
        raw_tls(bt.port, ctx).close()


# ---------------------------------------------------------------------------------------------
# tls-4: configuration errors and reloading certificates


def test_tls4_bad_files_fail_at_construction(certs: Certs, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    cases = [
        (certs.listener(certfile=missing), "listener[0].certfile", "no such file"),
        (certs.listener(keyfile=missing), "listener[0].keyfile", "no such file"),
        (certs.listener(keyfile=certs.client_keyfile), "listener[0].certfile", "matching key"),
        (certs.listener(cafile=certs.keyfile), "listener[0].cafile", "cannot load CA file"),
        (certs.listener(ciphers="NOT-A-CIPHER"), "listener[0].ciphers", "no usable cipher"),
    ]
    for table, where, reason in cases:
        with pytest.raises(ConfigError) as info:
            Broker(listener=[table])
        assert info.value.where == where
        assert reason in info.value.reason


def _serial_seen(port: int, certs: Certs) -> int:
    raw = raw_tls(port, certs.client_context())
    try:
        assert isinstance(raw.sock, ssl.SSLSocket)
        der = raw.sock.getpeercert(binary_form=True)
        assert der is not None
        from cryptography import x509

        return x509.load_der_x509_certificate(der).serial_number
    finally:
        raw.close()


@pytest.fixture
def own_certs(tmp_path: Path) -> Iterator[Certs]:
    yield make_certs(tmp_path / "own")


def test_tls4_reload_tls_serves_new_certificates_and_keeps_connections(
    make_broker: Brokers, peer: Peers, own_certs: Certs, unique_topic: str
) -> None:
    certs = own_certs
    bt = make_broker(listener=[certs.listener()])
    assert bt.broker is not None
    broker = bt.broker
    before = _serial_seen(bt.port, certs)
    p = tls_peer(peer, bt.port, "stays", certs.client_context()).connect()
    assert p.subscribe(unique_topic, 0) == 0
    renewed = certs.ca.issue_cert("127.0.0.1", "localhost")
    renewed.private_key_pem.write_to_path(certs.keyfile)
    for i, blob in enumerate(renewed.cert_chain_pems):
        blob.write_to_path(certs.certfile, append=i > 0)
    bt.call(broker.reload_tls)
    after = _serial_seen(bt.port, certs)
    assert after != before
    p.publish(unique_topic, b"still here", 1)
    assert p.wait_messages(1)[0].payload == b"still here"
    # A bad file is refused and the live certificate stays.
    Path(certs.keyfile).write_text("garbage", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        bt.call(broker.reload_tls)
    assert info.value.where == "listener[0].certfile"
    assert _serial_seen(bt.port, certs) == after


def test_tls4_sighup_handler_reloads_certificates(
    own_certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    # The CLI's SIGHUP handler; this test expects its ERROR record for the bad file.
    broker = Broker(listener=[own_certs.listener()])
    with caplog.at_level(logging.INFO, logger="wrenmq.broker"):
        _reload(broker)
    assert "SIGHUP: TLS certificates reloaded" in caplog.messages
    caplog.clear()
    Path(own_certs.certfile).write_text("garbage", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="wrenmq.broker"):
        _reload(broker)
    (record,) = [rec for rec in caplog.records if "TLS" in rec.getMessage()]
    assert record.levelno == logging.ERROR
    assert "keeping the previous TLS certificates" in record.getMessage()
