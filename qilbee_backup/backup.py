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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .blobs import HashCache, StagedBlob, scan_tree, stage_blobs, stage_one
from .errors import NotFound, UsageError
from .manifest import FileEntry, Manifest, SourceInfo, check_kind, new_backup_id
from .crypto import KeyRequired, find_password
from .repository import BlobsMissing, Repository, source_key_for

UPLOAD_WORKERS = 8

log = logging.getLogger(__name__)


def prepare(repos: Sequence[Repository], client, *, encrypt: bool = True) -> None:
    """Before a backup writes anything: the source answers (an unreachable one leaves no trace), each
    existing repository opens (an encrypted one with its passphrase: a wrong one stops the run here,
    nothing written), then each new one is created — encrypted under the passphrase given, unless
    encrypt is False (--insecure-no-encryption) — and older ones upgraded to this version."""
    client.health()
    for repo in repos:
        if repo.exists():
            repo.unlock()
    new = [repo for repo in repos if not repo.exists()]
    passphrase = find_password() if encrypt and new else None
    if encrypt and new and not passphrase:
        raise KeyRequired(f"{new[0].url} would be a new repository, and new repositories are encrypted: give a "
                          "passphrase (QILBEE_PASSWORD, QILBEE_PASSWORD_FILE or --password-file), or "
                          "--insecure-no-encryption to store the backups readable by whoever reads the bucket")
    for repo in repos:
        repo.init(passphrase=passphrase if repo in new else None)


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
    started: datetime | None = None  # the backup's time: its manifest's created_at and its lock's start
    sent: dict[str, set[str]] = field(default_factory=dict)  # repository url -> blobs the copy already put
    send_failed: dict[str, str] = field(default_factory=dict)  # repository url -> why the copy stopped sending

    @property
    def bytes_total(self) -> int:
        return sum(e.size for e in self.entries)

    @property
    def bytes_staged(self) -> int:
        return sum(b.stored_size for b in self.staged.values())


def copy_snapshot(root: Path, repos: list[Repository], spool: Path, *, hash_cache: HashCache | None = None,
                  send: bool = True, workers: int = UPLOAD_WORKERS, now: datetime | None = None,
                  on_upload: Callable[[Repository, str, int], None] | None = None) -> CopyResult:
    """Scan the snapshot and stage the contents the repositories lack; with send, put each blob to
    the repositories lacking it as soon as it is staged, while the scan goes on (reading, hashing,
    compressing and sending overlap; the spool on disk bounds memory).

    Sending here is an optimisation, not the commit: a repository whose put fails is sent nothing
    more by the copy, and upload_backup (which the flow retries) sends whatever is still missing
    before it writes the manifest."""
    started = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    root, spool = Path(root), Path(spool)
    spool.mkdir(parents=True, exist_ok=True)
    for repo in repos:
        repo.init()
    stored = {repo.url: repo.blob_sizes() for repo in repos}  # one listing per repository
    lock = threading.Lock()
    staged: dict[str, StagedBlob] = {}
    seen: set[str] = set()
    sent: dict[str, set[str]] = {repo.url: set() for repo in repos}
    failed: dict[str, str] = {}
    retain = {repo.url: repo.retain_until(started) for repo in repos} if send else {}
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="qilbee-send") if send else None
    jobs = []

    # Blobs are sealed as they are compressed, for the first encrypted repository (the others, if
    # any, get a copy opened and sealed again with their own key as it is sent).
    sealer = next((r.blob_sealer() for r in repos if r.key is not None), None) if send else None

    def put(sha: str, path: Path) -> None:
        with lock:
            blob = staged.get(sha)
        if blob is None:  # a cached hash: its blob is compressed only now, as a repository lacks it
            blob = stage_one(path, sha, spool, sealer=sealer)
            with lock:
                staged[sha] = blob
        for repo in repos:
            if repo.blob_id(sha) in stored[repo.url] or repo.url in failed:
                continue
            try:
                repo.put_blob(sha, blob, retain_until=retain[repo.url])
                if on_upload is not None:
                    on_upload(repo, sha, repo.stored_size(blob))
            except Exception as exc:  # noqa: BLE001 - the upload step sends it again, and says why if it fails there
                with lock:
                    failed.setdefault(repo.url, " ".join(str(exc).split()) or type(exc).__name__)
                continue
            with lock:
                sent[repo.url].add(sha)

    def hashed(sha: str, path: Path, blob: StagedBlob | None) -> None:
        with lock:
            if sha in seen:
                return
            seen.add(sha)
            if blob is not None:
                staged[sha] = blob
            lacking = any(repo.blob_id(sha) not in stored[repo.url] for repo in repos)
            if not lacking and blob is not None:
                del staged[sha]
        if not lacking:
            if blob is not None:
                blob.path.unlink(missing_ok=True)
            return
        if pool is not None:
            jobs.append(pool.submit(put, sha, path))

    try:
        if hash_cache is None:
            with HashCache() as cache:
                entries = scan_tree(root, hash_cache=cache, spool=spool, on_hashed=hashed, sealer=sealer)
        else:
            entries = scan_tree(root, hash_cache=hash_cache, spool=spool, on_hashed=hashed, sealer=sealer)
        for job in list(jobs):
            job.result()  # staging errors (a file that changed) fail the copy; put errors do not
    except BaseException:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        for blob in staged.values():
            blob.path.unlink(missing_ok=True)
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    if not entries:
        raise UsageError(f"{root} holds no files; refusing to record an empty backup (is the snapshot path right?)")
    wanted = {e.sha256 for e in entries}
    present = {repo.url: {sha: stored[repo.url][repo.blob_id(sha)] for sha in wanted if repo.blob_id(sha) in stored[repo.url]}
               for repo in repos}
    missing = {url: wanted - present[url].keys() for url in stored}
    _stage_missing(root, entries, missing, staged, spool)
    return CopyResult(root=root, entries=entries, staged=staged, missing=missing, present=present, spool=spool,
                      started=started, sent=sent, send_failed=failed)


