"""One small interface every storage destination satisfies (restic's backend model).

Keys are '/'-separated relative names inside the repository ("blobs/ab/ab12...",
"backups/<id>.json"). Every write is atomic: a reader sees the whole object or none.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Iterator


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime  # timezone-aware UTC


class Destination(abc.ABC):
    """A place a repository lives: a local directory or an S3 bucket/prefix."""

    url: str  # as the operator gave it, with no credentials in it

    @abc.abstractmethod
    def put_file(self, key: str, path: Path, *, sha256: str | None = None) -> None:
        """Store the file's bytes under key. sha256 (hex of the bytes as stored) lets the store check them."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Store data under key. With if_absent, store only if no object has that key; return False if one did."""

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
        """Delete the object; deleting a missing key is not an error."""

    def close(self) -> None:  # pragma: no cover - optional
        """Release connections and pools."""
