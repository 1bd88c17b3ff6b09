"""The restorer on a FileDestination in a temp directory (a real store, real files)."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tracemalloc
from pathlib import Path

import pytest
import zstandard

from qilbee_backup.destinations.file import FileDestination
from qilbee_backup.errors import DestinationError, IntegrityError, LockedError, NotFound, UsageError
from qilbee_backup.manifest import FileEntry, Manifest, SourceInfo
from qilbee_backup.backup import backup_directory
from qilbee_backup.repository import Repository, blob_key
from qilbee_backup.restorer import RestoreBlocked, pending_swaps, restore_backup
from tests.files import tree, write

MiB = 1024 * 1024
SOURCE = SourceInfo(url="http://127.0.0.1:7474", server_version="0.9.0", mode="online", snapshot_id="s1")


def siblings(target: Path) -> list[str]:
    """The hidden entries beside the target (a restore's own), apart from its (empty) lock file."""
    return sorted(n for n in os.listdir(target.parent) if n.startswith(".") and not n.endswith(".qilbee-restore.lock"))


@pytest.fixture
def snapshot(tmp_path) -> Path:
    root = tmp_path / "snapshot"
    same = os.urandom(50_000)
    write(root / "000001.sst", os.urandom(300_000), 0o444)
    write(root / "000002.sst", same)
    write(root / "CURRENT", b"MANIFEST-000009\n", 0o600)
    write(root / "LOCK", b"", 0o644)  # an empty file
    write(root / "tools" / "run.sh", b"#!/bin/sh\necho hi\n", 0o755)
    write(root / "archive" / "old" / "copy-of-2.sst", same, 0o640)  # duplicate content, deeper
    write(root / "archive" / "EMPTY-TOO", b"", 0o600)  # duplicate (empty) content
    return root


@pytest.fixture
def repo(tmp_path) -> Repository:
    return Repository(FileDestination(tmp_path / "repo"))


def backup(repo: Repository, root: Path, tmp_path: Path) -> Manifest:
    return backup_directory([repo], root, kind="daily", source=SOURCE, spool=tmp_path / "spool")


def blob_file(repo: Repository, sha: str) -> Path:
    return repo.dest.root / blob_key(sha)


def entry(manifest: Manifest, path: str) -> FileEntry:
    return next(e for e in manifest.files if e.path == path)


# -- round trips -----------------------------------------------------------------------------


def test_round_trip_is_byte_identical_with_modes(repo, snapshot, tmp_path):
    m = backup(repo, snapshot, tmp_path)
    target = tmp_path / "restored"
    seen = []
    result = restore_backup(repo, m, target, progress=lambda files, size: seen.append((files, size)))

    assert tree(target) == tree(snapshot)
    assert (result.backup_id, result.target, result.swap) == (m.backup_id, target, None)
    assert (result.files, result.bytes) == (len(m.files), m.bytes_total) == (7, sum(e.size for e in m.files))
    # Each content fetched once: the two duplicate pairs cost one download each.
    assert result.bytes_downloaded == sum(blob_file(repo, sha).stat().st_size for sha in m.blob_shas())
    assert len(m.blob_shas()) == 5
    assert seen[-1] == (7, m.bytes_total) and sorted(seen) == seen
    assert result.duration_s > 0
    assert siblings(target) == []
    assert result.to_dict()["target"] == str(target) and result.to_dict()["swap"] is None


def test_an_empty_existing_directory_is_simply_replaced(repo, snapshot, tmp_path):
    m = backup(repo, snapshot, tmp_path)
    target = tmp_path / "restored"
    target.mkdir(mode=0o750)
    result = restore_backup(repo, m, target, workers=1)
    assert tree(target) == tree(snapshot) and result.swap is None
    assert stat.S_IMODE(target.stat().st_mode) == 0o750  # the directory's own mode is kept
    assert siblings(target) == []


def test_special_mode_bits_are_not_restored(repo, tmp_path):
    root = tmp_path / "snap"
    write(root / "tool", b"x", 0o4755)
    target = tmp_path / "restored"
    restore_backup(repo, backup(repo, root, tmp_path), target)
    assert stat.S_IMODE((target / "tool").stat().st_mode) == 0o755


# -- damaged repositories --------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda size: zstandard.ZstdCompressor().compress(os.urandom(size)), "content hashes to"),
        (lambda size: zstandard.ZstdCompressor().compress(os.urandom(size + 10)), "larger than the manifest"),
        (lambda size: zstandard.ZstdCompressor().compress(os.urandom(size - 10)), "the manifest says"),
        (lambda size: os.urandom(size // 3), "not a valid zstd stream"),
    ],
    ids=["other-bytes", "longer", "shorter", "garbage"],
)
def test_a_damaged_blob_fails_naming_the_file_and_leaves_nothing(repo, snapshot, tmp_path, damage, message):
    m = backup(repo, snapshot, tmp_path)
    victim = entry(m, "000001.sst")
    blob_file(repo, victim.sha256).write_bytes(damage(victim.size))
    target = tmp_path / "restored"

    with pytest.raises(IntegrityError) as caught:
        restore_backup(repo, m, target)
    text = str(caught.value)
    assert f"backup {m.backup_id}" in text and "000001.sst" in text and message in text and "\n" not in text
    assert not target.exists() and siblings(target) == []


def test_a_missing_blob_fails_naming_the_file(repo, snapshot, tmp_path):
    m = backup(repo, snapshot, tmp_path)
    blob_file(repo, entry(m, "CURRENT").sha256).unlink()
    target = tmp_path / "restored"
    with pytest.raises(NotFound, match=rf"backup {m.backup_id} failed at CURRENT: .*no such object"):
        restore_backup(repo, m, target)
    assert not target.exists() and siblings(target) == []


class FlakyDestination(FileDestination):
    """A local store whose first read of each blob breaks off half way (a dropped connection)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.broken: set[str] = set()

    def open_read(self, key):
        reader = super().open_read(key)
        if key.startswith("blobs/") and key not in self.broken:
            self.broken.add(key)
            return _BreaksOff(reader, key)
        return reader


class _BreaksOff:
    def __init__(self, reader, key) -> None:
        self._reader, self._key, self._given = reader, key, 0

    def read(self, n=-1):
        if self._given > 0:
            raise DestinationError(f"{self._key}: GetObject failed: connection reset")
        data = self._reader.read(max(1, min(n, 1000)) if n and n > 0 else 1000)
        self._given += len(data)
        return data

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._reader.close()


def test_a_transfer_that_breaks_off_is_fetched_again(snapshot, tmp_path, monkeypatch):
    monkeypatch.setattr("qilbee_backup.blobs.RETRY_PAUSE", 0.0)
    repo = Repository(FlakyDestination(tmp_path / "repo"))
    m = backup(repo, snapshot, tmp_path)
    target = tmp_path / "restored"
    result = restore_backup(repo, m, target)
    assert tree(target) == tree(snapshot)
    assert len(repo.dest.broken) == len(m.blob_shas())
    assert result.bytes_downloaded == sum(blob_file(repo, sha).stat().st_size for sha in m.blob_shas())


# -- paths that would leave the target --------------------------------------------------------


@pytest.mark.parametrize("bad", ["../escaped", "/tmp/abs", "a\\b", "a/../../escaped", "./a", "a//b", "a/./b", ""])
def test_unsafe_paths_are_refused_even_without_manifest_validation(repo, snapshot, tmp_path, bad):
    m = backup(repo, snapshot, tmp_path)
    good = m.files[0]
    evil = FileEntry.model_construct(path=bad, size=good.size, mode=0o644, sha256=good.sha256, stored_size=good.stored_size)
    forged = Manifest.model_construct(**{**dict(m), "files": [*m.files, evil]})
    target = tmp_path / "area" / "restored"
    with pytest.raises(IntegrityError) as caught:
        restore_backup(repo, forged, target)
    assert repr(bad) in str(caught.value) and m.backup_id in str(caught.value)
    assert not (tmp_path / "area").exists() and not (tmp_path / "escaped").exists()


def test_a_file_that_is_also_a_directory_is_refused(repo, snapshot, tmp_path):
    m = backup(repo, snapshot, tmp_path)
    good = m.files[0]
    clash = FileEntry.model_construct(path="tools", size=good.size, mode=0o644, sha256=good.sha256)
    forged = Manifest.model_construct(**{**dict(m), "files": [*m.files, clash]})
    with pytest.raises(IntegrityError, match="'tools' is both a file and a directory"):
        restore_backup(repo, forged, tmp_path / "restored")


def test_a_symlinked_parent_planted_in_the_temporary_tree_is_not_followed(repo, tmp_path):
    root = tmp_path / "snap"
    write(root / "big.sst", os.urandom(200_000))  # restored first (largest first), one worker
    write(root / "sub" / "x", b"secret")
    m = backup(repo, root, tmp_path)
    target = tmp_path / "restored"
    outside = tmp_path / "outside"
    outside.mkdir()
    temp = tmp_path / f".restored.qilbee-restore-{m.backup_id}"

    def plant(files_done: int, _bytes: int) -> None:
        if files_done == 1:
            assert not (temp / "sub").exists()
            (temp / "sub").symlink_to(outside)

    with pytest.raises(IntegrityError, match=r"refusing to write 'sub/x': 'sub' is a symlink") as caught:
        restore_backup(repo, m, target, workers=1, progress=plant)
    assert "sub/x" in str(caught.value) and m.backup_id in str(caught.value)
    assert list(outside.iterdir()) == []
    assert not target.exists() and siblings(target) == []


# -- replacing an existing instance ----------------------------------------------------------


@pytest.fixture
def old_data(tmp_path) -> Path:
    target = tmp_path / "data"
    write(target / "000777.sst", os.urandom(40_000), 0o444)
    write(target / "CURRENT", b"MANIFEST-000001\n", 0o600)
    write(target / "deep" / "er" / "file", b"old", 0o640)
    os.chmod(target, 0o700)
    return target


def test_a_directory_holding_data_is_refused_without_replace_existing(repo, snapshot, tmp_path, old_data):
    m = backup(repo, snapshot, tmp_path)
    before = tree(old_data)
    with pytest.raises(RestoreBlocked, match="target .* holds data; ") as caught:
        restore_backup(repo, m, old_data)
    assert isinstance(caught.value, UsageError) and caught.value.exit_code == 2
    assert tree(old_data) == before and siblings(old_data) == []


def test_swap_then_commit_deletes_the_old_data(repo, snapshot, tmp_path, old_data):
    m = backup(repo, snapshot, tmp_path)
    before = tree(old_data)
    result = restore_backup(repo, m, old_data, replace_existing=True)
    swap = result.swap
    assert swap is not None and swap.state == "pending"
    assert swap.previous == tmp_path / f".data.qilbee-previous-{m.backup_id}"
    assert tree(old_data) == tree(snapshot) and tree(swap.previous) == before
    assert stat.S_IMODE(old_data.stat().st_mode) == 0o700  # the instance directory keeps its mode
    assert pending_swaps(old_data) == [swap]
    # Undecided, the swap blocks further restores into the target.
    with pytest.raises(RestoreBlocked, match=str(swap.previous)):
        restore_backup(repo, m, old_data, replace_existing=True)

    swap.commit()
    assert swap.state == "committed" and not swap.previous.exists()
    assert tree(old_data) == tree(snapshot)
    assert siblings(old_data) == [] and pending_swaps(old_data) == []
    with pytest.raises(UsageError):
        swap.rollback()


def test_swap_then_rollback_puts_the_old_data_back_exactly(repo, snapshot, tmp_path, old_data):
    m = backup(repo, snapshot, tmp_path)
    before = tree(old_data)
    swap = restore_backup(repo, m, old_data, replace_existing=True).swap
    (old_data / "written-by-the-restored-instance").write_bytes(b"x")

    swap.rollback()
    assert swap.state == "rolled_back"
    assert tree(old_data) == before and stat.S_IMODE(old_data.stat().st_mode) == 0o700
    assert siblings(old_data) == []
    with pytest.raises(UsageError):
        swap.commit()


def test_a_failure_half_way_leaves_the_old_data_in_place(repo, snapshot, tmp_path, old_data):
    m = backup(repo, snapshot, tmp_path)
    # Largest contents go first, so the smallest ones (CURRENT) are among the last fetched.
    blob_file(repo, entry(m, "CURRENT").sha256).unlink()
    before = tree(old_data)
    seen = []
    with pytest.raises(NotFound, match="CURRENT"):
        restore_backup(repo, m, old_data, replace_existing=True, workers=1, progress=lambda *done: seen.append(done))
    assert seen and seen[-1][1] > 300_000  # the large files were written before the failure
    assert tree(old_data) == before
    assert siblings(old_data) == []


def test_a_leftover_previous_directory_is_refused_and_can_be_rolled_back(repo, snapshot, tmp_path, old_data):
    """The process died between the two renames: the old data sits aside and the target is gone."""
    m = backup(repo, snapshot, tmp_path)
    before = tree(old_data)
    leftover = tmp_path / ".data.qilbee-previous-20240101T000000Z-abcdef"
    old_data.rename(leftover)

    with pytest.raises(RestoreBlocked, match=str(leftover)) as caught:
        restore_backup(repo, m, old_data, replace_existing=True)
    assert "\n" not in str(caught.value)
    assert tree(leftover) == before and not old_data.exists()

    (swap,) = pending_swaps(old_data)
    assert swap.previous == leftover and swap.backup_id == "20240101T000000Z-abcdef"
    swap.rollback()
    assert tree(old_data) == before and not leftover.exists()


def test_a_temporary_directory_left_by_a_killed_run_is_cleared(repo, snapshot, tmp_path):
    m = backup(repo, snapshot, tmp_path)
    target = tmp_path / "restored"
    stale = tmp_path / f".restored.qilbee-restore-{m.backup_id}"
    write(stale / "000001.sst", b"half")
    restore_backup(repo, m, target)
    assert tree(target) == tree(snapshot) and not stale.exists()


def test_a_second_restore_into_the_same_target_is_locked_out(repo, snapshot, tmp_path):
    m = backup(repo, snapshot, tmp_path)
    target = tmp_path / "restored"
    with open(tmp_path / ".restored.qilbee-restore.lock", "w") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(LockedError, match="another restore into"):
            restore_backup(repo, m, target)
    assert not target.exists()


# -- memory ----------------------------------------------------------------------------------


def test_memory_stays_flat_for_a_large_file(repo, tmp_path):
    root = tmp_path / "snap"
    root.mkdir()
    with open(root / "big.sst", "wb") as f:
        for _ in range(64):
            f.write(os.urandom(MiB // 2) + bytes(MiB // 2))  # half compressible, like SSTs
    m = backup(repo, root, tmp_path)
    target = tmp_path / "restored"

    tracemalloc.start()
    try:
        result = restore_backup(repo, m, target)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.bytes == 64 * MiB
    print(f"restore of 64 MiB: tracemalloc peak {peak / MiB:.2f} MiB")
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"
    assert tree(target) == tree(root)


@pytest.mark.parametrize("kernel_copy", [True, False], ids=["copy_file_range", "read-write-fallback"])
def test_many_files_sharing_one_content_are_fetched_once_and_copied(repo, tmp_path, monkeypatch, kernel_copy):
    root = tmp_path / "snap"
    shared = os.urandom(300_000)
    for i in range(60):
        write(root / f"d{i % 3}" / f"copy-{i:02d}.sst", shared, 0o600 if i % 2 else 0o644)
        write(root / "empty" / f"e{i:02d}", b"")
    m = backup(repo, root, tmp_path)
    if not kernel_copy:
        def no_kernel_copy(*args):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        monkeypatch.setattr(os, "copy_file_range", no_kernel_copy)
    target = tmp_path / "restored"
    result = restore_backup(repo, m, target, workers=2)
    assert tree(target) == tree(root) and result.files == 120
    assert result.bytes_downloaded == sum(blob_file(repo, sha).stat().st_size for sha in m.blob_shas())
