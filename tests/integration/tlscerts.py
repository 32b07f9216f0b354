"""Certificates made in the test with ``trustme``: a CA, a server certificate for 127.0.0.1 and
localhost, and a client certificate whose subject CN is ``alice`` -- written to PEM files so the
broker's config and command line clients can name them.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

CLIENT_CN = "alice"


@dataclass(frozen=True)
class Certs:
    ca: trustme.CA
    dir: Path
    cafile: str
    certfile: str  # server chain
    keyfile: str
    client_certfile: str
    client_keyfile: str

    def listener(self, protocol: str = "mqtt+tls", **options: object) -> dict[str, object]:
        """A ``[[listener]]`` table on an ephemeral loopback port with the server certificate."""
        table: dict[str, object] = {
            "port": 0,
            "bind_address": "127.0.0.1",
            "protocol": protocol,
            "certfile": self.certfile,
            "keyfile": self.keyfile,
        }
        table.update(options)
        return table

    def client_context(
        self, *, with_cert: bool = False, maximum: ssl.TLSVersion | None = None
    ) -> ssl.SSLContext:
        """A client context trusting the CA; optionally presenting the client certificate."""
        ctx = ssl.create_default_context(cafile=self.cafile)
        if with_cert:
            ctx.load_cert_chain(self.client_certfile, self.client_keyfile)
        if maximum is not None:
            ctx.maximum_version = maximum
        return ctx


def make_certs(directory: Path) -> Certs:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost", "::1")
    client = ca.issue_cert("client.example", common_name=CLIENT_CN)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        name: directory / f"{name}.pem"
        for name in ("ca", "server", "server-key", "client", "client-key")
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.private_key_pem.write_to_path(str(paths["server-key"]))
    for i, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(paths["server"]), append=i > 0)
    client.private_key_pem.write_to_path(str(paths["client-key"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client"]))
    return Certs(
        ca,
        directory,
        str(paths["ca"]),
        str(paths["server"]),
        str(paths["server-key"]),
        str(paths["client"]),
        str(paths["client-key"]),
    )
