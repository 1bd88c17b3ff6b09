"""The repository format against a real S3 API (moto_server on 127.0.0.1): backup, dedup,
interruption, locks, corruption detection and sweeping, all through S3Destination."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from qilbee_backup.blobs import decompress_stream
from qilbee_backup.checker import verify_backup, verify_repository
from qilbee_backup.destinations import open_destination
from qilbee_backup.errors import LockedError
from qilbee_backup.manifest import SourceInfo
from qilbee_backup.backup import backup_directory
from qilbee_backup.repository import LockInfo, Repository, blob_key
from tests.files import write

pytestmark = pytest.mark.integration

UTC = timezone.utc
MiB = 1024 * 1024
SOURCE = SourceInfo(url="http://127.0.0.1:7474", server_version="0.9.0", mode="online", snapshot_id="snap")


@pytest.fixture
def snapshot(tmp_path) -> Path:
    root = tmp_path / "snapshot"
    write(root / "000100.sst", os.urandom(6 * MiB))  # above the multipart threshold set below
    for i in range(9):
        write(root / f"0000{i:02d}.sst", os.urandom(30_000 + i))
    write(root / "CURRENT", b"MANIFEST-000011\n")
    write(root / "OPTIONS-000012", b"[DBOptions]\n" * 500)
    return root


@pytest.fixture
def repo(s3_repo_url) -> Repository:
    r = Repository(open_destination(s3_repo_url, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    yield r
    r.close()


def key_of(repo: Repository, key: str) -> str:
    return f"{repo.dest.prefix}/{key}" if repo.dest.prefix else key


class Uploads:
    def __init__(self, fail_after: int | None = None) -> None:
        self.shas: list[str] = []
        self.fail_after = fail_after
        self._lock = threading.Lock()

    def __call__(self, repo, sha, size) -> None:
        with self._lock:
            self.shas.append(sha)
            if self.fail_after is not None and len(self.shas) >= self.fail_after:
                raise RuntimeError("simulated crash half way through the upload")


def backup(repo, root, tmp_path, *, now=None, uploads=None, upload_workers=4, kind="daily"):
    return backup_directory(
        [repo], root, kind=kind, source=SOURCE, stats={"totals": {"nodeCount": 1}}, spool=tmp_path / "spool",
        now=now, on_upload=uploads, upload_workers=upload_workers,
    )


def test_backup_verify_and_read_back_round_trip(repo, snapshot, tmp_path, s3_client):
    m = backup(repo, snapshot, tmp_path)
    assert repo.load("latest") == m and repo.config()["format"] == "qilbee-backup"
    assert verify_backup(repo, m).ok
    full = verify_backup(repo, m, read_data=True)
    assert full.ok and full.read_bytes > 6 * MiB
    for entry in m.files:  # what a restore does: stream each blob down and decode it
        out = io.BytesIO()
        with repo.dest.open_read(blob_key(entry.sha256)) as reader:
            assert decompress_stream(reader, out) == (entry.sha256, entry.size)
        assert out.getvalue() == (snapshot / entry.path).read_bytes()
    listed = s3_client.list_objects_v2(Bucket=repo.dest.bucket, Prefix=key_of(repo, "backups/"))["Contents"]
    assert [o["Key"] for o in listed] == [key_of(repo, repo.manifest_key_of(m.backup_id))]
    assert listed[0]["Key"].startswith(key_of(repo, f"backups/{m.backup_id}."))


def test_second_backup_uploads_nothing_and_one_new_file_uploads_one_blob(repo, snapshot, tmp_path):
    t0 = datetime(2026, 11, 24, 2, tzinfo=UTC)
    first = Uploads()
    m1 = backup(repo, snapshot, tmp_path, now=t0, uploads=first)
    assert len(first.shas) == len(m1.blob_shas()) == 12
    second = Uploads()
    backup(repo, snapshot, tmp_path, now=t0 + timedelta(days=1), uploads=second)
    assert second.shas == []
    write(snapshot / "000200.sst", b"the only new table")
    third = Uploads()
    m3 = backup(repo, snapshot, tmp_path, now=t0 + timedelta(days=2), uploads=third)
    assert third.shas == [hashlib.sha256(b"the only new table").hexdigest()]
    assert [b.backup_id for b in repo.list_backups()][-1] == m3.backup_id
    assert verify_repository(repo, read_data=True).ok


def test_an_interrupted_backup_commits_nothing_and_the_next_run_uploads_only_the_rest(repo, snapshot, tmp_path):
    crash = Uploads(fail_after=6)  # of 12 blobs
    with pytest.raises(RuntimeError, match="simulated crash"):
        backup(repo, snapshot, tmp_path, uploads=crash, upload_workers=2)
    assert repo.backup_ids() == []
    already = set(repo.blob_sizes())
    assert 6 <= len(already) <= 9  # copy and upload step each stop at their first failure (one put in flight beside it)
    rerun = Uploads()
    m = backup(repo, snapshot, tmp_path, uploads=rerun)
    assert sorted(rerun.shas) == sorted(m.blob_shas() - already)
    assert verify_backup(repo, m, read_data=True).ok


def test_lock_contention_and_takeover_of_an_expired_lock(repo):
    with repo.lock("qilbee-7474", owner="daily backup"):
        with pytest.raises(LockedError, match="daily backup"):
            with repo.lock("qilbee-7474", owner="adhoc backup"):
                pass
    stale = LockInfo("crashed run", "old-host", 42, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 6, tzinfo=UTC), "dead")
    repo.dest.put_bytes("locks/qilbee-7474.json", stale.to_json())
    with repo.lock("qilbee-7474", owner="next run") as lock:
        assert LockInfo.from_json(repo.dest.get_bytes("locks/qilbee-7474.json")).token == lock.info.token
    assert list(repo.dest.list("locks/")) == []


def test_corruption_is_found_and_named(repo, snapshot, tmp_path, s3_client):
    m = backup(repo, snapshot, tmp_path)
    by_path = {e.path: e for e in m.files}
    bucket = repo.dest.bucket
    # Overwrite one blob with other bytes of the same length: only read_data can see it.
    victim = by_path["000003.sst"]
    s3_client.put_object(Bucket=bucket, Key=key_of(repo, blob_key(victim.sha256)), Body=os.urandom(victim.stored_size))
    assert verify_backup(repo, m).ok
    report = verify_backup(repo, m, read_data=True)
    assert not report.ok and [(p.path, p.sha256) for p in report.problems] == [("000003.sst", victim.sha256)]
    assert m.backup_id in report.summary() and "000003.sst" in report.summary()
    # Delete another: the quick check (one listing) names it.
    gone = by_path["CURRENT"]
    s3_client.delete_object(Bucket=bucket, Key=key_of(repo, blob_key(gone.sha256)))
    quick = verify_backup(repo, m)
    assert [(p.path, p.reason) for p in quick.problems] == [("CURRENT", "missing")]
    whole = verify_repository(repo, read_data=True)
    assert whole.damaged == [m.backup_id]
    assert {p.path for p in whole.backups[0].problems} == {"000003.sst", "CURRENT"}


def test_sweep_respects_grace_and_references(repo, snapshot, tmp_path):
    t0 = datetime(2026, 11, 24, tzinfo=UTC)
    kept = backup(repo, snapshot, tmp_path, now=t0)
    write(snapshot / "temp.sst", b"only in the forgotten backup")
    forgotten = backup(repo, snapshot, tmp_path, now=t0 + timedelta(hours=1))
    repo.remove_backup(forgotten.backup_id)
    orphan = hashlib.sha256(b"only in the forgotten backup").hexdigest()

    assert repo.sweep(grace=timedelta(hours=1)).removed == []  # uploaded seconds ago: a backup may be in flight
    later = datetime.now(UTC) + timedelta(hours=3)
    assert repo.sweep(grace=timedelta(hours=1), now=later).removed == [orphan]
    assert set(repo.blob_sizes()) == kept.blob_shas()
    assert verify_backup(repo, kept, read_data=True).ok
