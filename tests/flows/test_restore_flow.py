"""restore as a flow and a CLI command: into a fresh directory, and over an existing instance's data."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from flows.backup import backup
from flows.restore import restore
from qilbee_backup.emulator.store import content_digest, open_readonly_counts
from qilbee_backup.manifest import SourceInfo
from qilbee_backup.repository import open_repository
from qilbee_backup.recovery import RecoveryError
from qilbee_backup.backup import backup_directory


def test_restore_cli_into_a_new_directory(run_cli, emulator, tmp_path):
    repo = str(tmp_path / "repo")
    made = backup(source=emulator.url, repos=[repo], keep_checkpoints=1)  # kept to compare with
    target = tmp_path / "restored"
    done = run_cli("restore", "--repo", repo, "--data-dir", str(target), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["backup_id"] == made["backup_id"] and result["integrity"]["ok"] is True
    snap = emulator.data_dir / "snapshots" / made["snapshot_id"]
    assert content_digest(target) == content_digest(snap)


def test_restore_over_existing_data_that_fails_its_check_puts_the_old_data_back(emulator, tmp_path):
    snap = Path(httpx.post(f"{emulator.url}/admin/snapshot").json()["path"])
    real = open_readonly_counts(snap)
    repo = str(tmp_path / "repo")
    backup_directory([open_repository(repo, must_exist=False)], snap, kind="adhoc", source=SourceInfo(url=emulator.url, mode="online"),
                     stats=dict(real, nodeCount=real["nodeCount"] + 7), spool=tmp_path / "spool")
    existing = tmp_path / "instance-data"
    existing.mkdir()
    (existing / "precious.sst").write_bytes(b"the only copy" * 100)

    with pytest.raises(RecoveryError, match="nodeCount"):
        restore(repo=repo, data_dir=str(existing), replace=True)
    assert [p.name for p in existing.iterdir()] == ["precious.sst"]
    assert (existing / "precious.sst").read_bytes() == b"the only copy" * 100
    assert not [p for p in tmp_path.iterdir() if "qilbee-previous" in p.name]


def test_restore_refuses_a_directory_with_data_without_replace(run_cli, emulator, tmp_path):
    repo = str(tmp_path / "repo")
    backup(source=emulator.url, repos=[repo])
    existing = tmp_path / "instance-data"
    existing.mkdir()
    (existing / "x").write_text("keep me")
    done = run_cli("restore", "--repo", repo, "--data-dir", str(existing))
    assert done.returncode == 2 and "holds data" in done.stderr
    assert (existing / "x").read_text() == "keep me"
