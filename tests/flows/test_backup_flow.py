"""The backup flow end to end against the real emulator, a local repository and moto_server."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from flows.backup import backup
from flows.maintenance import list_backups, verify
from qilbee_backup.client import SnapshotNotSupported, Unauthorized
from qilbee_backup.repository import open_repository


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_online_backup_to_local_and_s3_records_everything(emulator, moto_server, s3_repo_url, tmp_path):
    local = str(tmp_path / "repo")
    stats = httpx.get(f"{emulator.url}/admin/stats").json()

    result = backup(source=emulator.url, repos=[local, s3_repo_url], kind="daily", keep_checkpoints=1)  # to compare with

    assert result["mode"] == "online"
    assert result["files"] > 0 and result["bytes_total"] > 0
    assert [d["url"] for d in result["destinations"]] == [local, s3_repo_url]
    assert all(d["verified"] for d in result["destinations"])
    # Both destinations got every blob: the upload total counts each destination.
    assert result["bytes_uploaded"] == 2 * result["destinations"][0]["bytes_uploaded"] > 0

    snapshot_dir = emulator.data_dir / "snapshots" / result["snapshot_id"]
    files = _tree_digest(snapshot_dir)
    for url in (local, s3_repo_url):
        manifest = open_repository(url).load(result["backup_id"])
        assert {f.path: f.sha256 for f in manifest.files} == files
        assert manifest.stats["nodeCount"] == stats["storage"]["nodeCount"]
        assert manifest.stats["relationshipCount"] == stats["storage"]["relationshipCount"]
        assert manifest.source.mode == "online" and manifest.kind == "daily"
        listed = list_backups(repo=url)
        assert [(r["backup_id"], r["kind"]) for r in listed] == [(result["backup_id"], "daily")]
        checked = verify(repo=url, read_data=True)
        assert checked["ok"] and checked["backups"][0]["checked_files"] == len(files)


def test_second_backup_sends_only_new_files(emulator, tmp_path):
    repo = str(tmp_path / "repo")
    first = backup(source=emulator.url, repos=[repo])
    unchanged = backup(source=emulator.url, repos=[repo])
    # A checkpoint of an idle database shares every SST with the previous one.
    assert unchanged["bytes_uploaded"] < first["bytes_uploaded"]
    for i in range(300):
        httpx.post(f"{emulator.url}/graphs/social/nodes", json={"labels": ["Person"], "properties": {"n": i}}).raise_for_status()
    grown = backup(source=emulator.url, repos=[repo])
    assert 0 < grown["bytes_uploaded"] < grown["bytes_total"]
    assert grown["stats"]["nodeCount"] == first["stats"]["nodeCount"] + 300
    assert [b["backup_id"] for b in list_backups(repo=repo)] == [first["backup_id"], unchanged["backup_id"], grown["backup_id"]]


def test_auto_mode_without_snapshot_api_or_container_is_a_clear_error(emulator_factory, tmp_path):
    server = emulator_factory(seed_nodes=20, admin_api=False)
    repo = tmp_path / "repo"
    with pytest.raises(SnapshotNotSupported, match="offline"):
        backup(source=server.url, repos=[str(repo)])
    assert not list((repo / "backups").glob("*.json")) if (repo / "backups").exists() else True


def test_api_key_from_environment_is_used_and_never_logged(emulator_factory, tmp_path, monkeypatch, caplog):
    key = "qilbee_live_s3cr3t-for-test"
    server = emulator_factory(seed_nodes=20, api_key=key)
    repo = str(tmp_path / "repo")
    monkeypatch.setenv("QILBEE_TEST_KEY", "qilbee_live_wrong")
    with pytest.raises(Unauthorized):
        backup(source=server.url, repos=[repo], api_key_env="QILBEE_TEST_KEY")
    monkeypatch.setenv("QILBEE_TEST_KEY", key)
    with caplog.at_level("DEBUG"):
        result = backup(source=server.url, repos=[repo], api_key_env="QILBEE_TEST_KEY")
    assert result["mode"] == "online"
    assert key not in caplog.text
    assert key not in json.dumps(result)


def test_backup_publishes_a_table_artifact_with_its_figures(emulator, tmp_path):
    from flows.deployed import backup  # as a flow run: artifacts belong to recorded runs
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from qilbee_backup.report import artifact_key, size

    result = backup(source=emulator.url, repos=[str(tmp_path / "repo")])
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[artifact_key("backup-summary", result["source"])])))
    latest = max(artifacts, key=lambda a: a.created)
    data = json.loads(latest.data) if isinstance(latest.data, str) else latest.data
    rows = {row["figure"]: row["value"] for row in data}
    assert rows["report"] == f"Backup {result['backup_id']} of {result['source']}"
    assert rows["uploaded"] == size(result["bytes_uploaded"]) and rows["mode"] == "online"
