"""PROXY protocol v1/v2 on ``mqtt``, ``mqtt+tls`` and ``ws`` listeners (``proxy_protocol``).

A raw socket plays the load balancer: it sends the header (hand-written bytes), then the client's
MQTT. The broker must report the address from the header as the client's peer -- in the
``client_connected`` observer event, in ``list_sessions`` and to the per-address limits -- and
close connections whose header is malformed, logging a WARNING. The addresses in the headers are
documentation ranges: only data, no traffic goes there.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from typing import Any

import pytest
import rawmqtt as r
from pahopeer import TIMEOUT, wait_until
from tlscerts import CLIENT_CN, Certs, make_certs
from websockets.sync.client import connect as ws_connect

from brokerthread import BrokerThread
from wrenmq.broker.hooks import ClientConnected

Brokers = Callable[..., BrokerThread]
Raws = Callable[..., r.Raw]

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

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src: str, sport: int, family: str = "TCP4", dst: str = "127.0.0.1") -> bytes:
    return f"PROXY {family} {src} {dst} {sport} 1883\r\n".encode()


def v2_tcp4(src: str, sport: int) -> bytes:
    body = bytes(int(x) for x in src.split(".")) + bytes((127, 0, 0, 1))
    body += struct.pack("!HH", sport, 1883)
    return SIG + b"\x21\x11" + struct.pack("!H", len(body)) + body


def v2_tcp6(src_hex: str, sport: int) -> bytes:
    body = bytes.fromhex(src_hex) + bytes(15) + b"\x01" + struct.pack("!HH", sport, 1883)
    return SIG + b"\x21\x21" + struct.pack("!H", len(body)) + body


class Connected:
    """Records ``client_connected`` events (observer, on the broker's loop thread)."""

    def __init__(self, bt: BrokerThread) -> None:
        self.events: list[ClientConnected] = []
        self._cond = threading.Condition()
        assert bt.broker is not None
        bt.call(bt.broker.hooks.add_observer, "client_connected", self)

    def __call__(self, event: ClientConnected) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def peer_of(self, client_id: str) -> str:
        with self._cond:
            assert self._cond.wait_for(
                lambda: any(e.client_id == client_id for e in self.events), TIMEOUT
            ), f"{client_id} never connected: {self.events}"
            return next(e.peer for e in self.events if e.client_id == client_id)


def proxied(**options: Any) -> dict[str, Any]:
    table = {"port": 0, "bind_address": "127.0.0.1", "proxy_protocol": True}
    table.update(options)
    return table


@pytest.mark.parametrize(
    ("header", "peer"),
    [
        (v1("203.0.113.7", 40001), "203.0.113.7:40001"),
        (v1("2001:db8::7", 40002, "TCP6", "::1"), "2001:db8::7:40002"),
        (v2_tcp4("198.51.100.23", 50003), "198.51.100.23:50003"),
        (v2_tcp6("20010db8000000000000000000000023", 50004), "2001:db8::23:50004"),
    ],
    ids=["v1-tcp4", "v1-tcp6", "v2-tcp4", "v2-tcp6"],
)
@ON_BOTH_LOOPS
def test_header_address_is_the_peer(
    loop_factory: Any, make_broker: Brokers, raw: Raws, header: bytes, peer: str
) -> None:
    bt = make_broker(loop_factory=loop_factory, listener=[proxied()])
    seen = Connected(bt)
    c = raw(bt.port)
    c.send(header + r.connect("proxied"))  # header and CONNECT in one segment
    pkt = c.recv()
    assert pkt is not None and pkt.type == r.CONNACK and pkt.body[1] == 0
    assert seen.peer_of("proxied") == peer
    assert bt.broker is not None
    broker = bt.broker
    (info,) = bt.call(broker.list_sessions)
    assert info.peer == peer


@ON_BOTH_LOOPS
def test_header_in_pieces(loop_factory: Any, make_broker: Brokers, raw: Raws) -> None:
    bt = make_broker(loop_factory=loop_factory, listener=[proxied()])
    seen = Connected(bt)
    c = raw(bt.port)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small writes go one by one
    header = v2_tcp4("192.0.2.44", 1234)
    for i in range(0, len(header), 5):
        c.send(header[i : i + 5])
    c.send(r.connect("pieces")[:4])
    c.send(r.connect("pieces")[4:])
    assert c.recv() is not None
    assert seen.peer_of("pieces") == "192.0.2.44:1234"


def test_local_and_unknown_keep_the_real_peer(make_broker: Brokers, raw: Raws) -> None:
    # v2 LOCAL (a health check from the proxy itself) and v1 UNKNOWN carry no client address.
    bt = make_broker(listener=[proxied()])
    seen = Connected(bt)
    for client_id, header in (
        ("local", SIG + b"\x20\x00\x00\x00"),
        ("unknown", b"PROXY UNKNOWN\r\n"),
    ):
        c = raw(bt.port)
        c.send(header + r.connect(client_id))
        assert c.recv() is not None
        assert seen.peer_of(client_id).startswith("127.0.0.1:")


@pytest.mark.parametrize(
    "garbage",
    [
        r.connect("no-header"),  # a client that bypassed the proxy
        b"PROXY TCP4 203.0.113.7 127.0.0.1 99999 1883\r\n",
        b"PROXY TCP4 not-an-address 127.0.0.1 1 1883\r\n",
        SIG + b"\x21\x11\x00\x04\x01\x02\x03\x04",
        b"PROXY TCP4 " + b"9" * 120,
    ],
    ids=["mqtt", "v1-port", "v1-address", "v2-short", "v1-no-crlf"],
)
@ON_BOTH_LOOPS
def test_malformed_header_closes_and_warns(
    loop_factory: Any,
    make_broker: Brokers,
    raw: Raws,
    garbage: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # This test expects the WARNING about the bad header.
    bt = make_broker(loop_factory=loop_factory, listener=[proxied()])
    with caplog.at_level(logging.WARNING, logger="wrenmq.transport"):
        c = raw(bt.port)
        c.send(garbage)
        assert c.until_closed() == []
        wait_until(lambda: any("bad PROXY protocol header" in m for m in caplog.messages))
    (record,) = [rec for rec in caplog.records if "PROXY" in rec.getMessage()]
    assert record.levelno == logging.WARNING
    assert bt.broker is not None and not bt.broker.sessions


def test_missing_header_times_out(make_broker: Brokers, raw: Raws) -> None:
    bt = make_broker(connect_timeout=0.3, listener=[proxied()])
    c = raw(bt.port)
    c.send(b"PROXY TCP4 ")
    assert c.until_closed(timeout=3) == []


def test_per_address_limits_count_the_header_address(make_broker: Brokers, raw: Raws) -> None:
    # Two clients behind one proxy address, with max_connections_per_ip = 1: the second is
    # refused on accept although both come from 127.0.0.1; a third from elsewhere is let in.
    # This test expects the broker's WARNING about the refused connection.
    bt = make_broker(max_connections_per_ip=1, listener=[proxied()])
    first = raw(bt.port)
    first.send(v1("203.0.113.1", 1) + r.connect("first"))
    assert first.recv() is not None
    second = raw(bt.port)
    second.send(v1("203.0.113.1", 2) + r.connect("second"))
    assert second.until_closed() == []
    third = raw(bt.port)
    third.send(v1("203.0.113.2", 3) + r.connect("third"))
    assert third.recv() is not None


@ON_BOTH_LOOPS
def test_proxy_protocol_on_a_websocket_listener(loop_factory: Any, make_broker: Brokers) -> None:
    bt = make_broker(loop_factory=loop_factory, listener=[proxied(protocol="ws")])
    seen = Connected(bt)
    header = v2_tcp4("198.51.100.99", 4444)
    sock = socket.create_connection(("127.0.0.1", bt.port), timeout=TIMEOUT)
    sock.sendall(header)
    with ws_connect(
        f"ws://127.0.0.1:{bt.port}/mqtt",
        sock=sock,
        subprotocols=["mqtt"],  # type: ignore[list-item]
        open_timeout=TIMEOUT,
    ) as ws:
        ws.send(r.connect("ws-proxied"))
        reply = ws.recv(timeout=TIMEOUT)
        assert isinstance(reply, bytes) and reply[0] >> 4 == r.CONNACK
        assert seen.peer_of("ws-proxied") == "198.51.100.99:4444"


def test_malformed_header_on_a_websocket_listener(
    make_broker: Brokers, raw: Raws, caplog: pytest.LogCaptureFixture
) -> None:
    # This test expects the WARNING about the bad header (and websockets' own ERROR about the
    # handshake that never came).
    bt = make_broker(listener=[proxied(protocol="ws")])
    with caplog.at_level(logging.WARNING, logger="wrenmq.transport"):
        c = raw(bt.port)
        c.send(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.until_closed() == []
        wait_until(lambda: any("bad PROXY protocol header" in m for m in caplog.messages))


# ---------------------------------------------------------------------------------------------
# PROXY header, then TLS (TCP pass-through at the proxy; the broker terminates TLS)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def tls_after(header: bytes, port: int, ctx: ssl.SSLContext, *, coalesce: bool) -> r.Raw:
    """A raw peer that sends ``header`` and then does a TLS handshake on the same socket.

    ``coalesce`` sends the header and the ClientHello in one segment, as a proxy that buffered
    the client's first bytes does (the broker must not read past the header).
    """
    raw = r.Raw(port)
    if not coalesce:
        raw.send(header)
        raw.sock = ctx.wrap_socket(raw.sock, server_hostname="127.0.0.1")
        return raw
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    raw.send(header + outgoing.read())  # header + ClientHello together
    # Finish the handshake over the socket by hand, then keep using the memory BIO pair.
    raw.sock.settimeout(TIMEOUT)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            pending = outgoing.read()
            if pending:
                raw.sock.sendall(pending)
            data = raw.sock.recv(65536)
            if not data:
                raise ConnectionResetError("closed during the TLS handshake") from None
            incoming.write(data)
    pending = outgoing.read()
    if pending:
        raw.sock.sendall(pending)
    raw.sock = _BioSocket(raw.sock, tls, incoming, outgoing)  # type: ignore[assignment]
    return raw


class _BioSocket:
    """``send``/``recv`` through an ``ssl.SSLObject`` over a plain socket."""

    def __init__(
        self,
        sock: socket.socket,
        tls: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
    ) -> None:
        self.sock, self.tls, self.incoming, self.outgoing = sock, tls, incoming, outgoing

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def sendall(self, data: bytes) -> None:
        self.tls.write(data)
        self.sock.sendall(self.outgoing.read())

    def recv(self, n: int) -> bytes:
        while True:
            try:
                return bytes(self.tls.read(n))
            except ssl.SSLWantReadError:
                data = self.sock.recv(65536)
                if not data:
                    return b""
                self.incoming.write(data)
            except ssl.SSLZeroReturnError:
                return b""

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("coalesce", [False, True], ids=["separate", "coalesced"])
@pytest.mark.parametrize("header", [v1("203.0.113.50", 5050), v2_tcp4("203.0.113.51", 5151)])
@ON_BOTH_LOOPS
def test_proxy_header_then_tls(
    loop_factory: Any, make_broker: Brokers, certs: Certs, header: bytes, coalesce: bool
) -> None:
    bt = make_broker(
        loop_factory=loop_factory,
        listener=[
            proxied(
                protocol="mqtt+tls",
                certfile=certs.certfile,
                keyfile=certs.keyfile,
                cafile=certs.cafile,
                require_certificate=True,
                use_identity_as_username=True,
            )
        ],
    )
    seen = Connected(bt)
    c = tls_after(header, bt.port, certs.client_context(with_cert=True), coalesce=coalesce)
    try:
        assert c.connect("tls-proxied").body[1] == 0
    finally:
        c.close()
    expected = "203.0.113.50:5050" if header.startswith(b"PROXY") else "203.0.113.51:5151"
    assert seen.peer_of("tls-proxied") == expected
    assert bt.broker is not None
    broker = bt.broker

    def username() -> object:
        session = broker.sessions.get("tls-proxied")
        return session.conn.username if session and session.conn else "gone"

    assert bt.call(username) in (CLIENT_CN, "gone")  # the client may have closed already


def test_proxy_then_mutual_tls_refuses_a_client_without_certificate(
    make_broker: Brokers, certs: Certs
) -> None:
    # Through the proxy, mutual TLS still refuses a client without a certificate.
    bt = make_broker(
        listener=[
            proxied(
                protocol="mqtt+tls",
                certfile=certs.certfile,
                keyfile=certs.keyfile,
                cafile=certs.cafile,
                require_certificate=True,
            )
        ]
    )
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        ctx = certs.client_context(maximum=ssl.TLSVersion.TLSv1_2)  # refused in the handshake
        tls_after(v1("203.0.113.9", 9), bt.port, ctx, coalesce=False).close()
    assert bt.broker is not None and not bt.broker.sessions


@ON_BOTH_LOOPS
def test_proxy_then_tls_handshake_timeout(
    loop_factory: Any, make_broker: Brokers, raw: Raws, certs: Certs
) -> None:
    bt = make_broker(
        loop_factory=loop_factory,
        connect_timeout=0.3,
        listener=[proxied(protocol="mqtt+tls", certfile=certs.certfile, keyfile=certs.keyfile)],
    )
    c = raw(bt.port)
    c.send(v1("203.0.113.9", 9))  # ... and never a ClientHello
    assert c.until_closed(timeout=3) == []
