"""The repository format and the checker on a FileDestination in a temp directory (a real store)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import zstandard

from qilbee_backup.checker import verify_backup, verify_repository
from qilbee_backup.destinations.file import FileDestination
from qilbee_backup.errors import DestinationError, IntegrityError, LockedError, NotFound, UsageError
from qilbee_backup.manifest import SourceInfo
from qilbee_backup.backup import backup_directory
from qilbee_backup.repository import (
    BackupExists,
    LockInfo,
    Repository,
    blob_key,
    source_key_for,
)
from tests.files import write

UTC = timezone.utc
SOURCE = SourceInfo(url="http://127.0.0.1:7474", server_version="0.9.0", mode="online", snapshot_id="s1")
STATS = {"graphs": [{"name": "g", "nodeCount": 3, "relationshipCount": 2}], "totals": {"nodeCount": 3, "relationshipCount": 2}}


@pytest.fixture
def snapshot(tmp_path) -> Path:
    root = tmp_path / "snapshot"
    for i in range(6):
        write(root / f"{i:06d}.sst", os.urandom(20_000 + i))
    write(root / "CURRENT", b"MANIFEST-000009\n")
    write(root / "dup" / "same.sst", (root / "000000.sst").read_bytes())
    return root


@pytest.fixture
def repo(tmp_path) -> Repository:
    return Repository(FileDestination(tmp_path / "repo"))


class Uploads:
    """Counts the blobs each run puts (on_upload), and can fail after a number of them."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.puts: list[tuple[str, str]] = []
        self.fail_after = fail_after
        self._lock = threading.Lock()

    def __call__(self, repo: Repository, sha: str, size: int) -> None:
        with self._lock:
            self.puts.append((repo.url, sha))
            if self.fail_after is not None and len(self.puts) >= self.fail_after:
                raise RuntimeError("simulated crash in the middle of the upload")


def backup(repos, root, tmp_path, *, kind="daily", now=None, uploads=None, upload_workers=4):
    return backup_directory(
        repos if isinstance(repos, list) else [repos], root, kind=kind, source=SOURCE, stats=STATS,
        spool=tmp_path / "spool", now=now, on_upload=uploads, upload_workers=upload_workers,
    )


def test_init_is_idempotent_and_refuses_a_foreign_config(repo, tmp_path):
    first = repo.init()
    assert first["format"] == "qilbee-backup" and first["version"] == 2
    assert repo.init() == first
    other = Repository(FileDestination(tmp_path / "other"))
    write(tmp_path / "other" / "config.json", json.dumps({"format": "restic"}).encode())
    with pytest.raises(IntegrityError, match="not a qilbee-backup repository"):
        other.init()
    with pytest.raises(NotFound, match="not a qilbee-backup repository"):
        Repository(FileDestination(tmp_path / "empty")).config()


def test_backup_stores_blobs_by_content_and_commits_a_manifest(repo, snapshot, tmp_path):
    uploads = Uploads()
    m = backup(repo, snapshot, tmp_path, uploads=uploads)
    assert len(m.files) == 8 and len(m.blob_shas()) == 7
    assert len(uploads.puts) == 7  # the duplicate content went up once
    keys = {info.key for info in repo.dest.list("")}
    stored = (tmp_path / "repo" / next(k for k in keys if k.startswith("backups/"))).read_bytes()
    sealed = f"backups/{m.backup_id}.{hashlib.sha256(stored).hexdigest()}.json"
    assert keys == {"config.json", sealed} | {blob_key(sha) for sha in m.blob_shas()}
    for entry in m.files:
        blob = (tmp_path / "repo" / blob_key(entry.sha256)).read_bytes()
        assert len(blob) == entry.stored_size
        assert zstandard.ZstdDecompressor().decompress(blob) == (snapshot / entry.path).read_bytes()
    assert repo.load(m.backup_id) == m
    assert repo.load("latest") == m
    assert m.stats == STATS and m.source.mode == "online" and not (tmp_path / "spool").exists() or not any((tmp_path / "spool").iterdir())


