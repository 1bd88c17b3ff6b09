"""The backup pipeline's steps as plain functions (the Prefect tasks in tasks/ wrap these).

copy:   scan the snapshot, find which blobs each repository lacks, compress those once into a spool;
upload: send a repository the blobs it lacks, in parallel, then write the manifest (the commit point);
verify: check a backup's blobs (sizes; with read_data, contents);
prune:  retention on one series, then sweep blobs no backup references.

With object lock (open_repository(url, lock_mode=..., lock_days=...) on an s3:// repository), upload
writes blobs and manifest locked and lengthens the lock of blobs it reuses; prune leaves what is
still locked and says so.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .archiver import HashCache, StagedBlob, scan_tree, stage_blobs
from .checker import verify_backup
from .errors import ObjectLocked, UsageError
from .manifest import KIND_RE, FileEntry, Manifest, SourceInfo, new_backup_id
from .repository import Repository, source_key_for
from .retention import Policy, apply_policy, parse_duration

UPLOAD_WORKERS = 8

log = logging.getLogger(__name__)


def open_repository(url: str, **options) -> Repository:
    """The repository at url; options are S3Options fields (storage_class, sse, lock_mode, lock_days, ...).
    lock_mode/lock_days on a directory: UsageError; on a bucket without Object Lock: DestinationError."""
    repo = Repository.open(url, **options)
    repo.url = url  # as the operator gave it: what reports name
    return repo


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
    if not KIND_RE.fullmatch(kind):
        raise UsageError(f"bad kind {kind!r}: lowercase letters, digits, '-' or '_' (e.g. daily, weekly, monthly, adhoc)")
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return Manifest(backup_id=new_backup_id(now), kind=kind, created_at=now, source=source, stats=stats,
                    files=copied.entries, bytes_total=copied.bytes_total)


def _manifest_for(repo: Repository, copied: CopyResult, manifest: Manifest) -> Manifest:
    """Stored sizes as this repository holds them (a blob compressed by another run may differ in size)."""
    sizes = dict(copied.present.get(repo.url, {}))
    sizes.update({sha: copied.staged[sha].stored_size for sha in copied.missing.get(repo.url, ())})
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


def upload_backup(repo: Repository, copied: CopyResult, manifest: Manifest, *, workers: int = UPLOAD_WORKERS,
                  on_upload: Callable[[Repository, str, int], None] | None = None) -> UploadResult:
    """Send repo the blobs it lacks, then write its manifest. on_upload(repo, sha, stored_size) follows each put."""
    retain_until = repo.retain_until(manifest.created_at)  # None unless the repository locks backups
    todo = sorted(copied.missing.get(repo.url, set()))
    reused = manifest.blob_shas() - set(todo)
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
        # list() re-raises the first failure; the manifest below is then never written.
        list(pool.map(put, todo))
    extended = repo.extend_locks(reused, retain_until, workers=workers)  # before the commit point
    repo.write_manifest(_manifest_for(repo, copied, manifest), retain_until=retain_until)
    return UploadResult(url=repo.url, blobs_sent=len(todo),
                        bytes_uploaded=sum(copied.staged[s].stored_size for s in todo), backup_id=manifest.backup_id,
                        locked_until=retain_until, locks_extended=extended)


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
        for repo in repos:
            upload_backup(repo, copied, manifest, workers=upload_workers, on_upload=on_upload)
    finally:
        for blob in copied.staged.values():
            blob.path.unlink(missing_ok=True)
    return _manifest_for(repos[0], copied, manifest)


def verify(repo: Repository, backup_id: str, *, read_data: bool = False) -> dict:
    manifest = repo.load(backup_id)
    report = verify_backup(repo, manifest, read_data=read_data)
    return {
        "url": repo.url, "backup_id": manifest.backup_id, "ok": report.ok, "read_data": read_data,
        "checked_files": report.checked_files, "checked_bytes": report.checked_bytes,
        "problems": [f"{p.path}: {p.reason}" for p in report.problems],
    }


def parse_grace(text: str):
    """The sweep's grace period: a duration like 1h or 2d, or 0 for none (only when nothing else writes)."""
    if str(text).strip() in ("0", "0h", "0d"):
        return timedelta(0)
    return parse_duration(text)


