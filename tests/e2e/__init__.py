"""End-to-end tests: a real Prefect server, real workers, real databases, nothing in-process.

Shared helpers (each process started here is stopped by its own PID):
    prefect_server(workdir, database_url) -> context manager yielding the API URL
    prefect_env(api_url, home) -> the environment for a `prefect` CLI call or a worker
    run_prefect(env, *args) -> CompletedProcess of `prefect --no-prompt ARGS` (raises with its output on failure)
    start_worker(env, pool, name, log_path, worker_type="process", limit=1) -> Popen
    wait_for_workers(api_url, pool, names) / wait_for_final_states(api_url, ids) -> list[FlowRun]
    stop_process(proc)
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID


from tests.plugins.prefect_server import PREFECT, stop_process  # noqa: F401 - stop_process is part of this module's helpers
from tests.plugins.prefect_server import prefect_server as shared_prefect_server

REPO_ROOT = Path(__file__).resolve().parents[2]


def prefect_env(api_url: str | None, home: Path) -> dict[str, str]:
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    for name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_DATABASE_CONNECTION_URL", "QILBEE_API_KEY"):
        env.pop(name, None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@contextmanager
def prefect_server(workdir: Path, database_url: str) -> Iterator[str]:
    """`prefect server start` on the given database, without its dashboard and scheduler: deploying
    prefect.yaml's nightly-backup must create no 02:00 runs that a worker might pick up."""
    with shared_prefect_server(workdir, database_url=database_url, PREFECT_UI_ENABLED="false",
                               PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false") as url:
        yield url


def run_prefect(env: dict[str, str], *args: str, cwd: Path = REPO_ROOT, timeout: float = 180) -> subprocess.CompletedProcess:
    done = subprocess.run([PREFECT, "--no-prompt", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(args[:3])} failed ({done.returncode}): "
                           f"{(done.stdout + done.stderr).strip()[-2000:]}")
    return done


def start_worker(env: dict[str, str], pool: str, name: str, log_path: Path, worker_type: str = "process",
                 limit: int = 1, cwd: Path = REPO_ROOT) -> subprocess.Popen:
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", pool, "--name", name, "--type", worker_type, "--limit", str(limit)],
            env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_for_workers(api_url: str, pool: str, names: set[str], procs: list[subprocess.Popen],
                     timeout: float = 90) -> None:
    """Until every named worker has sent its first heartbeat to the pool."""
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(api_url) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a worker exited with {[p.returncode for p in procs]}")
            seen = {w.name for w in client.read_workers_for_work_pool(pool)}
            if names <= seen:
                return
            time.sleep(0.5)
    raise RuntimeError(f"workers {sorted(names - seen)} did not register with pool {pool} in {timeout:.0f}s")


def wait_for_final_states(api_url: str, ids: list[UUID], timeout: float = 150) -> list:
    """The flow runs once each is in a final state (or as they are when the time is up)."""
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(api_url) as client:
        deadline = time.monotonic() + timeout
        while True:
            runs = [client.read_flow_run(i) for i in ids]
            if all(r.state is not None and r.state.is_final() for r in runs) or time.monotonic() > deadline:
                return runs
            time.sleep(1)
