"""A backup's steps as plain functions (the steps in tasks/ wrap these).

copy:   scan the snapshot, find which blobs each repository lacks, compress those once into a spool;
upload: send a repository the blobs it lacks, in parallel, then write the manifest (the commit point).

With object lock (open_repository(url, lock_mode=..., lock_days=...) on an s3:// repository), upload
writes blobs and manifest locked and lengthens the lock of blobs it reuses.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .blobs import HashCache, StagedBlob, scan_tree, stage_blobs
from .errors import NotFound, UsageError
from .manifest import FileEntry, Manifest, SourceInfo, check_kind, new_backup_id
from .repository import BlobsMissing, Repository, source_key_for

UPLOAD_WORKERS = 8

log = logging.getLogger(__name__)


def prepare(repos: Sequence[Repository], client) -> None:
    """Before a backup writes anything: the source answers (an unreachable one leaves no trace),
    then each repository is created, or checked to be one, and upgraded to this version."""
    client.health()
    for repo in repos:
        repo.init()


@contextmanager
def locked(repos: list[Repository], source_url: str, *, wait: float = 0.0) -> Iterator[None]:
    """Hold the source's lock in every repository (one run per source at a time); always taken in
    the same order, so two runs never deadlock."""
    key = source_key_for(source_url)
    owner = f"{socket.gethostname()}:{os.getpid()}"
    with ExitStack() as stack:
        for repo in sorted(repos, key=lambda r: r.url):
            stack.enter_context(repo.lock(key, owner, wait=wait))
        yield


@dataclass
class CopyResult:
    root: Path
    entries: list[FileEntry]
    staged: dict[str, StagedBlob]
    missing: dict[str, set[str]]  # repository url -> blob ids it lacks
    present: dict[str, dict[str, int]]  # repository url -> stored size of each blob it already has
    spool: Path

    @property
    def bytes_total(self) -> int:
        return sum(e.size for e in self.entries)

    @property
    def bytes_staged(self) -> int:
        return sum(b.stored_size for b in self.staged.values())


def copy_snapshot(root: Path, repos: list[Repository], spool: Path, *, hash_cache: HashCache | None = None) -> CopyResult:
    if hash_cache is None:
        with HashCache() as cache:
            entries = scan_tree(root, hash_cache=cache)
    else:
        entries = scan_tree(root, hash_cache=hash_cache)
    if not entries:
        raise UsageError(f"{root} holds no files; refusing to record an empty backup (is the snapshot path right?)")
    wanted = {e.sha256 for e in entries}
    missing, present = {}, {}
    for repo in repos:
        repo.init()
        sizes = repo.blob_sizes()  # one listing per repository
        present[repo.url] = {sha: sizes[sha] for sha in wanted if sha in sizes}
        missing[repo.url] = wanted - present[repo.url].keys()
    needed = set().union(*missing.values()) if missing else set()
    spool.mkdir(parents=True, exist_ok=True)
    staged = stage_blobs(root, entries, needed, spool)
    return CopyResult(root=root, entries=entries, staged=staged, missing=missing, present=present, spool=spool)


def make_manifest(copied: CopyResult, *, kind: str, source: SourceInfo, stats: dict, now: datetime | None = None) -> Manifest:
    """The backup's manifest; each repository's copy gets its own stored sizes at upload."""
    check_kind(kind)
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return Manifest(backup_id=new_backup_id(now), kind=kind, created_at=now, source=source, stats=stats,
                    files=copied.entries, bytes_total=copied.bytes_total)


def _manifest_for(repo: Repository, copied: CopyResult, manifest: Manifest, sent: set[str] = frozenset()) -> Manifest:
    """Stored sizes as this repository holds them (a blob compressed by another run may differ in size)."""
    sizes = dict(copied.present.get(repo.url, {}))
    sizes.update({sha: copied.staged[sha].stored_size for sha in set(copied.missing.get(repo.url, ())) | set(sent)})
    files = [f.model_copy(update={"stored_size": sizes.get(f.sha256)}) for f in manifest.files]
    return manifest.model_copy(update={"files": files})


@dataclass
class UploadResult:
    url: str
    blobs_sent: int
    bytes_uploaded: int
    backup_id: str
    locked_until: datetime | None = None  # the backup's object lock end (None: not locked)
    locks_extended: int = 0  # reused blobs whose lock was lengthened to locked_until
    manifest: Manifest | None = None  # as committed to this repository (its stored sizes)


REPLANS = 2  # how often a commit may find reused blobs gone (a racing sweep) and send them itself


def upload_backup(repo: Repository, copied: CopyResult, manifest: Manifest, *, workers: int = UPLOAD_WORKERS,
                  on_upload: Callable[[Repository, str, int], None] | None = None) -> UploadResult:
    """Send repo the blobs it lacks, then write its manifest. on_upload(repo, sha, stored_size) follows each put.

    The plan (what the copy step's listing said was missing) can go stale: a prune may sweep a blob
    this backup reuses before the manifest names it. The commit's own listing finds that out, and
    the blobs that went are staged from the snapshot and sent again (REPLANS times at most), so a
    retry never re-sends the same stale plan into the same failure."""
    retain_until = repo.retain_until(manifest.created_at)  # None unless the repository locks backups
    todo, sent, extended = set(copied.missing.get(repo.url, set())), set(), 0
    for attempt in range(REPLANS + 1):
        _stage(copied, todo)
        _put_all(repo, copied, sorted(todo), retain_until, workers, on_upload)
        sent |= todo
        try:
            extended += repo.extend_locks(manifest.blob_shas() - sent, retain_until, workers=workers)  # before the commit
            committed = _manifest_for(repo, copied, manifest, sent)
            repo.write_manifest(committed, retain_until=retain_until)
            break
        except (BlobsMissing, NotFound) as exc:
            if attempt == REPLANS:
                raise
            todo = exc.shas if isinstance(exc, BlobsMissing) else manifest.blob_shas() - repo.blob_sizes().keys()
            log.warning("%s: %d reused blob(s) vanished before the commit (swept by a prune?); sending them again",
                        repo.url, len(todo))
    return UploadResult(url=repo.url, blobs_sent=len(sent),
                        bytes_uploaded=sum(copied.staged[s].stored_size for s in sent), backup_id=manifest.backup_id,
                        locked_until=retain_until, locks_extended=extended, manifest=committed)


def _stage(copied: CopyResult, shas: set[str]) -> None:
    """Compress the contents not yet in the spool (the re-plan's blobs) from the snapshot."""
    lacking = set(shas) - copied.staged.keys()
    if lacking:
        copied.staged.update(stage_blobs(copied.root, copied.entries, lacking, copied.spool))


def _put_all(repo: Repository, copied: CopyResult, shas: list[str], retain_until: datetime | None, workers: int,
             on_upload: Callable[[Repository, str, int], None] | None) -> None:
    failed = threading.Event()  # after the first failure the other puts are skipped, not sent for nothing

    def put(sha: str) -> None:
        if failed.is_set():
            return
        try:
            repo.put_blob(sha, copied.staged[sha], retain_until=retain_until)
            if on_upload is not None:
                on_upload(repo, sha, copied.staged[sha].stored_size)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        # list() re-raises the first failure; the manifest is then never written.
        list(pool.map(put, shas))


def backup_directory(repos: Sequence[Repository], root: Path, *, kind: str, source: SourceInfo, spool: Path,
                     stats: dict | None = None, now: datetime | None = None, upload_workers: int = UPLOAD_WORKERS,
                     on_upload: Callable[[Repository, str, int], None] | None = None) -> Manifest:
    """The backup flow's copy and upload steps without Prefect: commit a backup of the directory root in
    each repository. Returns the manifest as committed to the first. Holding the source's lock is the
    caller's job; the blobs staged in spool are removed, whatever happens."""
    if not repos:
        raise UsageError("backup_directory needs at least one repository")
    copied = copy_snapshot(Path(root), list(repos), Path(spool))
    try:
        manifest = make_manifest(copied, kind=kind, source=source, stats=stats or {}, now=now)
        uploads = [upload_backup(repo, copied, manifest, workers=upload_workers, on_upload=on_upload) for repo in repos]
    finally:
        for blob in copied.staged.values():
            blob.path.unlink(missing_ok=True)
    return uploads[0].manifest