def test_second_backup_uploads_only_new_content(repo, snapshot, tmp_path):
    t0 = datetime(2026, 11, 25, 2, tzinfo=UTC)
    backup(repo, snapshot, tmp_path, now=t0)
    again = Uploads()
    backup(repo, snapshot, tmp_path, now=t0 + timedelta(days=1), uploads=again)
    assert again.puts == []
    write(snapshot / "000099.sst", b"a new table file")
    one_more = Uploads()
    m3 = backup(repo, snapshot, tmp_path, now=t0 + timedelta(days=2), uploads=one_more)
    assert one_more.puts == [(repo.url, hashlib.sha256(b"a new table file").hexdigest())]
    assert [b.backup_id for b in repo.list_backups()][-1] == m3.backup_id and len(repo.list_backups()) == 3


def test_an_interrupted_backup_leaves_no_manifest_and_the_next_run_reuses_its_blobs(repo, snapshot, tmp_path):
    for i in range(12):
        write(snapshot / "more" / f"{i:06d}.sst", os.urandom(5_000))
    crash = Uploads(fail_after=9)  # of 19 blobs
    with pytest.raises(RuntimeError, match="simulated crash"):
        backup(repo, snapshot, tmp_path, uploads=crash, upload_workers=2)
    assert repo.backup_ids() == []
    assert repo.list_backups() == []
    stored_before = set(repo.blob_sizes())
    # The copy stops sending at its first failure (at most one put in flight beside it), then the
    # upload step tries the rest again and stops the same way: never all 19.
    assert 9 <= len(stored_before) <= 12
    assert not any((tmp_path / "spool").iterdir())  # no staged blob left behind

    rerun = Uploads()
    m = backup(repo, snapshot, tmp_path, uploads=rerun)
    assert {sha for _, sha in rerun.puts} == m.blob_shas() - stored_before
    assert verify_backup(repo, m, read_data=True).ok


def test_fan_out_uploads_to_each_repository_what_it_lacks(tmp_path, snapshot):
    a = Repository(FileDestination(tmp_path / "a"))
    b = Repository(FileDestination(tmp_path / "b"))
    backup(a, snapshot, tmp_path)
    write(snapshot / "new.sst", b"only in the second run")
    uploads = Uploads()
    m = backup([a, b], snapshot, tmp_path, uploads=uploads)
    per_repo = {url: sum(1 for u, _ in uploads.puts if u == url) for url in (a.url, b.url)}
    assert per_repo == {a.url: 1, b.url: 8}
    assert a.load(m.backup_id) == b.load(m.backup_id)
    assert verify_backup(b, b.load("latest"), read_data=True).ok


def test_latest_by_kind_and_clear_not_found_errors(repo, snapshot, tmp_path):
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    daily1 = backup(repo, snapshot, tmp_path, kind="daily", now=t0)
    weekly = backup(repo, snapshot, tmp_path, kind="weekly", now=t0 + timedelta(hours=1))
    daily2 = backup(repo, snapshot, tmp_path, kind="daily", now=t0 + timedelta(hours=2))
    assert repo.load("latest", kind="weekly").backup_id == weekly.backup_id
    assert repo.load("latest").backup_id == daily2.backup_id
    assert [m.backup_id for m in repo.list_backups("daily")] == [daily1.backup_id, daily2.backup_id]
    with pytest.raises(NotFound, match="no monthly backups in"):
        repo.load("latest", kind="monthly")
    with pytest.raises(NotFound, match="backup 20200101T000000Z-abcdef not found"):
        repo.load("20200101T000000Z-abcdef")
    with pytest.raises(UsageError):
        repo.load("../config")


def test_write_manifest_is_the_commit_point_and_checks_the_blobs(repo, snapshot, tmp_path):
    m = backup(repo, snapshot, tmp_path)
    repo.write_manifest(m)  # the same bytes again: a retry whose first answer was lost, committed once
    assert repo.backup_ids() == [m.backup_id] and len(list(repo.dest.list("backups/"))) == 1
    with pytest.raises(BackupExists):
        repo.write_manifest(m.model_copy(update={"kind": "other"}))  # another manifest under the same id
    missing = m.model_copy(update={"backup_id": "20300101T000000Z-000001"})
    repo.dest.remove(blob_key(m.files[0].sha256))
    with pytest.raises(IntegrityError, match="is missing"):
        repo.write_manifest(missing)
    assert "20300101T000000Z-000001" not in repo.backup_ids()


