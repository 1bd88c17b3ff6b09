"""Offline (file-system) backups of a QilbeeDB running in a real Docker container."""

from __future__ import annotations

import httpx
import pytest

from flows.backup import backup
from qilbee_backup.emulator.store import open_readonly_counts
from qilbee_backup.repository import open_repository


@pytest.fixture
def container_without_snapshot_api(emulator_container, tmp_path):
    # Today's real server: no /admin routes (404), data in the container's /data volume.
    return emulator_container(tmp_path / "data", seed_nodes=300, admin_api=False)


def test_auto_falls_back_to_offline_and_restarts_the_container(container_without_snapshot_api, tmp_path):
    c = container_without_snapshot_api
    counts_before = httpx.post(f"{c.url}/graphs/social/query",
                               json={"cypher": "MATCH (n) RETURN count(n)", "parameters": {}}).json()
    repo = str(tmp_path / "repo")

    result = backup(source=c.url, repos=[repo], mode="auto", container=c.name, kind="weekly")

    assert result["mode"] == "offline"
    c.container.reload()
    assert c.container.status == "running"
    assert httpx.get(f"{c.url}/health").json()["status"] == "healthy"
    after = httpx.post(f"{c.url}/graphs/social/query", json={"cypher": "MATCH (n) RETURN count(n)", "parameters": {}}).json()
    assert after["results"] == counts_before["results"]
    manifest = open_repository(repo).load(result["backup_id"])
    assert manifest.source.mode == "offline" and manifest.source.container == c.name
    # The copy holds whole RocksDB data: every file of the live directory but the snapshots.
    live = {p.name for p in c.data_dir.iterdir() if p.is_file() and p.name not in ("LOCK",) and not p.name.startswith("LOG")}
    backed = {f.path for f in manifest.files}
    assert {n for n in live if n.endswith(".sst")} <= backed
    assert not any(f.startswith("snapshots/") for f in backed)
    # The temporary offline copy is gone again.
    assert not list((c.data_dir / "snapshots").glob("offline-*"))


def test_offline_copy_holds_the_data_the_server_had(container_without_snapshot_api, tmp_path):
    c = container_without_snapshot_api
    for i in range(50):
        httpx.post(f"{c.url}/graphs/ops/nodes", json={"labels": ["Job"], "properties": {"i": i}}).raise_for_status()
    repo = str(tmp_path / "repo")
    result = backup(source=c.url, repos=[repo], mode="offline", container=c.name)
    assert result["mode"] == "offline"
    # Restore blob by blob (the files are the RocksDB directory) and count what is inside.
    r = open_repository(repo)
    manifest = r.load(result["backup_id"])
    target = tmp_path / "restored"
    for f in manifest.files:
        out = target / f.path
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "wb") as dst:
            got = r.read_blob(f.sha256, lambda: dst)
        assert (got.sha256, got.size) == (f.sha256, f.size)
    counts = open_readonly_counts(target)
    assert counts["graphs"]["ops"]["nodeCount"] == manifest.stats["graphs"]["ops"]["nodeCount"]
    assert counts["nodeCount"] == manifest.stats["nodeCount"]
    assert manifest.stats["exact"] is True  # nothing wrote between the figures before and after the stop


def test_offline_mode_with_an_unknown_container_is_a_usage_error(emulator, tmp_path):
    from qilbee_backup.errors import UsageError

    with pytest.raises(UsageError, match="no Docker container named"):
        backup(source=emulator.url, repos=[str(tmp_path / "repo")], mode="offline", container="qilbee-no-such-container")


def test_restore_into_a_containers_data_directory_stops_swaps_and_restarts_it(container_without_snapshot_api, tmp_path):
    from flows.restore import restore

    c = container_without_snapshot_api
    repo = str(tmp_path / "repo")
    made = backup(source=c.url, repos=[repo], mode="offline", container=c.name)
    for i in range(40):  # changes after the backup, which the restore must undo
        httpx.post(f"{c.url}/graphs/ops/nodes", json={"labels": ["Late"], "properties": {"i": i}}).raise_for_status()

    result = restore(repo=repo, data_dir=str(c.data_dir), backup=made["backup_id"], container=c.name, source=c.url)

    assert result["replaced_existing"] is True and result["integrity"]["ok"] is True
    c.container.reload()
    assert c.container.status == "running"
    late = httpx.get(f"{c.url}/graphs/ops/nodes", params={"label": "Late"}).json()
    assert late["count"] == 0
    assert not [p for p in c.data_dir.parent.iterdir() if "qilbee-previous" in p.name]


def test_a_failed_restore_into_a_container_puts_the_old_data_back_and_restarts_it(container_without_snapshot_api, tmp_path):
    from flows.restore import restore
    from qilbee_backup.manifest import SourceInfo
    from qilbee_backup.recovery import RecoveryError
    from qilbee_backup.backup import backup_directory

    c = container_without_snapshot_api
    snap = tmp_path / "copy"
    import shutil

    c.container.stop()
    shutil.copytree(c.data_dir, snap, ignore=shutil.ignore_patterns("LOCK", "snapshots"))
    c.container.start()
    c.wait_healthy()
    real = open_readonly_counts(snap)
    repo = str(tmp_path / "repo")
    bad = backup_directory([open_repository(repo, must_exist=False)], snap, kind="adhoc", source=SourceInfo(url=c.url, mode="offline"),
                           stats=dict(real, nodeCount=real["nodeCount"] + 1,
                                      graphs={g: dict(v, nodeCount=v["nodeCount"] + (g == "ops")) for g, v in real["graphs"].items()}),
                           spool=tmp_path / "spool")
    httpx.post(f"{c.url}/graphs/ops/nodes", json={"labels": ["Late"], "properties": {}}).raise_for_status()

    with pytest.raises(RecoveryError, match="nodeCount"):
        restore(repo=repo, data_dir=str(c.data_dir), backup=bad.backup_id, container=c.name, source=c.url)

    c.container.reload()
    assert c.container.status == "running"
    c.wait_healthy()
    assert httpx.get(f"{c.url}/graphs/ops/nodes", params={"label": "Late"}).json()["count"] == 1  # the old data, not the backup
