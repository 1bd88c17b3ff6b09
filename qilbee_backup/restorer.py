"""Restoring a backup into a data directory (restic's ``restorer``, pgBackRest's ``restore``).

Each content the backup names is fetched once (one streaming GET per blob, no ranged reads),
decompressed as it streams into the first file that holds it while its SHA-256 and size are
checked against the manifest, then copied in the kernel to any other file with the same content. A small thread pool overlaps network, decompression, hashing
and disk across files (hashlib, zstd and file I/O release the GIL). Memory stays flat: 1 MiB
buffers, never a whole file.

Everything is written into ``.<name>.qilbee-restore-<backup_id>`` beside the target (same
filesystem), every file and directory fsynced, then renamed into place, so the target is either
untouched or holds the whole, checked backup. Any failure removes the temporary directory and
raises one line naming the backup and the file.

A target that already holds data is replaced only when asked (``replace_existing=True``), in two
phases: the old directory is renamed aside to ``.<name>.qilbee-previous-<backup_id>`` and kept
until ``Swap.commit()`` (after the restored instance passed its checks) or put back by
``Swap.rollback()``. While such a directory exists beside the target (a swap not yet decided, or a
process that died between the two renames) every restore into the target refuses and names it:
a person decides, nothing is deleted.

One restore per target at a time: ``.<name>.qilbee-restore.lock`` beside the target is flock()ed
for the run (and for commit/rollback); the empty lock file is left in place on purpose (deleting
lock files races). Under that lock, temporary and discard directories left by a killed run are
known garbage (they only ever hold copies) and are removed, without recursion, so no depth
blocks the next restore.

A directory a running server uses is never restored into: RocksDB holds a POSIX lock on ``LOCK``
in each database directory, and moving its files under it makes the server serve the old data,
then delete the restored files on shutdown. Every such lock in the target is probed (F_GETLK,
never taken) under the target lock, before anything is moved, and again just before the rename.
Nothing is written unless the filesystem has room for the restored files and a check server.

A restore whose data then fails its checks is undone with ``RestoreResult.undo()``: the previous
data put back (the Swap's rollback), or the target left absent or the empty directory it was.

``staged_restore`` is that machinery on its own (lock, checks, temporary directory, fsync, rename,
Swap): restore_backup fills it from blobs, the archive restore from a tar stream.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait as wait_futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from .datadir import LOCK_FILE
from .fsutil import DIR_FLAGS, fsync_directory, lock_holder, remove_tree
from .errors import IntegrityError, LockedError, QilbeeBackupError, UsageError
from .manifest import BACKUP_ID_RE, SHA256_RE, FileEntry, Manifest, check_relative_path
from .repository import Repository

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
# Room left for the check server on top of the restored files: its MANIFEST, OPTIONS, WAL and info
# logs, and a flush of a restored WAL (a few MiB for a small database; RocksDB fails at open without).
SPACE_MARGIN = 64 * CHUNK
# Special bits are never restored: a data directory needs none, and a tampered repository must
# not be able to plant a setuid file on a host restoring as root.
_MODE_MASK = 0o777
_RESTORE_INFIX = ".qilbee-restore-"
_PREVIOUS_INFIX = ".qilbee-previous-"
_DISCARD_INFIX = ".qilbee-discard-"
_LOCK_SUFFIX = ".qilbee-restore.lock"

Progress = Callable[[int, int], None]


class RestoreBlocked(UsageError):
    """The target's state needs a person: it holds data, a running server uses it, or an earlier swap
    was never decided. Exit 2 like any refusal of the operator's request: nothing was tried."""


class NoSpace(QilbeeBackupError):
    """The target's filesystem cannot hold the restored files: refused before anything is written."""


class _Cancelled(Exception):
    """Another worker failed; this one stops writing."""


# -- results ---------------------------------------------------------------------------------


