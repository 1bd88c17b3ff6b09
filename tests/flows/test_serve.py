"""`qilbee-backup serve` runs deployments on their schedules from one process, no worker needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.flows.conftest import REPO_ROOT
from tests.plugins.emulator import free_port


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # our own child, by PID
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextmanager
def prefect_server_with_scheduler(workdir: Path):
    """A real Prefect server: the test harness's ephemeral one runs no scheduler service."""
    port = free_port()
    env = dict(os.environ, PREFECT_HOME=str(workdir / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
               PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{workdir / 'prefect.db'}")
    env.pop("PREFECT_API_URL", None)
    log = open(workdir / "prefect-server.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"prefect server did not start: {(workdir / 'prefect-server.log').read_text()[-2000:]}")
        yield url
    finally:
        _stop(proc)
        log.close()


def test_serve_runs_a_scheduled_deployment(cli_env, tmp_path):
    repo = tmp_path / "repo"
    name = f"list-every-few-seconds-{tmp_path.name[-8:]}"
    config = tmp_path / "prefect.yaml"
    config.write_text(f"""
deployments:
  - name: {name}
    entrypoint: flows/maintenance.py:list_backups
    schedules:
      - interval: 5
        timezone: UTC
    parameters:
      repo: {repo}
""")
    with prefect_server_with_scheduler(tmp_path) as api:
        env = dict(cli_env, PREFECT_API_URL=api, PREFECT_RUNNER_POLL_FREQUENCY="2")
        log = open(tmp_path / "serve.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "qilbee_backup.cli", "serve", "--config", str(config)],
                                env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            done = _wait_for_completed_run(api, name, proc)
        finally:
            _stop(proc)
            log.close()
    assert done, f"no scheduled run completed; serve said: {(tmp_path / 'serve.log').read_text()[-2000:]}"
    assert done[0].parameters == {"repo": str(repo)}


def _wait_for_completed_run(api: str, name: str, proc: subprocess.Popen) -> list:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    done: list = []
    with SyncPrefectClient(api) as client:
        deadline = time.monotonic() + 120
        while not done and time.monotonic() < deadline and proc.poll() is None:
            done = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))))
            time.sleep(1)
    return done
