"""QilbeeDB's on-disk contract: what a data directory holds and how to read it without touching it.

One place for what both sides rely on: the emulator (which writes data directories the way the
server does) and the backup tool (which copies, checks and restores them). A data directory is a
RocksDB database with QilbeeDB's column families; its checkpoints live under ``snapshots/<id>``
with a ``latest`` link; the server holds a POSIX lock on ``LOCK`` while it runs; ``meta`` records
the graph names under ``graphs``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator

from rocksdict import AccessType, Options, Rdict

COLUMN_FAMILIES = (
    "nodes",
    "relationships",
    "label_index",
    "adjacency_out",
    "adjacency_in",
    "property_index",
    "schema",
    "meta",
    "memory",
)
SNAPSHOTS_DIR = "snapshots"  # checkpoints inside the data directory: snapshots/<id>
LATEST_LINK = "latest"  # snapshots/latest -> the newest checkpoint
LOCK_FILE = "LOCK"  # the file the running server holds a POSIX lock on
CURRENT_FILE = "CURRENT"  # present in every RocksDB database
GRAPHS_KEY = b"graphs"  # meta: the JSON list of graph names
ROCKSDICT_CONFIG = "rocksdict-config.json"  # rewritten by rocksdict on every open, even read-only


class DataDirError(Exception):
    """A data directory could not be read as QilbeeDB's; the message is one line."""


def is_info_log(name: str) -> bool:
    """RocksDB's own text logs: not data, never backed up as part of the database."""
    return name == "LOG" or name.startswith("LOG.old")


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@contextlib.contextmanager
def open_readonly(path: str | os.PathLike[str]) -> Iterator[Rdict]:
    """Open a RocksDB directory (live, snapshot or restored) read-only in raw-bytes mode.

    rocksdict rewrites its config file on every open, even read-only, so the database is opened
    through a temporary directory of symlinks to its files (with a copy of that config): reading
    never touches the directory being read.
    """
    source = os.path.abspath(path)
    if not os.path.isfile(os.path.join(source, CURRENT_FILE)):
        raise DataDirError(f"{source} is not a RocksDB database (no {CURRENT_FILE} file)")
    with tempfile.TemporaryDirectory(prefix="qilbee-readonly-") as view:
        with os.scandir(source) as entries:
            for entry in entries:
                if not entry.is_file() or entry.name == LOCK_FILE or is_info_log(entry.name):
                    continue
                if entry.name == ROCKSDICT_CONFIG:
                    shutil.copyfile(entry.path, os.path.join(view, entry.name))
                else:
                    os.symlink(entry.path, os.path.join(view, entry.name))
        try:
            families = Rdict.list_cf(view, Options(raw_mode=True))
            db = Rdict(
                view,
                Options(raw_mode=True),
                column_families={name: Options(raw_mode=True) for name in families if name != "default"},
                access_type=AccessType.read_only(False),
            )
        except Exception as exc:
            raise DataDirError(f"cannot open RocksDB in {source} read-only: {one_line(exc)}") from None
        try:
            yield db
        finally:
            db.close()


def read_graph_names(path: str | os.PathLike[str]) -> list[str]:
    """The graph names a data directory records (``meta`` key ``graphs``), opened read-only.

    The backup tool counts through the graph routes with these when a server has no ``GET /graphs``.
    """
    with open_readonly(path) as db:
        raw = db.get_column_family("meta").get(GRAPHS_KEY)
    return list(json.loads(raw)) if raw else []
