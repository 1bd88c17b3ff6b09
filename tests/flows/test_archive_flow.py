"""The archive flow end to end: the real emulator snapshotted into a local repository and into S3
(moto_server, GLACIER), then restored through the restore flow with archive="latest"."""

from __future__ import annotations

import pytest

from flows.archive import archive, list_archives
from flows.restore import restore
from qilbee_backup import cold_archive as archives
from qilbee_backup.retrieval import RetrievalPending
from qilbee_backup.emulator.store import content_digest
from qilbee_backup.errors import UsageError
from qilbee_backup.repository import open_repository


def test_archive_to_a_local_repository_and_to_glacier_then_restore_each(emulator, moto_server, s3_repo_url, s3_client, tmp_path):
    local = str(tmp_path / "repo")
    made = archive(source=emulator.url, repos=[local, s3_repo_url], storage_class="GLACIER", keep_checkpoints=1)

    assert made["mode"] == "online" and made["kind"] == "monthly" and made["files"] > 0
    assert [(d["url"], d["storage_class"], d["verified"], d["encrypted"]) for d in made["destinations"]] == [
        (local, "STANDARD", True, True), (s3_repo_url, "GLACIER", True, True)]
    bucket, prefix = s3_repo_url[len("s3://"):].split("/", 1)
    head = s3_client.head_object(Bucket=bucket, Key=f"{prefix}/{archives.archive_key(made['archive_id'])}")
    assert head["StorageClass"] == "GLACIER" and head["ContentLength"] == made["destinations"][1]["stored_bytes"]
    assert [a["archive_id"] for a in list_archives(repo=local)] == [made["archive_id"]]
    assert open_repository(local).list_backups() == []  # archives live apart from backups

    snapshot = emulator.data_dir / "snapshots" / made["snapshot_id"]
    expected = content_digest(snapshot)

    # From the local repository: restored, then checked on a throwaway server against the archive's figures.
    target = tmp_path / "from-local"
    done = restore(repo=local, data_dir=str(target), archive="latest")
    assert done["backup_id"] == made["archive_id"] and done["restored_from"] == "archive"
    assert done["integrity"]["ok"] is True
    assert content_digest(target) == expected

    # From GLACIER: the first run starts the retrieval and stops with one line; the next one restores.
    target = tmp_path / "from-glacier"
    with pytest.raises(RetrievalPending, match="retrieval started .*run the restore again"):
        restore(repo=s3_repo_url, data_dir=str(target), archive="latest", retrieval_wait=0)
    assert not target.exists()
    done = restore(repo=s3_repo_url, data_dir=str(target), archive=made["archive_id"], retrieval_wait=60, retrieval_poll=0.1, check=False)
    assert done["backup_id"] == made["archive_id"] and done["bytes_downloaded"] == made["archive_bytes"]
    assert content_digest(target) == expected


def test_a_second_archive_prunes_by_its_retention(emulator, tmp_path):
    repo = str(tmp_path / "repo")
    first = archive(source=emulator.url, repos=[repo])
    second = archive(source=emulator.url, repos=[repo], retention={"keep_last": 1})
    assert second["pruned"] == [{"url": repo, "removed": [first["archive_id"]], "locked": []}]
    assert [a["archive_id"] for a in list_archives(repo=repo)] == [second["archive_id"]]
    assert sorted(p.name for p in (tmp_path / "repo" / "archives").iterdir()) == [
        f"{second['archive_id']}.json", f"{second['archive_id']}.tar.zst"]


def test_restore_refuses_a_backup_and_an_archive_together(tmp_path):
    with pytest.raises(UsageError, match="not both"):
        restore(repo=str(tmp_path / "repo"), data_dir=str(tmp_path / "x"), backup="20250101T000000Z-abcdef", archive="latest")
    with pytest.raises(UsageError, match="retrieval_tier"):  # refused by the runbook's parameter types
        restore(repo=str(tmp_path / "repo"), data_dir=str(tmp_path / "x"), archive="latest", retrieval_tier="Fast")


def test_a_damaged_archive_fails_the_restore_at_once_and_keeps_the_existing_data(tmp_path):
    import time

    from qilbee_backup.cold_archive import build_archive, upload_archive
    from qilbee_backup.errors import IntegrityError
    from qilbee_backup.manifest import SourceInfo

    root = tmp_path / "snap"
    root.mkdir()
    (root / "000042.sst").write_bytes(bytes(range(256)) * 4096)
    repo = open_repository(str(tmp_path / "repo"), must_exist=False)
    record = upload_archive(repo, build_archive(root, tmp_path / "spool", source=SourceInfo(url="http://db:7474", mode="online")))
    stored = tmp_path / "repo" / archives.archive_key(record.archive_id)
    stored.write_bytes(stored.read_bytes()[:-100] + bytes(100))
    existing = tmp_path / "instance"
    existing.mkdir()
    (existing / "precious.sst").write_bytes(b"the only copy")

    started = time.monotonic()
    with pytest.raises(IntegrityError, match=f"restore of archive {record.archive_id} failed"):
        restore(repo=str(tmp_path / "repo"), data_dir=str(existing), archive="latest", replace=True)
    assert time.monotonic() - started < 25  # damage is not retried (only a failing store is)
    assert [p.name for p in existing.iterdir()] == ["precious.sst"]
    assert not [p for p in tmp_path.iterdir() if ".qilbee-restore-" in p.name or ".qilbee-previous-" in p.name]


def test_the_cli_archives_to_glacier_lists_and_restores_it(run_cli, emulator, s3_repo_url, tmp_path):
    import json

    made = run_cli("archive", "--source", emulator.url, "--repo", s3_repo_url, "--storage-class", "GLACIER", "--keep-checkpoints", "1", "--json")
    assert made.returncode == 0, made.stderr
    archive_id = json.loads(made.stdout)["archive_id"]
    listed = run_cli("list", "--repo", s3_repo_url, "--archives", "--json")
    assert [a["archive_id"] for a in json.loads(listed.stdout)] == [archive_id]

    target = tmp_path / "restored"
    pending = run_cli("restore", "--repo", s3_repo_url, "--archive", "latest", "--data-dir", str(target),
                      "--retrieval-wait", "0")
    assert pending.returncode == 75, pending.stderr  # EX_TEMPFAIL: come back later
    errors = [line for line in pending.stderr.splitlines() if line.startswith("qilbee-backup: error:")]
    assert len(errors) == 1 and "retrieval started" in errors[0]
    assert not target.exists() and pending.stdout == ""

    done = run_cli("restore", "--repo", s3_repo_url, "--archive", "latest", "--data-dir", str(target), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["restored_from"] == "archive" and result["integrity"]["ok"] is True
    snapshot = emulator.data_dir / "snapshots" / json.loads(made.stdout)["snapshot_id"]
    assert content_digest(target) == content_digest(snapshot)
