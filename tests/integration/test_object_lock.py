"""Immutable backups with S3 Object Lock, against moto_server on 127.0.0.1.

What moto does (checked, and what these tests lean on): it stores ObjectLockMode and
ObjectLockRetainUntilDate from PutObject and reports them in HEAD; it ignores them on
CreateMultipartUpload (the destination re-applies the lock with PutObjectRetention); it
refuses DeleteObject/DeleteObjects of a locked *version* (AccessDenied) but a plain DeleteObject
just adds a delete marker; it has no GetObjectRetention. Locks are real time, so the tests that
watch a lock pass date their backup nearly lock_days ago: it stays locked for a few seconds.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from qilbee_backup.repository import open_repository
from qilbee_backup import backup as backups
from qilbee_backup import maintenance
from qilbee_backup.destinations import S3Options, open_destination
from qilbee_backup.errors import DestinationError, ObjectLocked, UsageError
from qilbee_backup.manifest import SourceInfo
from qilbee_backup.backup import backup_directory
from qilbee_backup.repository import Repository, blob_key
from tests.plugins.s3 import FAKE_SECRET_KEY

pytestmark = pytest.mark.integration

UTC = timezone.utc
MiB = 1024 * 1024
DAY = timedelta(days=1)
SOURCE = SourceInfo(url="http://127.0.0.1:7474", server_version="0.9.0", mode="online", snapshot_id="snap")
SMALL_PARTS = {"multipart_threshold": 5 * MiB, "multipart_chunksize": 5 * MiB}
SHORT_LOCK = timedelta(seconds=10)  # how long the "old" backups of the prune test stay locked


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def sha_of(manifest, name: str) -> str:
    return next(f.sha256 for f in manifest.files if f.path == name)


def run_backup(repo: Repository, root: Path, spool: Path, *, now: datetime | None = None, kind: str = "daily"):
    """The flow's steps: copy, manifest, upload (the commit point)."""
    copied = backups.copy_snapshot(root, [repo], spool, now=now)  # the backup's time: its blobs' lock starts there
    manifest = backups.make_manifest(copied, kind=kind, source=SOURCE, stats={})
    return manifest, backups.upload_backup(repo, copied, manifest)


def full_key(repo: Repository, key: str) -> str:
    return f"{repo.dest.prefix}/{key}"


def head(s3_client, repo: Repository, key: str) -> dict:
    return s3_client.head_object(Bucket=repo.dest.bucket, Key=full_key(repo, key))


def versions_of(s3_client, repo: Repository, key: str) -> list:
    answer = s3_client.list_object_versions(Bucket=repo.dest.bucket, Prefix=full_key(repo, key))
    return [v for v in answer.get("Versions", []) + answer.get("DeleteMarkers", []) if v["Key"] == full_key(repo, key)]


def close_to(a: datetime, b: datetime) -> bool:
    return abs(a - b) < timedelta(seconds=1)  # S3 keeps retain-until to the second (moto: from a PUT)


@pytest.fixture
def lock_bucket(s3_bucket_factory) -> str:
    return s3_bucket_factory(object_lock=True)


