"""Open the broker's listeners: accept connections and give each to a :class:`Connection`.

One function per concern, so ``broker.py`` only loops over the configured listeners:

- :func:`tls_contexts` builds the ``ssl.SSLContext`` of every ``mqtt+tls`` and ``wss`` listener
  when the broker is created (a bad certificate fails then, not on the first client), and
  :func:`reload_certificates` loads new certificate files into those same contexts, so new
  handshakes use them while open connections stay up.
- :func:`open_listener` starts serving one listener: a TCP server (TLS when the listener has a
  context) or a WebSocket server for ``ws``/``wss``; with ``proxy_protocol`` each connection
  starts with a PROXY header (``mqtt``, ``mqtt+tls`` and ``ws`` listeners).

Imports: the broker's config and connection, and :mod:`wrenmq.transport`.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from wrenmq.broker.config import BrokerConfig, ListenerConfig
from wrenmq.broker.connection import Connection
from wrenmq.transport.tcp import ProxyGate
from wrenmq.transport.tls import load_certificates, server_context
from wrenmq.transport.websocket import serve_websocket

if TYPE_CHECKING:
    from wrenmq.broker.broker import Broker

__all__ = ["Listening", "open_listener", "reload_certificates", "tls_contexts"]


class Listening(Protocol):
    """What the broker keeps of an open listener (``asyncio.Server`` is one)."""

    @property
    def sockets(self) -> Iterable[Any]:
        """The listening sockets."""
        ...

    def close(self) -> None:
        """Stop accepting connections."""
        ...

    async def wait_closed(self) -> None:
        """Wait until the listener is closed."""
        ...


def tls_contexts(config: BrokerConfig) -> dict[int, ssl.SSLContext]:
    """The server context of each TLS listener, by listener index.

    Raises:
        ConfigError: A certificate, key or CA file cannot be loaded, or the ciphers are unusable;
            ``where`` is like ``"listener[1].certfile"``.
    """
    contexts = {}
    for index, listener in enumerate(config.listeners):
        if listener.certfile is not None and listener.keyfile is not None:
            contexts[index] = server_context(
                certfile=listener.certfile,
                keyfile=listener.keyfile,
                cafile=listener.cafile,
                require_certificate=listener.require_certificate,
                ciphers=listener.ciphers,
                tls_version=listener.tls_version,
                where=f"listener[{index}]",
            )
    return contexts


def reload_certificates(config: BrokerConfig, contexts: dict[int, ssl.SSLContext]) -> None:
    """Load every TLS listener's certificate files again into its live context.

    All files are first loaded into fresh contexts, so a bad file changes nothing: OpenSSL could
    otherwise keep a new certificate with the old key.

    Raises:
        ConfigError: A file cannot be loaded; every context keeps its certificate.
    """
    tls_contexts(config)  # check everything first
    for index, context in contexts.items():
        listener = config.listeners[index]
        assert listener.certfile is not None and listener.keyfile is not None
        where = f"listener[{index}]"
        load_certificates(
            context, certfile=listener.certfile, keyfile=listener.keyfile, where=where
        )
        if listener.cafile is not None:
            # Adds the CAs in the file (OpenSSL cannot forget the ones loaded before).
            context.load_verify_locations(cafile=listener.cafile)


async def open_listener(
    broker: Broker, listener: ListenerConfig, context: ssl.SSLContext | None
) -> Listening:
    """Start accepting connections for ``listener``; ``context`` from :func:`tls_contexts`."""
    config = broker.config
    make_connection = functools.partial(Connection, broker, listener)
    if listener.protocol in ("ws", "wss"):
        return await serve_websocket(
            make_connection,
            host=listener.bind_address,
            port=listener.port,
            path=listener.ws_path,
            ssl_context=context,
            proxy_protocol=listener.proxy_protocol,
            open_timeout=config.connect_timeout,
            max_size=config.max_packet_size,
        )
    factory: Callable[[], asyncio.BaseProtocol] = make_connection
    extra: dict[str, Any] = {}
    if listener.proxy_protocol:
        # The gate reads the header, then starts TLS itself: the header precedes the handshake.
        factory = functools.partial(
            ProxyGate, make_connection, timeout=config.connect_timeout, ssl_context=context
        )
    elif context is not None:
        extra = {"ssl": context, "ssl_handshake_timeout": config.connect_timeout}
    return await broker.loop.create_server(
        factory,
        host=listener.bind_address,
        port=listener.port,
        reuse_address=True,
        backlog=4096,
        **extra,
    )
