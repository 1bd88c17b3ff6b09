"""The repository format, on any Destination (restic's model: one small storage interface below).

    config.json                  {"format": "qilbee-backup", "version": 1, "created_at": ...}, written once
    blobs/<sha[:2]>/<sha>        zstd of one file's content, keyed by the SHA-256 of the *uncompressed* bytes
    backups/<backup_id>.json     the manifest: the commit point, written after every blob it names is stored
    locks/<source_key>.json      one run per source at a time

A backup without a manifest does not exist: an interrupted run leaves only blobs, which the next
run reuses and ``sweep`` removes once they are older than its grace period and still unreferenced.

Immutability (S3 Object Lock, when the destination has a ``lock_period``): a backup's blobs and
manifest are written locked until the backup's time plus that period (``retain_until``); blobs it
reuses have their lock lengthened to the same date *before* the manifest is written, so a locked
backup never depends on a blob that could be deleted sooner. Lock files and config.json are never
locked: they must stay removable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Sequence
from urllib.parse import urlsplit

from .archiver import StagedBlob
from .destinations.base import Destination, ObjectInfo
from .errors import IntegrityError, LockedError, NotFound, ObjectLocked, QilbeeBackupError, UsageError
from .manifest import SHA256_RE, Manifest, parse_backup_id
from .retention import Duration

log = logging.getLogger(__name__)

FORMAT_NAME = "qilbee-backup"
REPOSITORY_VERSION = 1
CONFIG_KEY = "config.json"
BLOBS = "blobs/"
BACKUPS = "backups/"
LOCKS = "locks/"
_BLOB_KEY_RE = re.compile(r"blobs/([0-9a-f]{2})/([0-9a-f]{64})")
_MANIFEST_KEY_RE = re.compile(r"backups/(\d{8}T\d{6}Z-[0-9a-f]{6})\.json")
_SOURCE_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_STALE_TAKEOVER = timedelta(minutes=5)


class BackupExists(QilbeeBackupError):
    """A manifest with this backup id is already in the repository."""


@dataclass
class SweepResult:
    """What a sweep did (or, in a dry run, would do)."""

    removed: list[str]  # shas of the blobs removed
    locked: dict[str, datetime]  # sha -> lock end, for unreferenced blobs left because they are locked


def blob_key(sha256: str) -> str:
    if not SHA256_RE.fullmatch(sha256):
        raise UsageError(f"malformed blob id {sha256!r}")
    return f"{BLOBS}{sha256[:2]}/{sha256}"


def manifest_key(backup_id: str) -> str:
    parse_backup_id(backup_id)
    return f"{BACKUPS}{backup_id}.json"


def source_key_for(source_url: str) -> str:
    """A lock name for a source URL: readable host and port plus a short hash of the whole URL."""
    parts = urlsplit(source_url)
    host = re.sub(r"[^A-Za-z0-9.-]+", "-", f"{parts.hostname or 'source'}-{parts.port or ''}").strip("-.")
    return f"{host or 'source'}-{hashlib.sha256(source_url.encode()).hexdigest()[:8]}"


def _holder_is_gone(info: "LockInfo") -> bool:
    """A lock taken on this host by a process that no longer runs (a killed run) is stale at once,
    as restic treats it; locks from other hosts wait for their expiry."""
    if info.host != socket.gethostname() or info.pid <= 0 or info.pid == os.getpid():
        return False
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class LockInfo:
    owner: str
    host: str
    pid: int
    created_at: datetime
    expires_at: datetime
    token: str

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "owner": self.owner,
                "host": self.host,
                "pid": self.pid,
                "created_at": self.created_at.isoformat(),
                "expires_at": self.expires_at.isoformat(),
                "token": self.token,
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "LockInfo":
        raw = json.loads(data)
        return cls(
            owner=str(raw["owner"]),
            host=str(raw["host"]),
            pid=int(raw["pid"]),
            created_at=datetime.fromisoformat(raw["created_at"]),
            expires_at=datetime.fromisoformat(raw["expires_at"]),
            token=str(raw["token"]),
        )

    def describe(self) -> str:
        return f"{self.owner} on {self.host} (pid {self.pid}) since {self.created_at:%Y-%m-%dT%H:%M:%SZ}, until {self.expires_at:%Y-%m-%dT%H:%M:%SZ}"


class RepositoryLock:
    """A held lock; ``refresh()`` pushes its expiry out for a run that takes longer than expected."""

    def __init__(self, repo: "Repository", key: str, info: LockInfo, ttl: timedelta) -> None:
        self.repo, self.key, self.info, self.ttl = repo, key, info, ttl

    def refresh(self) -> None:
        current = self.repo._read_lock(self.key)
        if current is None or current.token != self.info.token:
            raise LockedError(f"lost the lock {self.key}: " + (f"now held by {current.describe()}" if current else "it was removed"))
        now = _utcnow()
        self.info = LockInfo(self.info.owner, self.info.host, self.info.pid, self.info.created_at, now + self.ttl, self.info.token)
        self.repo.dest.put_bytes(self.key, self.info.to_json())

    def release(self) -> None:
        current = self.repo._read_lock(self.key)
        if current is not None and current.token == self.info.token:
            self.repo.dest.remove(self.key)
        else:
            log.warning("lock %s was taken over while held (it expired); leaving the new holder's lock", self.key)


class Repository:
    def __init__(self, dest: Destination) -> None:
        self.dest = dest
        self.url = dest.url

    def __repr__(self) -> str:
        return f"Repository(url={self.url!r})"

    @classmethod
    def open(cls, url: str, **options: Any) -> "Repository":
        from .destinations import open_destination

        return cls(open_destination(url, **options))

    def close(self) -> None:
        self.dest.close()

    # -- config ------------------------------------------------------------------------

    def init(self, now: datetime | None = None) -> dict[str, Any]:
        """Create config.json unless it exists (idempotent, safe to race); check an existing one."""
        config = {"format": FORMAT_NAME, "version": REPOSITORY_VERSION, "created_at": (now or _utcnow()).isoformat()}
        if self.dest.put_bytes(CONFIG_KEY, json.dumps(config).encode(), if_absent=True):
            return config
        return self.config()

    def config(self) -> dict[str, Any]:
        """The repository's config; NotFound if never initialised, IntegrityError if it is not ours."""
        try:
            raw = self.dest.get_bytes(CONFIG_KEY)
        except NotFound:
            raise NotFound(f"{self.url} is not initialised (no {CONFIG_KEY})") from None
        try:
            config = json.loads(raw)
        except ValueError:
            raise IntegrityError(f"{self.url}/{CONFIG_KEY} is not valid JSON") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
            raise IntegrityError(f"{self.url} is not a {FORMAT_NAME} repository ({CONFIG_KEY} says otherwise)")
        if config.get("version") != REPOSITORY_VERSION:
            raise IntegrityError(f"{self.url} has repository version {config.get('version')!r}; this tool reads {REPOSITORY_VERSION}")
        return config

    # -- backups -----------------------------------------------------------------------

    def backup_ids(self) -> list[str]:
        """Ids of every committed backup (from key names alone: one listing, no downloads), sorted."""
        ids = []
        for info in self.dest.list(BACKUPS):
            m = _MANIFEST_KEY_RE.fullmatch(info.key)
            if m:
                ids.append(m.group(1))
            else:
                log.warning("ignoring %s/%s: not a backup manifest name", self.url, info.key)
        return sorted(ids)

    def list_backups(self, kind: str | None = None) -> list[Manifest]:
        """Every backup (of one kind), oldest first. An unreadable manifest is an IntegrityError, not
        skipped: a sweep must never think the blobs of a backup it could not read are unreferenced."""
        ids = self.backup_ids()
        with ThreadPoolExecutor(max_workers=4) as pool:
            manifests = list(pool.map(self._read_manifest, ids))
        if kind is not None:
            manifests = [m for m in manifests if m.kind == kind]
        return sorted(manifests, key=lambda m: (m.created_at, m.backup_id))

    def load(self, backup_id: str = "latest", kind: str | None = None) -> Manifest:
        """One backup by id, or the newest (of a kind) for 'latest'. kind only narrows 'latest'."""
        if backup_id == "latest":
            backups = self.list_backups(kind)
            if not backups:
                raise NotFound(f"no {kind + ' ' if kind else ''}backups in {self.url}")
            return backups[-1]
        parse_backup_id(backup_id)
        return self._read_manifest(backup_id)

    def _read_manifest(self, backup_id: str) -> Manifest:
        key = manifest_key(backup_id)
        try:
            data = self.dest.get_bytes(key)
        except NotFound:
            raise NotFound(f"backup {backup_id} not found in {self.url}") from None
        manifest = Manifest.from_json(data, origin=f"{self.url}/{key}")
        if manifest.backup_id != backup_id:
            raise IntegrityError(f"{self.url}/{key} holds backup id {manifest.backup_id}, not {backup_id}")
        return manifest

    def retain_until(self, created_at: datetime) -> datetime | None:
        """Until when a backup made at created_at is locked here; None if this repository locks nothing."""
        period = self.dest.lock_period
        if period is None:
            return None
        until = created_at.astimezone(timezone.utc) + period
        if until <= _utcnow():
            raise UsageError(f"{self.url}: a backup made at {created_at:%Y-%m-%dT%H:%M:%SZ} would be locked only "
                             f"until {until:%Y-%m-%dT%H:%M:%SZ}, which has passed")
        return until

    def extend_locks(self, shas: Sequence[str] | set[str], until: datetime | None, *, workers: int = 8) -> int:
        """Keep every listed blob locked until at least `until` (in parallel); how many were lengthened.

        Blobs are shared between backups: a new backup reusing an old blob must not depend on a lock
        that ends before its own. NotFound if a blob vanished (a sweep raced us): the backup fails."""
        if until is None or not shas:
            return 0
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return sum(pool.map(lambda sha: self.dest.extend_lock(blob_key(sha), until), sorted(shas)))

    def write_manifest(self, manifest: Manifest, *, check_blobs: bool = True, retain_until: datetime | None = None) -> None:
        """Commit a backup. Written only if absent; with check_blobs (default) one fresh listing first
        proves every blob it names is stored, with the recorded stored size. retain_until: write it locked."""
        if check_blobs:
            sizes = self.blob_sizes()
            for entry in manifest.files:
                have = sizes.get(entry.sha256)
                if have is None:
                    raise IntegrityError(f"not committing backup {manifest.backup_id} to {self.url}: blob {entry.sha256} of {entry.path} is missing")
                if entry.stored_size is not None and have != entry.stored_size:
                    raise IntegrityError(
                        f"not committing backup {manifest.backup_id} to {self.url}: blob {entry.sha256} of {entry.path} "
                        f"has {have} bytes, expected {entry.stored_size}"
                    )
        if not self.dest.put_bytes(manifest_key(manifest.backup_id), manifest.to_json(), if_absent=True,
                                   retain_until=retain_until):
            raise BackupExists(f"backup {manifest.backup_id} already exists in {self.url}")

    def backup_locked_until(self, backup_id: str) -> datetime | None:
        """When the lock on a backup's manifest ends, if it is locked now."""
        return self.dest.locked_until(manifest_key(backup_id))

    def remove_backup(self, backup_id: str, *, missing_ok: bool = False) -> None:
        """Forget a backup (its manifest); its blobs go at the next sweep if nothing else uses them.
        ObjectLocked (and the backup stays whole) while its manifest is locked."""
        key = manifest_key(backup_id)
        if not missing_ok and self.dest.stat(key) is None:
            raise NotFound(f"backup {backup_id} not found in {self.url}")
        self.dest.remove(key)

    # -- blobs -------------------------------------------------------------------------

    def blob_infos(self) -> dict[str, ObjectInfo]:
        """Every stored blob by sha, from one listing of blobs/."""
        found = {}
        for info in self.dest.list(BLOBS):
            m = _BLOB_KEY_RE.fullmatch(info.key)
            if m and m.group(2).startswith(m.group(1)):
                found[m.group(2)] = info
        return found

    def blob_sizes(self) -> dict[str, int]:
        return {sha: info.size for sha, info in self.blob_infos().items()}

    def put_blob(self, sha256: str, staged: StagedBlob, *, retain_until: datetime | None = None) -> None:
        """Upload a staged blob; its stored SHA-256 goes along so the store verifies the bytes."""
        self.dest.put_file(blob_key(sha256), staged.path, sha256=staged.stored_sha256, retain_until=retain_until)

    def referenced_blobs(self) -> set[str]:
        return {sha for m in self.list_backups() for sha in m.blob_shas()}

    def sweep(
        self,
        referenced: set[str] | None = None,
        grace: timedelta | Duration = timedelta(hours=1),
        now: datetime | None = None,
        *,
        dry_run: bool = False,
        workers: int = 8,
    ) -> SweepResult:
        """Delete blobs no manifest references that are older than grace, except those still locked.

        referenced=None reads every manifest. The grace period spares blobs of a backup still in
        flight (uploaded, manifest not yet written). A backup that *reuses* an old unreferenced blob
        races with a sweep; write_manifest's check turns that into a failed, retriable backup rather
        than a manifest naming a missing blob. Run sweeps rarely and with a generous grace.
        Locked blobs (S3 Object Lock) are left and reported; a later sweep takes them.
        """
        if referenced is None:
            referenced = self.referenced_blobs()
        now = now or _utcnow()
        cutoff = grace.before(now) if isinstance(grace, Duration) else now - grace
        doomed = sorted(sha for sha, info in self.blob_infos().items() if sha not in referenced and info.modified < cutoff)

        def sweep_one(sha: str) -> datetime | None:
            """None once removed (or, in a dry run, removable); else when its lock ends."""
            until = self.dest.locked_until(blob_key(sha))
            if until is not None or dry_run:
                return until
            try:
                self.dest.remove(blob_key(sha))
            except ObjectLocked:  # locked since we looked (a backup reused it): keep it
                return self.dest.locked_until(blob_key(sha)) or _utcnow()
            return None

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            outcome = dict(zip(doomed, pool.map(sweep_one, doomed)))
        locked = {sha: until for sha, until in outcome.items() if until is not None}
        if locked:
            log.info("%s: %d unreferenced blob(s) are still under object lock; a later sweep removes them", self.url, len(locked))
        return SweepResult(removed=[sha for sha in doomed if sha not in locked], locked=locked)

    # -- locks -------------------------------------------------------------------------

    @contextmanager
    def lock(
        self,
        source_key: str,
        owner: str,
        ttl: timedelta = timedelta(hours=6),
        *,
        wait: float = 0.0,
        poll: float = 1.0,
    ) -> Iterator[RepositoryLock]:
        """Hold ``locks/<source_key>.json`` for the block: one run per source.

        Held and unexpired -> LockedError naming the holder (after waiting up to ``wait`` seconds).
        An expired lock is taken over: the taker first claims ``locks/<key>.json.takeover-<token>``
        (if_absent), so of several racers exactly one removes the expired lock, and then creates its
        own with if_absent like anyone else.
        """
        if not _SOURCE_KEY_RE.fullmatch(source_key):
            raise UsageError(f"bad lock name {source_key!r}: letters, digits, '.', '_' or '-' (see source_key_for)")
        key = f"{LOCKS}{source_key}.json"
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            now = _utcnow()
            mine = LockInfo(owner, socket.gethostname(), os.getpid(), now, now + ttl, uuid.uuid4().hex)
            held = self._try_lock(key, mine)
            if held is None:
                break
            if time.monotonic() >= deadline:
                raise LockedError(f"{self.url}: {source_key} is locked by {held.describe()}")
            time.sleep(min(poll, max(0.05, deadline - time.monotonic())))
        handle = RepositoryLock(self, key, mine, ttl)
        try:
            yield handle
        finally:
            handle.release()

    def _try_lock(self, key: str, mine: LockInfo) -> LockInfo | None:
        """None when mine is now the lock; else the lock that stands in the way."""
        for _ in range(3):
            if self.dest.put_bytes(key, mine.to_json(), if_absent=True):
                return None
            current = self._read_lock(key)
            if current is not None:
                break
        else:  # released and retaken between our calls, again and again: call it held
            return LockInfo("another run", "unknown", 0, _utcnow(), _utcnow(), "contended")
        if current.expires_at > _utcnow() and not _holder_is_gone(current):
            return current
        return self._take_over(key, current, mine)

    def _take_over(self, key: str, expired: LockInfo, mine: LockInfo) -> LockInfo | None:
        marker = f"{key}.takeover-{expired.token}"
        if not self.dest.put_bytes(marker, mine.to_json(), if_absent=True):
            info = self.dest.stat(marker)
            if info is not None and info.modified < _utcnow() - _STALE_TAKEOVER:
                log.warning("removing stale lock takeover marker %s", marker)
                self.dest.remove(marker)
            return expired  # another run is taking it over right now
        try:
            current = self._read_lock(key)
            if current is not None and current.token == expired.token:
                log.warning("taking over expired lock %s held by %s", key, expired.describe())
                self.dest.remove(key)
            if self.dest.put_bytes(key, mine.to_json(), if_absent=True):
                return None
            return self._read_lock(key) or expired
        finally:
            self.dest.remove(marker)

    def _read_lock(self, key: str) -> LockInfo | None:
        try:
            data = self.dest.get_bytes(key)
        except NotFound:
            return None
        try:
            return LockInfo.from_json(data)
        except (ValueError, KeyError, TypeError):
            # Unreadable: treat as expired so it cannot block forever; the takeover still races safely.
            return LockInfo("unknown", "unknown", 0, datetime.min.replace(tzinfo=timezone.utc),
                            datetime.min.replace(tzinfo=timezone.utc), "unreadable-" + hashlib.sha256(data).hexdigest()[:16])
