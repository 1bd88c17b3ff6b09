"""One small interface every storage destination satisfies (restic's backend model).

Keys are '/'-separated relative names inside the repository ("blobs/ab/ab12...",
"backups/<id>.json"). Every write is atomic: a reader sees the whole object or none.

Immutability (S3 Object Lock) is optional: a destination that can lock says for how long
(``lock_period``); the repository then passes ``retain_until`` with the writes it wants locked
(blobs and manifests, never lock files or the config) and lengthens the lock of blobs a new
backup reuses (``extend_lock``). A destination that cannot lock refuses ``retain_until`` rather
than store the object unlocked: immutability silently missing would be worse than an error.

Storage classes are optional too (pgBackRest's storage features, restic's backend Warmup): a
destination with them says so (``storage_classes``), writes in another class through
``with_storage_class``, and tells whether an object can be read now (``object_state``) or must first
be retrieved from an archive class (``start_retrieval``). One without them keeps the defaults:
every object is readable, in class "STANDARD". Waiting for a retrieval is not the destination's
business but qilbee_backup.retrieval's.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO, ClassVar, Iterator

from qilbee_backup.errors import NotFound, UsageError


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime  # timezone-aware UTC


@dataclass(frozen=True)
class ColdState:
    """Where one object stands. storage_class is "STANDARD" when S3 names none (and for files)."""

    key: str
    size: int
    storage_class: str
    needs_retrieval: bool  # its class (or Intelligent-Tiering archive tier) needs a RestoreObject first
    restore: str | None = None  # None: no retrieval asked (or its copy expired); "ongoing"; "done"
    expiry: str | None = None  # when a retrieved copy stops being readable, as S3 says it
    archive_status: str | None = None  # Intelligent-Tiering: ARCHIVE_ACCESS | DEEP_ARCHIVE_ACCESS

    @property
    def readable(self) -> bool:
        return not self.needs_retrieval or self.restore == "done"


class Destination(abc.ABC):
    """A place a repository lives: a local directory or an S3 bucket/prefix."""

    url: str  # as the operator gave it, with no credentials in it
    storage_classes: ClassVar[bool] = False  # True: objects can be written in (and read from) storage classes

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

    # -- storage classes (optional: a destination without them keeps these defaults) ----

    def with_storage_class(self, storage_class: str | None) -> "Destination":
        """This destination writing in storage_class: self when that changes nothing (None, the class it
        already writes in, or no storage classes here), else a new destination the caller closes."""
        return self

    def object_state(self, key: str) -> ColdState:
        """Whether the object can be read now, and its class; NotFound when it is missing."""
        info = self.stat(key)
        if info is None:
            raise NotFound(f"{self.url}/{key}: no such object")
        return ColdState(key, info.size, "STANDARD", needs_retrieval=False)

    def start_retrieval(self, state: ColdState, *, days: int = 7, tier: str = "Standard") -> ColdState:
        """Ask for a readable copy of an object in an archive class (for `days`, at `tier`): its state
        with the retrieval ongoing. A readable object (and every object here) is returned as it is."""
        return state

    def close(self) -> None:  # pragma: no cover - optional
        """Release connections and pools."""