@dataclass
class Swap:
    """A restored tree in place of older data that is kept aside until someone decides.

    commit(): the restored instance passed its checks; delete the old data.
    rollback(): remove the restored tree and put the old data back exactly as it was.
    """

    target: Path
    previous: Path  # the old data directory, renamed aside
    backup_id: str
    state: str = "pending"  # "pending" | "committed" | "rolled_back"

    def commit(self) -> None:
        if self.state == "committed":
            return
        if self.state == "rolled_back":
            raise UsageError(f"the swap of {self.target} was rolled back; there is nothing to commit")
        with _target_lock(self.target):
            if not self.target.is_dir():
                raise QilbeeBackupError(
                    f"refusing to commit the swap: {self.target} is not a directory; the previous data stays in {self.previous}"
                )
            # Renamed first, so a crash mid-delete leaves a discard directory (garbage by
            # name) rather than a half-deleted "previous" that looks like real data.
            discard = _move_aside(self.previous, self.target, self.backup_id)
            if discard is not None:
                fsync_directory(self.target.parent)
                remove_tree(discard)
        self.state = "committed"
        log.info("swap of %s committed: previous data deleted", self.target)

    def rollback(self) -> None:
        if self.state == "rolled_back":
            return
        if self.state == "committed":
            raise UsageError(f"the swap of {self.target} was committed; the previous data is gone")
        with _target_lock(self.target):
            if not self.previous.is_dir() or self.previous.is_symlink():
                raise QilbeeBackupError(f"cannot roll back the swap of {self.target}: {self.previous} is gone")
            _refuse_in_use(self.target)
            discard = _move_aside(self.target, self.target, self.backup_id)
            os.rename(self.previous, self.target)
            fsync_directory(self.target.parent)
            if discard is not None:
                remove_tree(discard)
        self.state = "rolled_back"
        log.info("swap of %s rolled back: previous data is in place again", self.target)


@dataclass
class RestoreResult:
    backup_id: str
    target: Path
    files: int
    bytes: int  # content bytes written (every file, duplicates included)
    bytes_downloaded: int  # stored (compressed) bytes read from the repository
    duration_s: float
    swap: Swap | None = field(default=None)
    # Without a swap: the target was this empty directory, (mode, uid, gid); None: it did not exist.
    empty_dir: tuple[int, int, int] | None = None

    def undo(self) -> None:
        """Put the target back as it was before this restore (for restored data that failed its
        checks): the previous data (the swap's rollback), else absent or the empty directory it was.
        Refused (RestoreBlocked) while a server still uses the restored data."""
        if self.swap is not None:
            self.swap.rollback()
            return
        with _os_errors_as_failures(self.backup_id, self.target), _target_lock(self.target):
            _refuse_in_use(self.target)
            discard = _move_aside(self.target, self.target, self.backup_id)
            if self.empty_dir is not None:
                _make_empty_dir(self.target, *self.empty_dir)
            fsync_directory(self.target.parent)
            if discard is not None:
                remove_tree(discard)
        log.info("restore of %s into %s undone: the target is as it was before", self.backup_id, self.target)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the CLI's --json)."""
        return {
            "backup_id": self.backup_id,
            "target": str(self.target),
            "files": self.files,
            "bytes": self.bytes,
            "bytes_downloaded": self.bytes_downloaded,
            "duration_s": round(self.duration_s, 3),
            "swap": None if self.swap is None else {"previous": str(self.swap.previous), "state": self.swap.state},
        }


def pending_swaps(target: Path) -> list[Swap]:
    """Swaps into target never committed or rolled back (old data still aside), e.g. after a crash.

    A person (or a flow that knows the restored instance's health) decides with commit()/rollback();
    rollback() also works when the crash came between the two renames and the target is missing.
    """
    target = _absolute(target)
    prefix = f".{target.name}{_PREVIOUS_INFIX}"
    return [
        Swap(target, target.parent / name, name[len(prefix):])
        for name in _siblings_starting(target, prefix)
    ]


# -- the restore -----------------------------------------------------------------------------


