"""Transient S3 faults against a real S3 API: moto_server behind a proxy on 127.0.0.1 that answers 503
or drops the connection for chosen GETs. A blob the store fails to hand over is read again; one that
cannot be read at all is "could not check", never damage; damage is never retried into a pass."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import zstandard

from qilbee_backup import blobs
from qilbee_backup.checker import verify_backup, verify_repository
from qilbee_backup.destinations import open_destination
from qilbee_backup.errors import DestinationError
from qilbee_backup.manifest import Manifest, SourceInfo
from qilbee_backup.backup import backup_directory
from qilbee_backup.repository import Repository, blob_key
from qilbee_backup.restorer import restore_backup
from tests.files import tree, write

pytestmark = pytest.mark.integration

SOURCE = SourceInfo(url="http://127.0.0.1:7474", server_version="0.9.0", mode="online", snapshot_id="snap")


@pytest.fixture(autouse=True)
def short_pauses(monkeypatch):
    monkeypatch.setattr(blobs, "RETRY_PAUSE", 0.01)


@pytest.fixture
def snapshot(tmp_path) -> Path:
    root = tmp_path / "snapshot"
    for i in range(3):
        write(root / f"00000{i}.sst", os.urandom(200_000 + i))
    write(root / "CURRENT", b"MANIFEST-000011\n")
    return root


@pytest.fixture
def made(s3_repo_url, snapshot, tmp_path) -> Manifest:
    """A good backup, written straight to moto (no proxy in the way)."""
    repo = Repository(open_destination(s3_repo_url))
    try:
        return backup_directory([repo], snapshot, kind="daily", source=SOURCE, spool=tmp_path / "spool")
    finally:
        repo.close()


@pytest.fixture
def via_proxy(s3_repo_url, s3_fault_proxy, monkeypatch):
    """open(**S3Options) -> the same repository, reached through the proxy (AWS_ENDPOINT_URL_S3)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_fault_proxy.url)
    opened = []

    def open_repo(**options) -> Repository:
        opened.append(Repository(open_destination(s3_repo_url, **options)))
        return opened[-1]

    yield open_repo
    for repo in opened:
        repo.close()


def victim(manifest: Manifest) -> str:
    return next(e.sha256 for e in manifest.files if e.path == "000001.sst")


def test_a_503_on_a_blob_is_read_again_not_reported_as_damage(made, via_proxy, s3_fault_proxy):
    # One try per request: the 503 reaches the checker as it does once botocore's own retries are spent.
    repo = via_proxy(max_attempts=1)
    s3_fault_proxy.fail(victim(made), how="503")
    report = verify_backup(repo, made, read_data=True)
    assert report.ok, report.summary()
    assert report.problems == [] and report.unchecked == []
    assert s3_fault_proxy.gets(victim(made)) == 2


def test_a_connection_dropped_mid_download_is_read_again(made, via_proxy, s3_fault_proxy):
    repo = via_proxy()
    s3_fault_proxy.fail(victim(made), how="drop")
    report = verify_backup(repo, made, read_data=True)
    assert report.ok, report.summary()
    assert s3_fault_proxy.gets(victim(made)) == 2


def test_a_blob_that_stays_unreadable_could_not_be_checked_and_is_not_damage(made, via_proxy, s3_fault_proxy):
    repo = via_proxy(max_attempts=1)
    s3_fault_proxy.fail(victim(made), times=100, how="503")
    report = verify_backup(repo, made, read_data=True)
    assert not report.ok and report.problems == []
    assert [(p.path, p.sha256) for p in report.unchecked] == [("000001.sst", victim(made))]
    assert "SlowDown" in report.unchecked[0].reason and report.unchecked[0].reason.startswith("unreadable")
    summary = report.summary()
    assert "could not check 1 blob(s)" in summary and "DAMAGED" not in summary and "\n" not in summary
    assert s3_fault_proxy.gets(victim(made)) == blobs.FETCH_ATTEMPTS

    whole = verify_repository(repo, read_data=True)
    assert not whole.ok and whole.damaged == [] and whole.unchecked == [made.backup_id]
    assert "could not be checked" in whole.summary() and "damaged" not in whole.summary()


def test_damage_is_reported_at_once_and_never_retried_into_a_pass(made, s3_client, s3_bucket, via_proxy, s3_fault_proxy):
    by_path = {e.path: e for e in made.files}
    other, garbage, flaky = by_path["000000.sst"], by_path["000002.sst"], by_path["000001.sst"]
    s3_client.put_object(Bucket=s3_bucket, Key=f"repo/{blob_key(other.sha256)}",
                         Body=zstandard.ZstdCompressor().compress(os.urandom(other.size)))
    s3_client.put_object(Bucket=s3_bucket, Key=f"repo/{blob_key(garbage.sha256)}", Body=os.urandom(garbage.size // 3))
    repo = via_proxy(max_attempts=1)
    s3_fault_proxy.fail(flaky.sha256, how="503")
    bare = made.model_copy(update={"files": [e.model_copy(update={"stored_size": None}) for e in made.files]})

    report = verify_backup(repo, bare, read_data=True)

    reasons = {p.path: p.reason for p in report.problems}
    assert set(reasons) == {"000000.sst", "000002.sst"} and report.unchecked == []
    assert reasons["000000.sst"].startswith("bad checksum") and reasons["000002.sst"].startswith("undecodable")
    assert "DAMAGED, 2 problem(s)" in report.summary() and "could not check" not in report.summary()
    assert s3_fault_proxy.gets(other.sha256) == 1 and s3_fault_proxy.gets(garbage.sha256) == 1
    assert s3_fault_proxy.gets(flaky.sha256) == 2  # the transient one, read again, is fine


def test_the_restore_reads_blobs_through_the_same_retry(made, via_proxy, s3_fault_proxy, snapshot, tmp_path):
    repo = via_proxy(max_attempts=1)
    s3_fault_proxy.fail(victim(made), how="drop")
    target = tmp_path / "restored"
    restore_backup(repo, made, target)
    assert tree(target) == tree(snapshot) and s3_fault_proxy.gets(victim(made)) == 2

    s3_fault_proxy.fail(victim(made), times=100, how="503")
    again = tmp_path / "again"
    with pytest.raises(DestinationError, match=rf"backup {made.backup_id} failed at 000001.sst: .*SlowDown"):
        restore_backup(repo, made, again)
    assert not again.exists()
