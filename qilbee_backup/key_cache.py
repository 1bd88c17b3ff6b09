"""The key file that last opened a repository with a passphrase, kept in the local cache
($XDG_CACHE_HOME/qilbee-backup/keys/) so that the next command can start the KDF at once, before it
has reached the repository (ahead.open_ahead): the KDF then runs while the S3 client is made.

It holds exactly the bytes the repository holds in keys/ (the master key wrapped under scrypt of a
passphrase): nothing that the repository does not already expose to whoever reads it. Its result is
used only when the repository's own key file is the same, for the same repository id; anything else
(a changed, removed or foreign key file) falls back to the repository's keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from .fsutil import cache_dir


_ENABLED = False  # set by a process that opens ahead (the CLI): only its commands gain from the cache


def enable(on: bool = True) -> None:
    global _ENABLED
    _ENABLED = on


class Remembered(NamedTuple):
    repo_id: str
    key_id: str
    key_file: dict[str, Any]


def _path(url: str) -> Path:
    return cache_dir() / "keys" / f"{hashlib.sha256(url.encode()).hexdigest()[:32]}.json"


def recall(url: str) -> Remembered | None:
    try:
        found = json.loads(_path(url).read_text())
        return Remembered(str(found["repo_id"]), str(found["key_id"]), dict(found["key_file"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember(url: str, entry: Remembered) -> None:
    """Best effort (a cache): an unwritable cache costs the next command its head start, nothing else."""
    if not _ENABLED or recall(url) == entry:
        return
    path = _path(url)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(entry._asdict(), f)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError:
        pass
