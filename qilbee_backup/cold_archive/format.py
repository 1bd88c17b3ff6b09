"""The archive file: a POSIX tar, zstd-compressed with its frame checksum, holding in this order

    qilbee-backup-manifest.json   the manifest
    SHA256SUMS                    in sha256sum's format, paths relative to data/
    data/<path>                   every file of the snapshot (regular files only; no links)

Writing streams each file through tar and zstd into a local file, hashing it again on the way (a
file that changed since it was scanned is refused); reading streams the other way and checks every
member against the manifest. Neither ever holds a whole file in memory.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tarfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Callable

import zstandard

from ..blobs import DEFAULT_LEVEL, HashCache, HashingReader, HashingWriter, scan_tree
from ..errors import IntegrityError, QilbeeBackupError, UsageError
from ..manifest import FileEntry, Manifest, SourceInfo, new_backup_id
from ..restorer import Progress, check_content, finish_file, safe_path

log = logging.getLogger(__name__)

ARCHIVE_SUFFIX = ".tar.zst"
MANIFEST_NAME = "qilbee-backup-manifest.json"
SUMS_NAME = "SHA256SUMS"
DATA_DIR = "data/"
DEFAULT_KIND = "monthly"
# 256 KiB for every buffer (file reads, tar, zstd): measured faster than 1 MiB here, and a quarter of the
# memory (tarfile joins and slices whole buffers when it streams).
CHUNK = 256 * 1024
_MAX_META_BYTES = 256 * 1024 * 1024  # manifest and SHA256SUMS are read whole: a sane bound


@dataclass(frozen=True)
class BuiltArchive:
    path: Path  # the local .tar.zst (the caller removes it)
    manifest: Manifest
    sha256: str  # of the compressed file
    size: int


def sums_text(files: list[FileEntry]) -> bytes:
    """SHA256SUMS in GNU sha256sum's own format, so `sha256sum -c` reads it (names with a newline escaped as it does)."""
    lines = []
    for f in files:
        if "\n" in f.path:
            lines.append(f"\\{f.sha256}  {f.path.replace(chr(10), chr(92) + 'n')}\n")
        else:
            lines.append(f"{f.sha256}  {f.path}\n")
    return "".join(lines).encode()


