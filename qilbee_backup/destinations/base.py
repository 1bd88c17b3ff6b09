"""One small interface every storage destination satisfies (restic's backend model).

Keys are '/'-separated relative names inside the repository ("blobs/ab/ab12...",
"backups/<id>.json"). Every write is atomic: a reader sees the whole object or none.

Immutability (S3 Object Lock) is optional: a destination that can lock says for how long
(``lock_period``); the repository then passes ``retain_until`` with the writes it wants locked
(blobs and manifests, never lock files or the config) and lengthens the lock of blobs a new
backup reuses (``extend_lock``). A destination that cannot lock refuses ``retain_until`` rather
than store the object unlocked: immutability silently missing would be worse than an error.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Iterator

from qilbee_backup.errors import UsageError


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime  # timezone-aware UTC


class Destination(abc.ABC):
    """A place a repository lives: a local directory or an S3 bucket/prefix."""

    url: str  # as the operator gave it, with no credentials in it

    @abc.abstractmethod
    def put_file(self, key: str, path: Path, *, sha256: str | None = None, retain_until: datetime | None = None) -> None:
        """Store the file's bytes under key. sha256 (hex of the bytes as stored) lets the store check them.
        retain_until: store it locked until then (only where lock_period is not None; else UsageError)."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False, retain_until: datetime | None = None) -> bool:
        """Store data under key. With if_absent, store only if no object has that key; return False if one did.
        retain_until as for put_file."""

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Whole object; raises NotFound."""

    @abc.abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """A streaming reader of the object (caller closes it); raises NotFound."""

    @abc.abstractmethod
    def get_file(self, key: str, path: Path) -> None:
        """Download the object to path (written whole, then renamed); raises NotFound."""

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """Size and time of one object, or None if it does not exist."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with prefix."""

    @abc.abstractmethod
    def remove(self, key: str) -> None:
        """Delete the object; deleting a missing key is not an error. ObjectLocked if it is locked."""

    # -- object lock (optional: a destination without it keeps these defaults) --------

    @property
    def lock_period(self) -> timedelta | None:
        """How long new backups stay locked (immutable); None: this destination writes nothing locked."""
        return None

    def locked_until(self, key: str) -> datetime | None:
        """When the object's lock ends, if it is locked now; None if it is not (or cannot be) locked."""
        return None

    def extend_lock(self, key: str, until: datetime) -> bool:
        """Keep the object locked until at least `until` (never shortens); True if it was lengthened."""
        raise UsageError(f"{self.url}: object lock needs an s3:// repository")

    def close(self) -> None:  # pragma: no cover - optional
        """Release connections and pools."""
