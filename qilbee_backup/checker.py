"""Is a backup restorable? Check the blobs it needs (restic's ``check``, pgBackRest's ``verify``).

Quick check: one listing of blobs/ shows every blob is there with the stored size the manifest
recorded (no request per blob). ``read_data``: stream each blob down, decompress it and re-hash
the content against the manifest's SHA-256 and size. Each content is read once, however many
files or backups share it. Reports name the backup and every damaged file.

A blob the store fails to hand over (a 503, a dropped connection) is read again, as a restore
would (blobs.read_blob); one that still cannot be read is "could not check", not damage: the
backup is not ok, but nothing says its data is bad. Damage is never retried into a pass.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from pydantic import BaseModel, Field

from .blobs import UndecodableBlob
from .errors import IntegrityError, NotFound, QilbeeBackupError
from .manifest import Manifest
from .repository import Repository

log = logging.getLogger(__name__)

MISSING = "missing"
DAMAGED, UNCHECKED = "damaged", "unchecked"
Finding = tuple[str, str]  # (DAMAGED or UNCHECKED, the reason)


class Problem(BaseModel):
    path: str  # the file in the backup ("" when the manifest itself is the problem)
    sha256: str
    # damage: "missing", "wrong size: ...", "bad checksum: ...", "undecodable: ...", "damaged: ...";
    # could not check: "unreadable: ..."
    reason: str


class VerifyReport(BaseModel):
    backup_id: str
    kind: str | None = None
    ok: bool
    read_data: bool = False
    checked_files: int = 0
    checked_bytes: int = 0  # uncompressed bytes of the files checked
    read_bytes: int = 0  # stored (compressed) bytes downloaded and decoded
    problems: list[Problem] = Field(default_factory=list)  # damage
    unchecked: list[Problem] = Field(default_factory=list)  # files whose blob could not be read: neither good nor damaged

    def summary(self) -> str:
        how = "read and re-hashed" if self.read_data else "present with the right size"
        if self.ok:
            return f"backup {self.backup_id}: ok, {self.checked_files} files ({self.checked_bytes} bytes) {how}"
        parts = []
        if self.problems:
            parts.append(f"DAMAGED, {len(self.problems)} problem(s): {_listed(self.problems)}")
        if self.unchecked:
            blobs = len({p.sha256 for p in self.unchecked})
            parts.append(f"could not check {blobs} blob(s), {len(self.unchecked)} file(s): {_listed(self.unchecked)}")
        return f"backup {self.backup_id}: " + "; ".join(parts)


def _listed(problems: list[Problem], shown: int = 5) -> str:
    listed = ", ".join(f"{p.path or '(manifest)'} ({p.reason})" for p in problems[:shown])
    return listed + (f" and {len(problems) - shown} more" if len(problems) > shown else "")


class RepositoryReport(BaseModel):
    url: str
    ok: bool
    read_data: bool
    backups: list[VerifyReport]

    @property
    def damaged(self) -> list[str]:
        """Backups with damage (a backup only some of whose blobs could not be read is not among them)."""
        return [r.backup_id for r in self.backups if r.problems]

    @property
    def unchecked(self) -> list[str]:
        """Backups with no damage found, but blobs that could not be read."""
        return [r.backup_id for r in self.backups if r.unchecked and not r.problems]

    def summary(self) -> str:
        if self.ok:
            return f"{self.url}: {len(self.backups)} backup(s) ok"
        parts = [f"{len(ids)} of {len(self.backups)} backup(s) {what}: {', '.join(ids)}"
                 for what, ids in (("damaged", self.damaged), ("could not be checked", self.unchecked)) if ids]
        return f"{self.url}: " + "; ".join(parts)


def _read_blob(repo: Repository, sha: str, expected_size: int) -> Finding | None:
    """None if the blob decodes to content with this sha and size; else what is wrong, or that it
    could not be read (after read_blob's retries)."""
    try:
        got = repo.read_blob(sha)
    except NotFound:
        return DAMAGED, MISSING
    except UndecodableBlob as exc:
        return DAMAGED, f"undecodable: {exc}"
    except IntegrityError as exc:  # the store's own checksum refused the bytes
        return DAMAGED, f"damaged: {exc}"
    except (QilbeeBackupError, OSError) as exc:
        return UNCHECKED, f"unreadable: {' '.join(str(exc).split()) or type(exc).__name__}"
    if got.sha256 != sha:
        return DAMAGED, f"bad checksum: content hashes to {got.sha256}"
    if got.size != expected_size:
        return DAMAGED, f"wrong size: content is {got.size} bytes, manifest says {expected_size}"
    return None


def _read_all(repo: Repository, wanted: dict[str, int], workers: int) -> dict[str, Finding | None]:
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
    read_results: dict[str, Finding | None] | None = None,
) -> VerifyReport:
    """Check one backup. blob_sizes: a listing already made (repo.blob_sizes()); read_results: a
    cache of earlier read_data outcomes by sha, shared across backups so each blob is read once."""
    sizes = repo.blob_sizes() if blob_sizes is None else blob_sizes
    quick: dict[str, Finding | None] = {}
    for entry in manifest.files:
        have = sizes.get(repo.blob_id(entry.sha256))
        if have is None:
            quick[entry.sha256] = DAMAGED, MISSING
        elif entry.stored_size is not None and have != entry.stored_size:
            quick[entry.sha256] = DAMAGED, f"wrong size: stored {have} bytes, manifest says {entry.stored_size}"
        else:
            quick.setdefault(entry.sha256, None)

    read_bytes = 0
    if read_data:
        cache = read_results if read_results is not None else {}
        content_sizes = {e.sha256: e.size for e in manifest.files}
        todo = {sha: content_sizes[sha] for sha, reason in quick.items() if reason is None and sha not in cache}
        cache.update(_read_all(repo, todo, workers))
        read_bytes = sum(sizes[repo.blob_id(sha)] for sha in todo)
        for sha, reason in quick.items():
            if reason is None:
                quick[sha] = cache.get(sha)

    problems: list[Problem] = []
    unchecked: list[Problem] = []
    for entry in manifest.files:
        finding = quick[entry.sha256]
        if finding is not None:
            kind, reason = finding
            (problems if kind == DAMAGED else unchecked).append(Problem(path=entry.path, sha256=entry.sha256, reason=reason))
    report = VerifyReport(
        backup_id=manifest.backup_id,
        kind=manifest.kind,
        ok=not problems and not unchecked,
        read_data=read_data,
        checked_files=len(manifest.files),
        checked_bytes=manifest.bytes_total,
        read_bytes=read_bytes,
        problems=problems,
        unchecked=unchecked,
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
    read_results: dict[str, Finding | None] = {}
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
