"""`qilbee-backup serve` runs deployments on their schedules from one process, no worker needed."""

from __future__ import annotations

import subprocess

from qilbee_backup.repository import Repository
import sys
import time
from pathlib import Path


from tests.flows.conftest import REPO_ROOT
from tests.plugins.prefect_server import prefect_server, stop_process


def prefect_server_with_scheduler(workdir: Path):
    """A real Prefect server: the test harness's ephemeral one runs no scheduler service."""
    return prefect_server(workdir, PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2")


def test_serve_runs_a_scheduled_deployment(cli_env, tmp_path):
    repo = tmp_path / "repo"
    Repository.open(str(repo)).init()  # an (empty) repository: reading commands refuse a location without one
    name = f"list-every-few-seconds-{tmp_path.name[-8:]}"
    config = tmp_path / "prefect.yaml"
    config.write_text(f"""
deployments:
  - name: {name}
    entrypoint: flows/deployed.py:list_backups
    schedules:
      - interval: 5
        timezone: UTC
    parameters:
      repo: {repo}
""")
    with prefect_server_with_scheduler(tmp_path) as api:
        env = dict(cli_env, PREFECT_API_URL=api, PREFECT_RUNNER_POLL_FREQUENCY="2")
        log = open(tmp_path / "serve.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "qilbee_cli", "serve", "--config", str(config)],
                                env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            done = _wait_for_completed_run(api, name, proc)
        finally:
            stop_process(proc)
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