# -- writing locked ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["governance", "COMPLIANCE"])
def test_blobs_and_manifest_are_written_locked_lock_files_and_config_are_not(mode, lock_bucket, s3_client, tmp_path):
    url = f"s3://{lock_bucket}/repo"
    repo = open_repository(url, must_exist=False, lock_mode=mode, lock_days=3, **SMALL_PARTS)
    root = write_tree(tmp_path / "snap", {
        "000100.sst": os.urandom(6 * MiB),  # above the multipart threshold: the lock is applied after upload
        "000001.sst": os.urandom(40_000),
        "CURRENT": b"MANIFEST-000001\n",
    })
    with backups.locked([repo], SOURCE.url):
        lock_keys = [info.key for info in repo.dest.list("locks/")]
        assert len(lock_keys) == 1
        assert "ObjectLockMode" not in head(s3_client, repo, lock_keys[0])  # a lock file must stay removable
        manifest, uploaded = run_backup(repo, root, tmp_path / "spool")

    until = manifest.created_at + timedelta(days=3)
    assert uploaded.locked_until == until and uploaded.locks_extended == 0
    for key in [repo.manifest_key_of(manifest.backup_id)] + [blob_key(sha) for sha in manifest.blob_shas()]:
        answer = head(s3_client, repo, key)
        assert answer["ObjectLockMode"] == mode.upper(), key
        assert close_to(answer["ObjectLockRetainUntilDate"], until), key
        assert close_to(repo.dest.locked_until(key), until)
    big = blob_key(sha_of(manifest, "000100.sst"))
    assert "-" in head(s3_client, repo, big)["ETag"]  # it really went multipart

    assert "ObjectLockMode" not in head(s3_client, repo, "config.json")
    # The lock file was released for real: no version or delete marker of it is left behind.
    assert versions_of(s3_client, repo, lock_keys[0]) == []

    # list and verify work on the versioned bucket unchanged.
    assert [m.backup_id for m in repo.list_backups()] == [manifest.backup_id]
    assert maintenance.verify(repo, manifest.backup_id, read_data=True)["ok"]


def test_a_second_backup_extends_the_lock_of_the_blobs_it_reuses(lock_bucket, s3_client, tmp_path):
    repo = open_repository(f"s3://{lock_bucket}/repo", must_exist=False, lock_mode="GOVERNANCE", lock_days=1)
    root = write_tree(tmp_path / "snap", {"shared.sst": b"shared" * 5000, "first.sst": b"first only" * 100})
    first, _ = run_backup(repo, root, tmp_path / "spool", now=datetime.now(UTC) - DAY + timedelta(minutes=5))
    shared, first_only = (blob_key(sha_of(first, name)) for name in ("shared.sst", "first.sst"))
    first_until = first.created_at + DAY
    assert close_to(head(s3_client, repo, shared)["ObjectLockRetainUntilDate"], first_until)

    (root / "first.sst").unlink()
    write_tree(root, {"second.sst": b"second only" * 100})
    second, uploaded = run_backup(repo, root, tmp_path / "spool")
    second_until = second.created_at + DAY
    assert uploaded.blobs_sent == 1 and uploaded.locks_extended == 1
    assert close_to(head(s3_client, repo, shared)["ObjectLockRetainUntilDate"], second_until)
    assert close_to(head(s3_client, repo, first_only)["ObjectLockRetainUntilDate"], first_until)  # not its business

    # The engine's one-call path (backup_directory) does the same, and never shortens a lock.
    third = backup_directory([repo], root, kind="daily", source=SOURCE, spool=tmp_path / "spool",
                             now=datetime.now(UTC) + timedelta(hours=1))
    assert close_to(head(s3_client, repo, shared)["ObjectLockRetainUntilDate"], third.created_at + DAY)
    assert repo.extend_locks({sha_of(third, "shared.sst")}, second_until) == 0
    assert close_to(head(s3_client, repo, shared)["ObjectLockRetainUntilDate"], third.created_at + DAY)


# -- prune and remove -------------------------------------------------------------------------