def restore_backup(
    repo: Repository,
    manifest: Manifest,
    target: Path,
    *,
    workers: int = 4,
    replace_existing: bool = False,
    progress: Progress | None = None,
) -> RestoreResult:
    """Restore ``manifest``'s backup from ``repo`` into the directory ``target``.

    target may be missing or an empty directory; one that holds data is refused (RestoreBlocked)
    unless replace_existing, which swaps it aside and returns the Swap to commit or roll back. One a
    running server uses is always refused (RestoreBlocked). result.undo() reverts the restore.
    progress(files_done, bytes_done) is called from the worker threads, one call at a time.
    Raises IntegrityError for unsafe paths and content that does not match the manifest, NotFound
    for a missing blob, DestinationError for a store that keeps failing, LockedError when another
    restore into target runs, NoSpace when the files cannot fit; the target is then untouched.
    """
    started = time.monotonic()
    if workers < 1:
        raise UsageError(f"workers must be at least 1, not {workers}")
    with staged_restore(target, manifest, replace_existing=replace_existing) as staging:
        downloaded = _fill(repo, staging, workers, progress)
    checked, swap = staging.plan, staging.swap
    result = RestoreResult(
        checked.backup_id, staging.target, checked.files, checked.bytes, downloaded, time.monotonic() - started, swap,
        staging.empty_dir,
    )
    log.info(
        "restored backup %s into %s: %d files, %d bytes (%d downloaded) in %.1fs%s",
        checked.backup_id, staging.target, checked.files, checked.bytes, downloaded, result.duration_s,
        f"; previous data kept in {swap.previous} until the swap is committed" if swap else "",
    )
    return result


# -- the shared staging: plan, lock, temporary directory, put in place ---------------------


@dataclass(frozen=True)
class RestorePlan:
    """A manifest's files, checked safe to write: grouped by content, largest first."""

    backup_id: str
    groups: dict[str, list[FileEntry]]  # SHA-256 -> every file with that content
    directories: frozenset[str]  # every parent directory the files need ("a", "a/b"; not the root)

    @property
    def files(self) -> int:
        return sum(len(entries) for entries in self.groups.values())

    @property
    def bytes(self) -> int:
        return sum(entries[0].size * len(entries) for entries in self.groups.values())


def plan(manifest: Manifest) -> RestorePlan:
    """Check and group the files to restore (largest content first, so a worker pool ends evenly).

    Re-checks what Manifest validation checks: a manifest built or altered without it must not
    escape the target. IntegrityError names the backup and the first bad entry.
    """
    backup_id = manifest.backup_id
    if not isinstance(backup_id, str) or not BACKUP_ID_RE.fullmatch(backup_id):
        raise IntegrityError(f"refusing to restore: malformed backup id {backup_id!r}")
    files = list(manifest.files)
    if not files:
        raise IntegrityError(f"refusing to restore backup {backup_id}: it names no files")
    groups: dict[str, list[FileEntry]] = {}
    paths: set[str] = set()
    directories: set[str] = set()
    for entry in files:
        try:
            path = safe_path(entry.path)
        except IntegrityError as exc:
            raise IntegrityError(f"refusing to restore backup {backup_id}: {exc}") from None
        if path in paths:
            raise IntegrityError(f"refusing to restore backup {backup_id}: file path {path!r} appears twice")
        paths.add(path)
        parts = path.split("/")
        directories.update("/".join(parts[:i]) for i in range(1, len(parts)))
        if not isinstance(entry.sha256, str) or not SHA256_RE.fullmatch(entry.sha256):
            raise IntegrityError(f"refusing to restore backup {backup_id}: {path!r} has a malformed SHA-256")
        if not isinstance(entry.size, int) or entry.size < 0 or not isinstance(entry.mode, int) or not 0 <= entry.mode <= 0o7777:
            raise IntegrityError(f"refusing to restore backup {backup_id}: {path!r} has a bad size or mode")
        group = groups.setdefault(entry.sha256, [])
        if group and group[0].size != entry.size:
            raise IntegrityError(
                f"refusing to restore backup {backup_id}: {path!r} and {group[0].path!r} share a SHA-256 but not a size"
            )
        group.append(entry)
    clash = sorted(paths & directories)
    if clash:
        raise IntegrityError(f"refusing to restore backup {backup_id}: {clash[0]!r} is both a file and a directory")
    ordered = dict(sorted(groups.items(), key=lambda item: (-item[1][0].size, item[1][0].path)))
    return RestorePlan(backup_id, ordered, frozenset(directories))


def safe_path(path: object) -> str:
    """path itself when it is a normal relative path that stays below the target, else IntegrityError."""
    if not isinstance(path, str):
        raise IntegrityError(f"file path {path!r} is not text")
    try:
        normal = check_relative_path(path)
    except ValueError as exc:
        raise IntegrityError(str(exc)) from None
    root = "/qilbee-restore-root"
    if normal != path or not os.path.normpath(os.path.join(root, path)).startswith(root + "/"):
        raise IntegrityError(f"file path {path!r} would leave the target")
    return path