def build_archive(
    root: Path,
    spool: Path,
    *,
    source: SourceInfo,
    kind: str = DEFAULT_KIND,
    stats: dict[str, Any] | None = None,
    now: datetime | None = None,
    archive_id: str | None = None,
    level: int = DEFAULT_LEVEL,
    threads: int = 0,
    hash_cache: HashCache | None = None,
    follow_root_symlink: bool = False,
) -> BuiltArchive:
    """Scan root and write ``spool/<id>.tar.zst``: the manifest, SHA256SUMS, then every file.

    Each file is read a second time into the archive and hashed on the way; content that differs
    from the scan raises IntegrityError (the snapshot is not stable) and no archive is left behind.
    """
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    root = Path(root)
    entries = scan_tree(root, hash_cache=hash_cache, follow_root_symlink=follow_root_symlink)
    if root.is_symlink():
        root = root.resolve()  # scan_tree allowed it (follow_root_symlink): read the same directory
    if not entries:
        raise UsageError(f"{root} holds no files; refusing to record an empty archive (is the snapshot path right?)")
    manifest = Manifest(backup_id=archive_id or new_backup_id(now), kind=kind, created_at=now, source=source,
                        stats=stats or {}, files=entries)
    spool = Path(spool)
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / f"{manifest.backup_id}{ARCHIVE_SUFFIX}"
    mtime = int(now.timestamp())
    cctx = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
    raw = open(path, "xb")  # never over an existing file (and never remove one we did not create)
    try:
        with raw:
            out = HashingWriter(raw)
            with cctx.stream_writer(out, write_size=CHUNK, closefd=False) as compressed:
                with tarfile.open(fileobj=compressed, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK, copybufsize=CHUNK) as tar:
                    _add_bytes(tar, MANIFEST_NAME, manifest.to_json(), mtime)
                    _add_bytes(tar, SUMS_NAME, sums_text(entries), mtime)
                    for entry in entries:
                        _add_file(tar, root, entry)
            raw.flush()
            os.fsync(raw.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    log.info("archive %s: %d files, %d bytes into %s (%d bytes)", manifest.backup_id, len(entries), manifest.bytes_total, path, out.size)
    return BuiltArchive(path, manifest, out.digest.hexdigest(), out.size)


def _member(name: str, size: int, mode: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, mode, mtime, tarfile.REGTYPE
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    tar.addfile(_member(name, len(data), 0o644, mtime), io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, root: Path, entry: FileEntry) -> None:
    path = root / entry.path
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        info = _member(DATA_DIR + entry.path, entry.size, entry.mode, int(st.st_mtime))
        # Numeric owners as they were: tar restores them when run as root (--no-same-owner not to).
        info.uid, info.gid, info.uname, info.gname = st.st_uid, st.st_gid, "", ""
        reader = HashingReader(f)
        try:
            tar.addfile(info, reader)
        except OSError as exc:
            if "unexpected end of data" in str(exc):
                raise IntegrityError(f"{path} shrank since it was scanned (expected {entry.size} bytes); is the snapshot live?") from None
            raise
    if reader.digest.hexdigest() != entry.sha256:
        raise IntegrityError(f"{path} changed since it was scanned (SHA-256 {reader.digest.hexdigest()}, "
                             f"expected {entry.sha256}); is the snapshot live?")


# -- reading ----------------------------------------------------------------------------------------


def read_archive(
    reader: BinaryIO,
    manifest: Manifest,
    *,
    size: int,
    sha256: str,
    create: Callable[[str], int] | None = None,
    progress: Progress | None = None,
) -> int:
    """Read a whole archive (the .tar.zst bytes), checking it against manifest and the file's recorded
    size and SHA-256; write its files through create (path -> new fd; None: check only).

    Refused (IntegrityError, one line naming the archive and the member): members outside data/,
    unsafe paths, links and anything but regular files, files not in the manifest or missing, an inner
    manifest or SHA256SUMS that differ, content whose size or SHA-256 differ. Returns the bytes read.
    """
    failed = f"restore of archive {manifest.backup_id} failed"
    files = {f.path: f for f in manifest.files}
    raw = HashingReader(reader)
    at = ["the archive's beginning"]  # what was being read, for the error message
    seen: set[str] = set()
    done_bytes = 0
    try:
        dctx = zstandard.ZstdDecompressor()
        with dctx.stream_reader(raw, read_size=CHUNK, read_across_frames=True, closefd=False) as plain:
            with tarfile.open(fileobj=plain, mode="r|", bufsize=CHUNK) as tar:
                count = 0
                for count, member in enumerate(tar, start=1):
                    at[0] = repr(member.name)
                    if count == 1:
                        _check_inner_manifest(tar, member, manifest)
                        continue
                    if count == 2:
                        _check_sums(tar, member, manifest)
                        continue
                    entry = _entry_for(member, files, seen)
                    at[0] = entry.path
                    source = tar.extractfile(member)
                    assert source is not None  # a regular file, checked above
                    _copy_checked(source, entry, create)
                    seen.add(entry.path)
                    done_bytes += entry.size
                    if progress is not None:
                        progress(len(seen), done_bytes)
                if count < 2:
                    raise IntegrityError(f"the archive ends before its {MANIFEST_NAME} and {SUMS_NAME}")
            at[0] = "the archive's end"
            while plain.read(CHUNK):  # the rest: tar's end padding, then zstd's frame checksum
                pass
        while raw.read(CHUNK):  # bytes after the last frame still count for the file's SHA-256
            pass
    except IntegrityError as exc:
        raise IntegrityError(f"{failed} at {at[0]}: {exc}") from None
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"{failed} at {at[0]}: the archive is damaged (zstd: {exc})") from None
    except (tarfile.TarError, EOFError) as exc:
        raise IntegrityError(f"{failed} at {at[0]}: not a whole tar archive ({type(exc).__name__}: {exc})") from None
    except QilbeeBackupError as exc:
        raise type(exc)(f"{failed} at {at[0]}: {exc}") from None
    except OSError as exc:
        raise QilbeeBackupError(f"{failed} at {at[0]}: {exc.strerror or type(exc).__name__} (errno {exc.errno})") from None
    missing = sorted(set(files) - seen)
    if missing:
        raise IntegrityError(f"{failed}: the archive lacks {len(missing)} file(s) of its manifest, e.g. {missing[0]!r}")
    if raw.size != size or raw.digest.hexdigest() != sha256:
        raise IntegrityError(
            f"{failed}: the archive file has {raw.size} bytes and SHA-256 {raw.digest.hexdigest()}, "
            f"its record says {size} and {sha256}"
        )
    return raw.size


def _read_small(tar: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> bytes:
    if member.name != name or not member.isreg():
        raise IntegrityError(f"expected {name} (a regular file) here, found {member.name!r}")
    if member.size > _MAX_META_BYTES:
        raise IntegrityError(f"{name} is {member.size} bytes; refusing to read it")
    source = tar.extractfile(member)
    assert source is not None
    return source.read()


def _check_inner_manifest(tar: tarfile.TarFile, member: tarfile.TarInfo, manifest: Manifest) -> None:
    inner = Manifest.from_json(_read_small(tar, member, MANIFEST_NAME), origin=f"the archive's {MANIFEST_NAME}")
    if inner.model_dump() != manifest.model_dump():
        raise IntegrityError(f"the archive's {MANIFEST_NAME} differs from its record")


def _check_sums(tar: tarfile.TarFile, member: tarfile.TarInfo, manifest: Manifest) -> None:
    if _read_small(tar, member, SUMS_NAME) != sums_text(list(manifest.files)):
        raise IntegrityError(f"the archive's {SUMS_NAME} differs from its manifest")


def _entry_for(member: tarfile.TarInfo, files: dict[str, FileEntry], seen: set[str]) -> FileEntry:
    """The manifest entry this member restores; refuses anything that could leave the target."""
    name = member.name
    if not name.startswith(DATA_DIR):
        raise IntegrityError(f"member {name!r} is outside {DATA_DIR}; refusing it")
    rel = name[len(DATA_DIR):]
    try:
        safe = safe_path(rel)
    except IntegrityError:
        raise IntegrityError(f"member {name!r} would leave the target; refusing it") from None
    if member.issym() or member.islnk():
        raise IntegrityError(f"member {name!r} is a link (to {member.linkname!r}); an archive holds regular files only")
    if not member.isreg():
        raise IntegrityError(f"member {name!r} is not a regular file; an archive holds regular files only")
    entry = files.get(safe)
    if entry is None:
        raise IntegrityError(f"member {name!r} is not in the manifest")
    if safe in seen:
        raise IntegrityError(f"member {name!r} appears twice")
    if member.size != entry.size:
        raise IntegrityError(f"member {name!r} is {member.size} bytes, the manifest says {entry.size}")
    return entry


def _copy_checked(source: BinaryIO, entry: FileEntry, create: Callable[[str], int] | None) -> None:
    """Stream one member into its file (or nowhere), checking size and SHA-256 against the manifest."""
    digest = hashlib.sha256()
    size = 0
    out = None if create is None else os.fdopen(create(entry.path), "wb", buffering=0)
    try:
        while chunk := source.read(CHUNK):
            size += len(chunk)
            if size > entry.size:
                raise IntegrityError(f"content is larger than the manifest's {entry.size} bytes")
            digest.update(chunk)
            if out is not None:
                view = memoryview(chunk)
                while view:
                    view = view[out.write(view):]
        check_content(entry, size, digest.hexdigest())
        if out is not None:
            finish_file(out.fileno(), entry.mode)
    finally:
        if out is not None:
            out.close()