def test_prune_leaves_a_locked_backup_whole_and_removes_it_for_real_once_the_lock_passes(
    lock_bucket, s3_client, tmp_path
):
    url = f"s3://{lock_bucket}/repo"
    writer = open_repository(url, must_exist=False, lock_mode="COMPLIANCE", lock_days=1)
    root = write_tree(tmp_path / "snap", {"shared.sst": b"shared" * 5000, "old.sst": b"old only" * 100})
    # Dated almost a day ago, so its one-day lock ends a few seconds from now.
    old, _ = run_backup(writer, root, tmp_path / "spool", now=datetime.now(UTC) - DAY + SHORT_LOCK)
    old_until = old.created_at + DAY
    # An interrupted run's blob: uploaded locked, named by no manifest.
    write_tree(tmp_path / "interrupted", {"orphan.sst": b"never committed" * 100})
    interrupted = backups.copy_snapshot(tmp_path / "interrupted", [writer], tmp_path / "spool", send=False)
    orphan_sha = interrupted.entries[0].sha256
    writer.put_blob(orphan_sha, interrupted.staged[orphan_sha], retain_until=old_until)
    (root / "old.sst").unlink()
    write_tree(root, {"new.sst": b"new only" * 100})
    new, _ = run_backup(writer, root, tmp_path / "spool")
    old_blob = blob_key(sha_of(old, "old.sst"))

    # Pruning needs no lock options: the prune flow opens the repository with the URL alone.
    repo = open_repository(url)
    rules = {"keep_last": 1}
    dry = maintenance.prune(repo, kind=None, retention=rules, grace="0", dry_run=True)
    done = maintenance.prune(repo, kind=None, retention=rules, grace="0")
    for result in (dry, done):
        assert [k["backup_id"] for k in result["kept"]] == [new.backup_id]
        assert result["removed"] == []
        assert [(lk["backup_id"], lk["kind"]) for lk in result["locked"]] == [(old.backup_id, "daily")]
        assert close_to(datetime.fromisoformat(result["locked"][0]["locked_until"]), old_until)
        assert "locked until" in result["locked"][0]["reason"]
        assert (result["blobs_removed"], result["blobs_locked"]) == (0, 1)  # the orphan; old.sst is still referenced
    assert repo.backup_ids() == sorted([old.backup_id, new.backup_id])
    assert repo.dest.stat(old_blob) is not None and orphan_sha in repo.blob_sizes()

    # Removing it by hand is refused too, and leaves it listed (no delete marker hides it).
    with pytest.raises(ObjectLocked, match="locked until") as refused:
        repo.remove_backup(old.backup_id)
    assert "\n" not in str(refused.value) and FAKE_SECRET_KEY not in str(refused.value)
    with pytest.raises(ObjectLocked):
        repo.dest.remove(old_blob)
    assert old.backup_id in repo.backup_ids()
    old_manifest = repo.manifest_key_of(old.backup_id)
    assert len(versions_of(s3_client, repo, old_manifest)) == 1

    time.sleep(max(0.0, (old_until - datetime.now(UTC)).total_seconds()) + 1.5)
    after = maintenance.prune(repo, kind=None, retention=rules, grace="0")
    assert [r["backup_id"] for r in after["removed"]] == [old.backup_id]
    assert (after["locked"], after["blobs_removed"], after["blobs_locked"]) == ([], 2, 0)
    assert repo.backup_ids() == [new.backup_id]
    # Removed for real: no version and no delete marker left to hold the space.
    for key in (old_manifest, old_blob, blob_key(orphan_sha)):
        assert versions_of(s3_client, repo, key) == [], key
    assert maintenance.verify(repo, new.backup_id, read_data=True)["ok"]


def test_remove_on_a_lock_enabled_bucket(lock_bucket, s3_client):
    dest = open_destination(f"s3://{lock_bucket}/repo", lock_mode="GOVERNANCE", lock_days=1)
    # An unlocked key with several versions and a delete marker: remove deletes them all.
    dest.put_bytes("locks/a.json", b"1")
    dest.put_bytes("locks/a.json", b"2")
    s3_client.delete_object(Bucket=lock_bucket, Key="repo/locks/a.json")
    dest.put_bytes("locks/a.json", b"3")
    dest.put_bytes("locks/a.json.takeover-x", b"a longer key with the same beginning")
    assert dest.locked_until("locks/a.json") is None
    dest.remove("locks/a.json")
    answer = s3_client.list_object_versions(Bucket=lock_bucket, Prefix="repo/locks/")
    assert [v["Key"] for v in answer.get("Versions", [])] == ["repo/locks/a.json.takeover-x"]
    assert answer.get("DeleteMarkers", []) == []
    dest.remove("locks/a.json")  # already gone: not an error

    # A locked key: refused, still listed, and no delete marker was added.
    until = datetime.now(UTC) + timedelta(hours=1)
    dest.put_bytes("backups/locked.json", b"{}", retain_until=until)
    with pytest.raises(ObjectLocked, match=r"backups/locked\.json: cannot remove: locked until"):
        dest.remove("backups/locked.json")
    assert [o.key for o in dest.list("backups/")] == ["backups/locked.json"]
    assert s3_client.list_object_versions(Bucket=lock_bucket, Prefix="repo/backups/").get("DeleteMarkers", []) == []

    # A legal hold (set by an operator) counts as a lock with no end.
    dest.put_bytes("blobs/held", b"x")
    s3_client.put_object_legal_hold(Bucket=lock_bucket, Key="repo/blobs/held", LegalHold={"Status": "ON"})
    assert dest.locked_until("blobs/held") == datetime.max.replace(tzinfo=UTC)
    with pytest.raises(ObjectLocked, match="legal hold"):
        dest.remove("blobs/held")
    s3_client.put_object_legal_hold(Bucket=lock_bucket, Key="repo/blobs/held", LegalHold={"Status": "OFF"})
    dest.remove("blobs/held")
    assert dest.stat("blobs/held") is None
    dest.close()