def test_remove_backup(repo, snapshot, tmp_path):
    m = backup(repo, snapshot, tmp_path)
    repo.remove_backup(m.backup_id)
    assert repo.backup_ids() == []
    with pytest.raises(NotFound):
        repo.remove_backup(m.backup_id)
    repo.remove_backup(m.backup_id, missing_ok=True)


def manifest_path(tmp_path: Path, backup_id: str) -> Path:
    (path,) = (tmp_path / "repo" / "backups").glob(f"{backup_id}.*json")
    return path


def test_a_damaged_manifest_is_skipped_and_named_never_in_the_way(repo, snapshot, tmp_path):
    old = backup(repo, snapshot, tmp_path, now=datetime(2026, 11, 1, tzinfo=UTC))
    new = backup(repo, snapshot, tmp_path, now=datetime(2026, 11, 2, tzinfo=UTC))
    write(tmp_path / "repo" / "backups" / "notes.json", b"{}")  # not a manifest name: ignored
    assert repo.backup_ids() == [old.backup_id, new.backup_id]
    damaged = manifest_path(tmp_path, old.backup_id)
    damaged.write_bytes(damaged.read_bytes()[:100])  # truncated: the OLDEST one
    catalog = repo.catalog()
    assert [m.backup_id for m in catalog.backups] == [new.backup_id]
    assert [d.backup_id for d in catalog.damaged] == [old.backup_id]
    assert old.backup_id in catalog.damaged[0].reason and "\n" not in catalog.damaged[0].reason
    assert repo.list_backups() == [new] and repo.load("latest") == new and repo.load(new.backup_id) == new
    with pytest.raises(IntegrityError, match=old.backup_id):
        repo.load(old.backup_id)
    with pytest.raises(IntegrityError, match="damaged"):
        repo.sweep(grace=timedelta(0))  # it cannot know what the broken one references
    # The newest damaged: latest is the older one.
    damaged.unlink()
    backup(repo, snapshot, tmp_path, now=datetime(2026, 11, 1, tzinfo=UTC))
    path = manifest_path(tmp_path, new.backup_id)
    path.write_bytes(b"{broken")
    assert repo.load("latest").created_at == datetime(2026, 11, 1, tzinfo=UTC)


def test_an_edited_manifest_is_damaged_not_restored_short(repo, snapshot, tmp_path):
    m = backup(repo, snapshot, tmp_path)
    path = manifest_path(tmp_path, m.backup_id)
    raw = json.loads(path.read_bytes())
    dropped = raw["files"].pop()
    raw["bytes_total"] -= dropped["size"]
    path.write_bytes(json.dumps(raw, indent=1).encode())  # valid, consistent, but not what was committed
    (damaged,) = repo.catalog().damaged
    assert "does not match the digest in its name" in damaged.reason
    with pytest.raises(IntegrityError, match="does not match the digest"):
        repo.load(m.backup_id)
    report = verify_repository(repo)
    assert not report.ok and report.damaged == [m.backup_id]


def test_two_manifests_for_one_id_are_both_damaged(repo, snapshot, tmp_path):
    m = backup(repo, snapshot, tmp_path)
    path = manifest_path(tmp_path, m.backup_id)
    data = path.read_bytes().replace(b'"kind": "daily"', b'"kind": "other"')
    write(path.parent / f"{m.backup_id}.{hashlib.sha256(data).hexdigest()}.json", data)
    (damaged,) = repo.catalog().damaged
    assert "2 manifests claim backup" in damaged.reason and repo.list_backups() == []


def test_a_version_1_repository_is_read_and_upgraded_by_the_next_write(repo, snapshot, tmp_path):
    m = backup(repo, snapshot, tmp_path, now=datetime(2026, 11, 1, tzinfo=UTC))
    path = manifest_path(tmp_path, m.backup_id)
    raw = json.loads(path.read_bytes())
    raw["format_version"] = 1
    del raw["source"]["name"]
    path.unlink()
    write(path.parent / f"{m.backup_id}.json", json.dumps(raw).encode())  # the version 1 name and format
    write(tmp_path / "repo" / "config.json", json.dumps({"format": "qilbee-backup", "version": 1,
                                                          "created_at": "2026-01-01T00:00:00+00:00"}).encode())
    assert repo.config()["version"] == 1
    assert [b.backup_id for b in repo.list_backups()] == [m.backup_id]
    assert repo.list_backups()[0].series == ("127.0.0.1-7474", "daily")
    assert verify_repository(repo, read_data=True).ok
    backup(repo, snapshot, tmp_path, now=datetime(2026, 11, 2, tzinfo=UTC))
    assert repo.config() == {"format": "qilbee-backup", "version": 2, "created_at": "2026-01-01T00:00:00+00:00"}
    assert len(repo.list_backups()) == 2
    repo.remove_backup(m.backup_id)
    assert not (path.parent / f"{m.backup_id}.json").exists()


