"""Raw-socket MQTT 3.1.1 streams of numbered messages, for the persistence tests.

``Publisher`` sends ``total`` messages whose payloads start with their sequence number, with a
window of messages in flight, and behaves as a client must across a broker crash (MQTT 3.1.1
section 4.4): clean session 0 and a fixed client id; on connection loss it reconnects with backoff
until the broker is back and resends every unacknowledged PUBLISH with the same packet id and
DUP=1, and PUBREL for every QoS 2 message already PUBREC'd. ``Subscriber`` is a clean session 0
subscriber that acknowledges and records every PUBLISH. Both are single-threaded and fast enough
for 100,000 messages; every packet is built by hand here (nothing imports wrenmq), and every wait
is bounded.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: str) -> bytes:
    data = s.encode()
    return struct.pack("!H", len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def connect_packet(client_id: str, *, clean: bool, keepalive: int = 30) -> bytes:
    flags = 0x02 if clean else 0x00
    body = _string("MQTT") + bytes((4, flags)) + struct.pack("!H", keepalive) + _string(client_id)
    return _packet(0x10, body)


def publish_packet(topic: str, payload: bytes, qos: int, packet_id: int, *, dup: bool) -> bytes:
    first = 0x30 | (0x08 if dup else 0) | (qos << 1)
    return _packet(first, _string(topic) + struct.pack("!H", packet_id) + payload)


def subscribe_packet(packet_id: int, topic_filter: str, qos: int) -> bytes:
    return _packet(0x82, struct.pack("!H", packet_id) + _string(topic_filter) + bytes((qos,)))


def ack_packet(kind: int, packet_id: int) -> bytes:
    """PUBACK (4), PUBREC (5), PUBREL (6, flags 0010) or PUBCOMP (7)."""
    return bytes(((kind << 4) | (2 if kind == 6 else 0), 2)) + struct.pack("!H", packet_id)


DISCONNECT = b"\xe0\x00"


class Frames:
    """Splits a byte stream into (first byte, body) packets."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self.buf
        buf += data
        out = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            length = shift = 0
            i = pos + 1
            complete = False
            while i < end and i - pos <= 4:
                b = buf[i]
                i += 1
                length |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    complete = True
                    break
            if not complete or i + length > end:
                break
            out.append((buf[pos], bytes(buf[i : i + length])))
            pos = i + length
        del buf[:pos]
        return out


class Lost(Exception):
    """The connection to the broker is gone."""


def _recv(sock: socket.socket, timeout: float) -> bytes | None:
    """Whatever arrives within ``timeout`` (b"" if nothing); None if the connection is gone."""
    try:
        ready, _, _ = select.select([sock], [], [], timeout)
        if not ready:
            return b""
        data = sock.recv(1 << 16)
    except OSError:
        return None
    return data or None


# -- the publisher --------------------------------------------------------------------------------


class Publisher:
    """Publishes ``total`` numbered messages at ``qos``, surviving broker crashes.

    ``acked`` holds the sequence numbers the broker acknowledged (PUBACK for QoS 1, PUBREC for
    QoS 2). ``pending`` maps packet id -> seq for every flow not finished, in send order;
    ``released`` holds the packet ids of QoS 2 flows past PUBREC (PUBREL sent, PUBCOMP awaited).
    """

    def __init__(
        self,
        port: int,
        client_id: str,
        topic: str,
        *,
        qos: int,
        total: int,
        deadline: float,
        window: int = 50,
    ) -> None:
        self.port = port
        self.client_id = client_id
        self.topic = topic
        self.qos = qos
        self.total = total
        self.deadline = deadline
        self.window = window
        self.sock: socket.socket | None = None
        self.frames = Frames()
        self.next_seq = 0
        self.pending: dict[int, int] = {}
        self.released: set[int] = set()
        self.acked: set[int] = set()
        self.connects = 0
        self.resent = 0  # PUBLISH (DUP) and PUBREL packets sent again after a reconnect
        self.progress = 0  # len(acked), read by the killer thread

    def stats(self) -> str:
        return (
            f"{len(self.acked)}/{self.total} acknowledged, {len(self.pending)} pending, "
            f"{self.connects} connects, {self.resent} resent"
        )

    @staticmethod
    def payload(seq: int) -> bytes:
        return b"%08d|" % seq + b"x" * 24

    def _alloc(self) -> int:
        # The lowest free id: ids come back into use at once, as the spec allows [MQTT-2.3.1-4],
        # so a broker that forgot a PUBREL it had answered takes the next message with that id for
        # a resend and drops it.
        pid = 1
        while pid in self.pending:
            pid += 1
        return pid

    def _connect(self) -> None:
        """Connect, retrying with backoff until the broker is back; then resend what is open."""
        delay = 0.01
        while True:
            if time.monotonic() > self.deadline:
                raise AssertionError(f"publisher not done in time: {self.stats()}")
            sock = None
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=2.0)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(connect_packet(self.client_id, clean=False))
                frames = Frames()
                packets: list[tuple[int, bytes]] = []
                end = time.monotonic() + 3.0
                while not packets and time.monotonic() < end:
                    data = _recv(sock, 0.2)
                    if data is None:
                        raise Lost
                    packets = frames.feed(data)
                # Nothing but CONNACK comes before the client sends anything.
                if len(packets) != 1 or packets[0][0] != 0x20 or packets[0][1][1] != 0:
                    raise Lost
                # The broker acknowledged messages of this session: it must still have it.
                present = bool(packets[0][1][0] & 1)
                assert present or not self.acked, f"publisher session lost: {self.stats()}"
                out = [
                    ack_packet(6, pid)
                    if pid in self.released
                    else publish_packet(self.topic, self.payload(seq), self.qos, pid, dup=True)
                    for pid, seq in self.pending.items()
                ]
                if out:
                    sock.sendall(b"".join(out))
            except (OSError, Lost):
                if sock is not None:
                    sock.close()
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
                continue
            self.resent += len(out)
            self.connects += 1
            self.sock = sock
            self.frames = frames
            return

    def _handle(self, first: int, body: bytes) -> list[bytes]:
        kind = first >> 4
        pid = struct.unpack_from("!H", body)[0]
        seq = self.pending.get(pid)
        if kind == 4 and self.qos == 1:  # PUBACK
            if seq is not None:
                self.acked.add(seq)
                del self.pending[pid]
        elif kind == 5 and self.qos == 2:  # PUBREC: the broker has the message
            if seq is not None and pid not in self.released:
                self.acked.add(seq)
                self.released.add(pid)
            return [ack_packet(6, pid)]
        elif kind == 7 and self.qos == 2:  # PUBCOMP
            if pid in self.released:
                self.released.discard(pid)
                del self.pending[pid]
        else:
            raise AssertionError(f"publisher got packet type {kind}")
        return []

    def run(self) -> None:
        while self.next_seq < self.total or self.pending:
            sock = self.sock
            if sock is None:
                self._connect()
                continue
            out: list[bytes] = []
            while self.next_seq < self.total and len(self.pending) < self.window:
                pid = self._alloc()
                self.pending[pid] = seq = self.next_seq
                self.next_seq += 1
                out.append(publish_packet(self.topic, self.payload(seq), self.qos, pid, dup=False))
            try:
                if out:
                    sock.sendall(b"".join(out))
                data = _recv(sock, 0.5)
                if data is None:
                    raise Lost
                replies: list[bytes] = []
                for first, body in self.frames.feed(data):
                    replies += self._handle(first, body)
                if replies:
                    sock.sendall(b"".join(replies))
            except (OSError, Lost):
                sock.close()
                self.sock = None
            self.progress = len(self.acked)
            if time.monotonic() > self.deadline:
                raise AssertionError(f"publisher not done in time: {self.stats()}")
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.sendall(DISCONNECT)
            self.sock.close()
            self.sock = None


