"""Fixtures that run the QilbeeDB emulator as a real process on a free 127.0.0.1 port.

``emulator_factory(data_dir=None, seed_nodes=0, admin_api=True, api_key=None, extra_args=())``
starts ``python -m qilbee_backup.emulator`` and waits for ``/health``; every
process it started is stopped at teardown (SIGTERM by PID, SIGKILL if it hangs).
``emulator`` is one seeded with 200 nodes in a fresh data directory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from qilbee_backup.emulator.auth import API_KEY_ENV  # light import: no web framework at collection

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmulatorProcess:
    """One emulator server process; ``restart()`` keeps the data dir and port."""

    def __init__(
        self, data_dir: Path, port: int, args: Sequence[str], log_path: Path, api_key: str | None = None
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._args = list(args)
        self._api_key = api_key
        self._proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    def __repr__(self) -> str:
        return f"EmulatorProcess(url={self.url!r}, data_dir={str(self.data_dir)!r}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmulatorProcess:
        if self.running:
            raise RuntimeError(f"emulator already running as pid {self.pid}")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        # The key goes through the environment, not argv, so it never shows in a process list.
        env.pop(API_KEY_ENV, None)
        if self._api_key is not None:
            env[API_KEY_ENV] = self._api_key
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "qilbee_backup.emulator", *self._args],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=REPO_ROOT,
                env=env,
            )
        self.returncode = None
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"emulator exited with {self._proc.returncode} while starting: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"emulator not healthy within {START_TIMEOUT:.0f}s: {self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Send ``sig`` to our own PID, wait, SIGKILL if it hangs; the exit code."""
        proc = self._proc
        if proc is None:
            return self.returncode
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        self.returncode = proc.returncode
        self._proc = None
        return self.returncode

    def restart(self) -> EmulatorProcess:
        self.stop()
        return self.start()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text[-chars:].strip().splitlines())


EmulatorFactory = Callable[..., EmulatorProcess]


@pytest.fixture
def emulator_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorFactory]:
    started: list[EmulatorProcess] = []

    def factory(
        data_dir: str | os.PathLike[str] | None = None,
        seed_nodes: int = 0,
        admin_api: bool = True,
        api_key: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> EmulatorProcess:
        workdir = tmp_path_factory.mktemp("emulator")
        path = Path(data_dir) if data_dir is not None else workdir / "data"
        port = free_port()
        args = ["--data-dir", str(path), "--host", "127.0.0.1", "--port", str(port)]
        if seed_nodes:
            args += ["--seed-nodes", str(seed_nodes)]
        if not admin_api:
            args.append("--no-admin-api")
        args += list(extra_args)
        process = EmulatorProcess(path, port, args, workdir / "emulator.log", api_key=api_key)
        started.append(process)
        return process.start()

    yield factory
    for process in started:
        process.stop()


@pytest.fixture
def emulator(emulator_factory: EmulatorFactory) -> EmulatorProcess:
    return emulator_factory(seed_nodes=200)


SEEDED_NODES = 500  # what `seeded_template` holds; tests compare a started server's figures with it


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database seeded once per session (seed_store, SEEDED_NODES nodes), never started on."""
    from qilbee_backup.emulator.seed import seed_store
    from qilbee_backup.emulator.store import GraphStore

    path = tmp_path_factory.mktemp("seeded") / "data"
    store = GraphStore(path)
    try:
        seed_store(store, SEEDED_NODES)
    finally:
        store.close()
    return path


@pytest.fixture
def restored_dir(seeded_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the seeded database, as a restore leaves it before the server starts."""
    import shutil

    target = tmp_path / "restored"
    shutil.copytree(seeded_template, target)
    return target