class Staging:
    """A restore in progress: the private directory beside the target, for the caller to fill.

    Every file goes through create_file and, once written, finish_file. After the ``with`` block
    of staged_restore, ``swap`` is the Swap when data already in the target was moved aside.
    """

    def __init__(self, target: Path, plan: RestorePlan, root_fd: int) -> None:
        self.target = target
        self.plan = plan
        self.swap: Swap | None = None
        self.empty_dir: tuple[int, int, int] | None = None  # see RestoreResult.empty_dir
        self._root_fd = root_fd

    def create_file(self, path: str) -> int:
        """A new file at path (an fd, read-write), parents created; never through a symlink or out of the tree."""
        return _create_file(self._root_fd, path)


@contextmanager
def staged_restore(target: Path | str, manifest: Manifest, *, replace_existing: bool = False) -> Iterator[Staging]:
    """Everything of a restore but the writing: yields a Staging to fill with the manifest's files.

    Before the block: the manifest is checked (plan), the target locked and checked (missing or
    empty; holding data only with replace_existing; no server using it), leftovers of killed runs
    removed, free space checked, the temporary directory made. When the block ends normally every
    directory is fsynced and the tree renamed into place (staging.swap set when old data was moved
    aside, staging.empty_dir when an empty directory was replaced); when anything raises, even
    KeyboardInterrupt, the temporary directory is removed and the target is untouched. An OSError
    comes out as one line naming the backup and the path.
    Raises IntegrityError, RestoreBlocked, LockedError, UsageError, NoSpace as restore_backup does.
    """
    target = _absolute(target)
    checked = plan(manifest)
    with _os_errors_as_failures(checked.backup_id, target):
        target.parent.mkdir(parents=True, exist_ok=True)
        with _target_lock(target):
            _refuse_pending_swaps(target)
            _check_target(target, replace_existing)
            _clear_garbage(target)
            _check_free_space(target, checked)
            temp = _sibling(target, _RESTORE_INFIX, checked.backup_id)
            os.mkdir(temp, 0o700)  # private until complete; given the final mode just before the rename
            try:
                root_fd = os.open(temp, DIR_FLAGS)
                try:
                    staging = Staging(target, checked, root_fd)
                    yield staging
                    _fsync_tree(root_fd, checked)
                finally:
                    os.close(root_fd)
                staging.swap, staging.empty_dir = _put_in_place(temp, target, checked.backup_id, replace_existing)
            except BaseException:
                _remove_after_failure(temp)
                raise


def finish_file(fd: int, mode: int) -> None:
    """Give a written file its mode (no special bits) and make its content durable."""
    os.fchmod(fd, mode & _MODE_MASK)
    os.fsync(fd)


def check_content(entry: FileEntry, size: int, sha256: str) -> None:
    """IntegrityError when what was written is not the manifest's content for entry."""
    if size != entry.size:
        raise IntegrityError(f"content is {size} bytes, the manifest says {entry.size}")
    if sha256 != entry.sha256:
        raise IntegrityError(f"content hashes to {sha256}, the manifest says {entry.sha256}")


# -- fetching and writing --------------------------------------------------------------------


def _fill(repo: Repository, staging: Staging, workers: int, progress: Progress | None) -> int:
    """Fetch every content into the staging; return the stored bytes downloaded. First failure wins."""
    backup_id = staging.plan.backup_id
    cancelled = threading.Event()
    lock = threading.Lock()
    done = {"files": 0, "bytes": 0, "downloaded": 0}

    def restore_one(sha: str, entries: list[FileEntry]) -> None:
        if cancelled.is_set():
            return
        at = [entries[0].path]  # the file being written, for the error message
        try:
            downloaded = _restore_content(repo, staging, sha, entries, cancelled, at)
        except _Cancelled:
            return
        except Exception as exc:
            cancelled.set()
            raise _failure(backup_id, at[0], exc) from exc
        except BaseException:
            cancelled.set()
            raise
        with lock:
            done["files"] += len(entries)
            done["bytes"] += entries[0].size * len(entries)
            done["downloaded"] += downloaded
            if progress is not None:
                progress(done["files"], done["bytes"])

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qilbee-restore")
    try:
        futures = [pool.submit(restore_one, sha, entries) for sha, entries in staging.plan.groups.items()]
        finished, _ = wait_futures(futures, return_when=FIRST_EXCEPTION)
        for future in futures:  # the first failure in submission order among those that failed
            if future in finished and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
    except BaseException:
        cancelled.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return done["downloaded"]


