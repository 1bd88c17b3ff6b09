"""The emulator as a real process: startup, restart, clean shutdown, snapshots, admin switch, API key."""

import os
import signal
import subprocess
import sys

import httpx
import pytest

from qilbee_backup.emulator.store import GraphStore, audit_database, open_readonly_counts
from tests.plugins.emulator import REPO_ROOT, free_port

pytestmark = pytest.mark.integration

API_KEY = "qilbee_live_process_test_key"


def _wal_sizes(data_dir):
    return {name: os.path.getsize(data_dir / name) for name in os.listdir(data_dir) if name.endswith(".log")}


def test_restart_keeps_data_and_does_not_reseed(emulator):
    assert f"listening on {emulator.url}" in emulator.log_path.read_text()
    before = httpx.get(f"{emulator.url}/admin/stats").json()
    assert before["storage"]["nodeCount"] == 200
    node = httpx.post(f"{emulator.url}/graphs/social/nodes", json={"labels": ["Person"], "properties": {"n": 1}}).json()
    emulator.restart()  # same data dir, port and --seed-nodes 200
    assert httpx.get(f"{emulator.url}/graphs/social/nodes/{node['id']}").json() == node
    after = httpx.get(f"{emulator.url}/admin/stats").json()
    assert after["storage"]["nodeCount"] == 201
    assert after["graphs"]["social"]["nodeCount"] == before["graphs"]["social"]["nodeCount"] + 1
    assert "already holds graphs; not seeding" in emulator.log_path.read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_closes_the_database_cleanly(emulator_factory, sig):
    server = emulator_factory(seed_nodes=50)
    with httpx.Client(base_url=server.url) as client:
        for i in range(20):
            client.post("/graphs/ops/nodes", json={"labels": ["Server"], "properties": {"i": i}})
        stats = client.get("/admin/stats").json()
    assert server.stop(sig) == 0
    # A clean close flushed every memtable: nothing is left to replay from the write-ahead log.
    assert _wal_sizes(server.data_dir) and not any(_wal_sizes(server.data_dir).values())
    # No process holds the RocksDB LOCK: a read-write open succeeds and finds everything.
    with GraphStore(server.data_dir) as store:
        assert store.counts()["nodeCount"] == stats["storage"]["nodeCount"]
    assert audit_database(server.data_dir).ok


def test_snapshot_dir_opens_with_the_counts_stats_reported(emulator):
    stats = httpx.get(f"{emulator.url}/admin/stats").json()
    snap = httpx.post(f"{emulator.url}/admin/snapshot").json()
    assert snap["path"] == str(emulator.data_dir / "snapshots" / snap["snapshot_id"])
    counts = open_readonly_counts(snap["path"])
    assert counts["nodeCount"] == stats["storage"]["nodeCount"]
    assert counts["relationshipCount"] == stats["storage"]["relationshipCount"]
    assert counts["graphs"] == stats["graphs"] == snap["stats"]["graphs"]
    assert (emulator.data_dir / "snapshots" / "latest").resolve() == (emulator.data_dir / "snapshots" / snap["snapshot_id"]).resolve()
    listed = httpx.get(f"{emulator.url}/admin/snapshots").json()["snapshots"]
    assert listed[-1]["snapshot_id"] == snap["snapshot_id"] and listed[-1]["size_bytes"] == snap["size_bytes"]

    # A second server on the same data directory is refused (RocksDB's LOCK) with one line.
    result = subprocess.run(
        [sys.executable, "-m", "qilbee_backup.emulator", "--data-dir", str(emulator.data_dir), "--port", str(free_port())],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "LOCK" in lines[0], result.stderr
    assert httpx.get(f"{emulator.url}/health").status_code == 200


def test_no_admin_api_is_404_like_an_unknown_route(emulator_factory):
    server = emulator_factory(admin_api=False)
    unknown = httpx.get(f"{server.url}/surely/not/a/route")
    for method, path in [("POST", "/admin/snapshot"), ("GET", "/admin/snapshots"), ("GET", "/admin/stats"), ("GET", "/graphs")]:
        response = httpx.request(method, f"{server.url}{path}")
        assert (response.status_code, response.content) == (404, unknown.content)
    assert httpx.post(f"{server.url}/graphs/g/nodes", json={"labels": [], "properties": {}}).status_code == 201


def test_api_key_protects_admin_routes_and_stays_out_of_logs(emulator_factory):
    server = emulator_factory(api_key=API_KEY, extra_args=["--user", "ops:ops-password", "--log-level", "info"])
    assert httpx.get(f"{server.url}/admin/stats").status_code == 401
    assert httpx.get(f"{server.url}/admin/stats", headers={"X-API-Key": API_KEY}).status_code == 200
    token = httpx.post(f"{server.url}/api/v1/auth/login", json={"username": "ops", "password": "ops-password"}).json()
    assert httpx.get(f"{server.url}/admin/stats", headers={"Authorization": f"Bearer {token['access_token']}"}).status_code == 403
    admin = httpx.post(f"{server.url}/api/v1/auth/login", json={"username": "admin", "password": "Admin123!@#"}).json()
    assert httpx.post(f"{server.url}/admin/snapshot", headers={"Authorization": f"Bearer {admin['access_token']}"}).status_code == 200
    server.stop()
    log = server.log_path.read_text()
    assert "GET /admin/stats" in log  # access log on at info: it was written, without secrets
    assert API_KEY not in log and token["access_token"] not in log
