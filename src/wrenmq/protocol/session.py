"""The client's session state and QoS 1/2 flows, in packets (no bytes, no IO, no clock).

What survives a lost network connection [MQTT-4.1.0-1]: outgoing QoS 1/2 messages until their
flow ends, and incoming QoS 2 packet ids until PUBREL. What does not: the send quota, messages
held back by it, and acknowledgements the application had not given yet (manual-ack mode).

Durable mode (``durable=True``: the IO layer writes the session to a store) adds one rule: nothing
goes on the wire before the state it creates is stored, so that a process restarted from the
store never contradicts what the server saw.

* An outgoing QoS 1/2 message is held until ``mark_stored`` (its packet id is in the store), so a
  restarted client resends it under the same id instead of publishing it again.
* PUBREL waits for ``pubrel_stored`` (the PUBREC is in the store): once PUBREL is out the server
  forgets the message, and a client that had not stored the PUBREC would resend the PUBLISH as
  new after a restart [MQTT-4.3.3-6].
* An incoming QoS 2 message is delivered and answered with PUBREC only after
  ``incoming_stored`` (its packet id is in the store), so a restarted client recognises the
  server's resend as a duplicate [MQTT-4.3.3-10]; PUBCOMP waits for ``incoming_released`` (the
  id is gone from the store), or a restarted client would swallow the next message that reuses
  the id.

Callbacks for a store write carry a tag (outgoing: the caller's per-message tag; incoming: the
session ``generation``, bumped whenever the server's session was lost) so that a late callback
never acts on a newer message that reuses the packet id.

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

__all__ = [
    "ACKED",
    "AWAIT_ACK",
    "AWAIT_COMP",
    "RELEASING",
    "STORING",
    "UNACKED",
    "UNSENT",
    "ClientSession",
    "Outgoing",
]

MAX_PACKET_ID: Final = 0xFFFF

# Outgoing QoS 1/2 message states.
UNSENT, AWAIT_ACK, AWAIT_COMP = 0, 1, 2
# Incoming QoS 2 packet id states: waiting for the application (manual ack), waiting for the
# store (durable mode), PUBREC sent, and PUBREL received while the store forgets the id.
UNACKED, STORING, ACKED, RELEASING = 0, 1, 2, 3


class Outgoing:
    """One outgoing QoS 1/2 message until its flow ends.

    ``stored`` is False while a durable session waits for the store to hold the message, and
    ``rel_stored`` False while it waits for the store to hold its PUBREC; ``tag`` is the caller's
    handle on the message (durable mode: its sequence number in the store).
    """

    __slots__ = (
        "data",
        "publish",
        "rec_code",
        "rel_stored",
        "sent_before",
        "state",
        "stored",
        "tag",
    )

    def __init__(self, publish: Publish, data: bytes, *, stored: bool = True, tag: int = 0) -> None:
        self.publish = publish
        self.data = data  # full-topic encoding without DUP; resends patch the DUP bit
        self.state = UNSENT
        self.sent_before = False
        self.rec_code = ReasonCode.SUCCESS
        self.stored = stored
        self.rel_stored = True
        self.tag = tag


class ClientSession:
    """Outgoing and incoming QoS 1/2 state of one client session.

    Args:
        manual_ack: incoming QoS 1/2 messages wait for ``ack()``.
        durable: the session is written to a store; see the module docstring.
    """

    def __init__(self, *, manual_ack: bool = False, durable: bool = False) -> None:
        self.manual_ack = manual_ack
        self.durable = durable
        self.outgoing: dict[int, Outgoing] = {}  # in the order the messages were published
        self.qos2_in: dict[int, int] = {}  # packet id -> UNACKED / STORING / ACKED / RELEASING
        self.qos1_unacked: set[int] = set()
        self.held: deque[int] = deque()  # published but waiting for send quota (or the store)
        self.quota = 0
        self.generation = 0  # bumped when the server lost the session (incoming ids dropped)
        self._next_id = 1

    @property
    def next_packet_id(self) -> int:
        """The packet id the allocator tries first (stored by durable sessions)."""
        return self._next_id

    @next_packet_id.setter
    def next_packet_id(self, value: int) -> None:
        self._next_id = value if 0 < value <= MAX_PACKET_ID else 1

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
        # deliver it again rather than swallow it as a duplicate. (An id on its way to the store
        # stays: its message was delivered, or will be once the store has the id.)
        self.qos2_in = {pid: st for pid, st in self.qos2_in.items() if st != UNACKED}
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
        QoS 2 message whose PUBREC already arrived counts as delivered. Messages (and PUBRELs)
        still waiting for the store wait on.
        """
        self.quota = quota
        self.held = deque()
        if not present:
            self.qos2_in = {}
            self.generation += 1
        send: list[Outgoing | PubRel] = []
        done: list[int] = []
        for pid, entry in self.outgoing.items():
            if entry.state == AWAIT_COMP:
                if present:
                    self.quota -= 1  # still unacknowledged: it counts against the quota
                    if entry.rel_stored:
                        send.append(PubRel(pid))
                else:
                    done.append(pid)
                continue
            if not present:
                entry.sent_before = False
            entry.state = UNSENT
            if entry.stored and self.quota > 0 and not self.held:
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
        if entry.stored and self.quota > 0 and not self.held:
            self._take_quota(entry)
            return True
        self.held.append(entry.publish.packet_id)
        return False

    def releasable(self) -> Iterator[Outgoing]:
        """Yield held messages as send quota frees up (each yielded one is now in flight).

        A message not stored yet stops the release: those behind it wait, to keep the order.
        """
        held, outgoing = self.held, self.outgoing
        while held and self.quota > 0:
            entry = outgoing.get(held[0])
            if entry is not None and not entry.stored:
                return
            held.popleft()
            if entry is not None and entry.state == UNSENT:
                self._take_quota(entry)
                yield entry

    def mark_stored(self, pid: int, tag: int) -> bool:
        """The store holds outgoing message ``pid`` (tagged ``tag``); True if that was news."""
        entry = self.outgoing.get(pid)
        if entry is None or entry.tag != tag or entry.stored:
            return False
        entry.stored = True
        return True

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
        if entry.state == AWAIT_COMP:  # a repeated PUBREC
            return (PubRel(pid) if entry.rel_stored else None), None
        if p.reason_code.is_failure:
            return None, self._complete(pid, p, p.reason_code)
        entry.state = AWAIT_COMP
        entry.rec_code = p.reason_code
        entry.data = b""  # never resent after PUBREL [MQTT-4.3.3-6]: drop the payload
        entry.publish = Publish(entry.publish.topic, b"", 2, packet_id=pid)
        if self.durable:
            entry.rel_stored = False  # PUBREL once the store has the PUBREC: pubrel_stored()
            return None, None
        return PubRel(pid), None

    def pubrel_stored(self, pid: int, tag: int) -> PubRel | None:
        """The store holds the PUBREC of outgoing message ``pid``: the PUBREL it may now send."""
        entry = self.outgoing.get(pid)
        if entry is None or entry.tag != tag or entry.state != AWAIT_COMP or entry.rel_stored:
            return None
        entry.rel_stored = True
        return PubRel(pid)

    def pubcomp(self, p: PubComp) -> PublishAcked | None:
        """PUBCOMP: a QoS 2 flow ends, with PUBREC's reason code.

        PUBCOMP's only failure, Packet Identifier not found, answers a PUBREL the server had
        already completed (its first PUBCOMP was lost with a connection): the message was
        accepted at PUBREC, so that is no failure of the publish.
        """
        entry = self.outgoing.get(p.packet_id)
        if entry is None or entry.state != AWAIT_COMP or not entry.rel_stored:
            return None  # (a PUBCOMP before our PUBREL went out is not an answer to it)
        return self._complete(p.packet_id, p, entry.rec_code)

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
        state = self.qos2_in.get(pid)
        if state is not None:
            # A resend of a message already delivered: not again [MQTT-4.3.3-10]; its PUBREC
            # again if it went out before (otherwise it goes out when acknowledged or stored).
            return False, PubRec(pid) if state == ACKED else None
        self._check_receive_maximum(receive_maximum)
        if self.manual_ack:
            self.qos2_in[pid] = UNACKED
            return True, None
        if self.durable:
            self.qos2_in[pid] = STORING  # delivered and answered by incoming_stored()
            return True, None
        self.qos2_in[pid] = ACKED
        return True, PubRec(pid)

    def _check_receive_maximum(self, receive_maximum: int) -> None:
        if len(self.qos1_unacked) + len(self.qos2_in) >= receive_maximum:
            raise RemoteProtocolError(
                ReasonCode.RECEIVE_MAXIMUM_EXCEEDED,
                f"more than {receive_maximum} unacknowledged QoS 1/2 messages",
            )  # [MQTT-3.3.4-9]

    def pubrel(self, p: PubRel) -> tuple[PubComp | None, bool]:
        """PUBREL: forget the packet id and answer PUBCOMP [MQTT-4.3.3-11].

        Returns the PUBCOMP to send, and True when a durable session must first remove the id
        from its store (the PUBCOMP then comes from ``incoming_released``).
        """
        pid = p.packet_id
        state = self.qos2_in.get(pid)
        if state is None:
            return PubComp(pid, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND), False
        if state in (UNACKED, STORING):
            raise RemoteProtocolError(ReasonCode.PROTOCOL_ERROR, f"PUBREL {pid} before PUBREC")
        if state == RELEASING:
            return None, False  # a repeated PUBREL: PUBCOMP once the store forgot the id
        if self.durable:
            self.qos2_in[pid] = RELEASING
            return None, True
        del self.qos2_in[pid]
        return PubComp(pid), False

    def incoming_stored(self, pid: int, generation: int) -> PubRec | None:
        """The store holds incoming QoS 2 id ``pid``: the PUBREC it may now send."""
        if generation != self.generation or self.qos2_in.get(pid) != STORING:
            return None
        self.qos2_in[pid] = ACKED
        return PubRec(pid)

    def incoming_released(self, pid: int, generation: int) -> PubComp | None:
        """The store forgot incoming QoS 2 id ``pid``: the PUBCOMP it may now send."""
        if generation != self.generation or self.qos2_in.get(pid) != RELEASING:
            return None
        del self.qos2_in[pid]
        return PubComp(pid)

    def ack(self, pid: int, reason_code: ReasonCode) -> PubAck | PubRec | None:
        """The application acknowledged an incoming message (manual-ack mode).

        In a durable session the PUBREC of an accepted QoS 2 message waits for the store
        (``incoming_stored``); a refusal goes out at once.
        """
        if pid in self.qos1_unacked:
            self.qos1_unacked.discard(pid)
            return PubAck(pid, reason_code)
        if self.qos2_in.get(pid) == UNACKED:
            if reason_code.is_failure:
                del self.qos2_in[pid]  # a refused id is free again [MQTT-4.3.3-9]
            elif self.durable:
                self.qos2_in[pid] = STORING
                return None
            else:
                self.qos2_in[pid] = ACKED
            return PubRec(pid, reason_code)
        return None