# -- refusals ---------------------------------------------------------------------------------


def test_lock_options_on_a_bucket_without_object_lock_are_one_clear_error(s3_bucket, moto_server):
    with pytest.raises(DestinationError) as refused:
        open_repository(f"s3://{s3_bucket}/repo", must_exist=False, lock_mode="GOVERNANCE", lock_days=7)
    message = str(refused.value)
    assert f"bucket {s3_bucket!r} has no Object Lock enabled" in message and "--lock-days" in message
    assert "\n" not in message and FAKE_SECRET_KEY not in message
    # Without lock options the same bucket opens and backs up as ever.
    plain = open_repository(f"s3://{s3_bucket}/repo", must_exist=False)
    assert plain.dest.lock_period is None and plain.dest.locked_until("anything") is None

    with pytest.raises(DestinationError, match="does not exist"):
        open_repository("s3://qb-no-such-bucket-for-lock/repo", must_exist=False, lock_mode="GOVERNANCE", lock_days=7)


def test_lock_options_on_a_directory_are_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"object lock \(--lock-days\) needs an s3:// repository"):
        open_repository(str(tmp_path / "repo"), must_exist=False, lock_mode="GOVERNANCE", lock_days=7)
    with pytest.raises(UsageError, match="needs an s3:// repository"):
        open_repository((tmp_path / "repo").as_uri(), must_exist=False, lock_mode="compliance", lock_days=1)
    # A directory refuses a locked write rather than store it unlocked.
    local = open_repository(str(tmp_path / "repo"), must_exist=False)
    assert local.dest.lock_period is None and local.retain_until(datetime.now(UTC)) is None
    with pytest.raises(UsageError, match="needs an s3:// repository"):
        local.dest.put_bytes("backups/x.json", b"{}", retain_until=datetime.now(UTC) + DAY)
    with pytest.raises(UsageError, match="needs an s3:// repository"):
        local.dest.extend_lock("blobs/x", datetime.now(UTC) + DAY)
    assert local.dest.stat("backups/x.json") is None


@pytest.mark.parametrize("options, complaint", [
    ({"lock_mode": "forever", "lock_days": 7}, "lock_mode must be GOVERNANCE or COMPLIANCE"),
    ({"lock_mode": "GOVERNANCE", "lock_days": 0}, "lock_days must be a whole number of days"),
    ({"lock_mode": "GOVERNANCE", "lock_days": 1.5}, "lock_days must be a whole number of days"),
    ({"lock_mode": "GOVERNANCE", "lock_days": True}, "lock_days must be a whole number of days"),
    ({"lock_days": 7}, "needs both lock_mode and lock_days"),
    ({"lock_mode": "COMPLIANCE"}, "needs both lock_mode and lock_days"),
])
def test_bad_lock_options_are_usage_errors(options, complaint, tmp_path):
    for url in ("s3://some-bucket/repo", str(tmp_path / "repo")):  # refused before anything is contacted
        with pytest.raises(UsageError, match=complaint) as refused:
            open_repository(url, must_exist=False, **options)
        assert "\n" not in str(refused.value)


def test_lock_mode_is_case_insensitive():
    assert S3Options(lock_mode="compliance", lock_days=30).lock_mode == "COMPLIANCE"
    assert S3Options(lock_mode="Governance", lock_days=1).locking
    assert not S3Options().locking
