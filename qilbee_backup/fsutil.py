"""Filesystem steps every part needs once: remove a tree of any depth safely, make a directory durable."""

from __future__ import annotations

import os
import stat
from contextlib import suppress
from pathlib import Path

from .errors import QilbeeBackupError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def fsync_directory(directory: Path | str, dir_fd: int | None = None) -> None:
    """Make the entries of a directory (a rename, a new file) durable: fsync the directory itself.
    dir_fd: directory is relative to it (long paths never hit PATH_MAX)."""
    fd = os.open(directory, DIR_FLAGS, dir_fd=dir_fd)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove path and everything below it, never following a symlink; entries that vanish meanwhile
    (another run cleaning up too) are no error.

    Iterative, one directory open at a time and every name relative to it, so no depth (a hostile
    manifest's, a killed run's) can exhaust the stack, the file descriptors or PATH_MAX. The way up
    goes through "..", checked against the directory we came from."""
    path = Path(path)
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
            return
        fd = os.open(path, DIR_FLAGS)
    except FileNotFoundError:
        return
    # One frame per directory on the way down: its identity, and its subdirectories still to remove.
    frames = [(os.fstat(fd), _unlink_entries(fd))]
    try:
        while True:
            pending = frames[-1][1]
            if pending:
                try:
                    child = os.open(pending[-1], DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    pending.pop()
                    continue
                os.close(fd)
                fd = child
                frames.append((os.fstat(fd), _unlink_entries(fd)))
                continue
            frames.pop()
            if not frames:
                break
            parent = os.open("..", DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            identity, pending = frames[-1]
            here = os.fstat(fd)
            if (here.st_dev, here.st_ino) != (identity.st_dev, identity.st_ino):
                raise QilbeeBackupError(f"{path} changed while it was being removed; not following it")
            with suppress(FileNotFoundError):
                os.rmdir(pending.pop(), dir_fd=fd)
    finally:
        os.close(fd)
    with suppress(FileNotFoundError):
        os.rmdir(path)


def _unlink_entries(dir_fd: int) -> list[str]:
    """Remove every entry of the directory but its subdirectories (symlinks included); their names."""
    subdirectories = []
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirectories.append(entry.name)
            else:
                with suppress(FileNotFoundError):
                    os.unlink(entry.name, dir_fd=dir_fd)
    return subdirectories


def lock_holder(path: str | os.PathLike[str], dir_fd: int | None = None) -> int | None:
    """The PID of a process holding a lock on the file at path (0: one not visible from here), or None.

    Read from /proc/locks, never by opening the file: closing any descriptor of a file drops the
    POSIX locks this very process holds on it (a RocksDB server's LOCK, say). A file that vanished,
    or a system without /proc/locks, answers None."""
    try:
        st = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
        with open("/proc/locks") as locks:
            table = locks.read()
    except OSError:
        return None
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        # "7: POSIX  ADVISORY  WRITE 9681 fe:00:2245320 0 EOF"; a waiter has "->" after the number
        fields = line.split()
        if len(fields) >= 6 and fields[1] != "->" and fields[5] == wanted:
            return max(int(fields[4]), 0)
    return None


def cache_dir() -> Path:
    """This user's local cache for qilbee-backup (the hash cache, the key cache): $XDG_CACHE_HOME or ~/.cache."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qilbee-backup"
