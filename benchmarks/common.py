"""Shared pieces of the benchmarks: servers on loopback, timing, peak memory of a child process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


@contextmanager
def process(args: list[str], log: Path, env: dict | None = None, health: str | None = None, timeout: float = 90.0):
    """A server process of ours, stopped by its PID at the end."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO_ROOT)
    try:
        if health:
            wait_http(health, timeout)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@contextmanager
def moto(workdir: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process([PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], workdir / "moto.log",
                 health=f"{url}/moto-api/data.json"):
        yield url


@contextmanager
def prefect_server(workdir: Path):
    port = free_port()
    env = dict(os.environ, PREFECT_HOME=str(workdir / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{workdir / 'prefect.db'}")
    prefect = Path(PY).with_name("prefect")
    with process([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)], workdir / "prefect.log",
                 env=env, health=f"http://127.0.0.1:{port}/api/health", timeout=180):
        yield f"http://127.0.0.1:{port}/api"


@contextmanager
def emulator(data_dir: Path, workdir: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process([PY, "-m", "qilbee_backup.emulator", "--data-dir", str(data_dir), "--port", str(port)],
                 workdir / "emulator.log", health=f"{url}/health"):
        yield url


def run_measured(args: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """(seconds, the child's own peak RSS in bytes, stdout), via os.wait4 on that child alone."""
    t0 = time.perf_counter()
    out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"qilbee-bench-{os.getpid()}.out"
    err_path = out_path.with_suffix(".err")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(args, env=env, cwd=REPO_ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    stdout, stderr = out_path.read_text(), err_path.read_text()
    out_path.unlink()
    err_path.unlink()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args[:4]))} failed ({proc.returncode}): {stderr[-2000:]}")
    return seconds, usage.ru_maxrss * 1024, stdout


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def copy_tree(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"