def _failure(backup_id: str, path: str, exc: Exception) -> QilbeeBackupError:
    """One line naming the backup and the file, keeping the error's class (its exit code)."""
    if len(path) > 200:  # a hostile manifest's path: enough of it to find, not kilobytes of it
        path = f"{path[:120]}...{path[-60:]}"
    where = f"restore of backup {backup_id} failed at {path}"
    if isinstance(exc, QilbeeBackupError):
        return type(exc)(f"{where}: {exc}")
    if isinstance(exc, OSError):
        return QilbeeBackupError(f"{where}: {exc.strerror or type(exc).__name__} (errno {exc.errno})")
    return QilbeeBackupError(f"{where}: {type(exc).__name__}: {' '.join(str(exc).split())}")


@contextmanager
def _os_errors_as_failures(backup_id: str, target: Path) -> Iterator[None]:
    """An OSError of the restore's own file work (mkdir, lock, fsync, rename) as one line: the path
    it names (a manifest path when relative to the temporary tree), else the target."""
    try:
        yield
    except OSError as exc:
        path = exc.filename if isinstance(exc.filename, str) and exc.filename else str(target)
        raise _failure(backup_id, path, exc) from None


def _restore_content(
    repo: Repository, staging: Staging, sha: str, entries: list[FileEntry], cancelled: threading.Event, at: list[str]
) -> int:
    """Stream one blob into the first file holding its content, checked, then copy that file to the
    others (one GET per content; two open files at most, however many files share it).
    Returns the stored bytes read."""
    first, expected = entries[0], entries[0].size
    with os.fdopen(staging.create_file(first.path), "w+b", buffering=0) as out:

        def empty_file() -> _LimitedWriter:  # each attempt writes from the start
            out.seek(0)
            out.truncate()
            return _LimitedWriter(out, expected, cancelled)

        got = repo.read_blob(sha, empty_file)
        check_content(first, got.size, got.sha256)
        finish_file(out.fileno(), first.mode)
        for other in entries[1:]:
            if cancelled.is_set():
                raise _Cancelled()
            at[0] = other.path
            with os.fdopen(staging.create_file(other.path), "wb", buffering=0) as copy:
                _copy_file(out.fileno(), copy.fileno(), expected)
                finish_file(copy.fileno(), other.mode)
    return got.stored


def _copy_file(src_fd: int, dst_fd: int, size: int) -> None:
    """Copy a whole file in the kernel (copy_file_range: no data through Python; reflinks where the
    filesystem can), falling back to a 1 MiB read/write loop."""
    offset = 0
    try:
        while offset < size:
            n = os.copy_file_range(src_fd, dst_fd, min(size - offset, 64 * CHUNK), offset, offset)
            if n == 0:
                break
            offset += n
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        while offset < size:
            data = os.pread(src_fd, min(CHUNK, size - offset), offset)
            if not data:
                break
            view = memoryview(data)
            while view:
                view = view[os.pwrite(dst_fd, view, offset + len(data) - len(view)):]
            offset += len(data)
    if offset != size:
        raise IntegrityError(f"copying a restored file stopped at {offset} of {size} bytes")


class _LimitedWriter:
    """Writes through to a file; stops at once when the content outgrows the manifest's size (a
    damaged or hostile blob must not fill the disk) or when another worker has failed."""

    def __init__(self, out: BinaryIO, limit: int, cancelled: threading.Event) -> None:
        self._out = out
        self._limit = limit
        self._cancelled = cancelled
        self.size = 0

    def write(self, data: bytes) -> int:
        if self._cancelled.is_set():
            raise _Cancelled()
        self.size += len(data)
        if self.size > self._limit:
            raise IntegrityError(f"content is larger than the manifest's {self._limit} bytes")
        view = memoryview(data)
        while view:  # raw FileIO may write less than asked
            view = view[self._out.write(view):]
        return len(data)

    def flush(self) -> None:
        pass


