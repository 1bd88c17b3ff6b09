"""A real `prefect server start` for the tests that need what the in-process test harness lacks:
the scheduler (serve), the triggers and actions services (automations), PostgreSQL, workers (e2e).

    with prefect_server(tmp_path, PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2") as api_url: ...

Binds a free 127.0.0.1 port, keeps its home and (by default SQLite) database under workdir, logs to
workdir/prefect-server.log, and is stopped by its own PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.plugins.emulator import free_port

PREFECT = str(Path(sys.executable).with_name("prefect"))
_START_TIMEOUT = 180


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM to our own child by PID, SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextmanager
def prefect_server(workdir: Path, *, database_url: str | None = None, port: int | None = None,
                   **settings: str) -> Iterator[str]:
    """Start the server with these PREFECT_* settings; yield its API URL."""
    port = port or free_port()
    env = dict(os.environ, PREFECT_HOME=str(workdir / "server-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_DATABASE_CONNECTION_URL=database_url or f"sqlite+aiosqlite:///{workdir / 'prefect.db'}",
               **settings)
    env.pop("PREFECT_API_URL", None)  # the server must not think it is a client of another one
    log_path = workdir / "prefect-server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"prefect server did not start: {log_path.read_text()[-2000:]}")
        yield url
    finally:
        stop_process(proc)