def test_an_oversized_manifest_is_damaged_without_being_read(repo, snapshot, tmp_path, monkeypatch):
    import qilbee_backup.repository as repository

    m = backup(repo, snapshot, tmp_path)
    monkeypatch.setattr(repository, "MAX_MANIFEST_BYTES", 100)
    (damaged,) = repo.catalog().damaged
    assert damaged.backup_id == m.backup_id and "over the 100 byte limit" in damaged.reason


def test_sweep_removes_only_unreferenced_blobs_older_than_the_grace(repo, snapshot, tmp_path):
    keep = backup(repo, snapshot, tmp_path)
    write(snapshot / "gone.sst", b"referenced only by the backup we forget")
    forgotten = backup(repo, snapshot, tmp_path)
    repo.remove_backup(forgotten.backup_id)
    orphan = hashlib.sha256(b"referenced only by the backup we forget").hexdigest()

    assert repo.sweep(grace=timedelta(hours=1)).removed == []  # just written: in its grace period
    later = datetime.now(UTC) + timedelta(hours=2)
    assert repo.sweep(grace=timedelta(hours=1), now=later, dry_run=True).removed == [orphan]
    assert orphan in repo.blob_sizes()
    swept = repo.sweep(grace=timedelta(hours=1), now=later)
    assert (swept.removed, swept.locked) == ([orphan], {})  # a directory locks nothing
    assert set(repo.blob_sizes()) == keep.blob_shas()
    assert verify_backup(repo, keep).ok
    # An explicit reference set is honoured too (the caller may know of in-flight work).
    assert repo.sweep(keep.blob_shas(), timedelta(0), later).removed == []


# -- locks ----------------------------------------------------------------------------------


def test_a_held_lock_refuses_a_second_run_with_one_line(repo):
    with repo.lock("db1", owner="backup daily") as held:
        with pytest.raises(LockedError) as caught:
            with repo.lock("db1", owner="backup adhoc"):
                pass
        message = str(caught.value)
        assert "backup daily" in message and "until" in message and "\n" not in message
        with repo.lock("db2", owner="another source"):
            pass
        assert held.info.owner == "backup daily"
    with repo.lock("db1", owner="after release"):
        pass
    assert list(repo.dest.list("locks/")) == []


def test_waiting_for_a_lock_takes_it_when_released(repo):
    got = threading.Event()
    release = threading.Event()

    def holder():
        with repo.lock("db", owner="first"):
            got.set()
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    got.wait(5)
    threading.Timer(0.3, release.set).start()
    with repo.lock("db", owner="second", wait=5, poll=0.05) as lock:
        assert lock.info.owner == "second"
    t.join()
    with repo.lock("db", owner="x"):
        with pytest.raises(LockedError):
            with repo.lock("db", owner="y", wait=0.2, poll=0.05):
                pass


def test_an_expired_lock_is_taken_over_and_the_old_holder_does_not_remove_the_new_lock(repo):
    with repo.lock("db", owner="slow run", ttl=timedelta(milliseconds=1)) as old:
        threading.Event().wait(0.05)
        with repo.lock("db", owner="new run") as new:
            current = LockInfo.from_json(repo.dest.get_bytes("locks/db.json"))
            assert current.token == new.info.token
            with pytest.raises(LockedError, match="lost the lock"):
                old.refresh()
            old.release()  # the old run finishing: must leave the new holder's lock alone
            assert LockInfo.from_json(repo.dest.get_bytes("locks/db.json")).token == new.info.token
    assert list(repo.dest.list("locks/")) == []


