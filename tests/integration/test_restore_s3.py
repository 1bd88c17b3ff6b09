"""Restoring from a real S3 API (moto_server on 127.0.0.1): a RocksDB data directory made by the
emulator's store comes back with the same figures and the same records."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from qilbee_backup.destinations import open_destination
from qilbee_backup.emulator.seed import seed_store
from qilbee_backup.emulator.store import GraphStore, content_digest, open_readonly_counts
from qilbee_backup.errors import NotFound
from qilbee_backup.manifest import SourceInfo
from qilbee_backup.backup import backup_directory
from qilbee_backup.repository import Repository, blob_key
from qilbee_backup.restorer import restore_backup

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
SOURCE = SourceInfo(url="http://127.0.0.1:7474", server_version="0.9.0", mode="online", snapshot_id="snap")


@pytest.fixture
def repo(s3_repo_url) -> Repository:
    r = Repository(open_destination(s3_repo_url, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    yield r
    r.close()


@pytest.fixture
def checkpoint(tmp_path) -> tuple[Path, dict]:
    """A consistent RocksDB checkpoint of a seeded store (what an online backup copies)."""
    store = GraphStore(tmp_path / "live")
    try:
        seed_store(store, 2000)
        snapshot = store.create_snapshot()
        figures = store.counts()
    finally:
        store.close()
    path = tmp_path / "live" / "snapshots" / snapshot["snapshot_id"]
    assert (path / "CURRENT").is_file()
    return path, figures


def backup(repo: Repository, root: Path, tmp_path: Path, stats: dict | None = None):
    return backup_directory([repo], root, kind="daily", source=SOURCE, stats=stats, spool=tmp_path / "spool")


def digest_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_a_rocksdb_data_directory_round_trips_through_s3(repo, checkpoint, tmp_path):
    source, figures = checkpoint
    manifest = backup(repo, source, tmp_path, stats=figures)
    expected_counts = open_readonly_counts(source)
    expected_digest = content_digest(source)
    assert expected_counts["nodeCount"] == figures["nodeCount"] > 0

    target = tmp_path / "restored" / "data"
    result = restore_backup(repo, manifest, target)

    assert result.files == len(manifest.files) and result.bytes == manifest.bytes_total
    assert 0 < result.bytes_downloaded == sum(e.stored_size for e in {e.sha256: e for e in manifest.files}.values())
    assert digest_tree(target) == digest_tree(source)
    assert open_readonly_counts(target) == expected_counts
    assert content_digest(target) == expected_digest


def test_a_large_multipart_object_is_read_back_in_one_stream(repo, tmp_path):
    root = tmp_path / "snap"
    root.mkdir()
    (root / "000100.sst").write_bytes(os.urandom(6 * MiB) + bytes(2 * MiB))  # uploaded in parts
    (root / "CURRENT").write_bytes(b"MANIFEST-000001\n")
    manifest = backup(repo, root, tmp_path)
    result = restore_backup(repo, manifest, tmp_path / "restored", workers=2)
    assert digest_tree(tmp_path / "restored") == digest_tree(root)
    assert result.bytes == 8 * MiB + 16


def test_a_blob_missing_from_s3_leaves_the_target_untouched(repo, checkpoint, tmp_path, s3_client):
    source, _ = checkpoint
    manifest = backup(repo, source, tmp_path)
    victim = next(e for e in manifest.files if e.path == "CURRENT")
    s3_client.delete_object(Bucket=repo.dest.bucket, Key=f"{repo.dest.prefix}/{blob_key(victim.sha256)}")
    target = tmp_path / "restored"
    with pytest.raises(NotFound) as caught:
        restore_backup(repo, manifest, target)
    message = str(caught.value)
    assert f"backup {manifest.backup_id} failed at CURRENT" in message and "no such object" in message
    assert "\n" not in message and "testing" not in message  # no credential in the message
    assert not target.exists()
    assert [n for n in os.listdir(tmp_path) if ".qilbee-restore-" in n] == []