def policy_from(retention: dict | None) -> Policy:
    return Policy.from_mapping(dict(retention or {}))


def _lock_reason(until: datetime) -> str:
    if until.year == datetime.max.year:
        return "under legal hold (S3 Object Lock)"
    return f"locked until {until:%Y-%m-%dT%H:%M:%SZ} (S3 Object Lock)"


def prune(repo: Repository, *, kind: str | None, retention: dict | None, grace: str = "1h", dry_run: bool = False,
          now: datetime | None = None) -> dict:
    """Retention per series (or the one named), then sweep blobs that no remaining backup needs.

    A backup the policy would remove but whose manifest is still under object lock is left whole
    and listed under "locked" (kept, removed and locked partition the decisions); unreferenced
    blobs still locked are left too ("blobs_locked"). A dry run reports the same without changing
    anything, including how many blobs the sweep would remove. `now` drives the retention rules;
    locks are judged by the clock, as S3 enforces them.
    """
    now = now or datetime.now(timezone.utc)
    policy = policy_from(retention)
    backups = repo.list_backups()
    kinds = [kind] if kind else sorted({m.kind for m in backups})
    decisions = []
    for series in kinds:
        members = [m for m in backups if m.kind == series]
        for d in apply_policy(members, policy, now):
            decisions.append({"backup_id": d.backup_id, "kind": series, "keep": d.keep, "reasons": d.reasons})
    doomed = [d for d in decisions if not d["keep"]]
    doomed_ids = [d["backup_id"] for d in doomed]
    with ThreadPoolExecutor(max_workers=8) as pool:  # a HEAD per backup, on a lock-enabled bucket only
        lock_ends = dict(zip(doomed_ids, pool.map(repo.backup_locked_until, doomed_ids)))
    if not dry_run:
        for d in doomed:
            if lock_ends[d["backup_id"]] is not None:
                continue
            try:
                repo.remove_backup(d["backup_id"], missing_ok=True)
            except ObjectLocked:  # locked since we looked: it stays whole, like the others
                lock_ends[d["backup_id"]] = repo.backup_locked_until(d["backup_id"]) or now
    locked = [d for d in doomed if lock_ends[d["backup_id"]] is not None]
    for d in locked:
        log.info("%s: keeping backup %s (%s): the policy would remove it but it is %s", repo.url, d["backup_id"],
                 d["kind"], _lock_reason(lock_ends[d["backup_id"]]))
    gone = {d["backup_id"] for d in doomed} - {d["backup_id"] for d in locked}
    if dry_run:
        referenced = {f.sha256 for m in backups if m.backup_id not in gone for f in m.files}
    else:
        referenced = {f.sha256 for m in repo.list_backups() for f in m.files}  # fresh: a backup may have landed
    swept = repo.sweep(referenced, parse_grace(grace), now, dry_run=dry_run)
    return {
        "url": repo.url, "dry_run": dry_run,
        "kept": [{"backup_id": d["backup_id"], "kind": d["kind"], "reasons": d["reasons"]} for d in decisions if d["keep"]],
        "removed": [{"backup_id": d["backup_id"], "kind": d["kind"]} for d in doomed if d["backup_id"] in gone],
        "locked": [{"backup_id": d["backup_id"], "kind": d["kind"], "locked_until": lock_ends[d["backup_id"]].isoformat(),
                    "reason": _lock_reason(lock_ends[d["backup_id"]])} for d in locked],
        "blobs_removed": len(swept.removed),
        "blobs_locked": len(swept.locked),
    }