# -- the subscriber -------------------------------------------------------------------------------


class Subscriber:
    """A persistent (clean session 0) raw-socket subscriber that records every PUBLISH."""

    def __init__(self, port: int, client_id: str) -> None:
        self.port = port
        self.client_id = client_id
        self.sock: socket.socket | None = None
        self.frames = Frames()
        self.backlog: list[tuple[int, bytes]] = []  # parsed, not yet handled
        self.seqs: list[int] = []  # in arrival order, duplicates included
        self.dups = 0  # PUBLISH packets with DUP=1

    def connect(self) -> bool:
        """Connect with clean session 0; returns Session Present."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5.0)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(connect_packet(self.client_id, clean=False, keepalive=60))
        self.sock = sock
        self.frames = Frames()
        self.backlog = []
        first, body = self._next_packet(5.0)
        assert first == 0x20 and body[1] == 0, (first, body)
        return bool(body[0] & 1)

    def _next_packet(self, timeout: float) -> tuple[int, bytes]:
        """The next packet; any after it in the same read stay in ``backlog``."""
        assert self.sock is not None
        end = time.monotonic() + timeout
        while not self.backlog and time.monotonic() < end:
            data = _recv(self.sock, 0.2)
            assert data is not None, "the broker closed the connection"
            self.backlog += self.frames.feed(data)
        assert self.backlog, "no packet from the broker"
        return self.backlog.pop(0)

    def subscribe(self, topic_filter: str, qos: int) -> None:
        assert self.sock is not None
        self.sock.sendall(subscribe_packet(1, topic_filter, qos))
        first, body = self._next_packet(5.0)
        assert first == 0x90 and body[2] == qos, (first, body)

    def disconnect(self) -> None:
        """A normal DISCONNECT."""
        assert self.sock is not None
        self.sock.sendall(DISCONNECT)
        self.close()

    def close(self) -> None:
        """Close the socket (no DISCONNECT if still connected)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def receive(self, expected: set[int], deadline: float, quiet: float = 0.5) -> None:
        """Acknowledge and record PUBLISHes until ``expected`` has arrived and nothing more
        comes for ``quiet`` seconds (duplicates would show up then), or until ``deadline``."""
        sock = self.sock
        assert sock is not None
        missing = set(expected)
        last = time.monotonic()
        while True:
            now = time.monotonic()
            if now > deadline or (not missing and now - last > quiet):
                return
            packets, self.backlog = self.backlog, []
            if not packets:
                data = _recv(sock, 0.1)
                assert data is not None, "the broker closed the subscriber's connection"
                packets = self.frames.feed(data)
            out = []
            for first, body in packets:
                kind = first >> 4
                if kind == 3:
                    qos = (first >> 1) & 3
                    n = struct.unpack_from("!H", body)[0]
                    pid = struct.unpack_from("!H", body, 2 + n)[0]
                    seq = int(body[4 + n : 4 + n + 8])
                    self.seqs.append(seq)
                    self.dups += bool(first & 0x08)
                    missing.discard(seq)
                    out.append(ack_packet(4 if qos == 1 else 5, pid))
                    last = time.monotonic()
                elif kind == 6:  # PUBREL
                    out.append(ack_packet(7, struct.unpack_from("!H", body)[0]))
                else:
                    raise AssertionError(f"subscriber got packet type {kind}")
            if out:
                sock.sendall(b"".join(out))
