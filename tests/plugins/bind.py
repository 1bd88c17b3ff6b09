"""A real DNS server for the tests: BIND 9 (`named`) with a TSIG-signed dynamic zone on 127.0.0.1.

bind_server (session): writes a named.conf, a zone file (`qilbee.test.`: SOA, NS) and a
    random TSIG key into a temp dir, checks them with `named-checkconf -z`, runs
    `named -g` in the foreground on a free loopback port (UDP and TCP; no rndc channel),
    waits until it answers a SOA query, yields a BindServer (server, port, zone, key_name,
    key_secret, key_algorithm, log_path); at the end stops it by its PID.
    `named` runs as the user running the tests (no `-u`): as root it stays root, and
    everything it writes (journal, session key, managed keys) goes into the temp dir.

A missing `named` fails the tests that need it (apt-get install bind9 bind9-utils);
QILBEE_SKIP_BIND=1 skips them instead.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

ZONE = "qilbee.test."
KEY_NAME = "qilbee-test-key."
KEY_ALGORITHM = "hmac-sha256"
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
SKIP_ENV = "QILBEE_SKIP_BIND"
_SBIN = os.pathsep.join(("/usr/sbin", "/sbin", "/usr/local/sbin"))  # named lives here; a user's PATH may lack it


@dataclass(frozen=True)
class BindServer:
    """Where the test BIND listens and the TSIG key its zone accepts updates with."""

    server: str
    port: int
    zone: str
    key_name: str
    key_secret: str = field(repr=False)
    key_algorithm: str
    log_path: Path


def _tool(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join((os.environ.get("PATH", ""), _SBIN)))


def free_port() -> int:
    """A loopback port free for both TCP and UDP right now (DNS listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((LOOPBACK, 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no loopback port free for both TCP and UDP")


def _named_conf(workdir: Path, port: int, secret: str) -> str:
    return f"""
options {{
    directory "{workdir}";
    listen-on port {port} {{ {LOOPBACK}; }};
    listen-on-v6 {{ none; }};
    pid-file none;
    session-keyfile "{workdir}/session.key";
    managed-keys-directory "{workdir}";
    recursion no;
    dnssec-validation no;
    notify no;
}};

controls {{ }};

key "{KEY_NAME}" {{
    algorithm {KEY_ALGORITHM};
    secret "{secret}";
}};

zone "{ZONE}" {{
    type primary;
    file "{workdir}/{ZONE}zone";
    allow-update {{ key "{KEY_NAME}"; }};
}};
"""


_ZONE_FILE = f"""$TTL 300
@   IN SOA  ns1.{ZONE} hostmaster.{ZONE} 1 3600 600 86400 60
@   IN NS   ns1.{ZONE}
ns1 IN A    {LOOPBACK}
"""


def _answers_soa(port: int) -> bool:
    query = dns.message.make_query(ZONE, dns.rdatatype.SOA)
    try:
        response = dns.query.udp(query, LOOPBACK, port=port, timeout=0.5)
    except (dns.exception.DNSException, OSError):
        return False
    return response.rcode() == dns.rcode.NOERROR and bool(response.answer)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()  # SIGTERM to the named we started, by its PID: it shuts down cleanly
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


def _start(named: str, workdir: Path, conf: Path, log_path: Path, port: int) -> subprocess.Popen | None:
    """Run named in the foreground; the process once it answers, None if it could not listen on `port`."""
    with open(log_path, "ab") as log:
        # -g: foreground, log to stderr; -n 1: one worker thread is plenty here (2-core machines).
        process = subprocess.Popen(
            [named, "-g", "-n", "1", "-4", "-c", str(conf)],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        if _answers_soa(port):
            return process
        # named keeps running when it cannot bind its port: spot that and try another.
        if "address in use" in log_path.read_text(errors="replace"):
            break
        time.sleep(0.1)
    _stop(process)
    return None


@pytest.fixture(scope="session")
def bind_server() -> Iterator[BindServer]:
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: BIND tests skipped")
    named, checkconf = _tool("named"), _tool("named-checkconf")
    if named is None or checkconf is None:
        pytest.fail(
            "BIND 9 is not installed (named/named-checkconf not found): apt-get install bind9 bind9-utils, "
            f"or set {SKIP_ENV}=1 to skip the DNS tests that need it",
            pytrace=False,
        )
    secret = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    with tempfile.TemporaryDirectory(prefix="qilbee-bind-") as scratch:
        workdir = Path(scratch)
        (workdir / f"{ZONE}zone").write_text(_ZONE_FILE)
        conf = workdir / "named.conf"
        log_path = workdir / "named.log"
        process = None
        for _ in range(3):
            port = free_port()
            conf.write_text(_named_conf(workdir, port, secret))
            conf.chmod(0o600)  # it holds the key
            check = subprocess.run([checkconf, "-z", str(conf)], capture_output=True, text=True, timeout=30)
            if check.returncode != 0:
                output = " ".join((check.stdout + check.stderr).split())
                pytest.fail(f"named-checkconf rejected the test configuration: {output}", pytrace=False)
            process = _start(named, workdir, conf, log_path, port)
            if process is not None:
                break
        if process is None:
            tail = log_path.read_text(errors="replace")[-2000:]
            pytest.fail(f"BIND (named) did not start on {LOOPBACK}; its log ends with:\n{tail}", pytrace=False)
        try:
            yield BindServer(
                server=LOOPBACK,
                port=port,
                zone=ZONE,
                key_name=KEY_NAME,
                key_secret=secret,
                key_algorithm=KEY_ALGORITHM,
                log_path=log_path,
            )
        finally:
            _stop(process)
