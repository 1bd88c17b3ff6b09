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
from .errors import NotFound, ObjectLocked, UsageError
from .manifest import FileEntry, Manifest, SourceInfo, check_kind, new_backup_id
from .repository import BlobsMissing, Repository, SweepResult, source_key_for
from .retention import Policy, apply_policy, parse_duration

UPLOAD_WORKERS = 8

log = logging.getLogger(__name__)


def open_repository(url: str, *, must_exist: bool = True, **options) -> Repository:
    """The repository at url; options are S3Options fields (storage_class, sse, lock_mode, lock_days, ...).

    must_exist (every command but backup and archive): a location without a repository's config —
    missing, empty, a file, a wrong S3 prefix — is an error, not an empty repository, so a verify
    pointed at the wrong place fails instead of passing. A backup creates the repository itself, once
    its input is valid and its source answered.
    lock_mode/lock_days on a directory: UsageError; on a bucket without Object Lock: DestinationError."""
    repo = Repository.open(url, **options)
    repo.url = url  # as the operator gave it: what reports name
    if must_exist:
        try:
            repo.config()
        except NotFound:
            # Archive flows before version 2 wrote no config.json: a location with archives is one.
            if next(iter(repo.dest.list("archives/")), None) is None:
                repo.close()
                raise
        except BaseException:
            repo.close()
            raise
    return repo


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


def verify(repo: Repository, backup: str | Manifest, *, read_data: bool = False) -> dict:
    """Check one backup (an id, 'latest', or a manifest already read) as a plain dict report."""
    manifest = backup if isinstance(backup, Manifest) else repo.load(backup)
    report = verify_backup(repo, manifest, read_data=read_data)
    return {
        "url": repo.url, "backup_id": manifest.backup_id, "ok": report.ok, "read_data": read_data,
        "checked_files": report.checked_files, "checked_bytes": report.checked_bytes,
        "problems": [f"{p.path}: {p.reason}" for p in report.problems],  # damage
        "unchecked": [f"{p.path}: {p.reason}" for p in report.unchecked],  # could not be read: neither good nor bad
        "summary": report.summary(),
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
          now: datetime | None = None, source_name: str | None = None) -> dict:
    """Retention per series (source name, kind) — every series, or those of the source and/or kind
    named — then sweep blobs that no remaining backup needs.

    A backup the policy would remove but whose manifest is still under object lock is left whole
    and listed under "locked" (kept, removed and locked partition the decisions); unreferenced
    blobs still locked are left too ("blobs_locked"). A damaged manifest belongs to no series it
    can be trusted with: it is never removed, and while one exists nothing is swept (the blobs it
    names are unknown); both are reported ("damaged", "sweep_skipped"). A dry run reports the same
    without changing anything, including how many blobs the sweep would remove. `now` drives the
    retention rules; locks are judged by the clock, as S3 enforces them.
    """
    now = now or datetime.now(timezone.utc)
    policy = policy_from(retention)
    catalog = repo.catalog()
    series: dict[tuple[str, str], list[Manifest]] = {}
    for m in catalog.backups:
        if (kind is None or m.kind == kind) and (source_name is None or m.source.series_name == source_name):
            series.setdefault(m.series, []).append(m)
    decisions = []
    for (name, series_kind), members in sorted(series.items()):
        for d in apply_policy(members, policy, now):
            decisions.append({"backup_id": d.backup_id, "source": name, "kind": series_kind, "keep": d.keep,
                              "reasons": d.reasons})
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
        log.info("%s: keeping backup %s (%s %s): the policy would remove it but it is %s", repo.url, d["backup_id"],
                 d["source"], d["kind"], _lock_reason(lock_ends[d["backup_id"]]))
    gone = {d["backup_id"] for d in doomed} - {d["backup_id"] for d in locked}
    damaged = catalog.damaged
    swept = SweepResult(removed=[], locked={})
    if not dry_run:
        fresh = repo.catalog()  # a backup may have landed, or a manifest been damaged, since
        damaged = fresh.damaged
        referenced = {f.sha256 for m in fresh.backups for f in m.files}
    else:
        referenced = {f.sha256 for m in catalog.backups if m.backup_id not in gone for f in m.files}
    if damaged:
        log.warning("%s: not sweeping unreferenced blobs: %d damaged manifest(s) may name some of them (%s); "
                    "repair or remove them first", repo.url, len(damaged), damaged[0].describe())
    else:
        swept = repo.sweep(referenced, parse_grace(grace), now, dry_run=dry_run)
    return {
        "url": repo.url, "dry_run": dry_run,
        "kept": [{"backup_id": d["backup_id"], "source": d["source"], "kind": d["kind"], "reasons": d["reasons"]}
                 for d in decisions if d["keep"]],
        "removed": [{"backup_id": d["backup_id"], "source": d["source"], "kind": d["kind"]}
                    for d in doomed if d["backup_id"] in gone],
        "locked": [{"backup_id": d["backup_id"], "source": d["source"], "kind": d["kind"],
                    "locked_until": lock_ends[d["backup_id"]].isoformat(), "reason": _lock_reason(lock_ends[d["backup_id"]])}
                   for d in locked],
        "damaged": [{"backup_id": d.backup_id, "reason": d.reason} for d in damaged],
        "sweep_skipped": bool(damaged),
        "blobs_removed": len(swept.removed),
        "blobs_locked": len(swept.locked),
    }
