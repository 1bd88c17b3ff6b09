"""Monthly archives: one self-contained tar + zstd file per archive, for cold storage.

In a repository, beside blobs/ and backups/ (which never refer to it):

    archives/<id>.tar.zst   the archive, in the storage class asked for (GLACIER, DEEP_ARCHIVE, ...)
    archives/<id>.json      its record: the archive file's size and SHA-256 and the manifest, in the
                            repository's ordinary class. Written last, it is the commit point: listing
                            and retention read records only (no retrieval), an archive without a
                            record does not exist, and prune removes such leftovers after a grace.

Inside the archive, in this order (a POSIX tar, zstd-compressed with its frame checksum):

    qilbee-backup-manifest.json   the manifest (the same one the record holds)
    SHA256SUMS                    in sha256sum's format, paths relative to data/
    data/<path>                   every file of the snapshot (regular files only; no links)

so it restores by hand with standard tools alone:

    zstd -dc ID.tar.zst | tar -x -C DIR && (cd DIR/data && sha256sum -c ../SHA256SUMS)

Building streams each file through tar and zstd into a local spool file (hashing it again on the
way: a file that changed since it was scanned is refused), never the whole archive in memory; the
file is then uploaded with the destination's transfer manager (multipart when large). Restoring
streams the object through zstd and tar into a temporary directory beside the target, checks every
file's size and SHA-256 against the manifest (and the whole file against its record), then puts it
in place with the restorer's own machinery: target lock, pending swaps, replace through a Swap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import re
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO, Callable, Literal

import zstandard
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import restorer
from .archiver import DEFAULT_LEVEL, HashCache, scan_tree
from .cold_storage import RetrievalPending, object_state
from .destinations.base import Destination
from .destinations.s3 import S3Destination, S3Options
from .errors import IntegrityError, NotFound, ObjectLocked, QilbeeBackupError, UsageError
from .manifest import SHA256_RE, FileEntry, Manifest, SourceInfo, new_backup_id, parse_backup_id
from .repository import Repository
from .retention import Duration, Policy, apply_policy, parse_duration

log = logging.getLogger(__name__)

ARCHIVES = "archives/"
ARCHIVE_SUFFIX = ".tar.zst"
RECORD_SUFFIX = ".json"
RECORD_FORMAT = "qilbee-backup-archive"
MANIFEST_NAME = "qilbee-backup-manifest.json"
SUMS_NAME = "SHA256SUMS"
DATA_DIR = "data/"
DEFAULT_KIND = "monthly"
DEFAULT_RETENTION: dict[str, Any] = {"keep_within": "12m"}  # the guide: monthly archives kept 12 months
# 256 KiB for every buffer (file reads, tar, zstd): measured faster than 1 MiB here, and a quarter of the
# memory (tarfile joins and slices whole buffers when it streams).
CHUNK = 256 * 1024
_MAX_META_BYTES = 256 * 1024 * 1024  # manifest and SHA256SUMS are read whole: a sane bound
_KEY_RE = re.compile(r"archives/(\d{8}T\d{6}Z-[0-9a-f]{6})(\.json|\.tar\.zst)")

Progress = Callable[[int, int], None]


class ArchiveExists(QilbeeBackupError):
    """An archive with this id is already committed in the repository."""


# -- names and the record --------------------------------------------------------------------------


def archive_key(archive_id: str) -> str:
    parse_backup_id(archive_id)
    return f"{ARCHIVES}{archive_id}{ARCHIVE_SUFFIX}"


def record_key(archive_id: str) -> str:
    parse_backup_id(archive_id)
    return f"{ARCHIVES}{archive_id}{RECORD_SUFFIX}"


class ArchiveFile(BaseModel):
    """The archive file as uploaded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # "<id>.tar.zst", under archives/
    size: int = Field(ge=0)
    sha256: str  # of the compressed file: `sha256sum ID.tar.zst` by hand
    storage_class: str | None = None  # as asked at upload (None: the store's default, or a file repository)
    format: Literal["tar+zstd"] = "tar+zstd"

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not SHA256_RE.fullmatch(value):
            raise ValueError(f"sha256 {value!r} is not 64 lowercase hex digits")
        return value


