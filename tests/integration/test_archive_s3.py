"""Archives on a real S3 API (moto_server on 127.0.0.1): the archive file in GLACIER (the record in the
standard class), S3 refusing to read it before a retrieval, starting the retrieval, waiting for it, and
restoring once it is readable.

moto completes a retrieval at once by default; its state manager (``/moto-api/state-manager``) makes it
report "in progress" for a number of looks first, as S3 does for hours.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from qilbee_backup import cold_archive as archives
from qilbee_backup.cold_archive import build_archive, list_archives, prune_archives, restore_archive, upload_archive, verify_archive
from qilbee_backup.retrieval import RetrievalPending, ensure_readable, object_state
from qilbee_backup.errors import UsageError
from qilbee_backup.manifest import SourceInfo
from qilbee_backup.repository import Repository

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
SOURCE = SourceInfo(url="http://127.0.0.1:7474", server_version="0.9.0", mode="online", snapshot_id="snap")


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def repo(s3_repo_url) -> Repository:
    # A low multipart threshold, so the 6 MiB archive below goes up in parts as a large one would.
    r = Repository.open(s3_repo_url, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    yield r
    r.close()


@pytest.fixture
def snapshot(tmp_path) -> Path:
    root = tmp_path / "snap"
    (root / "sub").mkdir(parents=True)
    (root / "CURRENT").write_bytes(b"MANIFEST-000001\n")
    (root / "000009.sst").write_bytes(os.urandom(6 * MiB))
    (root / "sub" / "OPTIONS").write_bytes(b"[DBOptions]\n" * 100)
    return root


def _moto_state(endpoint: str, action: str, body: dict) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/state-manager/{action}", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 201)


@pytest.fixture
def slow_retrievals(moto_server):
    """Retrievals stay "in progress" for a few looks (HEADs) before they complete; back to instant afterwards."""
    def set_looks(looks: int) -> None:
        _moto_state(moto_server, "set-transition", {"model_name": "s3::keyrestore", "transition": {"progression": "manual", "times": looks}})

    yield set_looks
    _moto_state(moto_server, "unset-transition", {"model_name": "s3::keyrestore"})


def archived(repo: Repository, root: Path, tmp_path: Path, storage_class: str = "GLACIER", **kw) -> archives.ArchiveRecord:
    return upload_archive(repo, build_archive(root, tmp_path / "spool", source=SOURCE, **kw), storage_class=storage_class)


def s3_key(repo: Repository, key: str) -> str:
    return f"{repo.dest.prefix}/{key}"


def test_the_archive_goes_to_glacier_and_its_record_stays_standard(repo, snapshot, tmp_path, s3_client, s3_bucket):
    record = archived(repo, snapshot, tmp_path)
    key = s3_key(repo, archives.archive_key(record.archive_id))
    head = s3_client.head_object(Bucket=s3_bucket, Key=key)
    assert head["StorageClass"] == "GLACIER" and head["ContentLength"] == record.archive.size > 5 * MiB
    assert "Restore" not in head
    side = s3_client.head_object(Bucket=s3_bucket, Key=s3_key(repo, archives.record_key(record.archive_id)))
    assert side.get("StorageClass", "STANDARD") == "STANDARD"
    assert record.archive.storage_class == "GLACIER"

    with pytest.raises(ClientError, match="InvalidObjectState"):  # S3 will not read it before a retrieval
        s3_client.get_object(Bucket=s3_bucket, Key=key)
    assert [r.archive_id for r in list_archives(repo)] == [record.archive_id]  # records only: no retrieval
    report = verify_archive(repo, record.archive_id, read_data=True)
    assert report["ok"] and report["storage_class"] == "GLACIER" and report["read_data"] is False


def test_without_waiting_the_retrieval_is_started_and_the_run_says_to_come_back(repo, snapshot, tmp_path, s3_client, s3_bucket):
    record = archived(repo, snapshot, tmp_path)
    key = archives.archive_key(record.archive_id)
    target = tmp_path / "restored"
    with pytest.raises(RetrievalPending) as caught:
        restore_archive(repo, record, target)  # the engine refuses to GET an unretrieved archive
    assert "not retrieved" in str(caught.value)
    assert "Restore" not in s3_client.head_object(Bucket=s3_bucket, Key=s3_key(repo, key))

    with pytest.raises(RetrievalPending) as caught:
        ensure_readable(repo.dest, key, wait_s=0, tier="Bulk", days=2)
    message = str(caught.value)
    assert "\n" not in message and caught.value.exit_code == 75
    assert "is in GLACIER: retrieval started (Bulk tier, typically 5-12 hours; the copy stays readable 2 days)" in message
    assert "run the restore again once it has finished" in message
    # RestoreObject really was sent: S3 now reports the retrieval on the object.
    assert "ongoing-request" in s3_client.head_object(Bucket=s3_bucket, Key=s3_key(repo, key))["Restore"]
    assert not target.exists()

    # moto finishes retrievals at once: the next run finds the copy readable and restores.
    state = ensure_readable(repo.dest, key, wait_s=0)
    assert state.readable and state.restore == "done" and state.expiry
    result = restore_archive(repo, record, target)
    assert tree(target) == tree(snapshot) and result.bytes_downloaded == record.archive.size


def test_waiting_polls_until_the_retrieval_completes(repo, snapshot, tmp_path, slow_retrievals):
    slow_retrievals(3)
    record = archived(repo, snapshot, tmp_path)
    key = archives.archive_key(record.archive_id)
    looks = []
    state = ensure_readable(repo.dest, key, wait_s=60, poll_s=0.05, on_poll=lambda s, waited: looks.append(s.restore))
    assert looks and set(looks) == {"ongoing"}  # S3 said "in progress" at least once before it was done
    assert state.readable and state.storage_class == "GLACIER"
    target = tmp_path / "restored"
    restore_archive(repo, record, target)
    assert tree(target) == tree(snapshot)


def test_a_wait_that_runs_out_says_the_retrieval_goes_on(repo, snapshot, tmp_path, slow_retrievals):
    record = archived(repo, snapshot, tmp_path, storage_class="DEEP_ARCHIVE")
    key = archives.archive_key(record.archive_id)
    with pytest.raises(UsageError, match="DEEP_ARCHIVE has no Expedited retrieval"):
        ensure_readable(repo.dest, key, wait_s=1, poll_s=0.1, tier="Expedited")
    assert object_state(repo.dest, key).restore is None  # refused before anything was asked of S3

    slow_retrievals(1)  # moto: "in progress" from the next look on...
    with pytest.raises(RetrievalPending, match=r"DEEP_ARCHIVE: retrieval started \(Standard tier, within 12 hours"):
        ensure_readable(repo.dest, key, wait_s=0)
    assert object_state(repo.dest, key).restore == "ongoing"
    slow_retrievals(10_000)  # ...and it stays there
    with pytest.raises(RetrievalPending, match=r"is in DEEP_ARCHIVE and its retrieval is still in progress after waiting \d+ s; it goes on in S3"):
        ensure_readable(repo.dest, key, wait_s=0.5, poll_s=0.1)
    # A run that finds the retrieval running does not ask again, and says to come back.
    with pytest.raises(RetrievalPending, match="retrieval is still in progress; run the restore again later"):
        ensure_readable(repo.dest, key, wait_s=0)
    assert object_state(repo.dest, key).restore == "ongoing"


def test_glacier_instant_retrieval_reads_at_once(repo, snapshot, tmp_path, s3_client, s3_bucket):
    record = archived(repo, snapshot, tmp_path, storage_class="GLACIER_IR")
    key = archives.archive_key(record.archive_id)
    state = ensure_readable(repo.dest, key, wait_s=0)
    assert state.readable and state.storage_class == "GLACIER_IR" and not state.needs_retrieval
    assert "Restore" not in s3_client.head_object(Bucket=s3_bucket, Key=s3_key(repo, key))  # nothing was asked
    assert verify_archive(repo, record.archive_id, read_data=True)["read_data"] is True
    target = tmp_path / "restored"
    restore_archive(repo, record, target)
    assert tree(target) == tree(snapshot)


def test_prune_removes_both_objects_of_an_archive(repo, tmp_path, s3_client, s3_bucket):
    root = tmp_path / "small"
    root.mkdir()
    (root / "CURRENT").write_bytes(b"x")
    ids = [archived(repo, root, tmp_path, now=datetime(2025, m, 1, 4, tzinfo=timezone.utc)).archive_id for m in (1, 2, 3)]
    result = prune_archives(repo, retention={"keep_last": 1}, now=datetime(2025, 3, 2, tzinfo=timezone.utc))
    assert [r["archive_id"] for r in result["removed"]] == [ids[1], ids[0]]
    keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket, Prefix=f"{repo.dest.prefix}/archives/")["Contents"])
    assert keys == [s3_key(repo, archives.record_key(ids[2])), s3_key(repo, archives.archive_key(ids[2]))]


def test_prune_leaves_an_archive_the_buckets_default_retention_still_locks(s3_bucket_factory, s3_client, tmp_path):
    bucket = s3_bucket_factory(object_lock=True)
    s3_client.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    repo = Repository.open(f"s3://{bucket}/repo")
    root = tmp_path / "small"
    root.mkdir()
    (root / "CURRENT").write_bytes(b"x")
    ids = [archived(repo, root, tmp_path, now=datetime(2025, m, 1, 4, tzinfo=timezone.utc)).archive_id for m in (1, 2)]
    result = prune_archives(repo, retention={"keep_last": 1}, now=datetime(2025, 2, 2, tzinfo=timezone.utc))
    assert result["removed"] == [] and result["locked"] == [{"archive_id": ids[0], "source": "127.0.0.1-7474", "kind": "monthly"}]
    assert [r.archive_id for r in list_archives(repo)] == ids  # left whole: record and file
    assert repo.dest.stat(archives.archive_key(ids[0])) is not None
    repo.close()
