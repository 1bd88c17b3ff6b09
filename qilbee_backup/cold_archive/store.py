"""Archives in a repository, beside blobs/ and backups/ (which never refer to them):

    archives/<id>.tar.zst   the archive, in the storage class asked for (GLACIER, DEEP_ARCHIVE, ...)
    archives/<id>.json      its record: the archive file's size and SHA-256 and the manifest, in the
                            repository's ordinary class. Written last, it is the commit point: listing
                            and retention read records only (no retrieval), an archive without a
                            record does not exist, and prune removes such leftovers after a grace.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..retrieval import object_state
from ..destinations.base import Destination
from ..destinations.s3_options import S3Options
from ..errors import IntegrityError, NotFound, ObjectLocked, QilbeeBackupError
from ..manifest import SHA256_RE, Manifest, parse_backup_id
from ..repository import DamagedManifest, Repository
from ..retention import Duration, Policy, apply_policy, parse_duration
from .format import ARCHIVE_SUFFIX, BuiltArchive, read_archive

log = logging.getLogger(__name__)

ARCHIVES = "archives/"
RECORD_SUFFIX = ".json"
RECORD_FORMAT = "qilbee-backup-archive"
DEFAULT_RETENTION: dict[str, Any] = {"keep_within": "12m"}  # the guide: monthly archives kept 12 months
_KEY_RE = re.compile(r"archives/(\d{8}T\d{6}Z-[0-9a-f]{6})(\.json|\.tar\.zst)")


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
            "archive_id": m.backup_id, "created_at": m.created_at.isoformat(), "source": m.source.series_name,
            "kind": m.kind, "files": len(m.files),
            "bytes_total": m.bytes_total, "archive_bytes": self.archive.size, "storage_class": self.archive.storage_class,
            "mode": m.source.mode,
        }


# -- uploading, listing, verifying ------------------------------------------------------------------


def check_storage_class(storage_class: str | None) -> str | None:
    """UsageError for a name S3 could never accept (S3Options' own check); None means the default."""
    if storage_class:
        S3Options(storage_class=storage_class)
    return storage_class or None


def _cold_destination(dest: Destination, storage_class: str | None) -> Destination:
    """The repository's destination writing in storage_class (S3); a file repository has no classes."""
    return dest.with_storage_class(storage_class)


def upload_archive(repo: Repository, built: BuiltArchive, *, storage_class: str | None = None) -> ArchiveRecord:
    """Send the archive file (in storage_class), check its size, then commit its record (standard class)."""
    storage_class = check_storage_class(storage_class)
    archive_id = built.manifest.backup_id
    repo.init()
    if repo.dest.stat(record_key(archive_id)) is not None:
        raise ArchiveExists(f"archive {archive_id} already exists in {repo.url}")
    repo.check_writable()
    key = archive_key(archive_id)
    cold = _cold_destination(repo.dest, storage_class)
    try:
        with repo.sealed_file(built.path, f"archive:{archive_id}", built.sha256) as (path, digest):
            cold.put_file(key, path, sha256=digest)
    finally:
        if cold is not repo.dest:
            cold.close()
    stored, expected = repo.dest.stat(key), repo.stored_bytes(built.size)
    if stored is None or stored.size != expected:
        raise IntegrityError(f"{repo.url}/{key} holds {stored.size if stored else 'no'} bytes after upload, expected {expected}")
    record = ArchiveRecord(
        archive=ArchiveFile(name=f"{archive_id}{ARCHIVE_SUFFIX}", size=built.size, sha256=built.sha256,
                            storage_class=storage_class if repo.dest.storage_classes else None),
        manifest=built.manifest,
    )
    if not repo.dest.put_bytes(record_key(archive_id), repo.seal(record.to_json(), f"archive-record:{archive_id}"), if_absent=True):
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
    where = f"{repo.url}/{key}"
    record = ArchiveRecord.from_json(repo.open_sealed(data, f"archive-record:{archive_id}", where), origin=where)
    if record.archive_id != archive_id:
        raise IntegrityError(f"{repo.url}/{key} holds archive id {record.archive_id}, not {archive_id}")
    return record


def archive_catalog(repo: Repository, kind: str | None = None,
                    source_name: str | None = None) -> tuple[list[ArchiveRecord], list[DamagedManifest]]:
    """Every committed archive (of one kind and/or source), oldest first, and every record that
    cannot be read: those are skipped and named, never in the way of the others."""
    def read(archive_id: str) -> ArchiveRecord | DamagedManifest | None:
        try:
            return read_record(repo, archive_id)
        except IntegrityError as exc:
            return DamagedManifest(archive_id, record_key(archive_id), str(exc))
        except NotFound:
            return None  # removed since the listing

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(read, archive_ids(repo)))
    damaged = [o for o in outcomes if isinstance(o, DamagedManifest)]
    for d in damaged:
        log.warning("%s: skipping damaged archive record: %s", repo.url, d.reason)
    records = [o for o in outcomes if isinstance(o, ArchiveRecord)
               and (kind is None or o.manifest.kind == kind)
               and (source_name is None or o.manifest.source.series_name == source_name)]
    return sorted(records, key=lambda r: (r.manifest.created_at, r.archive_id)), damaged


