"""Is a backup restorable? Check the blobs it needs (restic's ``check``, pgBackRest's ``verify``).

Quick check: one listing of blobs/ shows every blob is there with the stored size the manifest
recorded (no request per blob). ``read_data``: stream each blob down, decompress it and re-hash
the content against the manifest's SHA-256 and size. Each content is read once, however many
files or backups share it. Reports name the backup and every damaged file.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from pydantic import BaseModel, Field

from .archiver import UndecodableBlob, decompress_stream
from .errors import NotFound, QilbeeBackupError
from .manifest import Manifest
from .repository import Repository, blob_key

log = logging.getLogger(__name__)

MISSING = "missing"


class Problem(BaseModel):
    path: str  # the file in the backup ("" when the manifest itself is the problem)
    sha256: str
    reason: str  # "missing", "wrong size: ...", "bad checksum: ...", "undecodable: ...", "unreadable: ..."


class VerifyReport(BaseModel):
    backup_id: str
    kind: str | None = None
    ok: bool
    read_data: bool = False
    checked_files: int = 0
    checked_bytes: int = 0  # uncompressed bytes of the files checked
    read_bytes: int = 0  # stored (compressed) bytes downloaded and decoded
    problems: list[Problem] = Field(default_factory=list)

    def summary(self) -> str:
        how = "read and re-hashed" if self.read_data else "present with the right size"
        if self.ok:
            return f"backup {self.backup_id}: ok, {self.checked_files} files ({self.checked_bytes} bytes) {how}"
        damaged = ", ".join(f"{p.path or '(manifest)'} ({p.reason})" for p in self.problems[:5])
        more = f" and {len(self.problems) - 5} more" if len(self.problems) > 5 else ""
        return f"backup {self.backup_id}: DAMAGED, {len(self.problems)} problem(s): {damaged}{more}"


class RepositoryReport(BaseModel):
    url: str
    ok: bool
    read_data: bool
    backups: list[VerifyReport]

    @property
    def damaged(self) -> list[str]:
        return [r.backup_id for r in self.backups if not r.ok]

    def summary(self) -> str:
        if self.ok:
            return f"{self.url}: {len(self.backups)} backup(s) ok"
        return f"{self.url}: {len(self.damaged)} of {len(self.backups)} backup(s) damaged: {', '.join(self.damaged)}"


def _read_blob(repo: Repository, sha: str, expected_size: int) -> str | None:
    """None if the blob decodes to content with this sha and size; else what is wrong."""
    try:
        with repo.dest.open_read(blob_key(sha)) as reader:
            got_sha, got_size = decompress_stream(reader)
    except NotFound:
        return MISSING
    except UndecodableBlob as exc:
        return f"undecodable: {exc}"
    except QilbeeBackupError as exc:
        return f"unreadable: {exc}"
    if got_sha != sha:
        return f"bad checksum: content hashes to {got_sha}"
    if got_size != expected_size:
        return f"wrong size: content is {got_size} bytes, manifest says {expected_size}"
    return None


def _read_all(repo: Repository, wanted: dict[str, int], workers: int) -> dict[str, str | None]:
    shas = sorted(wanted)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return dict(zip(shas, pool.map(lambda sha: _read_blob(repo, sha, wanted[sha]), shas)))


def verify_backup(
    repo: Repository,
    manifest: Manifest,
    *,
    read_data: bool = False,
    blob_sizes: dict[str, int] | None = None,
    workers: int = 2,
    read_results: dict[str, str | None] | None = None,
) -> VerifyReport:
    """Check one backup. blob_sizes: a listing already made (repo.blob_sizes()); read_results: a
    cache of earlier read_data outcomes by sha, shared across backups so each blob is read once."""
    sizes = repo.blob_sizes() if blob_sizes is None else blob_sizes
    quick: dict[str, str | None] = {}
    for entry in manifest.files:
        have = sizes.get(entry.sha256)
        if have is None:
            quick[entry.sha256] = MISSING
        elif entry.stored_size is not None and have != entry.stored_size:
            quick[entry.sha256] = f"wrong size: stored {have} bytes, manifest says {entry.stored_size}"
        else:
            quick.setdefault(entry.sha256, None)

    read_bytes = 0
    if read_data:
        cache = read_results if read_results is not None else {}
        content_sizes = {e.sha256: e.size for e in manifest.files}
        todo = {sha: content_sizes[sha] for sha, reason in quick.items() if reason is None and sha not in cache}
        cache.update(_read_all(repo, todo, workers))
        read_bytes = sum(sizes[sha] for sha in todo)
        for sha, reason in quick.items():
            if reason is None:
                quick[sha] = cache.get(sha)

    problems = [Problem(path=e.path, sha256=e.sha256, reason=quick[e.sha256]) for e in manifest.files if quick[e.sha256]]
    report = VerifyReport(
        backup_id=manifest.backup_id,
        kind=manifest.kind,
        ok=not problems,
        read_data=read_data,
        checked_files=len(manifest.files),
        checked_bytes=manifest.bytes_total,
        read_bytes=read_bytes,
        problems=problems,
    )
    (log.info if report.ok else log.error)("%s", report.summary())
    return report


def verify_repository(
    repo: Repository, read_data: bool = False, *, backup_ids: Iterable[str] | None = None, workers: int = 2
) -> RepositoryReport:
    """Check every backup (or the given ones) with one blob listing; each damaged backup is reported,
    including one whose manifest cannot be read."""
    ids = sorted(backup_ids) if backup_ids is not None else repo.backup_ids()
    sizes = repo.blob_sizes()
    read_results: dict[str, str | None] = {}
    reports = []
    for backup_id in ids:
        try:
            manifest = repo.load(backup_id)
        except QilbeeBackupError as exc:
            reports.append(
                VerifyReport(backup_id=backup_id, ok=False, read_data=read_data,
                             problems=[Problem(path="", sha256="", reason=f"manifest unreadable: {exc}")])
            )
            continue
        reports.append(
            verify_backup(repo, manifest, read_data=read_data, blob_sizes=sizes, workers=workers, read_results=read_results)
        )
    return RepositoryReport(url=repo.url, ok=all(r.ok for r in reports), read_data=read_data, backups=reports)
