"""A repository in a local (or mounted) directory: each key is a file under the root.

Writes go to a temporary file in the target's own directory, are fsynced, then renamed
into place (os.replace), and the directory is fsynced: a reader sees the whole object
or none, and a crash leaves at most a temporary file, which list() never shows.

Errors of the destination are DestinationError / NotFound; errors of the caller's own
local file (put_file's source, get_file's target) stay OSError, as they do for S3.
"""

from __future__ import annotations

import hashlib
import os
import stat as stat_module
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from qilbee_backup.destinations.base import Destination, ObjectInfo
from qilbee_backup.destinations.url import TEMP_SUFFIX, check_key, check_prefix, check_sha256_hex, is_temp_name
from qilbee_backup.errors import DestinationError, IntegrityError, NotFound, UsageError
from qilbee_backup.fsutil import fsync_directory

COPY_CHUNK = 1024 * 1024


class FileDestination(Destination):
    def __init__(self, root: str | os.PathLike[str], *, url: str | None = None) -> None:
        self.root = Path(root).absolute()
        self.url = url if url is not None else str(root)

    def __repr__(self) -> str:
        return f"FileDestination(url={self.url!r})"

    # -- writing --------------------------------------------------------------------

    def put_file(self, key: str, path: Path, *, sha256: str | None = None, retain_until: datetime | None = None) -> None:
        self._refuse_lock(retain_until)
        expected = check_sha256_hex(sha256)
        target = self._path(key)
        with open(path, "rb") as source:  # a missing or unreadable source is the caller's OSError
            self._write_atomically(key, target, _read_chunks(source, key, expected), exclusive=False)

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False, retain_until: datetime | None = None) -> bool:
        self._refuse_lock(retain_until)
        return self._write_atomically(key, self._path(key), [bytes(data)], exclusive=if_absent)

    def _write_atomically(self, key: str, target: Path, chunks: Iterable[bytes], *, exclusive: bool) -> bool:
        with self._errors("write", key):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TEMP_SUFFIX)
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:  # errors reading the caller's source pass through unchanged
                    with self._errors("write", key):
                        out.write(chunk)
                with self._errors("write", key):
                    out.flush()
                    os.fsync(out.fileno())
            with self._errors("write", key):
                if exclusive:
                    # link() fails if the name exists, atomically: of two racing writers exactly
                    # one wins, and the winner's object appears complete (it was fsynced first).
                    try:
                        os.link(temp, target)
                    except FileExistsError:
                        return False
                else:
                    os.replace(temp, target)
                fsync_directory(target.parent)
            return True
        finally:
            # After replace() the temp name is gone; after link() or a failure it must go.
            temp.unlink(missing_ok=True)

    # -- reading --------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as reader, self._errors("read", key):
            return reader.read()

    def open_read(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(f"{self._where(key)}: no such object") from None
        except OSError as e:
            raise self._error("read", key, e) from e

    def get_file(self, key: str, path: Path) -> None:
        target = Path(path)
        with self.open_read(key) as reader:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TEMP_SUFFIX)
            try:
                with os.fdopen(fd, "wb") as out:
                    while True:
                        with self._errors("read", key):
                            chunk = reader.read(COPY_CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                os.replace(temp_name, target)
            except BaseException:
                Path(temp_name).unlink(missing_ok=True)
                raise

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise self._error("stat", key, e) from e
        if not stat_module.S_ISREG(st.st_mode):
            return None
        return ObjectInfo(key, st.st_size, _utc(st.st_mtime))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Keys in the same order S3 gives them (by code point), skipping temporary files.

        Only the directories the prefix can match are read: "blobs/ab" reads blobs/ and
        descends only into entries whose names start with "ab".
        """
        check_prefix(prefix)
        directory, _, name_start = prefix.rpartition("/")
        start = self.root.joinpath(*directory.split("/")) if directory else self.root
        yield from self._walk(start, f"{directory}/" if directory else "", name_start)

    def _walk(self, directory: Path, key_base: str, name_start: str) -> Iterator[ObjectInfo]:
        try:
            with os.scandir(directory) as scan:
                entries = [e for e in scan if e.name.startswith(name_start) and not is_temp_name(e.name)]
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as e:
            raise self._error("list", key_base or ".", e) from e
        # Sorting a directory's names with '/' after each subdirectory's name gives, depth
        # first, exactly the order of the whole keys.
        sortable = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                sortable.append((entry.name + "/", entry))
            elif entry.is_file():
                sortable.append((entry.name, entry))
        for sort_name, entry in sorted(sortable, key=lambda pair: pair[0]):
            if sort_name.endswith("/"):
                yield from self._walk(Path(entry.path), key_base + sort_name, "")
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:  # removed while we listed
                continue
            yield ObjectInfo(key_base + entry.name, st.st_size, _utc(st.st_mtime))

    # -- removing -------------------------------------------------------------------

    def remove(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as e:
            raise self._error("remove", key, e) from e

    # -- helpers --------------------------------------------------------------------

    def _refuse_lock(self, retain_until: datetime | None) -> None:
        # A directory cannot make a file immutable; storing it unlocked would be a silent lie.
        if retain_until is not None:
            raise UsageError(f"{self.url}: object lock needs an s3:// repository; a directory cannot hold locked objects")

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _where(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"

    def _error(self, operation: str, key: str, error: OSError) -> DestinationError:
        reason = error.strerror or type(error).__name__
        return DestinationError(f"{self._where(key)}: {operation} failed: {reason} (errno {error.errno})")

    @contextmanager
    def _errors(self, operation: str, key: str) -> Iterator[None]:
        try:
            yield
        except OSError as e:
            raise self._error(operation, key, e) from e


def _read_chunks(source: BinaryIO, key: str, expected_sha256: str | None) -> Iterator[bytes]:
    """The source's bytes; checks them against expected_sha256 (raising before anything is visible)."""
    digest = hashlib.sha256() if expected_sha256 else None
    while chunk := source.read(COPY_CHUNK):
        if digest:
            digest.update(chunk)
        yield chunk
    if digest and digest.hexdigest() != expected_sha256:
        raise IntegrityError(f"{key}: source bytes have SHA-256 {digest.hexdigest()}, expected {expected_sha256}")


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)
