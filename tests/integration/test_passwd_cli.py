"""``wrenmq passwd`` as a subprocess, and its files read by a real Mosquitto broker.

Mosquitto cannot check a password offline, so a file we wrote is handed to ``/usr/sbin/mosquitto``
(``password_file``, ``allow_anonymous false``) on an ephemeral loopback port, and paho clients
connect with the right and the wrong password.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from pahopeer import TIMEOUT

from wrenmq.broker.auth.passwd import PasswordFile

WRENMQ = str(Path(sys.executable).with_name("wrenmq"))
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
needs_mosquitto = pytest.mark.skipif(
    not os.access(MOSQUITTO, os.X_OK), reason="mosquitto broker not installed"
)
# MQTT 3.1.1 return codes 4 (bad user name or password) and 5 (not authorized), which paho reports
# as the MQTT 5 reason codes 0x86 and 0x87.
REFUSED = {0x86, 0x87}


def wrenmq_passwd(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    # A new session has no controlling terminal, so getpass reads the answers from stdin.
    return subprocess.run(
        [WRENMQ, "passwd", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        start_new_session=True,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


# -- the command -------------------------------------------------------------------------------


def test_create_add_change_delete(tmp_path: Path) -> None:
    pw = str(tmp_path / "pw")
    done = wrenmq_passwd("-c", "-b", pw, "alice", "s3cret")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert stat.S_IMODE(os.stat(pw).st_mode) == 0o600
    assert wrenmq_passwd("-b", pw, "bob", "pässwörd").returncode == 0
    assert wrenmq_passwd("-b", pw, "alice", "--", "-dash").returncode == 0  # change
    pwfile = PasswordFile.load(pw)
    assert list(pwfile) == ["alice", "bob"]
    assert pwfile.verify("alice", b"-dash")
    assert pwfile.verify("bob", "pässwörd".encode())
    assert wrenmq_passwd("-D", pw, "alice").returncode == 0
    assert list(PasswordFile.load(pw)) == ["bob"]
    # -c starts over
    assert wrenmq_passwd("-c", "-b", pw, "carol", "x").returncode == 0
    assert list(PasswordFile.load(pw)) == ["carol"]


def test_prompts_twice(tmp_path: Path) -> None:
    pw = str(tmp_path / "pw")
    done = wrenmq_passwd("-c", pw, "alice", stdin="typed secret\ntyped secret\n")
    assert done.returncode == 0, done.stderr
    assert "typed secret" not in done.stdout + done.stderr
    assert PasswordFile.load(pw).verify("alice", b"typed secret")
    done = wrenmq_passwd(pw, "alice", stdin="one\ntwo\n")
    assert done.returncode == 1
    assert "wrenmq passwd: passwords do not match" in done.stderr
    assert PasswordFile.load(pw).verify("alice", b"typed secret")  # unchanged
    done = wrenmq_passwd(pw, "alice", stdin="")
    assert done.returncode == 1
    assert "wrenmq passwd: no password given" in done.stderr
    done = wrenmq_passwd(pw, "alice", stdin="\n\n")
    assert done.returncode == 1
    assert "wrenmq passwd: empty password" in done.stderr


def test_upgrade_plain_file(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("# users\nalice:one\nbob:two:three\n", encoding="utf-8")
    done = wrenmq_passwd("-U", str(pw))
    assert done.returncode == 0, done.stderr
    text = pw.read_text(encoding="utf-8")
    assert text.startswith("# users\nalice:$7$101$")
    assert "one" not in text
    pwfile = PasswordFile.load(pw)
    assert pwfile.verify("alice", b"one")
    assert pwfile.verify("bob", b"two:three")
    assert wrenmq_passwd("-U", str(pw)).returncode == 0
    assert pw.read_text(encoding="utf-8") == text  # already hashed: left alone


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-b", "{pw}", "alice", "x"], "cannot open {pw}: no such file (use -c to create it)"),
        (["-D", "{pw}", "alice"], "cannot open {pw}"),
        (["-c", "-D", "{pw}", "alice"], "-c and -D cannot be used together"),
        (["-c", "-b", "{pw}", "alice"], "-b needs the password"),
        (["-c", "{pw}", "alice", "x"], "only with -b"),
        (["-c", "-b", "{pw}"], "missing username"),
        (["-U", "{pw}", "alice"], "-U takes only the password file"),
        (["-c", "-b", "{pw}", "alice", ""], "empty password"),
        (["-c", "-b", "{pw}", "a:b", "x"], "invalid username: username must not contain ':'"),
        (["-c", "-b", "{pw}", "#root", "x"], "invalid username"),
        (["-c", "-b", "{pw}", "a\nb", "x"], "invalid username"),
        (["-b", "{bad}", "alice", "x"], "{bad}:2: expected username:password-hash"),
        (["-D", "{good}", "nobody"], "user 'nobody' not found in {good}"),
        (["-c", "-b", "{nodir}", "alice", "x"], "cannot write {nodir}"),
    ],
)
def test_errors_are_readable(tmp_path: Path, args: list[str], message: str) -> None:
    paths = {
        "pw": str(tmp_path / "pw"),
        "bad": str(tmp_path / "bad"),
        "good": str(tmp_path / "good"),
        "nodir": str(tmp_path / "missing" / "pw"),
    }
    Path(paths["bad"]).write_text("# x\nplain line\n", encoding="utf-8")
    good = PasswordFile()
    good.set("alice", b"x")
    good.save(paths["good"])
    done = wrenmq_passwd(*[a.format(**paths) for a in args])
    assert done.returncode == 1
    assert done.stderr.startswith("wrenmq passwd: "), done.stderr
    assert message.format(**paths) in done.stderr
    assert "Traceback" not in done.stderr
    assert not Path(paths["pw"]).exists()
    assert list(PasswordFile.load(paths["good"])) == ["alice"]


@pytest.mark.skipif(MOSQUITTO_PASSWD is None, reason="mosquitto_passwd not installed")
def test_mosquitto_passwd_and_wrenmq_passwd_share_a_file(tmp_path: Path) -> None:
    assert MOSQUITTO_PASSWD is not None
    pw = str(tmp_path / "pw")
    subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", pw, "alice", "one"], check=True)
    assert wrenmq_passwd("-b", pw, "bob", "two").returncode == 0
    subprocess.run([MOSQUITTO_PASSWD, "-b", pw, "carol", "three"], check=True)
    assert wrenmq_passwd("-D", pw, "alice").returncode == 0
    pwfile = PasswordFile.load(pw)
    assert list(pwfile) == ["bob", "carol"]
    assert pwfile.verify("bob", b"two")
    assert pwfile.verify("carol", b"three")


# -- files read by a real Mosquitto ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Mosquitto:
    """``mosquitto -c conf`` on an ephemeral loopback port, stopped at teardown."""

    def __init__(self, workdir: Path, password_file: Path) -> None:
        self.workdir = workdir
        self.password_file = password_file
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> Mosquitto:
        # The port is free when chosen but could be taken before mosquitto binds it: retry.
        for _ in range(5):
            self.port = free_port()
            conf = self.workdir / "mosquitto.conf"
            lines = [
                f"listener {self.port} 127.0.0.1",
                "allow_anonymous false",
                f"password_file {self.password_file}",
                "log_dest stderr",
                "log_type all",
            ]
            if os.geteuid() == 0:
                # As root, mosquitto drops to user "mosquitto", who cannot read our 0600 file.
                lines.append("user root")
            conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
            with self.log.open("wb") as log:
                self.proc = subprocess.Popen(
                    [MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
                )
            if self._wait_listening():
                return self
            self.stop()
        raise AssertionError(f"mosquitto did not start:\n{self.log.read_text(errors='replace')}")

    def _wait_listening(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)
        self.proc = None

    def connack(self, username: str, password: str | None) -> int:
        """Connect with MQTT 3.1.1 and return the CONNACK return code."""
        got = threading.Event()
        result: list[int] = []

        def on_connect(c: mqtt.Client, u: object, flags: object, rc: object, p: object) -> None:
            result.append(rc.value)  # type: ignore[attr-defined]
            got.set()

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"passwd-test-{username}",
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        client.username_pw_set(username, password)
        client.on_connect = on_connect
        client.connect("127.0.0.1", self.port, keepalive=10)
        client.loop_start()
        try:
            assert got.wait(TIMEOUT), "no CONNACK"
        finally:
            client.disconnect()
            client.loop_stop()
        return result[0]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path, tmp_path / "pw")
    try:
        yield broker
    finally:
        broker.stop()
        if broker.log.exists():
            # Shown by pytest only when the test fails.
            print(broker.log.read_text(errors="replace"))


@needs_mosquitto
def test_mosquitto_accepts_our_file(mosquitto: Mosquitto) -> None:
    pw = str(mosquitto.password_file)
    assert wrenmq_passwd("-c", "-b", pw, "alice", "s3cret").returncode == 0
    assert wrenmq_passwd("-b", pw, "sp ace", "pässwörd").returncode == 0
    mosquitto.start()
    assert mosquitto.connack("alice", "s3cret") == 0
    assert mosquitto.connack("sp ace", "pässwörd") == 0
    assert mosquitto.connack("alice", "s3cre") in REFUSED
    assert mosquitto.connack("alice", None) in REFUSED
    assert mosquitto.connack("mallory", "s3cret") in REFUSED


@needs_mosquitto
def test_mosquitto_accepts_our_upgraded_file_with_comments(mosquitto: Mosquitto) -> None:
    mosquitto.password_file.write_text(
        "# managed by wrenmq\n\nalice:one\nbob:two\n", encoding="utf-8"
    )
    assert wrenmq_passwd("-U", str(mosquitto.password_file)).returncode == 0
    mosquitto.start()
    assert mosquitto.connack("alice", "one") == 0
    assert mosquitto.connack("bob", "two") == 0
    assert mosquitto.connack("bob", "one") in REFUSED
