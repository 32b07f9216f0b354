"""The client's session state and QoS 1/2 flows, in packets (no bytes, no IO, no clock).

What survives a lost network connection [MQTT-4.1.0-1]: outgoing QoS 1/2 messages until their
flow ends, and incoming QoS 2 packet ids until PUBREL. What does not: the send quota, messages
held back by it, and acknowledgements the application had not given yet (manual-ack mode).

``ClientSession`` answers each flow packet with the packet to send back and the event to report;
``wrenmq.protocol.client.ClientProtocol`` encodes them. Imports only ``codec``, ``errors`` and
``protocol.events``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container, Iterator
from typing import Final

from wrenmq.codec.packets import PubAck, PubComp, Publish, PubRec, PubRel
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import LocalProtocolError, RemoteProtocolError
from wrenmq.protocol.events import PublishAcked

__all__ = ["AWAIT_ACK", "AWAIT_COMP", "UNSENT", "ClientSession", "Outgoing"]

MAX_PACKET_ID: Final = 0xFFFF

# Outgoing QoS 1/2 message states.
UNSENT, AWAIT_ACK, AWAIT_COMP = 0, 1, 2


class Outgoing:
    """One outgoing QoS 1/2 message until its flow ends."""

    __slots__ = ("data", "publish", "rec_code", "sent_before", "state")

    def __init__(self, publish: Publish, data: bytes) -> None:
        self.publish = publish
        self.data = data  # full-topic encoding without DUP; resends patch the DUP bit
        self.state = UNSENT
        self.sent_before = False
        self.rec_code = ReasonCode.SUCCESS


class ClientSession:
    """Outgoing and incoming QoS 1/2 state of one client session.

    Args:
        manual_ack: incoming QoS 1/2 messages wait for ``ack()``.
    """

    def __init__(self, *, manual_ack: bool = False) -> None:
        self.manual_ack = manual_ack
        self.outgoing: dict[int, Outgoing] = {}  # in the order the messages were published
        self.qos2_in: dict[int, bool] = {}  # packet id -> PUBREC sent
        self.qos1_unacked: set[int] = set()
        self.held: deque[int] = deque()  # published but waiting for send quota
        self.quota = 0
        self._next_id = 1

    # -- packet ids and connections -------------------------------------------------------------

    def allocate_id(self, also_in_use: Container[int]) -> int:
        """A packet id used neither by an outgoing message nor by ``also_in_use``."""
        pid = self._next_id
        outgoing = self.outgoing
        for _ in range(MAX_PACKET_ID):
            if pid not in outgoing and pid not in also_in_use:
                self._next_id = pid % MAX_PACKET_ID + 1
                return pid
            pid = pid % MAX_PACKET_ID + 1
        raise LocalProtocolError(
            ReasonCode.PACKET_IDENTIFIER_IN_USE, "all 65535 packet identifiers are in use"
        )

    def connection_lost(self) -> None:
        """Keep the session; forget what belonged to the connection."""
        self.held = deque()
        self.qos1_unacked = set()
        # A QoS 2 message the application never acknowledged will be resent by the server:
        # deliver it again rather than swallow it as a duplicate.
        self.qos2_in = {pid: acked for pid, acked in self.qos2_in.items() if acked}
        for entry in self.outgoing.values():
            if entry.state == AWAIT_ACK:
                entry.state = UNSENT

    def resume(
        self, present: bool, quota: int
    ) -> tuple[list[Outgoing | PubRel], list[PublishAcked]]:
        """A new connection was accepted; return what to send, in order, and flows now over.

        ``present``: the server kept the session, so unacknowledged PUBLISH packets are resent
        with DUP and PUBREL packets repeated, in their original order [MQTT-4.4.0-1]. Otherwise
        the server forgot it: our unacknowledged messages are published again as new ones, and a
        QoS 2 message whose PUBREC already arrived counts as delivered.
        """
        self.quota = quota
        self.held = deque()
        if not present:
            self.qos2_in = {}
        send: list[Outgoing | PubRel] = []
        done: list[int] = []
        for pid, entry in self.outgoing.items():
            if entry.state == AWAIT_COMP:
                if present:
                    self.quota -= 1  # still unacknowledged: it counts against the quota
                    send.append(PubRel(pid))
                else:
                    done.append(pid)
                continue
            if not present:
                entry.sent_before = False
            entry.state = UNSENT
            if self.quota > 0 and not self.held:
                self._take_quota(entry)
                send.append(entry)
            else:
                self.held.append(pid)
        return send, [PublishAcked(pid, self.outgoing.pop(pid).rec_code) for pid in done]

    # -- outgoing -------------------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        """Outgoing QoS 1/2 messages whose flow has not ended (held ones included)."""
        return len(self.outgoing)

    def _take_quota(self, entry: Outgoing) -> None:
        self.quota -= 1  # [MQTT-3.3.4-7]: no more unacknowledged than the Receive Maximum
        entry.state = AWAIT_ACK

    def add(self, entry: Outgoing) -> bool:
        """Track a new outgoing message; True when it may go out now, False when held."""
        self.outgoing[entry.publish.packet_id] = entry
        if self.quota > 0 and not self.held:
            self._take_quota(entry)
            return True
        self.held.append(entry.publish.packet_id)
        return False

    def releasable(self) -> Iterator[Outgoing]:
        """Yield held messages as send quota frees up (each yielded one is now in flight)."""
        held, outgoing = self.held, self.outgoing
        while held and self.quota > 0:
            entry = outgoing.get(held.popleft())
            if entry is not None and entry.state == UNSENT:
                self._take_quota(entry)
                yield entry

    def _complete(self, pid: int, ack: PubAck | PubRec | PubComp, code: ReasonCode) -> PublishAcked:
        del self.outgoing[pid]
        self.quota += 1
        return PublishAcked(pid, code, ack.properties)

    def puback(self, p: PubAck) -> PublishAcked | None:
        """PUBACK: a QoS 1 flow ends."""
        entry = self.outgoing.get(p.packet_id)
        if entry is None or entry.state != AWAIT_ACK or entry.publish.qos != 1:
            return None
        return self._complete(p.packet_id, p, p.reason_code)

    def pubrec(self, p: PubRec) -> tuple[PubRel | None, PublishAcked | None]:
        """PUBREC: answer PUBREL, or end the flow on a failure code (4.9)."""
        pid = p.packet_id
        entry = self.outgoing.get(pid)
        if entry is None or entry.publish.qos != 2 or entry.state == UNSENT:
            # Unknown id: release it anyway so that the server can forget it.
            code = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND if entry is None else ReasonCode.SUCCESS
            return PubRel(pid, code), None
        if p.reason_code.is_failure:
            return None, self._complete(pid, p, p.reason_code)
        entry.state = AWAIT_COMP
        entry.rec_code = p.reason_code
        entry.data = b""  # never resent after PUBREL [MQTT-4.3.3-6]: drop the payload
        entry.publish = Publish(entry.publish.topic, b"", 2, packet_id=pid)
        return PubRel(pid), None

    def pubcomp(self, p: PubComp) -> PublishAcked | None:
        """PUBCOMP: a QoS 2 flow ends (with PUBREC's code unless PUBCOMP reports a failure)."""
        entry = self.outgoing.get(p.packet_id)
        if entry is None or entry.state != AWAIT_COMP:
            return None
        code = p.reason_code if p.reason_code.is_failure else entry.rec_code
        return self._complete(p.packet_id, p, code)

    # -- incoming -------------------------------------------------------------------------------

    def receive(self, p: Publish, receive_maximum: int) -> tuple[bool, PubAck | PubRec | None]:
        """An incoming PUBLISH: return (deliver it?, acknowledgement to send now).

        Raises:
            RemoteProtocolError: Receive Maximum exceeded [MQTT-3.3.4-9].
        """
        qos = p.qos
        if not qos:
            return True, None
        pid = p.packet_id
        if qos == 1:
            if not self.manual_ack:
                return True, PubAck(pid)
            if pid not in self.qos1_unacked:
                self._check_receive_maximum(receive_maximum)
                self.qos1_unacked.add(pid)
            return True, None
        acked = self.qos2_in.get(pid)
        if acked is not None:
            # A resend of a message already delivered: not again [MQTT-4.3.3-10].
            return False, PubRec(pid) if acked else None
        self._check_receive_maximum(receive_maximum)
        self.qos2_in[pid] = not self.manual_ack
        return True, None if self.manual_ack else PubRec(pid)

    def _check_receive_maximum(self, receive_maximum: int) -> None:
        if len(self.qos1_unacked) + len(self.qos2_in) >= receive_maximum:
            raise RemoteProtocolError(
                ReasonCode.RECEIVE_MAXIMUM_EXCEEDED,
                f"more than {receive_maximum} unacknowledged QoS 1/2 messages",
            )  # [MQTT-3.3.4-9]

    def pubrel(self, p: PubRel) -> PubComp:
        """PUBREL: forget the packet id and answer PUBCOMP [MQTT-4.3.3-11]."""
        pid = p.packet_id
        acked = self.qos2_in.get(pid)
        if acked is False:
            raise RemoteProtocolError(ReasonCode.PROTOCOL_ERROR, f"PUBREL {pid} before PUBREC")
        if acked:
            del self.qos2_in[pid]
            return PubComp(pid)
        return PubComp(pid, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)

    def ack(self, pid: int, reason_code: ReasonCode) -> PubAck | PubRec | None:
        """The application acknowledged an incoming message (manual-ack mode)."""
        if pid in self.qos1_unacked:
            self.qos1_unacked.discard(pid)
            return PubAck(pid, reason_code)
        if self.qos2_in.get(pid) is False:
            if reason_code.is_failure:
                del self.qos2_in[pid]  # a refused id is free again [MQTT-4.3.3-9]
            else:
                self.qos2_in[pid] = True
            return PubRec(pid, reason_code)
        return None
