"""Authentication and authorization for the broker: Mosquitto password and ACL files, and the
Protocols and chain that plug them (or anything else) in.

``passwd`` and ``acl`` are pure (no asyncio, no clock); ``base`` holds the async side.
"""

from wrenmq.broker.auth.acl import Access, AclFile, filter_covered
from wrenmq.broker.auth.base import (
    AclAuthorizer,
    AuthChain,
    Authenticator,
    Authorizer,
    PasswordFileAuthenticator,
)
from wrenmq.broker.auth.passwd import PasswordFile, hash_password

__all__ = [
    "Access",
    "AclAuthorizer",
    "AclFile",
    "AuthChain",
    "Authenticator",
    "Authorizer",
    "PasswordFile",
    "PasswordFileAuthenticator",
    "filter_covered",
    "hash_password",
]
