"""Beyond one machine: a Prefect server on PostgreSQL, two process workers, two backups at once.

What production does, on loopback: the server keeps its state in PostgreSQL, prefect.yaml's
nightly-backup is deployed to the `qilbee-process` pool with the README's commands, two workers
(one flow run each) serve the pool, and two QilbeeDB servers are backed up at the same moment into
one repository. Both runs must complete, on different workers busy at the same time, and leave
a verified backup whose figures are the server's own, with nothing else in the database.
"""

from __future__ import annotations

import httpx
import pytest

from qilbee_backup.repository import open_repository
from qilbee_backup import maintenance
from tests.e2e import (prefect_env, prefect_server, run_prefect, start_worker, stop_process,
                       wait_for_final_states, wait_for_workers)

POOL = "qilbee-process"  # the pool prefect.yaml's deployments name
WORKERS = ("worker-a", "worker-b")

pytestmark = pytest.mark.timeout(240)


def test_two_workers_back_up_two_servers_at_once(postgres_server, emulator_factory, tmp_path):
    servers = [emulator_factory(seed_nodes=120), emulator_factory(seed_nodes=260)]
    expected = {s.url: httpx.get(f"{s.url}/admin/stats").json()["storage"] for s in servers}
    repo = tmp_path / "repo"
    database = "prefect_multi_worker"
    db_url = postgres_server.create_database(database)

    with prefect_server(tmp_path, db_url) as api:
        env = prefect_env(api, tmp_path / "client-home")
        run_prefect(env, "work-pool", "create", POOL, "--type", "process")
        run_prefect(env, "deploy", "--name", "nightly-backup")  # prefect.yaml at the repository root
        # Poll every second: a worker holding its one slot leaves the second run to the other worker.
        worker_env = dict(env, PREFECT_WORKER_QUERY_SECONDS="1")
        workers = [start_worker(worker_env, POOL, name, tmp_path / f"{name}.log") for name in WORKERS]
        try:
            wait_for_workers(api, POOL, set(WORKERS), workers)
            ids = _start_backups(api, [s.url for s in servers], repo)
            runs = wait_for_final_states(api, ids)
            claimed = _claimed_at(api, runs)
        finally:
            for proc in workers:
                stop_process(proc)
        logs = {name: (tmp_path / f"{name}.log").read_text() for name in WORKERS}

    states = {str(r.id): r.state.type.value for r in runs}
    assert all(r.state.is_completed() for r in runs), f"runs not completed: {states}; worker logs: " + " | ".join(
        log[-1500:] for log in logs.values())

    # Each run on its own worker (the worker labels the run once it has claimed it), and both workers
    # busy at once: each run was claimed (Pending) before the other one finished.
    assert sorted(r.labels["prefect.worker.name"] for r in runs) == sorted(WORKERS)
    (first, claimed_first), (second, claimed_second) = zip(runs, claimed)
    assert claimed_first < second.end_time and claimed_second < first.end_time, "one worker sat idle"
    for run in runs:
        assert f"submitting flow run '{run.id}'" in logs[run.labels["prefect.worker.name"]]

    # Nothing lost: one backup per server, its figures the server's own, every blob there and intact.
    repository = open_repository(str(repo))
    manifests = {m.source.url: m for m in repository.list_backups()}
    assert set(manifests) == set(expected)
    for url, stats in expected.items():
        manifest = manifests[url]
        assert manifest.kind == "daily" and manifest.source.mode == "online"
        assert manifest.stats["nodeCount"] == stats["nodeCount"]
        assert manifest.stats["relationshipCount"] == stats["relationshipCount"]
        report = maintenance.verify(repository, manifest.backup_id, read_data=True)
        assert report["ok"], report["problems"]

    # The state really lives in PostgreSQL: exactly these two runs, completed, and their summaries.
    rows = postgres_server.fetch(database, "SELECT id, state_type, labels FROM flow_run")
    assert {str(r["id"]): r["state_type"] for r in rows} == {str(r.id): "COMPLETED" for r in runs}
    summaries = postgres_server.fetch(database, "SELECT flow_run_id, data FROM artifact WHERE key LIKE 'backup-summary-%'")
    assert {str(a["flow_run_id"]) for a in summaries} == {str(r.id) for r in runs}
    assert all(m.backup_id in "".join(a["data"] for a in summaries) for m in manifests.values())

    # The database password stays out of every log.
    server_log = (tmp_path / "prefect-server.log").read_text()
    assert all(postgres_server.password not in text for text in [server_log, *logs.values()])


def _start_backups(api: str, sources: list[str], repo) -> list:
    """One run of nightly-backup per server, created back to back; the deployment's other parameters stay."""
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(api) as client:
        deployment = client.read_deployment_by_name("backup/nightly-backup")
        return [client.create_flow_run_from_deployment(deployment.id, parameters={"source": s, "repos": [str(repo)]}).id
                for s in sources]


def _claimed_at(api: str, runs: list) -> list:
    """When a worker moved each run to Pending, from the run's state history."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import StateType

    with SyncPrefectClient(api) as client:
        return [min(s.timestamp for s in client.read_flow_run_states(r.id) if s.type == StateType.PENDING)
                for r in runs]