def list_archives(repo: Repository, kind: str | None = None, source_name: str | None = None) -> list[ArchiveRecord]:
    """Every readable archive (of one kind and/or source), oldest first; damaged records are skipped."""
    return archive_catalog(repo, kind, source_name)[0]


def load_archive(repo: Repository, archive_id: str = "latest", kind: str | None = None) -> ArchiveRecord:
    """One archive by id, or the newest readable one (of a kind) for 'latest'."""
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
    if state is not None and state.size != repo.stored_bytes(record.archive.size):
        problems.append(f"{key}: {state.size} bytes, the record says {repo.stored_bytes(record.archive.size)}")
    wanted = record.archive.storage_class
    if state is not None and wanted and repo.dest.storage_classes and state.storage_class != wanted:
        problems.append(f"{key}: in storage class {state.storage_class}, asked for {wanted}")
    data_checked = False
    if read_data and state is not None and not problems:
        if state.readable:
            try:
                with repo.dest.open_read(key) as reader:
                    read_archive(repo.opened(reader, f"archive:{record.archive_id}"), record.manifest,
                                 size=record.archive.size, sha256=record.archive.sha256)
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
    source_name: str | None = None,
) -> dict[str, Any]:
    """Retention per series of archives (source name, kind; or those named; default: kept 12
    months), and leftovers.

    An archive goes record first, then its file: once the record is gone the archive no longer
    exists, so an interrupted prune leaves at most a file without a record. Such files (also left
    by a run interrupted between upload and commit) are removed once older than grace. A file
    whose record is there but damaged is no leftover: it stays, and the record is reported.
    An archive whose record is under S3 Object Lock (e.g. the bucket's default retention) stays whole
    and is listed under "locked"; a locked leftover file stays until a later prune after its lock ends.
    """
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    policy = Policy.from_mapping(DEFAULT_RETENTION if retention is None else retention)
    grace_d = parse_duration(grace)
    records, damaged = archive_catalog(repo, kind, source_name)
    series: dict[tuple[str, str], list] = {}
    for r in records:
        series.setdefault(r.manifest.series, []).append(r.manifest)
    decisions = [(key, d) for key, members in sorted(series.items()) for d in apply_policy(members, policy, now)]
    removed = [d.backup_id for _, d in decisions if not d.keep]
    recorded, files = _scan(repo)
    cutoff = grace_d.before(now)
    orphans = sorted(i for i, info in files.items() if i not in recorded and info.modified < cutoff)
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

    def row(key: tuple[str, str], d) -> dict[str, Any]:
        return {"archive_id": d.backup_id, "source": key[0], "kind": key[1]}

    return {
        "url": repo.url, "dry_run": dry_run,
        "kept": [{**row(k, d), "reasons": d.reasons} for k, d in decisions if d.keep],
        "removed": [row(k, d) for k, d in decisions if not d.keep and d.backup_id not in locked],
        "locked": [row(k, d) for k, d in decisions if d.backup_id in locked],
        "damaged": [{"archive_id": d.backup_id, "reason": d.reason} for d in damaged],
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
