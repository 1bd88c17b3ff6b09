"""A real PostgreSQL server (Debian's `postgresql` package) on 127.0.0.1 for the tests.

postgres_server (session): initdb in a fresh directory, the postmaster on a free loopback port with
    password (SCRAM) authentication, stopped by its own PID at teardown and its directory removed.
    As root the server runs as the `postgres` system user (PostgreSQL refuses root). Tests that need
    it fail when PostgreSQL is missing, unless QILBEE_SKIP_POSTGRES=1 is set (then they are skipped).

    server.create_database(name) -> an SQLAlchemy URL for Prefect (postgresql+asyncpg://...)
    server.fetch(database, sql, *args) -> rows as dicts (asyncpg)
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.plugins.emulator import free_port

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
SUPERUSER = "qilbee"


def postgres_bindir() -> Path | None:
    """The newest Debian PostgreSQL's bin directory (/usr/lib/postgresql/<major>/bin), if any."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int
    password: str = field(repr=False)
    host: str = "127.0.0.1"
    user: str = SUPERUSER
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def url(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        self._run_sql("postgres", f'CREATE DATABASE "{name}"')
        return self.url(name)

    def fetch(self, database: str, sql: str, *args) -> list[dict]:
        return asyncio.run(self._query(database, lambda conn: conn.fetch(sql, *args)))

    def _run_sql(self, database: str, sql: str) -> None:
        asyncio.run(self._query(database, lambda conn: conn.execute(sql)))

    async def _query(self, database: str, call):
        import asyncpg

        conn = await asyncpg.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                     database=database, timeout=10)
        try:
            result = await call(conn)
            return [dict(r) for r in result] if isinstance(result, list) else result
        finally:
            await conn.close()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> PostgresServer:
        # PostgreSQL refuses to run as root: as root, run it (and own its files) as `postgres`.
        owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        as_owner = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []} if owner else {}

        def give(path: Path) -> None:
            if owner:
                os.chown(path, owner.pw_uid, owner.pw_gid)

        give(self.root)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        give(pwfile)
        init = subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", self.user, f"--pwfile={pwfile}",
             "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"],
            cwd=self.root, capture_output=True, text=True, timeout=120, **as_owner)
        pwfile.unlink()
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}): {init.stderr.strip()[-1000:]}")
        with open(self.log_path, "ab") as log:
            give(self.log_path)
            # Durability off: a test database is thrown away, and fsync costs seconds per run.
            self._proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                 "-c", f"listen_addresses={self.host}", "-k", str(self.root), "-c", "fsync=off",
                 "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                cwd=self.root, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **as_owner)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self._proc.returncode}: {self.log_tail()}")
            try:
                self._run_sql("postgres", "SELECT 1")
                return
            except Exception as e:  # noqa: BLE001 - refused, or "the database system is starting up"
                last = e
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"postgres not ready within {START_TIMEOUT:.0f}s ({last}): {self.log_tail()}")

    def stop(self) -> None:
        """SIGINT (PostgreSQL's fast shutdown) to our own postmaster PID; SIGKILL if it hangs."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace")[-chars:].strip().splitlines())
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def postgres_server():
    if os.environ.get("QILBEE_SKIP_POSTGRES") == "1":
        pytest.skip("QILBEE_SKIP_POSTGRES=1")
    bindir = postgres_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL is not installed (apt-get install -y postgresql): no /usr/lib/postgresql/*/bin/postgres")
    # Not under pytest's tmp_path: its parents are root-only (0700), and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="qilbee-pg-"))
    server = PostgresServer(bindir=bindir, root=root, port=free_port(), password=secrets.token_urlsafe(16))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
