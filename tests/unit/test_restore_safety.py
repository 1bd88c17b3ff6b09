"""Restores that must not harm: a directory a server uses, hostile or huge manifests, failures at
any point, and undoing a restore whose data failed its check. Real files, real locks held by real
processes, a FileDestination in a temp directory."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import stat
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest
import zstandard

from qilbee_backup.destinations.file import FileDestination
from qilbee_backup.errors import QilbeeBackupError
from qilbee_backup.manifest import FileEntry, Manifest, SourceInfo, new_backup_id
from qilbee_backup.backup import backup_directory
from qilbee_backup.repository import Repository, blob_key
from qilbee_backup.restorer import NoSpace, RestoreBlocked, restore_backup, staged_restore
from tests.files import tree, write

SOURCE = SourceInfo(url="http://127.0.0.1:7474", server_version="0.9.0", mode="online", snapshot_id="s1")
DIR = os.O_RDONLY | os.O_DIRECTORY


def leftovers(target: Path) -> list[str]:
    """What a restore left beside the target, apart from its (empty, kept on purpose) lock file."""
    return sorted(n for n in os.listdir(target.parent) if n.startswith(f".{target.name}.") and not n.endswith(".lock"))


@pytest.fixture
def repo(tmp_path) -> Repository:
    return Repository(FileDestination(tmp_path / "repo"))


@pytest.fixture
def snapshot(tmp_path) -> Path:
    root = tmp_path / "snapshot"
    write(root / "000001.sst", os.urandom(100_000))
    write(root / "CURRENT", b"MANIFEST-000009\n")
    write(root / "snapshots" / "s1" / "000001.sst", os.urandom(1000))
    return root


@pytest.fixture
def manifest(repo, snapshot, tmp_path) -> Manifest:
    return backup_directory([repo], snapshot, kind="daily", source=SOURCE, spool=tmp_path / "spool")


def handmade(repo: Repository, files: dict[str, bytes]) -> Manifest:
    """A valid manifest for these contents, their blobs stored (no source tree: its paths may be too long to have one)."""
    entries = []
    for path, data in files.items():
        sha = hashlib.sha256(data).hexdigest()
        stored = zstandard.ZstdCompressor().compress(data)
        repo.dest.put_bytes(blob_key(sha), stored)
        entries.append(FileEntry(path=path, size=len(data), mode=0o644, sha256=sha, stored_size=len(stored)))
    return Manifest(backup_id=new_backup_id(), kind="adhoc", created_at=datetime.now(timezone.utc), source=SOURCE,
                    files=entries, bytes_total=sum(e.size for e in entries))


def deep_tree(root: Path, depth: int) -> None:
    """root/d/d/.../d/f, depth levels: made relative to each directory, as no absolute path reaches that deep."""
    os.mkdir(root)
    fd = os.open(root, DIR)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", DIR, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    os.close(fd)


@contextmanager
def held_lock(lock_file: Path):
    """Another process holding a POSIX lock on lock_file, as a RocksDB server holds DIR/LOCK."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    code = ("import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.lockf(f, fcntl.LOCK_EX); "
            "print('locked', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock_file)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def locked_by_someone(lock_file: Path) -> bool:
    """Asked from a fresh process, so the answer never depends on this one's own locks."""
    code = ("import fcntl, sys; f = open(sys.argv[1], 'a')\n"
            "try: fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            "except OSError: sys.exit(3)")
    return subprocess.run([sys.executable, "-c", code, str(lock_file)]).returncode == 3


# -- a directory a server uses ------------------------------------------------------------------


@pytest.mark.parametrize("lock_at", ["LOCK", "snapshots/s7/LOCK"])
def test_a_directory_whose_rocksdb_lock_is_held_is_never_restored_into(repo, manifest, tmp_path, lock_at):
    target = tmp_path / "live"
    write(target / "000042.sst", b"served right now")
    with held_lock(target / lock_at) as server:
        before = tree(target)
        with pytest.raises(RestoreBlocked) as caught:
            restore_backup(repo, manifest, target, replace_existing=True)
        assert locked_by_someone(target / lock_at)  # asked about, never taken: the server keeps its lock
    text = str(caught.value)
    assert "\n" not in text and f"process {server.pid}" in text and str(target / lock_at) in text
    assert "stop the server first" in text and "--container" in text
    assert tree(target) == before and leftovers(target) == []
    restore_backup(repo, manifest, target, replace_existing=True).swap.commit()  # once stopped, it restores
    assert tree(target) == tree(tmp_path / "snapshot")


def test_a_lock_this_process_holds_is_seen_and_kept(repo, manifest, tmp_path):
    target = tmp_path / "live"
    write(target / "LOCK", b"")
    fd = os.open(target / "LOCK", os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        with pytest.raises(RestoreBlocked, match=f"process {os.getpid()} holds the RocksDB lock"):
            restore_backup(repo, manifest, target, replace_existing=True)
        # F_GETLK cannot see our own lock and closing a descriptor of the file would drop it.
        assert locked_by_someone(target / "LOCK")
    finally:
        os.close(fd)


def test_the_shared_staging_refuses_before_anything_is_written(manifest, tmp_path):
    target = tmp_path / "live"
    with held_lock(target / "LOCK"):
        with pytest.raises(RestoreBlocked, match="is in use"):
            with staged_restore(target, manifest, replace_existing=True):
                pytest.fail("the archive restore's writer must not run either")
    assert leftovers(target) == []


def test_an_unlocked_lock_file_does_not_block(repo, manifest, tmp_path):
    target = tmp_path / "stopped"
    write(target / "LOCK", b"")  # a server that stopped leaves its LOCK file, unlocked
    result = restore_backup(repo, manifest, target, replace_existing=True)
    assert result.swap is not None
    result.swap.commit()


# -- hostile manifests and failures at any point ------------------------------------------------


@pytest.mark.parametrize("path", ["d/" * 2100 + "f", "x" * 300 + "/f", "f" + "y" * 300],
                         ids=["2100-deep", "long-dir", "long-name"])
def test_a_hostile_manifest_fails_in_one_line_and_leaves_nothing(repo, manifest, tmp_path, path):
    good = manifest.files[0]
    evil = FileEntry.model_construct(path=path, size=good.size, mode=0o644, sha256=good.sha256, stored_size=good.stored_size)
    forged = Manifest.model_construct(**{**dict(manifest), "files": [*manifest.files, evil]})
    target = tmp_path / "restored"
    with pytest.raises(QilbeeBackupError) as caught:
        restore_backup(repo, forged, target)
    text = str(caught.value)
    assert "\n" not in text and manifest.backup_id in text and len(text) < 600
    assert not target.exists() and leftovers(target) == []
    assert tree(restore_backup(repo, manifest, target).target) == tree(tmp_path / "snapshot")


def test_a_deep_leftover_of_a_killed_run_does_not_block_the_next_restore(repo, manifest, tmp_path):
    target = tmp_path / "restored"
    deep_tree(tmp_path / f".restored.qilbee-restore-{manifest.backup_id}", 2100)
    deep_tree(tmp_path / f".restored.qilbee-discard-{manifest.backup_id}", 2100)
    restore_backup(repo, manifest, target)
    assert tree(target) == tree(tmp_path / "snapshot") and leftovers(target) == []


@pytest.mark.parametrize("failure", [KeyboardInterrupt(), MemoryError(), RecursionError("deep"),
                                     OSError(errno.ENAMETOOLONG, "File name too long", "d/d/d/f")],
                         ids=["interrupt", "memory", "recursion", "enametoolong"])
def test_a_failure_deep_in_a_restore_removes_everything_it_wrote(repo, manifest, tmp_path, failure):
    target = tmp_path / "restored"
    with pytest.raises(BaseException) as caught:
        with staged_restore(target, manifest) as staging:
            os.close(staging.create_file("d/" * 2100 + "f"))  # as deep as any writer could go
            raise failure
    if isinstance(failure, OSError):  # one line naming the backup and the path, never a raw OSError
        assert type(caught.value) is QilbeeBackupError
        expected = f"restore of backup {manifest.backup_id} failed at d/d/d/f: File name too long (errno 36)"
        assert str(caught.value) == expected
    else:
        assert caught.value is failure
    assert not target.exists() and leftovers(target) == []
    restore_backup(repo, manifest, target)
    assert tree(target) == tree(tmp_path / "snapshot")


def test_paths_within_the_limits_restore_even_where_the_absolute_path_is_longer_than_path_max(repo, tmp_path):
    long_path = "/".join(f"{i:02d}" + "n" * 248 for i in range(16)) + "/000001.sst"  # 4,028 bytes, 17 levels
    m = handmade(repo, {long_path: b"deep content", "CURRENT": b"MANIFEST-000001\n"})
    target = tmp_path / "restored"
    assert len(str(target / long_path).encode()) > 4096
    restore_backup(repo, m, target)
    fd = os.open(target, DIR)
    try:
        for part in long_path.split("/")[:-1]:
            child = os.open(part, DIR, dir_fd=fd)
            os.close(fd)
            fd = child
        with os.fdopen(os.open("000001.sst", os.O_RDONLY, dir_fd=fd), "rb") as restored:
            assert restored.read() == b"deep content"
    finally:
        os.close(fd)
    # Replacing and committing walk and remove that tree as well.
    restore_backup(repo, m, target, replace_existing=True).swap.commit()
    assert leftovers(target) == []


# -- space ------------------------------------------------------------------------------------------


def test_a_backup_larger_than_the_free_space_is_refused_before_anything_is_written(repo, tmp_path):
    huge = FileEntry(path="000001.sst", size=2**50, mode=0o644, sha256="ab" * 32, stored_size=1)  # no blob needed
    m = Manifest(backup_id=new_backup_id(), kind="adhoc", created_at=datetime.now(timezone.utc), source=SOURCE,
                 files=[huge], bytes_total=2**50)
    target = tmp_path / "restored"
    with pytest.raises(NoSpace) as caught:
        restore_backup(repo, m, target)
    text = str(caught.value)
    needs, free = map(int, re.search(r"no space left on device: needs (\d+) bytes, (\d+) free$", text).groups())
    fs = os.statvfs(tmp_path)
    assert needs > 2**50 and free <= fs.f_blocks * fs.f_frsize and m.backup_id in text and "\n" not in text
    assert not target.exists() and leftovers(target) == []


# -- undoing a restore whose data failed its check ------------------------------------------------


def test_undo_leaves_a_new_target_absent(repo, manifest, tmp_path):
    target = tmp_path / "restored"
    result = restore_backup(repo, manifest, target)
    write(target / "LOCK", b"")  # what a check server leaves
    result.undo()
    assert not target.exists() and leftovers(target) == []


def test_undo_leaves_an_empty_target_empty_with_its_mode(repo, manifest, tmp_path):
    target = tmp_path / "restored"
    target.mkdir(mode=0o750)
    os.chmod(target, 0o750)
    result = restore_backup(repo, manifest, target)
    assert result.swap is None
    result.undo()
    assert target.is_dir() and os.listdir(target) == [] and stat.S_IMODE(target.stat().st_mode) == 0o750
    assert leftovers(target) == []


def test_undo_of_a_replacing_restore_puts_the_old_data_back(repo, manifest, tmp_path):
    target = tmp_path / "restored"
    write(target / "precious.sst", b"the only copy")
    result = restore_backup(repo, manifest, target, replace_existing=True)
    result.undo()
    assert tree(target) == {"precious.sst": (hashlib.sha256(b"the only copy").hexdigest(), 0o644)}
    assert leftovers(target) == []


def test_undo_refuses_while_a_server_uses_the_restored_data(repo, manifest, tmp_path):
    target = tmp_path / "restored"
    result = restore_backup(repo, manifest, target)
    with held_lock(target / "LOCK"):
        with pytest.raises(RestoreBlocked, match="is in use"):
            result.undo()
    assert (target / "CURRENT").is_file()
    result.undo()
    assert not target.exists()

