"""TLS for listeners: build server ``ssl.SSLContext`` objects, reload their certificates, and read
the client certificate's identity.

Mosquitto's semantics: the server certificate chain and key are required; ``cafile`` lists the
CAs that sign client certificates and ``require_certificate`` makes one mandatory (mutual TLS);
without ``require_certificate`` no client certificate is requested. TLS 1.2 is the default
minimum. ``ciphers`` is an OpenSSL cipher list for TLS 1.2 (Python's ``ssl`` cannot restrict the
TLS 1.3 suites, which are all AEAD anyway).

Errors are :class:`~wrenmq.errors.ConfigError` naming the listener key, e.g.
``listener[1].certfile``, so a bad file fails at start (or at reload) with a readable reason.

Imports: the standard library and :mod:`wrenmq.errors`.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping
from typing import Any

from wrenmq.errors import ConfigError

__all__ = ["TLS_VERSIONS", "load_certificates", "peer_common_name", "server_context"]

TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "tlsv1.2": ssl.TLSVersion.TLSv1_2,
    "tlsv1.3": ssl.TLSVersion.TLSv1_3,
}


def server_context(
    *,
    certfile: str,
    keyfile: str,
    cafile: str | None = None,
    require_certificate: bool = False,
    ciphers: str | None = None,
    tls_version: str = "tlsv1.2",
    where: str = "",
) -> ssl.SSLContext:
    """A server-side context for one listener.

    Args:
        certfile: PEM certificate chain, the server's certificate first.
        keyfile: PEM private key of that certificate (unencrypted).
        cafile: PEM bundle of the CAs client certificates must chain to.
        require_certificate: Refuse clients without a valid certificate (needs ``cafile``).
        ciphers: OpenSSL cipher list for TLS 1.2 connections; None keeps OpenSSL's default.
        tls_version: The lowest version accepted: ``"tlsv1.2"`` or ``"tlsv1.3"``.
        where: Prefix for ``ConfigError.where``, e.g. ``"listener[1]"``.

    Raises:
        ConfigError: A file cannot be read or is not what it should be, or ``ciphers`` selects
            no cipher.
    """
    prefix = f"{where}." if where else ""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.minimum_version = TLS_VERSIONS[tls_version]
    except KeyError:
        raise ConfigError(prefix + "tls_version", f"unknown TLS version {tls_version!r}") from None
    # No TLS compression (CRIME); prefer the server's cipher order; no renegotiation by clients.
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    if ciphers is not None:
        try:
            context.set_ciphers(ciphers)
        except ssl.SSLError as exc:
            raise ConfigError(prefix + "ciphers", f"no usable cipher in {ciphers!r}") from exc
    load_certificates(context, certfile=certfile, keyfile=keyfile, where=where)
    if cafile is not None:
        try:
            context.load_verify_locations(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(prefix + "cafile", f"cannot load CA file {cafile!r}: {exc}") from exc
    context.verify_mode = ssl.CERT_REQUIRED if require_certificate else ssl.CERT_NONE
    return context


def load_certificates(context: ssl.SSLContext, *, certfile: str, keyfile: str, where: str) -> None:
    """(Re)load the certificate chain and key into ``context``; later handshakes use them.

    Raises:
        ConfigError: The files cannot be read, are not PEM, or the key does not match.
    """
    prefix = f"{where}." if where else ""
    for key, path in (("certfile", certfile), ("keyfile", keyfile)):
        # OpenSSL's error does not say which of the two files is missing; this does.
        if not os.path.isfile(path):
            raise ConfigError(prefix + key, f"no such file: {path!r}")
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        reason = f"cannot load {certfile!r} with key {keyfile!r} (PEM, matching key?): {exc}"
        raise ConfigError(prefix + "certfile", reason) from exc


def peer_common_name(transport: asyncio.BaseTransport | None) -> str | None:
    """The subject Common Name of the verified client certificate on ``transport``, or None.

    ``peercert`` is only filled in when the certificate was verified (``CERT_REQUIRED``), so a
    name returned here was vouched for by a CA in ``cafile``.
    """
    if transport is None:
        return None
    cert: Any = transport.get_extra_info("peercert")
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and isinstance(value, str) and value:
                return value
    return None
