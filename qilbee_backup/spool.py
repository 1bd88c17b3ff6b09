"""Spools: the local directories where a run stages blobs (or builds an archive) before upload.

A run removes its spool when it ends, but a killed run cannot, so each spool carries an owner
record and every run first removes the spools whose owner is gone:

    <parent>/qilbee-spool-XXXXXXXX/.owner.json   {"host", "boot_id", "pid_ns", "pid", "start_time"}

The owner is the process that made the spool, named by its pid *and* its start time (field 22 of
/proc/PID/stat), so a pid the kernel has since given to another process is not taken for the owner.
A spool is removed only when all of this holds:
- its name is ours (``qilbee-spool-`` or the older ``qilbee-archive-``, then mkdtemp's 8 characters),
  it is a real directory (not a link) and this user owns it;
- its record names this host, boot and pid namespace (only there can the owner be seen), and that
  process is gone (or a zombie, or a newer process under the same pid); a record from an earlier
  boot of this host is gone too.
A spool without a readable record (made before records existed, or by a run killed between
creating it and writing the record) is removed once nothing in it has changed for ``unowned_after``
(a day): a live run writes into its spool all the time, so a day of stillness means nobody does.

Removal never recurses (a stack of directories, any depth) and lets entries vanish under it, so two
runs cleaning at once both finish; the owner record goes last, so a removal cut short leaves a spool
the next run still recognises as stale.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import stat
import tempfile
import time
from pathlib import Path

from .errors import UsageError
from .fsutil import remove_tree

log = logging.getLogger(__name__)

SPOOL_PREFIX = "qilbee-spool-"
OWNER_FILE = ".owner.json"
UNOWNED_AFTER = 24 * 3600.0  # seconds of stillness after which a spool without a record is stale
# mkdtemp's names: the prefix, then 8 characters of its alphabet. qilbee-archive- is the archive flow's old prefix.
_SPOOL_NAME = re.compile(r"qilbee-(?:spool|archive)-[a-z0-9_]{8}")


def new_spool(parent: str | os.PathLike[str] | None = None) -> Path:
    """A fresh, private (0700) spool directory under ``parent`` (default: the system's temporary directory)."""
    parent = _parent(parent)
    try:
        spool = Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=parent))
    except FileNotFoundError:
        raise UsageError(f"spool directory {parent} does not exist") from None
    record = {**_identity(), "pid": os.getpid(), "start_time": _start_time("self")}
    try:
        (spool / OWNER_FILE).write_text(json.dumps(record))
    except BaseException:
        remove_tree(spool)
        raise
    return spool


def remove_spool(spool: str | os.PathLike[str]) -> bool:
    """Remove a spool, its owner record last; False (and a warning) if something could not be removed."""
    spool = Path(spool)
    try:
        with os.scandir(spool) as entries:
            others = [entry.path for entry in entries if entry.name != OWNER_FILE]
        for path in others:
            remove_tree(path)
        remove_tree(spool)
    except FileNotFoundError:
        return True  # another run removed it first
    except OSError as e:
        log.warning("could not remove spool %s: %s", spool, e)
        return False
    return True


def clean_stale_spools(
    parent: str | os.PathLike[str] | None = None, *, unowned_after: float = UNOWNED_AFTER
) -> list[Path]:
    """Remove the spools under ``parent`` left by runs that are gone (see the module docstring); those removed.

    Never fails: a spool that cannot be read or removed is left, with a warning.
    """
    parent = _parent(parent)
    try:
        with os.scandir(parent) as entries:
            candidates = [Path(entry.path) for entry in entries if _SPOOL_NAME.fullmatch(entry.name)]
    except FileNotFoundError:
        return []  # no such parent yet: nothing to clean
    except OSError as e:
        log.warning("could not look for stale spools in %s: %s", parent, e)
        return []
    removed = []
    for spool in candidates:
        reason = _stale_reason(spool, unowned_after)
        if reason is not None and remove_spool(spool):
            log.info("removed stale spool %s (%s)", spool, reason)
            removed.append(spool)
    return removed


def _parent(parent: str | os.PathLike[str] | None) -> Path:
    return Path(parent) if parent is not None else Path(tempfile.gettempdir())


# ---------------------------------------------------------------- owners


def _stale_reason(spool: Path, unowned_after: float) -> str | None:
    """Why ``spool`` is stale, or None to keep it."""
    try:
        info = os.lstat(spool)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        return None
    record = _read_record(spool)
    if record is None:
        idle = time.time() - _last_change(spool, info.st_mtime)
        return f"no owner record, unchanged for {idle / 3600:.0f} h" if idle >= unowned_after else None
    return _owner_gone(record)


def _read_record(spool: Path) -> dict | None:
    try:
        record = json.loads((spool / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    valid = isinstance(record, dict) and isinstance(record.get("pid"), int) and isinstance(record.get("host"), str)
    return record if valid else None


def _owner_gone(record: dict) -> str | None:
    """Why the recorded owner is gone, or None when it lives or cannot be seen from here."""
    here = _identity()
    pid = record["pid"]
    if record.get("host") != here["host"] or here["boot_id"] is None:
        return None  # another machine's run (or no /proc here): its processes are out of sight
    if record.get("boot_id") != here["boot_id"]:
        return f"owner pid {pid} ran before this host rebooted"
    if record.get("pid_ns") != here["pid_ns"]:
        return None  # another container's pid namespace: the same number is another process here
    started = _start_time(pid)
    if started is None:
        return f"owner pid {pid} is gone"
    if started != record.get("start_time"):
        return f"pid {pid} now belongs to another process"
    return None


def _identity() -> dict:
    """This host, boot and pid namespace: where a recorded pid means the same process."""
    return {"host": socket.gethostname(), "boot_id": _read_text("/proc/sys/kernel/random/boot_id"),
            "pid_ns": _read_link("/proc/self/ns/pid")}


def _start_time(pid: int | str) -> int | None:
    """A live process's start time in clock ticks since boot; None if it is gone or a zombie."""
    stat_line = _read_text(f"/proc/{pid}/stat")
    if stat_line is None:
        return None
    fields = stat_line.rsplit(")", 1)[-1].split()  # the command name, in parentheses, may hold spaces
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22; fields[0] is field 3, the state


def _last_change(spool: Path, spool_mtime: float) -> float:
    """The newest modification time of the spool and the entries directly in it."""
    newest = spool_mtime
    with contextlib.suppress(OSError), os.scandir(spool) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
    return newest


def _read_text(path: str) -> str | None:
    try:
        with open(path, errors="replace") as f:  # a command name need not be UTF-8
            return f.read().strip()
    except OSError:
        return None


def _read_link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None