class ArchiveRecord(BaseModel):
    """archives/<id>.json: what an archive holds and what its file must be, readable without a retrieval."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["qilbee-backup-archive"] = RECORD_FORMAT
    version: Literal[1] = 1
    archive: ArchiveFile
    manifest: Manifest

    @property
    def archive_id(self) -> str:
        return self.manifest.backup_id

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes, *, origin: str) -> "ArchiveRecord":
        try:
            record = cls.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "document"
            raise IntegrityError(f"{origin} is not a valid archive record: {where}: {first.get('msg', 'invalid')}") from None
        if record.archive.name != f"{record.archive_id}{ARCHIVE_SUFFIX}":
            raise IntegrityError(f"{origin} names archive file {record.archive.name!r}, not {record.archive_id}{ARCHIVE_SUFFIX}")
        return record

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "archive_id": m.backup_id, "created_at": m.created_at.isoformat(), "kind": m.kind, "files": len(m.files),
            "bytes_total": m.bytes_total, "archive_bytes": self.archive.size, "storage_class": self.archive.storage_class,
            "mode": m.source.mode,
        }


# -- building ----------------------------------------------------------------------------------------


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
            out = _HashingWriter(raw)
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
        reader = _HashingReader(f)
        try:
            tar.addfile(info, reader)
        except OSError as exc:
            if "unexpected end of data" in str(exc):
                raise IntegrityError(f"{path} shrank since it was scanned (expected {entry.size} bytes); is the snapshot live?") from None
            raise
    if reader.digest.hexdigest() != entry.sha256:
        raise IntegrityError(f"{path} changed since it was scanned (SHA-256 {reader.digest.hexdigest()}, "
                             f"expected {entry.sha256}); is the snapshot live?")


class _HashingReader:
    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data


class _HashingWriter:
    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        view = memoryview(data)
        while view:
            view = view[self._raw.write(view):]
        return len(data)

    def flush(self) -> None:
        self._raw.flush()


# -- uploading, listing, verifying ------------------------------------------------------------------


def check_storage_class(storage_class: str | None) -> str | None:
    """UsageError for a name S3 could never accept (S3Options' own check); None means the default."""
    if storage_class:
        S3Options(storage_class=storage_class)
    return storage_class or None


def _cold_destination(dest: Destination, storage_class: str | None) -> Destination:
    """The repository's destination writing in storage_class (S3); a file repository has no classes."""
    if isinstance(dest, S3Destination) and storage_class and storage_class != dest.options.storage_class:
        return S3Destination(dest.bucket, dest.prefix, dataclasses.replace(dest.options, storage_class=storage_class))
    return dest


def upload_archive(repo: Repository, built: BuiltArchive, *, storage_class: str | None = None) -> ArchiveRecord:
    """Send the archive file (in storage_class), check its size, then commit its record (standard class)."""
    storage_class = check_storage_class(storage_class)
    archive_id = built.manifest.backup_id
    repo.init()
    if repo.dest.stat(record_key(archive_id)) is not None:
        raise ArchiveExists(f"archive {archive_id} already exists in {repo.url}")
    key = archive_key(archive_id)
    cold = _cold_destination(repo.dest, storage_class)
    try:
        cold.put_file(key, built.path, sha256=built.sha256)
    finally:
        if cold is not repo.dest:
            cold.close()
    stored = repo.dest.stat(key)
    if stored is None or stored.size != built.size:
        raise IntegrityError(f"{repo.url}/{key} holds {stored.size if stored else 'no'} bytes after upload, expected {built.size}")
    record = ArchiveRecord(
        archive=ArchiveFile(name=f"{archive_id}{ARCHIVE_SUFFIX}", size=built.size, sha256=built.sha256,
                            storage_class=storage_class if isinstance(repo.dest, S3Destination) else None),
        manifest=built.manifest,
    )
    if not repo.dest.put_bytes(record_key(archive_id), record.to_json(), if_absent=True):
        raise ArchiveExists(f"archive {archive_id} already exists in {repo.url}")
    return record


def _scan(repo: Repository) -> tuple[dict[str, Any], dict[str, Any]]:
    """(id -> record ObjectInfo, id -> archive ObjectInfo) from one listing of archives/."""
    records, files = {}, {}
    for info in repo.dest.list(ARCHIVES):
        m = _KEY_RE.fullmatch(info.key)
        if not m:
            log.warning("ignoring %s/%s: not an archive name", repo.url, info.key)
            continue
        (records if m.group(2) == RECORD_SUFFIX else files)[m.group(1)] = info
    return records, files


def archive_ids(repo: Repository) -> list[str]:
    """Ids of every committed archive (those with a record), sorted."""
    return sorted(_scan(repo)[0])


def read_record(repo: Repository, archive_id: str) -> ArchiveRecord:
    key = record_key(archive_id)
    try:
        data = repo.dest.get_bytes(key)
    except NotFound:
        raise NotFound(f"archive {archive_id} not found in {repo.url}") from None
    record = ArchiveRecord.from_json(data, origin=f"{repo.url}/{key}")
    if record.archive_id != archive_id:
        raise IntegrityError(f"{repo.url}/{key} holds archive id {record.archive_id}, not {archive_id}")
    return record


def list_archives(repo: Repository, kind: str | None = None) -> list[ArchiveRecord]:
    """Every committed archive (of one kind), oldest first; an unreadable record is an IntegrityError."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        records = list(pool.map(lambda i: read_record(repo, i), archive_ids(repo)))
    if kind is not None:
        records = [r for r in records if r.manifest.kind == kind]
    return sorted(records, key=lambda r: (r.manifest.created_at, r.archive_id))


def load_archive(repo: Repository, archive_id: str = "latest", kind: str | None = None) -> ArchiveRecord:
    """One archive by id, or the newest (of a kind) for 'latest'."""
    if archive_id == "latest":
        records = list_archives(repo, kind)
        if not records:
            raise NotFound(f"no {kind + ' ' if kind else ''}archives in {repo.url}")
        return records[-1]
    parse_backup_id(archive_id)
    return read_record(repo, archive_id)


def verify_archive(repo: Repository, archive_id: str, *, read_data: bool = False) -> dict[str, Any]:
    """The archive file is there with its recorded size (and, on S3, storage class); with read_data, and when
    it can be read without a retrieval, every byte is re-read: whole-file SHA-256 and each file's content."""
    record = load_archive(repo, archive_id)
    key = archive_key(record.archive_id)
    problems: list[str] = []
    state = None
    try:
        state = object_state(repo.dest, key)
    except NotFound:
        problems.append(f"{key}: the archive file is missing")
    if state is not None and state.size != record.archive.size:
        problems.append(f"{key}: {state.size} bytes, the record says {record.archive.size}")
    wanted = record.archive.storage_class
    if state is not None and wanted and isinstance(repo.dest, S3Destination) and state.storage_class != wanted:
        problems.append(f"{key}: in storage class {state.storage_class}, asked for {wanted}")
    data_checked = False
    if read_data and state is not None and not problems:
        if state.readable:
            try:
                with repo.dest.open_read(key) as reader:
                    _read_archive(reader, record, None, None)
                data_checked = True
            except QilbeeBackupError as exc:
                problems.append(str(exc))
        else:
            log.info("%s/%s is in %s: not re-read (that needs a retrieval)", repo.url, key, state.storage_class)
    return {
        "url": repo.url, "archive_id": record.archive_id, "ok": not problems, "storage_class": state.storage_class if state else None,
        "archive_bytes": record.archive.size, "read_data": data_checked, "problems": problems,
    }


# -- retention ---------------------------------------------------------------------------------------


def prune_archives(
    repo: Repository,
    *,
    kind: str | None = None,
    retention: dict[str, Any] | None = None,
    grace: str | Duration | timedelta = "1d",
    dry_run: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Retention per series of archives (or the one named; default: kept 12 months), and leftovers.

    An archive goes record first, then its file: once the record is gone the archive no longer
    exists, so an interrupted prune leaves at most a file without a record. Such files (also left
    by a run interrupted between upload and commit) are removed once older than grace.
    An archive whose record is under S3 Object Lock (e.g. the bucket's default retention) stays whole
    and is listed under "locked"; a locked leftover file stays until a later prune after its lock ends.
    """
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    policy = Policy.from_mapping(DEFAULT_RETENTION if retention is None else retention)
    grace_d = parse_duration(grace)
    records = list_archives(repo)
    kinds = [kind] if kind else sorted({r.manifest.kind for r in records})
    decisions = []
    for series in kinds:
        members = [r.manifest for r in records if r.manifest.kind == series]
        decisions += [(series, d) for d in apply_policy(members, policy, now)]
    removed = [d.backup_id for _, d in decisions if not d.keep]
    _, files = _scan(repo)
    committed = {r.archive_id for r in records}
    cutoff = grace_d.before(now)
    orphans = sorted(i for i, info in files.items() if i not in committed and info.modified < cutoff)
    locked: set[str] = set()
    if not dry_run:
        for archive_id in removed:
            try:
                repo.dest.remove(record_key(archive_id))
            except ObjectLocked as exc:
                log.info("%s: keeping archive %s, which retention would remove: %s", repo.url, archive_id, exc)
                locked.add(archive_id)
                continue
            _remove_file(repo, archive_id)
        orphans = [archive_id for archive_id in orphans if _remove_file(repo, archive_id)]
    return {
        "url": repo.url, "dry_run": dry_run,
        "kept": [{"archive_id": d.backup_id, "kind": s, "reasons": d.reasons} for s, d in decisions if d.keep],
        "removed": [{"archive_id": d.backup_id, "kind": s} for s, d in decisions if not d.keep and d.backup_id not in locked],
        "locked": [{"archive_id": d.backup_id, "kind": s} for s, d in decisions if d.backup_id in locked],
        "leftovers_removed": orphans,
    }


def _remove_file(repo: Repository, archive_id: str) -> bool:
    """Remove an archive file whose record is gone; a locked one stays (a leftover for a later prune)."""
    try:
        repo.dest.remove(archive_key(archive_id))
        return True
    except ObjectLocked as exc:
        log.info("%s: archive file %s stays until its lock ends: %s", repo.url, archive_id, exc)
        return False


# -- restoring ---------------------------------------------------------------------------------------


def restore_archive(
    repo: Repository,
    record: ArchiveRecord,
    target: Path,
    *,
    replace_existing: bool = False,
    progress: Progress | None = None,
) -> restorer.RestoreResult:
    """Restore an archive from the repository into ``target`` (see restore_archive_stream).

    RetrievalPending when the file is in a cold class and not retrieved: cold_storage.ensure_readable
    starts (and waits for) the retrieval first.
    """
    key = archive_key(record.archive_id)
    state = object_state(repo.dest, key)
    if not state.readable:
        raise RetrievalPending(f"{repo.url}/{key} is in {state.storage_class} and not retrieved; start its retrieval first")
    with repo.dest.open_read(key) as reader:
        return restore_archive_stream(reader, record, target, replace_existing=replace_existing, progress=progress)


def restore_archive_stream(
    reader: BinaryIO,
    record: ArchiveRecord,
    target: Path,
    *,
    replace_existing: bool = False,
    progress: Progress | None = None,
) -> restorer.RestoreResult:
    """Stream an archive (the .tar.zst bytes) into the directory ``target``, checked against ``record``.

    Same contract as restorer.restore_backup: target missing or empty (or replace_existing, which
    returns the Swap to commit or roll back); written into a temporary directory beside it, every
    file fsynced, renamed into place; on any failure the target is untouched and the error is one
    line naming the archive and the file. Refused: members outside data/, absolute or '..' paths,
    links and anything but regular files, files not in the manifest, a manifest or SHA256SUMS that
    differ from the record, and a file whose bytes differ from the record's size or SHA-256.
    """
    started = time.monotonic()
    target = restorer._absolute(target)
    manifest = record.manifest
    archive_id = str(manifest.backup_id)
    groups = restorer._plan(manifest)  # the blob restore's own checks: safe paths, no duplicates or clashes
    target.parent.mkdir(parents=True, exist_ok=True)
    with restorer._target_lock(target):
        restorer._refuse_pending_swaps(target)
        restorer._check_target(target, replace_existing)
        restorer._clear_garbage(target)
        temp = restorer._sibling(target, restorer._RESTORE_INFIX, archive_id)
        os.mkdir(temp, 0o700)  # private until complete
        try:
            root_fd = os.open(temp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                read = _read_archive(reader, record, root_fd, progress)
            finally:
                os.close(root_fd)
            restorer._fsync_tree(temp, groups)
            swap = restorer._put_in_place(temp, target, archive_id, replace_existing)
        except BaseException:
            restorer._remove_tree(temp)
            raise
    result = restorer.RestoreResult(archive_id, target, len(manifest.files), manifest.bytes_total, read,
                                    time.monotonic() - started, swap)
    log.info("restored archive %s into %s: %d files, %d bytes (%d read) in %.1fs", archive_id, target, result.files,
             result.bytes, read, result.duration_s)
    return result


def _read_archive(reader: BinaryIO, record: ArchiveRecord, root_fd: int | None, progress: Progress | None) -> int:
    """Read the whole archive, checking it; write its files under root_fd (None: check only).
    Returns the compressed bytes read."""
    manifest = record.manifest
    failed = f"restore of archive {manifest.backup_id} failed"
    files = {f.path: f for f in manifest.files}
    raw = _HashingReader(reader)
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
                    _copy_checked(source, entry, root_fd)
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
    if raw.size != record.archive.size or raw.digest.hexdigest() != record.archive.sha256:
        raise IntegrityError(
            f"{failed}: the archive file has {raw.size} bytes and SHA-256 {raw.digest.hexdigest()}, "
            f"its record says {record.archive.size} and {record.archive.sha256}"
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
        safe = restorer._safe_path("archive", rel)
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


def _copy_checked(source: BinaryIO, entry: FileEntry, root_fd: int | None) -> None:
    """Stream one member into its file (or nowhere), checking size and SHA-256 against the manifest."""
    digest = hashlib.sha256()
    size = 0
    out = None if root_fd is None else os.fdopen(restorer._create_file(root_fd, entry.path), "wb", buffering=0)
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
        if size != entry.size:
            raise IntegrityError(f"content is {size} bytes, the manifest says {entry.size}")
        if digest.hexdigest() != entry.sha256:
            raise IntegrityError(f"content hashes to {digest.hexdigest()}, the manifest says {entry.sha256}")
        if out is not None:
            restorer._finish(out.fileno(), entry.mode)
    finally:
        if out is not None:
            out.close()
