"""The backup steps the flow runs, on a local repository."""

from __future__ import annotations

import pytest

from qilbee_backup.repository import open_repository
from qilbee_backup import backup as backups
from qilbee_backup import maintenance
from qilbee_backup.errors import UsageError
from qilbee_backup.manifest import SourceInfo


def test_an_empty_snapshot_is_refused_and_nothing_is_written(tmp_path):
    repo = open_repository(str(tmp_path / "repo"), must_exist=False)
    (tmp_path / "snap").mkdir()
    with pytest.raises(UsageError, match="holds no files"):
        backups.copy_snapshot(tmp_path / "snap", [repo], tmp_path / "spool")
    assert repo.backup_ids() == []


def test_each_repository_gets_only_what_it_lacks_and_its_own_stored_sizes(tmp_path):
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "000001.sst").write_bytes(b"a" * 5000)
    (snap / "CURRENT").write_text("MANIFEST-1\n")
    a, b = (open_repository(str(tmp_path / name), must_exist=False) for name in ("a", "b"))
    first = backups.copy_snapshot(snap, [a], tmp_path / "spool1")
    backups.upload_backup(a, first, backups.make_manifest(first, kind="daily", source=SourceInfo(url="x", mode="online"), stats={}))

    (snap / "000002.sst").write_bytes(b"b" * 5000)
    copied = backups.copy_snapshot(snap, [a, b], tmp_path / "spool2")
    assert len(copied.missing[a.url]) == 1 and len(copied.missing[b.url]) == 3
    manifest = backups.make_manifest(copied, kind="daily", source=SourceInfo(url="x", mode="online"), stats={})
    sent = [backups.upload_backup(r, copied, manifest) for r in (a, b)]
    assert [s.blobs_sent for s in sent] == [1, 3]
    for r in (a, b):
        stored = r.load(manifest.backup_id)
        sizes = r.blob_sizes()
        assert all(f.stored_size == sizes[f.sha256] for f in stored.files)
        assert maintenance.verify(r, manifest.backup_id, read_data=True)["ok"]


def test_blobs_sealed_for_one_repository_reach_another_key_and_a_plain_one_intact(tmp_path):
    """Blobs are sealed as they are compressed, for the first encrypted repository; a second
    encrypted one (its own key) and an unencrypted one get copies opened and sealed again (or left
    plain): every repository verifies by re-reading its data, and none holds another's bytes."""
    snap = tmp_path / "snap"
    snap.mkdir()
    for i in range(3):
        (snap / f"00000{i}.sst").write_bytes(bytes([i]) * (2 * 1024 * 1024 + 7))  # frames of 1 MiB, and a tail
    (snap / "CURRENT").write_text("MANIFEST-1\n")
    a, b, plain = (open_repository(str(tmp_path / name), must_exist=False) for name in ("a", "b", "plain"))
    a.init(passphrase="one")
    b.init(passphrase="two")
    plain.init()
    copied = backups.copy_snapshot(snap, [a, b, plain], tmp_path / "spool")
    assert {blob.sealed_by for blob in copied.staged.values()} == {a.key}  # sealed in the compress pass, for a
    manifest = backups.make_manifest(copied, kind="daily", source=SourceInfo(url="x", mode="online"), stats={})
    for repo in (a, b, plain):
        backups.upload_backup(repo, copied, manifest)
        assert maintenance.verify(repo, manifest.backup_id, read_data=True)["ok"], repo.url
    stored = {repo.url: {p.read_bytes() for p in (tmp_path / name / "blobs").rglob("*") if p.is_file()}
              for repo, name in ((a, "a"), (b, "b"), (plain, "plain"))}
    assert not stored[a.url] & stored[b.url] and not stored[a.url] & stored[plain.url]
    assert all(blob.startswith(b"QBE1") for blob in stored[b.url])
    assert not any(blob.startswith(b"QBE1") for blob in stored[plain.url])
