"""``-D COMMAND NAME VALUE [VALUE2]``: MQTT 5 properties on the command line, as Mosquitto's.

``-D publish user-property key value``, ``-D connect session-expiry-interval 60``, ``-D will
content-type text/plain``... (also ``--property``). The names are Mosquitto's (the attribute names
of ``wrenmq.codec.properties.Properties`` with ``-`` for ``_`` are accepted too). Which property
a packet may carry comes from the codec's property table, so the rules are the spec's, less the
ones only a server sends. Integers are range-checked (Mosquitto reads ``abc`` as 0), one-byte
properties are 0/1 flags, binary ones (``correlation-data``, ``authentication-data``) are the
bytes of the text as given.

Differences from Mosquitto: ``-D publish topic-alias N`` is accepted, but the client picks the
aliases itself (from the second publish to a topic, within the server's Topic Alias Maximum), as
Mosquitto's client does with the alias it is given; ``-D disconnect`` takes only
``session-expiry-interval`` (``Client.disconnect`` carries no other property); a command the
subcommand has no use for (``-D subscribe`` in ``pub``) is an error, not ignored.

Imports ``codec`` only; imported by ``common``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any, Final

from wrenmq.codec.properties import (
    BINARY,
    BYTE,
    FOUR,
    PAIR,
    PROPERTY_TABLE,
    STRING,
    TWO,
    VARINT,
    WILL,
)
from wrenmq.codec.types import PacketType

__all__ = ["COMMAND_PACKETS", "PropertyAction", "parse_property"]

# The packet each -D COMMAND sets properties of (WILL: the will properties inside CONNECT).
COMMAND_PACKETS: Final[dict[str, int]] = {
    "connect": PacketType.CONNECT,
    "publish": PacketType.PUBLISH,
    "subscribe": PacketType.SUBSCRIBE,
    "unsubscribe": PacketType.UNSUBSCRIBE,
    "disconnect": PacketType.DISCONNECT,
    "will": WILL,
}
# Mosquitto's names that are not the attribute name with '-' for '_'.
_NAME_ALIASES: Final = {
    "user-property": "user_properties",
    "subscription-identifier": "subscription_identifiers",
}
_SPECS: Final = {spec.name: spec for spec in PROPERTY_TABLE.values()}
# The property table allows these in the packet, but only a server sends them.
_SERVER_ONLY: Final = frozenset(
    {
        (PacketType.PUBLISH, "subscription_identifiers"),  # [MQTT-3.3.4-6]
        (PacketType.DISCONNECT, "server_reference"),
    }
)
# A client may send these, but ``Client.disconnect`` only carries a Session Expiry Interval.
_UNSUPPORTED: Final = frozenset(
    {(PacketType.DISCONNECT, "reason_string"), (PacketType.DISCONNECT, "user_properties")}
)
# Value ranges per wire type; every one-byte property a client sends is a 0/1 flag, and a
# Subscription Identifier of 0 is a Protocol Error [MQTT-3.8.2.1.2].
_RANGES: Final = {BYTE: (0, 1), TWO: (0, 0xFFFF), FOUR: (0, 0xFFFF_FFFF), VARINT: (1, 268_435_455)}


def parse_property(
    command: str, name: str, values: Sequence[str], commands: Sequence[str]
) -> tuple[int, str, Any]:
    """Check one ``-D COMMAND NAME VALUE [VALUE2]``; return ``(packet, attribute, value)``.

    Raises:
        ValueError: a readable reason the property cannot be used.
    """
    if command not in commands:
        known = ", ".join(commands)
        if command in COMMAND_PACKETS:
            raise ValueError(f"{command} properties have no use here (use one of {known})")
        raise ValueError(f"unknown command {command!r} (use one of {known})")
    packet = COMMAND_PACKETS[command]
    attr = _NAME_ALIASES.get(name, name.replace("-", "_"))
    spec = _SPECS.get(attr)
    if spec is None:
        raise ValueError(f"unknown property {name!r}")
    if packet not in spec.packets or (packet, attr) in _SERVER_ONLY:
        raise ValueError(f"{name} is not a {command} property")
    if (packet, attr) in _UNSUPPORTED:
        raise ValueError(f"{command} {name} is not supported (only session-expiry-interval)")
    wanted = 2 if spec.wire_type == PAIR else 1
    if len(values) != wanted:
        raise ValueError(f"{command} {name} takes {wanted} value{'s' if wanted > 1 else ''}")
    if spec.wire_type == PAIR:
        return packet, attr, (values[0], values[1])
    text = values[0]
    if spec.wire_type == STRING:
        return packet, attr, text
    if spec.wire_type == BINARY:
        return packet, attr, os.fsencode(text)
    low, high = _RANGES[spec.wire_type]
    try:
        number = int(text, 10)
    except ValueError:
        raise ValueError(f"{command} {name}: {text!r} is not a number") from None
    if not low <= number <= high:
        raise ValueError(f"{command} {name}: {number} is outside {low}..{high}")
    return packet, attr, number


class PropertyAction(argparse.Action):
    """``-D COMMAND NAME VALUE [VALUE2]``: collects ``{packet: {attribute: value}}``."""

    def __init__(
        self, option_strings: Sequence[str], dest: str, *, commands: Sequence[str], **kw: Any
    ) -> None:
        super().__init__(
            option_strings, dest, nargs="+", metavar=("COMMAND NAME VALUE", "VALUE2"), **kw
        )
        self.commands = tuple(commands)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        """Check one ``-D`` and add it to the namespace."""
        words = [str(v) for v in values or ()]
        if len(words) < 3:
            raise argparse.ArgumentError(self, "expected COMMAND NAME VALUE [VALUE2]")
        try:
            packet, attr, value = parse_property(words[0], words[1], words[2:], self.commands)
        except ValueError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        table: dict[int, dict[str, Any]] = getattr(namespace, self.dest, None) or {}
        fields = table.setdefault(packet, {})
        if attr in ("user_properties", "subscription_identifiers"):
            fields[attr] = (*fields.get(attr, ()), value)
        else:
            fields[attr] = value
        setattr(namespace, self.dest, table)