def _stage_missing(root: Path, entries: list[FileEntry], missing: dict[str, set[str]], staged: dict[str, StagedBlob],
                   spool: Path) -> None:
    """Without sending (send=False), cached contents a repository lacks are staged here."""
    lacking = set().union(*missing.values()) - staged.keys() if missing else set()
    if lacking:
        staged.update(stage_blobs(root, entries, lacking, spool))


def make_manifest(copied: CopyResult, *, kind: str, source: SourceInfo, stats: dict, now: datetime | None = None) -> Manifest:
    """The backup's manifest; each repository's copy gets its own stored sizes at upload."""
    check_kind(kind)
    now = (now or copied.started or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return Manifest(backup_id=new_backup_id(now), kind=kind, created_at=now, source=source, stats=stats,
                    files=copied.entries, bytes_total=copied.bytes_total)


def _manifest_for(repo: Repository, copied: CopyResult, manifest: Manifest, sent: set[str] = frozenset()) -> Manifest:
    """Stored sizes as this repository holds them (a blob compressed by another run may differ in size)."""
    sizes = dict(copied.present.get(repo.url, {}))
    sizes.update({sha: repo.stored_size(copied.staged[sha]) for sha in set(copied.missing.get(repo.url, ())) | set(sent)})
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
    sent = set(copied.sent.get(repo.url, ()))  # by the copy, locked as this backup's blobs (copied.started)
    if copied.started != manifest.created_at and retain_until is not None:
        sent = set()  # a manifest of another time: lock the blobs again to its own end
    todo, extended = set(copied.missing.get(repo.url, set())) - sent, 0
    if repo.url in copied.send_failed and todo:
        log.warning("%s: the copy stopped sending (%s); sending the %d blob(s) left now", repo.url,
                    copied.send_failed[repo.url], len(todo))
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
            todo = exc.shas if isinstance(exc, BlobsMissing) else {sha for sha, have in _stored(repo, manifest).items() if not have}
            log.warning("%s: %d reused blob(s) vanished before the commit (swept by a prune?); sending them again",
                        repo.url, len(todo))
    return UploadResult(url=repo.url, blobs_sent=len(sent),
                        bytes_uploaded=sum(repo.stored_size(copied.staged[s]) for s in sent), backup_id=manifest.backup_id,
                        locked_until=retain_until, locks_extended=extended, manifest=committed)


def _stored(repo: Repository, manifest: Manifest) -> dict[str, bool]:
    listing = repo.blob_sizes()
    return {sha: repo.blob_id(sha) in listing for sha in manifest.blob_shas()}


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
                on_upload(repo, sha, repo.stored_size(copied.staged[sha]))
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
    copied = copy_snapshot(Path(root), list(repos), Path(spool), workers=upload_workers, now=now, on_upload=on_upload)
    try:
        manifest = make_manifest(copied, kind=kind, source=source, stats=stats or {})
        uploads = [upload_backup(repo, copied, manifest, workers=upload_workers, on_upload=on_upload) for repo in repos]
    finally:
        for blob in copied.staged.values():
            blob.path.unlink(missing_ok=True)
    return uploads[0].manifest