def test_racers_for_an_expired_lock_cannot_both_take_it(repo):
    stale = LockInfo("crashed", "h", 1, datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, 1, tzinfo=UTC), "old")
    repo.dest.put_bytes("locks/db.json", stale.to_json())
    start = threading.Barrier(8)
    done = threading.Barrier(8)
    winners, losers = [], []

    def racer(n):
        start.wait()
        try:
            with repo.lock("db", owner=f"racer {n}"):
                winners.append(n)
                done.wait(10)
                return
        except LockedError:
            losers.append(n)
        done.wait(10)

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(winners) == 1 and len(losers) == 7
    assert list(repo.dest.list("locks/")) == []


def test_an_unreadable_lock_does_not_block_forever(repo):
    repo.dest.put_bytes("locks/db.json", b"garbage")
    with repo.lock("db", owner="me") as lock:
        assert LockInfo.from_json(repo.dest.get_bytes("locks/db.json")).token == lock.info.token


class FlakyDestination(FileDestination):
    """A real directory store whose answers can be lost: `lose_put` stores the bytes and then fails
    (a 500 after the store handled it, a dropped connection); `fail_remove` refuses deletes."""

    lose_put: str | None = None
    fail_remove: str | None = None

    def put_bytes(self, key, data, **kw):
        stored = super().put_bytes(key, data, **kw)
        if self.lose_put and key.startswith(self.lose_put):
            self.lose_put = None
            raise DestinationError(f"{key}: connection dropped after the request was sent")
        return stored

    def remove(self, key):
        if self.fail_remove and key.startswith(self.fail_remove):
            raise DestinationError(f"{key}: 503 Slow Down")
        super().remove(key)


def test_a_lock_whose_put_answer_was_lost_is_recognised_as_ours(tmp_path):
    dest = FlakyDestination(tmp_path / "repo")
    repo = Repository(dest)
    dest.lose_put = "locks/"
    with repo.lock("db", owner="me") as held:
        assert LockInfo.from_json(dest.get_bytes("locks/db.json")).token == held.info.token
    assert list(dest.list("locks/")) == []


def test_a_failed_lock_release_is_a_warning_and_never_replaces_the_outcome(tmp_path, caplog):
    dest = FlakyDestination(tmp_path / "repo")
    repo = Repository(dest)
    dest.fail_remove = "locks/"
    with repo.lock("db", owner="me"):
        done = "committed"
    assert done == "committed"  # the work under the lock stands
    assert "could not release lock locks/db.json" in caplog.text and "lapses at" in caplog.text
    with pytest.raises(NotFound, match="the real cause"):
        with repo.lock("db2", owner="me"):
            raise NotFound("the real cause")


def test_taking_over_a_dead_holders_lock_says_so(repo, caplog):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    now = datetime.now(UTC)
    stale = LockInfo("killed run", socket.gethostname(), int(dead.stdout), now, now + timedelta(hours=6), "t0")
    repo.dest.put_bytes("locks/db.json", stale.to_json())
    with repo.lock("db", owner="next run"):
        pass
    assert "its holder is dead" in caplog.text and "expired" not in caplog.text


def test_a_commit_that_finds_a_reused_blob_swept_sends_it_again(repo, snapshot, tmp_path):
    """A prune sweeps a blob between this backup's plan and its commit: the commit re-plans."""
    first = backup(repo, snapshot, tmp_path)
    victim = next(iter(first.blob_shas()))
    repo.remove_backup(first.backup_id)
    write(snapshot / "new.sst", b"something new" * 1000)

    swept = []

    def racing_sweep(r, sha, size):  # runs inside the upload, after the plan was made
        if not swept:
            swept.append(victim)
            repo.dest.remove(blob_key(victim))

    second = backup(repo, snapshot, tmp_path, uploads=racing_sweep)
    assert swept and victim in second.blob_shas() and victim in repo.blob_sizes()
    assert verify_backup(repo, repo.load(second.backup_id), read_data=True).ok


def test_lock_names_are_checked_and_derived_from_source_urls(repo):
    with pytest.raises(UsageError):
        with repo.lock("../escape", owner="x"):
            pass
    key = source_key_for("http://admin:pw@127.0.0.1:7474")
    assert key.startswith("127.0.0.1-7474-") and "pw" not in key
    assert key != source_key_for("http://127.0.0.1:7475")
    with repo.lock(key, owner="x"):
        pass


