"""``wrenmq passwd``: manage a password file, as ``mosquitto_passwd`` does.

    wrenmq passwd [-c | -D] passwordfile username      prompt for the password (twice)
    wrenmq passwd [-c] -b passwordfile username password
    wrenmq passwd -U passwordfile                      hash a file of plain user:password lines
    wrenmq passwd --scram [-c] [-b] passwordfile username [password]

The files are Mosquitto 2 files (``$7$`` PBKDF2-SHA512), usable by both brokers. With ``--scram``
the user's line holds SCRAM-SHA-256 credentials instead (a wrenmq extension Mosquitto does not
read): that user can then log in with MQTT 5 enhanced authentication ``SCRAM-SHA-256`` as well
as with a plain password.

Differences from ``mosquitto_passwd``: no ``-H`` (the legacy ``$6$`` hash is read, never
written); the file is always written atomically with mode 0600; ``-U`` leaves already hashed
lines alone instead of hashing them again; usernames that Mosquitto would misread (leading ``#``,
control characters, surrounding blanks) are refused, and so is an empty password (no broker would
accept it). A password that starts with ``-`` goes after ``--``.

Errors print ``wrenmq passwd: <why>`` on stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from wrenmq.broker.auth.passwd import PasswordFile, validate_username
from wrenmq.errors import ConfigError

__all__ = ["add_parser", "run"]


class _Failure(Exception):
    """A readable reason to exit with status 1."""


def add_parser(sub: Any) -> None:
    """Register the ``passwd`` subcommand."""
    p = sub.add_parser(
        "passwd",
        help="manage a Mosquitto-compatible password file",
        description="Add, change or delete users of a Mosquitto 2 password file.",
    )
    p.add_argument("-c", dest="create", action="store_true", help="create or overwrite the file")
    p.add_argument("-D", dest="delete", action="store_true", help="delete the user")
    p.add_argument(
        "-b", dest="batch", action="store_true", help="take the password from the command line"
    )
    p.add_argument(
        "-U",
        dest="upgrade",
        action="store_true",
        help="hash the passwords of a file of plain username:password lines",
    )
    p.add_argument(
        "--scram",
        action="store_true",
        help="store SCRAM-SHA-256 credentials (MQTT 5 enhanced authentication; wrenmq only)",
    )
    p.add_argument("passwordfile", help="the password file")
    p.add_argument("username", nargs="?", help="the user to add, change or delete")
    p.add_argument("password", nargs="?", help="the password (with -b only)")


def run(args: argparse.Namespace) -> int:
    """Carry out ``wrenmq passwd``; returns the exit status."""
    try:
        _run(args)
    except _Failure as exc:
        print(f"wrenmq passwd: {exc}", file=sys.stderr)
        return 1
    return 0


def _run(args: argparse.Namespace) -> None:
    path: str = args.passwordfile
    if args.upgrade:
        if args.create or args.delete or args.batch or args.scram or args.username is not None:
            raise _Failure("-U takes only the password file")
        _save(_load(path, plain=True), path)
        return
    if args.create and args.delete:
        raise _Failure("-c and -D cannot be used together")
    username: str | None = args.username
    if username is None:
        raise _Failure("missing username (usage: wrenmq passwd [-c | -D] [-b] FILE USER [PASS])")
    if args.delete:
        if args.batch or args.password is not None:
            raise _Failure("-D takes no password")
        pwfile = _load(path)
        try:
            pwfile.delete(username)
        except KeyError:
            raise _Failure(f"user {username!r} not found in {path}") from None
        _save(pwfile, path)
        return
    if args.batch and args.password is None:
        raise _Failure("-b needs the password after the username")
    if not args.batch and args.password is not None:
        raise _Failure("give the password on the command line only with -b")
    try:
        validate_username(username)
    except ValueError as exc:
        raise _Failure(f"invalid username: {exc}") from None
    # Load before prompting, so that a bad file fails before anyone types a password.
    pwfile = PasswordFile() if args.create else _load(path)
    password = args.password if args.batch else _prompt()
    if not password:
        raise _Failure("empty password (Mosquitto and wrenmq refuse empty passwords at CONNECT)")
    pwfile.set(username, password.encode("utf-8", "surrogateescape"), scram=args.scram)
    _save(pwfile, path)


def _prompt() -> str:
    try:
        first = getpass.getpass("Password: ")
        second = getpass.getpass("Reenter password: ")
    except (EOFError, KeyboardInterrupt):
        raise _Failure("no password given") from None
    if first != second:
        raise _Failure("passwords do not match")
    return first


def _load(path: str, *, plain: bool = False) -> PasswordFile:
    try:
        return PasswordFile.load_plain(path) if plain else PasswordFile.load(path)
    except FileNotFoundError:
        hint = "" if plain else " (use -c to create it)"
        raise _Failure(f"cannot open {path}: no such file{hint}") from None
    except ConfigError as exc:
        raise _Failure(str(exc)) from None
    except OSError as exc:
        raise _Failure(f"cannot read {path}: {exc.strerror or exc}") from None


def _save(pwfile: PasswordFile, path: str) -> None:
    try:
        pwfile.save(path)
    except OSError as exc:
        where = os.path.dirname(os.path.abspath(path))
        raise _Failure(f"cannot write {path} (in {where}): {exc.strerror or exc}") from None