def _create_file(root_fd: int, path: str) -> int:
    """A new file at path under root_fd, creating parents; never through a symlink or out of root."""
    *parents, name = path.split("/")
    dir_fd = os.dup(root_fd)
    try:
        for i, part in enumerate(parents):
            try:
                os.mkdir(part, 0o777, dir_fd=dir_fd)
            except FileExistsError:
                pass
            try:
                next_fd = os.open(part, DIR_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise IntegrityError(
                        f"refusing to write {path!r}: {'/'.join(parents[:i + 1])!r} is a symlink or not a directory"
                    ) from None
                raise
            os.close(dir_fd)
            dir_fd = next_fd
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC  # read back for copies
        try:
            return os.open(name, flags, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            raise IntegrityError(f"refusing to write {path!r}: something is already there") from None
    finally:
        os.close(dir_fd)


def _fsync_tree(root_fd: int, checked: RestorePlan) -> None:
    """fsync every directory of the restored tree, deepest first, so each file's name is durable.
    Opened relative to the tree's root: a deep manifest path must not meet PATH_MAX with the target's."""
    for directory in sorted(checked.directories, key=lambda d: (-d.count("/"), -len(d), d)):
        fsync_directory(directory, dir_fd=root_fd)
    os.fsync(root_fd)


# -- the target ------------------------------------------------------------------------------


def _absolute(target: Path | str) -> Path:
    path = Path(os.path.abspath(target))
    if not path.name:
        raise UsageError(f"cannot restore into {path}: give a directory below the filesystem root")
    return path.parent.resolve() / path.name


def _sibling(target: Path, infix: str, backup_id: str) -> Path:
    return target.parent / f".{target.name}{infix}{backup_id}"


def _siblings_starting(target: Path, prefix: str) -> list[str]:
    try:
        return sorted(name for name in os.listdir(target.parent) if name.startswith(prefix))
    except FileNotFoundError:
        return []


@contextmanager
def _target_lock(target: Path) -> Iterator[None]:
    lock_path = target.parent / f".{target.name}{_LOCK_SUFFIX}"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(f"another restore into {target} is running (it holds {lock_path})") from None
        yield
    finally:
        os.close(fd)  # releases the flock


def _refuse_pending_swaps(target: Path) -> None:
    pending = pending_swaps(target)
    if pending:
        raise RestoreBlocked(
            f"{pending[0].previous} holds the data {target} had before an earlier restore, and that swap was never "
            f"committed or rolled back (or the run died between its renames); decide which data to keep "
            f"(rollback puts it back, commit deletes it) before restoring into {target} again"
        )


def _holds_data(target: Path) -> bool:
    with os.scandir(target) as entries:
        return any(True for _ in entries)


def _check_target(target: Path, replace_existing: bool) -> None:
    if not os.path.lexists(target):
        return
    if target.is_symlink():
        raise UsageError(f"target {target} is a symlink; restore into the directory it points at")
    if not target.is_dir():
        raise UsageError(f"target {target} exists and is not a directory")
    if os.path.ismount(target):
        raise UsageError(f"target {target} is a mount point; restore into a directory inside it (renames cannot cross it)")
    _refuse_in_use(target)
    if not replace_existing and _holds_data(target):
        raise RestoreBlocked(
            f"target {target} holds data; restore into an empty or new directory, or replace it "
            f"(replace_existing: the old data is kept aside until the swap is committed)"
        )


def _clear_garbage(target: Path) -> None:
    """Temporary and discard directories of killed runs: they only ever hold copies."""
    for infix in (_RESTORE_INFIX, _DISCARD_INFIX):
        for name in _siblings_starting(target, f".{target.name}{infix}"):
            log.warning("removing %s, left by an interrupted restore", target.parent / name)
            remove_tree(target.parent / name)


def _put_in_place(
    temp: Path, target: Path, backup_id: str, replace_existing: bool
) -> tuple[Swap | None, tuple[int, int, int] | None]:
    """Rename the finished tree to target; move data already there aside first when allowed.
    Returns the Swap (data moved aside) or the (mode, uid, gid) of the empty directory replaced."""
    _check_target(target, replace_existing)  # again: something may have written or started there meanwhile
    if os.path.isdir(target) and _holds_data(target):
        os.chmod(temp, stat.S_IMODE(os.stat(target).st_mode))
        previous = _sibling(target, _PREVIOUS_INFIX, backup_id)
        os.rename(target, previous)
        fsync_directory(target.parent)
        try:
            os.rename(temp, target)
        except BaseException:
            os.rename(previous, target)
            fsync_directory(target.parent)
            raise
        fsync_directory(target.parent)
        return Swap(target, previous, backup_id), None
    empty_dir = None
    if os.path.isdir(target):
        st = os.stat(target)
        empty_dir = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        os.chmod(temp, empty_dir[0])
    else:
        os.chmod(temp, 0o777 & ~_umask())
    try:
        os.rename(temp, target)  # atomically replaces an empty directory
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise RestoreBlocked(f"target {target} received data while the restore ran; not replacing it") from None
        raise
    fsync_directory(target.parent)
    return None, empty_dir


def _umask() -> int:
    """The process umask, read from /proc (os.umask can only read it by changing it, process-wide)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _make_empty_dir(path: Path, mode: int, uid: int, gid: int) -> None:
    os.mkdir(path, 0o700)
    if (uid, gid) != (os.geteuid(), os.getegid()):
        os.chown(path, uid, gid)
    os.chmod(path, mode)


def _move_aside(path: Path, target: Path, backup_id: str) -> Path | None:
    """Rename path (if there) to target's discard name, garbage by name until removed; the discard path."""
    if not os.path.lexists(path):
        return None
    discard = _sibling(target, _DISCARD_INFIX, backup_id)
    remove_tree(discard)
    os.rename(path, discard)
    return discard


# -- removing trees and probing them, without recursion ---------------------------------------


def _remove_after_failure(path: Path) -> None:
    """Remove a failed run's temporary tree; should even that fail, the next restore removes it."""
    try:
        remove_tree(path)
    except Exception as exc:  # noqa: BLE001 - the failure being handled is what the caller must see
        log.warning("could not remove %s (%s); the next restore into the target removes it", path, exc)


def _refuse_in_use(target: Path) -> None:
    """RestoreBlocked when a server holds the lock of a RocksDB directory in target."""
    for directory, pid in _rocksdb_lock_holders(target)[:1]:
        holder = f"process {pid}" if pid > 0 else "another process"
        raise RestoreBlocked(
            f"target {target} is in use: {holder} holds the RocksDB lock {directory / LOCK_FILE}; stop the "
            f"server first (or restore with --container NAME, which stops its container, restores and starts it)"
        )


def _rocksdb_lock_holders(target: Path) -> list[tuple[Path, int]]:
    """(directory, PID) for each locked LOCK file below target (any depth; an explicit stack)."""
    if not os.path.isdir(target) or os.path.islink(target):
        return []
    held = []
    root_fd = os.open(target, DIR_FLAGS)
    try:
        pending = ["."]
        while pending:
            relative = pending.pop()
            fd = os.open(relative, DIR_FLAGS, dir_fd=root_fd)
            try:
                with os.scandir(fd) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(os.path.join(relative, entry.name))
                        elif entry.name == LOCK_FILE and entry.is_file(follow_symlinks=False):
                            pid = lock_holder(LOCK_FILE, dir_fd=fd)
                            if pid is not None:
                                held.append((Path(os.path.normpath(target / relative)), pid))
            finally:
                os.close(fd)
    finally:
        os.close(root_fd)
    return held


def _check_free_space(target: Path, checked: RestorePlan) -> None:
    """NoSpace unless the target's filesystem holds every restored file (whole blocks; previous data
    stays until a swap is committed) and SPACE_MARGIN for the check server."""
    fs = os.statvfs(target.parent)
    block = fs.f_frsize or 4096
    needs = SPACE_MARGIN + sum(-(-entries[0].size // block) * block * len(entries) for entries in checked.groups.values())
    free = fs.f_bavail * fs.f_frsize
    if needs > free:
        raise NoSpace(
            f"restore of backup {checked.backup_id} into {target} refused: no space left on device: "
            f"needs {needs} bytes, {free} free"
        )