# -- checker ---------------------------------------------------------------------------------


def test_verify_passes_a_sound_backup(repo, snapshot, tmp_path):
    m = backup(repo, snapshot, tmp_path)
    quick = verify_backup(repo, m)
    assert quick.ok and quick.checked_files == 8 and quick.checked_bytes == m.bytes_total and quick.read_bytes == 0
    full = verify_backup(repo, m, read_data=True)
    assert full.ok and full.read_bytes == sum(repo.blob_sizes().values())
    assert "ok" in full.summary()


def test_verify_names_every_file_of_a_missing_blob(repo, snapshot, tmp_path):
    m = backup(repo, snapshot, tmp_path)
    shared = next(e.sha256 for e in m.files if e.path == "dup/same.sst")
    repo.dest.remove(blob_key(shared))
    report = verify_backup(repo, m)
    assert not report.ok
    assert {(p.path, p.reason) for p in report.problems} == {("000000.sst", "missing"), ("dup/same.sst", "missing")}
    assert m.backup_id in report.summary() and "dup/same.sst" in report.summary()


def test_verify_finds_wrong_sizes_bad_checksums_and_undecodable_blobs(repo, snapshot, tmp_path):
    m = backup(repo, snapshot, tmp_path)
    by_path = {e.path: e for e in m.files}
    blobs = tmp_path / "repo"
    # Same size, other content: only reading the data can tell.
    other = zstandard.ZstdCompressor().compress(b"other content")
    sst1 = by_path["000001.sst"]
    (blobs / blob_key(sst1.sha256)).write_bytes(other)
    # Garbage of the right stored size.
    sst2 = by_path["000002.sst"]
    (blobs / blob_key(sst2.sha256)).write_bytes(b"\0" * sst2.stored_size)
    # A truncated blob.
    current = by_path["CURRENT"]
    path = blobs / blob_key(current.sha256)
    path.write_bytes(path.read_bytes()[:-3])

    quick = {p.path: p.reason for p in verify_backup(repo, m).problems}
    assert set(quick) == {"000001.sst", "CURRENT"}
    assert quick["000001.sst"].startswith("wrong size: stored") and quick["CURRENT"].startswith("wrong size")

    full = {p.path: p.reason for p in verify_backup(repo, m, read_data=True).problems}
    assert set(full) == {"000001.sst", "000002.sst", "CURRENT"}
    assert full["000002.sst"].startswith("undecodable")

    # Without stored sizes (say, an older manifest), reading still exposes the swap.
    bare = m.model_copy(update={"files": [e.model_copy(update={"stored_size": None}) for e in m.files]})
    reasons = {p.path: p.reason for p in verify_backup(repo, bare, read_data=True).problems}
    assert reasons["000001.sst"].startswith("bad checksum")


def test_verify_repository_reports_each_damaged_backup_and_reads_each_blob_once(repo, snapshot, tmp_path):
    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    first = backup(repo, snapshot, tmp_path, now=t0)
    write(snapshot / "extra.sst", b"second backup only")
    second = backup(repo, snapshot, tmp_path, now=t0 + timedelta(days=1))
    assert verify_repository(repo, read_data=True).ok

    repo.dest.remove(blob_key(hashlib.sha256(b"second backup only").hexdigest()))
    write(tmp_path / "repo" / "backups" / "20261122T000000Z-0000aa.json", b"not json")
    report = verify_repository(repo, read_data=True)
    assert not report.ok
    assert report.damaged == [second.backup_id, "20261122T000000Z-0000aa"]
    assert [r.ok for r in report.backups] == [True, False, False]
    assert report.backups[0].backup_id == first.backup_id
    assert report.backups[1].problems[0].path == "extra.sst"
    assert report.backups[2].problems[0].reason.startswith("manifest unreadable")
    assert report.backups[1].read_bytes == 0  # every blob it shares with the first was read once, for the first
    assert "damaged" in report.summary()


def test_backup_refuses_a_bad_kind_and_an_empty_snapshot(repo, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no files"):
        backup(repo, tmp_path / "empty", tmp_path)
    write(tmp_path / "one" / "f", b"x")
    with pytest.raises(UsageError, match="bad kind"):
        backup(repo, tmp_path / "one", tmp_path, kind="Daily Backups")
    assert repo.backup_ids() == []
