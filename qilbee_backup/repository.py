"""The repository format, on any Destination (restic's model: one small storage interface below).

    config.json                  {"format": "qilbee-backup", "version": 2, "created_at": ...}; an encrypted
                                 repository is version 3 and adds "id" and "encryption" (see crypto.py)
    keys/<key id>.json           encrypted only: the master key wrapped under one passphrase each
    blobs/<id[:2]>/<id>          zstd of one file's content; id is the SHA-256 of the *uncompressed*
                                 bytes, or in an encrypted repository HMAC-SHA-256 of it under the
                                 id key, and the zstd stream is sealed (AES-256-GCM frames)
    backups/<backup_id>.<digest>.json
                                 the manifest: the commit point, written after every blob it names is stored;
                                 <digest> is the SHA-256 of the object's bytes, checked at every read
    locks/<source_key>.json      one run per source at a time (a keyed name when encrypted)

A manifest seals itself by its name (restic names snapshot files by their hash too): an edit in
place — a file entry removed and bytes_total adjusted — no longer matches the name, and the
backup is reported damaged instead of restored short. Version 1 repositories named manifests
``backups/<backup_id>.json`` (no digest); those are still read, and the first write upgrades the
config to version 2 so that older tools, which would not see the new names, refuse the repository
instead of sweeping the blobs of backups they cannot see.

A damaged manifest (unreadable, unsealed by an edit, two for one id) never blocks the rest:
``catalog()`` returns the readable backups and names the damaged ones; callers skip them, verify
counts them, and prune neither removes them nor sweeps while one exists (its blobs are unknown).

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
import hmac
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Sequence
from urllib.parse import urlsplit

from . import ahead, key_cache
from .blobs import BlobRead, HashingWriter, StagedBlob, read_blob
from .crypto import (
    FRAME,
    BlobSealer,
    Encryption,
    KeyRequired,
    RepoKey,
    WrongPassphrase,
    find_password,
    new_key_id,
    new_master_key,
    sealed_size,
    unwrap_master_key,
    wrap_master_key,
)
from .destinations.base import Destination, ObjectInfo
from .key_cache import Remembered
from .errors import (
    DestinationError,
    IntegrityError,
    LockedError,
    NotFound,
    ObjectLocked,
    QilbeeBackupError,
    UsageError,
)
from .manifest import SHA256_RE, Manifest, parse_backup_id
from .retention import Duration

log = logging.getLogger(__name__)

FORMAT_NAME = "qilbee-backup"
REPOSITORY_VERSION = 2  # unencrypted
ENCRYPTED_VERSION = 3  # encrypted: an older tool, which would write plaintext into it, refuses it
READABLE_VERSIONS = (1, 2, 3)
MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # a million files is ~200 MB... of paths; ours hold hundreds
CONFIG_KEY = "config.json"
KEYS = "keys/"
BLOBS = "blobs/"
BACKUPS = "backups/"
LOCKS = "locks/"
_BLOB_KEY_RE = re.compile(r"blobs/([0-9a-f]{2})/([0-9a-f]{64})")
_MANIFEST_KEY_RE = re.compile(r"backups/(\d{8}T\d{6}Z-[0-9a-f]{6})(?:\.([0-9a-f]{64}))?\.json")
_KEY_FILE_RE = re.compile(r"keys/([0-9a-f]{16})\.json")
_SOURCE_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_STALE_TAKEOVER = timedelta(minutes=5)


class BackupExists(QilbeeBackupError):
    """A manifest with this backup id is already in the repository."""


class BlobsMissing(IntegrityError):
    """A manifest was not committed: blobs it names are not stored (a sweep may have raced us)."""

    def __init__(self, message: str, shas: set[str]) -> None:
        super().__init__(message)
        self.shas = shas


@dataclass(frozen=True)
class ManifestRef:
    """A manifest object as listed: its backup id, key and the digest its name seals it with."""

    backup_id: str
    key: str
    digest: str | None  # SHA-256 of the stored bytes; None for a version 1 name
    size: int


@dataclass(frozen=True)
class DamagedManifest:
    """A manifest that cannot be trusted: skipped by every reader, named in every report."""

    backup_id: str
    key: str
    reason: str  # one line, naming the object

    def describe(self) -> str:
        return self.reason


@dataclass
class Catalog:
    """What a repository's manifests say: the readable backups (oldest first) and the damaged ones."""

    backups: list[Manifest]
    damaged: list[DamagedManifest]


@dataclass
class SweepResult:
    """What a sweep did (or, in a dry run, would do)."""

    removed: list[str]  # shas of the blobs removed
    locked: dict[str, datetime]  # sha -> lock end, for unreferenced blobs left because they are locked


def blob_key(sha256: str) -> str:
    if not SHA256_RE.fullmatch(sha256):
        raise UsageError(f"malformed blob id {sha256!r}")
    return f"{BLOBS}{sha256[:2]}/{sha256}"


def manifest_key(backup_id: str, data: bytes) -> str:
    """Where a manifest with these bytes is stored: its name carries their SHA-256."""
    parse_backup_id(backup_id)
    return f"{BACKUPS}{backup_id}.{hashlib.sha256(data).hexdigest()}.json"


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
    def __init__(self, dest: Destination, key: RepoKey | None = None) -> None:
        self.dest = dest
        self.url = dest.url
        self.key = key  # the unlocked master key of an encrypted repository (None: unencrypted)
        self._plain_checked = False  # config read and found unencrypted (so writing plain is right)
        self._early_error: BaseException | None = None  # what unlocking ahead met: see opened_early
        self._guess: tuple[Remembered, str, Future] | None = None  # a KDF started from the key cache
        # Opened ahead, before the command's input is checked: what to remember waits until it is taken.
        self._defer_remember = False
        self._to_remember: Remembered | None = None

    def __repr__(self) -> str:
        return f"Repository(url={self.url!r})"

    @classmethod
    def open(cls, url: str, **options: Any) -> "Repository":
        from .destinations import open_destination

        return cls(open_destination(url, **options))

    def close(self) -> None:
        self.dest.close()

    # -- config ------------------------------------------------------------------------

    def init(self, now: datetime | None = None, *, passphrase: str | None = None,
             kms_key_id: str | None = None) -> dict[str, Any]:
        """Create the repository unless it exists (idempotent, safe to race): encrypted under
        passphrase, or under the AWS KMS key kms_key_id (a new master key and its first key file),
        unencrypted when neither. An existing one is checked (and unlocked when a passphrase is given
        and it is encrypted); a version 1 repository is upgraded before anything is written in the
        version 2 layout."""
        now = now or _utcnow()
        config: dict[str, Any] = {"format": FORMAT_NAME, "version": REPOSITORY_VERSION, "created_at": now.isoformat()}
        key_file = None
        if (passphrase is not None or kms_key_id is not None) and not self.exists():
            master, repo_id = new_master_key(), secrets.token_hex(16)
            config = {**config, "version": ENCRYPTED_VERSION, "id": repo_id, "encryption": Encryption().as_config()}
            key_id = new_key_id()
            key_file = f"{KEYS}{key_id}.json"
            if kms_key_id is not None:
                from . import kms

                wrapped = kms.wrap(master, kms_key_id, repo_id, now=now)
            else:
                wrapped = wrap_master_key(master, passphrase, repo_id, now=now)
            # The key first: a config naming an encryption nobody can open would lock everyone out.
            self.dest.put_bytes(key_file, json.dumps(wrapped).encode())
        if self.dest.put_bytes(CONFIG_KEY, json.dumps(config).encode(), if_absent=True):
            if key_file is not None:
                self.key = RepoKey(master, key_id)
                if kms_key_id is None:
                    self._remember(Remembered(repo_id, key_id, wrapped))
            return config
        if key_file is not None:  # another run created the repository meanwhile: ours is not its key
            self.dest.remove(key_file)
        existing = self.config()
        if existing.get("version") == 1:
            existing = {**existing, "version": REPOSITORY_VERSION}
            self.dest.put_bytes(CONFIG_KEY, json.dumps(existing).encode())  # same bytes if two runs race
            log.info("%s: repository upgraded to version %d (sealed manifest names)", self.url, REPOSITORY_VERSION)
        if passphrase is not None and self.key is None and self.encrypted(existing):
            self.unlock(passphrase)
        return existing

    def exists(self) -> bool:
        return self.dest.stat(CONFIG_KEY) is not None

    def encrypted(self, config: dict[str, Any] | None = None) -> bool:
        return Encryption.from_config((config or self.config()).get("encryption")) is not None

    # -- keys --------------------------------------------------------------------------

    def key_files(self) -> dict[str, dict[str, Any]]:
        """Every key file by key id (the master key wrapped under one passphrase each)."""
        found = {}
        for info in self.dest.list(KEYS):
            m = _KEY_FILE_RE.fullmatch(info.key)
            if not m:
                continue
            try:
                found[m.group(1)] = json.loads(self.dest.get_bytes(info.key))
            except (ValueError, NotFound):
                log.warning("%s: ignoring unreadable key file %s", self.url, info.key)
        return found

    def unlock(self, passphrase: str | None = None, *, interactive: bool = True) -> None:
        """Open an encrypted repository's master key: by AWS KMS when it has a KMS key and no
        passphrase is given here, else with a passphrase (the first source that has one:
        QILBEE_PASSWORD, QILBEE_PASSWORD_FILE, a CLI flag or prompt (not when interactive is False),
        a Prefect Secret). Nothing to do for an unencrypted one. KeyRequired without a passphrase;
        WrongPassphrase when no key file opens with it. scrypt runs once per key file tried, once per command."""
        if self.key is not None or self._plain_checked:
            return
        early, self._early_error = self._early_error, None
        if early is not None and passphrase is None:
            raise early
        config = self.config()
        if self._plain(config):
            self._plain_checked = True
            return
        keys = self.key_files()
        if not keys:
            raise IntegrityError(f"{self.url} is encrypted but holds no key file under {KEYS}")
        from . import kms

        by_kms = {k: f for k, f in keys.items() if kms.is_kms(f)}
        kms_refused = None
        if by_kms and passphrase is None:
            opened = kms.unwrap(by_kms, config.get("id", ""))
            if isinstance(opened, tuple):
                self.key = RepoKey(opened[1], opened[0])
                return
            kms_refused = opened
        by_passphrase = {k: f for k, f in keys.items() if k not in by_kms}
        passphrase = passphrase or find_password(interactive=interactive)
        if not passphrase:
            if kms_refused is not None:
                raise kms.KmsRefused(f"{self.url}: KMS did not open it ({kms_refused}), and no passphrase was given")
            raise self._key_required()
        guess, self._guess = self._guess, None
        if guess is not None:  # the KDF already run on the cached key file: used only if it is this repository's
            remembered, guessed_with, future = guess
            if (remembered.repo_id == config.get("id") and by_passphrase.get(remembered.key_id) == remembered.key_file
                    and hmac.compare_digest(guessed_with.encode(), passphrase.encode())):
                master = future.result()
                if master is not None:
                    self.key = RepoKey(master, remembered.key_id)
                    return
        for key_id, key_file in sorted(by_passphrase.items()):
            master = unwrap_master_key(key_file, passphrase, config.get("id", ""))
            if master is not None:
                self.key = RepoKey(master, key_id)
                self._remember(Remembered(config.get("id", ""), key_id, key_file))
                if kms_refused:
                    log.warning("%s: opened with a passphrase; KMS did not open it (%s)", self.url, kms_refused)
                return
        also = f"; KMS did not open it either ({kms_refused})" if kms_refused else ""
        raise WrongPassphrase(f"{self.url}: wrong passphrase (it opens none of the repository's {len(by_passphrase)} "
                              f"passphrase key(s)){also}")

    def _remember(self, entry: Remembered) -> None:
        if self._defer_remember:
            self._to_remember = entry
        else:
            key_cache.remember(self.url, entry)

    def add_kms_key(self, kms_key_id: str) -> str:
        """Let the AWS KMS key kms_key_id open the repository (the master key wrapped by KMS); the new key's id."""
        from . import kms

        self._need_key("add a key")
        key_id = new_key_id()
        self.dest.put_bytes(f"{KEYS}{key_id}.json", json.dumps(kms.wrap(self.key.master, kms_key_id, self.config()["id"])).encode(),
                            if_absent=True)
        return key_id

    def add_key(self, passphrase: str) -> str:
        """Wrap the master key under one more passphrase; the new key's id."""
        self._need_key("add a key")
        key_id = new_key_id()
        self.dest.put_bytes(f"{KEYS}{key_id}.json", json.dumps(wrap_master_key(self.key.master, passphrase, self.config()["id"])).encode(),
                            if_absent=True)
        return key_id

    def remove_key(self, key_id: str) -> None:
        """Revoke a passphrase: remove its key file. Never the last one (the data would be lost)."""
        self._need_key("remove a key")
        keys = self.key_files()
        if key_id not in keys:
            raise UsageError(f"{self.url} has no key {key_id!r} (see key list)")
        if len(keys) == 1:
            raise UsageError(f"{key_id} is the repository's last key: removing it would make every backup unreadable")
        self.dest.remove(f"{KEYS}{key_id}.json")

    def change_passphrase(self, new_passphrase: str) -> str:
        """Re-wrap the master key under a new passphrase and remove the key that opened it; the data
        is not touched. Returns the new key's id."""
        self._need_key("change the passphrase")
        old = self.key.key_id
        if old is not None and self._opened_by_kms():
            raise UsageError(f"{self.url} was opened by KMS key {old}, not a passphrase: add a passphrase with key add, "
                             "revoke a key with key remove")
        new = self.add_key(new_passphrase)
        if old is not None:
            self.dest.remove(f"{KEYS}{old}.json")
        self.key.key_id = new
        return new

    def _opened_by_kms(self) -> bool:
        from . import kms

        return self.key is not None and kms.is_kms(self.key_files().get(self.key.key_id or "", {}))

    def _need_key(self, what: str) -> None:
        if self.key is None:
            raise UsageError(f"{self.url} is not encrypted: there is no key to {what} "
                             "(make an encrypted repository with init and copy the backups by backing up again)")

    # -- sealing: identity in an unencrypted repository ---------------------------------

    def seal(self, data: bytes, name: str) -> bytes:
        """A small object's stored bytes (name: its logical name, bound to the seal)."""
        return self.key.seal(data, name) if self.key is not None else data

    def open_sealed(self, data: bytes, name: str, where: str) -> bytes:
        """A small object's plaintext; IntegrityError naming where when its seal does not hold."""
        if self.key is None:
            return data
        try:
            return self.key.open(data, name)
        except IntegrityError as exc:
            raise IntegrityError(f"{where}: {exc}") from None

    def opened(self, raw: BinaryIO, name: str) -> BinaryIO:
        """A stored stream's plaintext, each frame authenticated before it is read."""
        return raw if self.key is None else self.key.reader(raw, name)  # type: ignore[return-value]

    def stored_bytes(self, plain_size: int) -> int:
        return sealed_size(plain_size) if self.key is not None else plain_size

    @contextmanager
    def sealed_file(self, path: Path, name: str, sha256: str) -> Iterator[tuple[Path, str]]:
        """(the file to upload, its SHA-256): path itself, or a sealed copy beside it (removed after)."""
        if self.key is None:
            yield path, sha256
            return
        sealed = path.with_name(f"{path.name}.{secrets.token_hex(6)}.sealed")
        try:
            with open(path, "rb") as src, open(sealed, "wb") as raw:
                out = HashingWriter(raw)
                with self.key.writer(out, name) as writer:
                    while chunk := src.read(FRAME):
                        writer.write(chunk)
            yield sealed, out.digest.hexdigest()
        finally:
            sealed.unlink(missing_ok=True)

    def config(self) -> dict[str, Any]:
        """The repository's config; NotFound if never initialised, IntegrityError if it is not ours."""
        try:
            raw = self.dest.get_bytes(CONFIG_KEY)
        except NotFound:
            raise NotFound(f"{self.url} is not a qilbee-backup repository (no {CONFIG_KEY}: a wrong location, "
                           "or no backup was made there yet)") from None
        try:
            config = json.loads(raw)
        except ValueError:
            raise IntegrityError(f"{self.url}/{CONFIG_KEY} is not valid JSON") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
            raise IntegrityError(f"{self.url} is not a {FORMAT_NAME} repository ({CONFIG_KEY} says otherwise)")
        if config.get("version") not in READABLE_VERSIONS:
            raise IntegrityError(f"{self.url} has repository version {config.get('version')!r}; this tool reads "
                                 f"{', '.join(map(str, READABLE_VERSIONS))}")
        return config

    # -- backups -----------------------------------------------------------------------

    def manifest_refs(self, backup_id: str | None = None) -> dict[str, list[ManifestRef]]:
        """Every manifest object (of one backup) by backup id, from one listing: no downloads."""
        refs: dict[str, list[ManifestRef]] = {}
        prefix = f"{BACKUPS}{backup_id}." if backup_id else BACKUPS
        for info in self.dest.list(prefix):
            m = _MANIFEST_KEY_RE.fullmatch(info.key)
            if m:
                refs.setdefault(m.group(1), []).append(ManifestRef(m.group(1), info.key, m.group(2), info.size))
            else:
                log.warning("ignoring %s/%s: not a backup manifest name", self.url, info.key)
        return refs

    def manifest_key_of(self, backup_id: str) -> str:
        """The key a committed backup's manifest is stored under (its name carries a digest)."""
        refs = self.manifest_refs(backup_id).get(backup_id)
        if not refs:
            raise NotFound(f"backup {backup_id} not found in {self.url}")
        return refs[0].key

    def backup_ids(self) -> list[str]:
        """Ids of every committed backup (from key names alone: one listing, no downloads), sorted."""
        return sorted(self.manifest_refs())

    def catalog(self, kind: str | None = None, source_name: str | None = None) -> Catalog:
        """Every backup's manifest, read and checked in parallel: the readable ones (of one series, if
        asked), oldest first, and every damaged one (whatever its series: it cannot be told)."""
        refs = self.manifest_refs()
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(self._read_refs, sorted(refs), [refs[i] for i in sorted(refs)]))
        backups = [m for m in outcomes if isinstance(m, Manifest)]  # None: removed since the listing
        damaged = [d for d in outcomes if isinstance(d, DamagedManifest)]
        for d in damaged:
            log.warning("%s: skipping damaged %s", self.url, d.describe())
        backups = [m for m in backups if (kind is None or m.kind == kind)
                   and (source_name is None or m.source.series_name == source_name)]
        return Catalog(sorted(backups, key=lambda m: (m.created_at, m.backup_id)), damaged)

    def list_backups(self, kind: str | None = None, source_name: str | None = None) -> list[Manifest]:
        """The readable backups (of one kind and/or source), oldest first; damaged manifests are
        skipped and logged. Never use this to decide which blobs are unreferenced: use catalog()."""
        return self.catalog(kind, source_name).backups

    def load(self, backup_id: str = "latest", kind: str | None = None, source_name: str | None = None) -> Manifest:
        """One backup by id, or the newest readable one (of a kind/source) for 'latest'.
        kind and source_name only narrow 'latest'. A damaged manifest asked for by id: IntegrityError."""
        if backup_id == "latest":
            backups = self.list_backups(kind, source_name)
            if not backups:
                what = " ".join(filter(None, [source_name and f"source {source_name}", kind])) or ""
                raise NotFound(f"no {what + ' ' if what else ''}backups in {self.url}")
            return backups[-1]
        parse_backup_id(backup_id)
        refs = self.manifest_refs(backup_id).get(backup_id)
        if not refs:
            raise NotFound(f"backup {backup_id} not found in {self.url}")
        outcome = self._read_refs(backup_id, refs)
        if outcome is None:
            raise NotFound(f"backup {backup_id} not found in {self.url}")
        if isinstance(outcome, DamagedManifest):
            raise IntegrityError(outcome.describe())
        return outcome

    def _read_refs(self, backup_id: str, refs: list[ManifestRef]) -> Manifest | DamagedManifest | None:
        """The backup's manifest, or why it cannot be trusted; None if it was removed since the listing."""
        if len(refs) > 1:
            return DamagedManifest(backup_id, refs[0].key, f"{self.url}: {len(refs)} manifests claim backup {backup_id} "
                                   f"({', '.join(r.key.removeprefix(BACKUPS) for r in refs)})")
        try:
            return self._read_manifest(refs[0])
        except IntegrityError as exc:
            return DamagedManifest(backup_id, refs[0].key, str(exc))
        except NotFound:
            return None

    def _read_manifest(self, ref: ManifestRef) -> Manifest:
        """The manifest behind ref, checked: size bound, digest against its name, schema, id."""
        where = f"{self.url}/{ref.key}"
        if ref.size > MAX_MANIFEST_BYTES:
            raise IntegrityError(f"{where}: manifest of {ref.size} bytes is over the {MAX_MANIFEST_BYTES} byte limit")
        data = self.dest.get_bytes(ref.key)
        if ref.digest is not None and hashlib.sha256(data).hexdigest() != ref.digest:
            raise IntegrityError(f"{where}: manifest does not match the digest in its name (edited or damaged)")
        manifest = Manifest.from_json(self.open_sealed(data, f"manifest:{ref.backup_id}", where), origin=where)
        if manifest.backup_id != ref.backup_id:
            raise IntegrityError(f"{where}: holds backup id {manifest.backup_id}, not {ref.backup_id}")
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
            return sum(pool.map(lambda sha: self.dest.extend_lock(self.blob_key(sha), until), sorted(shas)))

    def write_manifest(self, manifest: Manifest, *, check_blobs: bool = True, retain_until: datetime | None = None) -> None:
        """Commit a backup. Written only if absent; with check_blobs (default) one fresh listing first
        proves every blob it names is stored, with the recorded stored size. retain_until: write it locked."""
        self.check_writable()
        if check_blobs:
            sizes = self.blob_sizes()
            lacking = {e.sha256 for e in manifest.files if self.blob_id(e.sha256) not in sizes}
            if lacking:
                entry = next(e for e in manifest.files if e.sha256 in lacking)
                raise BlobsMissing(f"not committing backup {manifest.backup_id} to {self.url}: blob {entry.sha256} of "
                                   f"{entry.path} is missing" + (f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else ""),
                                   lacking)
            for entry in manifest.files:
                have = sizes[self.blob_id(entry.sha256)]
                if entry.stored_size is not None and have != entry.stored_size:
                    raise IntegrityError(
                        f"not committing backup {manifest.backup_id} to {self.url}: blob {entry.sha256} of {entry.path} "
                        f"has {have} bytes, expected {entry.stored_size}"
                    )
        data = self.seal(manifest.to_json(), f"manifest:{manifest.backup_id}")
        key = manifest_key(manifest.backup_id, data)
        existing = [ref.key for ref in self.manifest_refs(manifest.backup_id).get(manifest.backup_id, [])]
        if existing == [key]:
            return  # these very bytes are committed already: a retry whose first answer was lost
        if existing:
            raise BackupExists(f"backup {manifest.backup_id} already exists in {self.url}")
        # False: an object under this very name appeared meanwhile; its name is its digest, so it is
        # these bytes (our own write, answered late): committed either way.
        self.dest.put_bytes(key, data, if_absent=True, retain_until=retain_until)

    def backup_locked_until(self, backup_id: str) -> datetime | None:
        """When the lock on a backup's manifest ends, if it is locked now (the latest of its objects)."""
        ends = [self.dest.locked_until(ref.key) for ref in self.manifest_refs(backup_id).get(backup_id, [])]
        return max((e for e in ends if e is not None), default=None)

    def remove_backup(self, backup_id: str, *, missing_ok: bool = False) -> None:
        """Forget a backup (its manifest); its blobs go at the next sweep if nothing else uses them.
        ObjectLocked (and the backup stays whole) while its manifest is locked."""
        refs = self.manifest_refs(backup_id).get(backup_id, [])
        if not refs and not missing_ok:
            raise NotFound(f"backup {backup_id} not found in {self.url}")
        for ref in refs:
            self.dest.remove(ref.key)

    # -- blobs -------------------------------------------------------------------------

    def blob_id(self, sha256: str) -> str:
        """The stored name of a content: its SHA-256, or in an encrypted repository the keyed
        HMAC of it (a name that tells nothing about the content)."""
        return self.key.blob_id(sha256) if self.key is not None else sha256

    def blob_key(self, sha256: str) -> str:
        return blob_key(self.blob_id(sha256))

    def blob_infos(self) -> dict[str, ObjectInfo]:
        """Every stored blob by its id (see blob_id), from one listing of blobs/."""
        found = {}
        for info in self.dest.list(BLOBS):
            m = _BLOB_KEY_RE.fullmatch(info.key)
            if m and m.group(2).startswith(m.group(1)):
                found[m.group(2)] = info
        return found

    def blob_sizes(self) -> dict[str, int]:
        """Stored size by blob id (see blob_id)."""
        return {blob: info.size for blob, info in self.blob_infos().items()}

    def stored_size(self, staged: StagedBlob) -> int:
        """How many bytes a staged blob takes here (sealed objects have a fixed overhead)."""
        return sealed_size(staged.zstd_size) if self.key is not None else staged.zstd_size

    def blob_sealer(self) -> BlobSealer | None:
        """What seals blobs for this repository as they are staged (None: unencrypted)."""
        return BlobSealer(self.key) if self.key is not None else None

    def put_blob(self, sha256: str, staged: StagedBlob, *, retain_until: datetime | None = None) -> int:
        """Upload a staged blob (sealed first in an encrypted repository); its stored SHA-256 goes
        along so the store verifies the bytes. Returns the bytes stored."""
        self.check_writable()
        blob = self.blob_id(sha256)
        with self._blob_file(sha256, staged) as (path, digest):
            self.dest.put_file(blob_key(blob), path, sha256=digest, retain_until=retain_until)
        return self.stored_size(staged)

    @contextmanager
    def _blob_file(self, sha256: str, staged: StagedBlob) -> Iterator[tuple[Path, str]]:
        """(the file to upload here, its SHA-256): the staged file itself when it is already in this
        repository's form (sealed with its key, or plain for a plain one); else a copy beside it,
        opened with the key that sealed it and sealed with this one (removed after)."""
        if staged.sealed_by is None or (self.key is not None and staged.sealed_by is self.key):
            if staged.sealed_by is None and self.key is not None:
                with self.sealed_file(staged.path, f"blob:{self.blob_id(sha256)}", staged.stored_sha256) as found:
                    yield found
                return
            yield staged.path, staged.stored_sha256
            return
        other = staged.sealed_by
        copy = staged.path.with_name(f"{staged.path.name}.{secrets.token_hex(6)}.copy")
        try:
            with open(staged.path, "rb") as src, open(copy, "wb") as raw:
                plain = other.reader(src, f"blob:{other.blob_id(sha256)}")
                out = HashingWriter(raw)
                writer = self.key.writer(out, f"blob:{self.blob_id(sha256)}") if self.key is not None else out
                while chunk := plain.read(FRAME):
                    writer.write(chunk)
                if self.key is not None:
                    writer.close()
            yield copy, out.digest.hexdigest()
        finally:
            copy.unlink(missing_ok=True)

    def read_blob(self, sha256: str, sink: Callable[[], BinaryIO | None] = lambda: None) -> BlobRead:
        """A stored content, streamed and checked (opened first in an encrypted repository): see
        blobs.read_blob, whose retries it keeps."""
        blob = self.blob_id(sha256)
        opener = None if self.key is None else (lambda raw: self.opened(raw, f"blob:{blob}"))
        return read_blob(self.dest, blob_key(blob), sink, opener=opener)

    def check_writable(self) -> None:
        """Never plaintext into an encrypted repository: writing needs its key."""
        if self.key is None and not self._plain_checked:
            if not self._plain(self.config()):
                raise self._key_required()
            self._plain_checked = True

    def _plain(self, config: dict[str, Any]) -> bool:
        """Whether the repository is unencrypted; IntegrityError when its config says so yet it holds
        keys (an edited config must not make us write plaintext beside sealed objects)."""
        if self.encrypted(config):
            return False
        if next(iter(self.dest.list(KEYS)), None) is not None:
            raise IntegrityError(f"{self.url}: {CONFIG_KEY} says the repository is unencrypted, yet it holds keys "
                                 "(an edited config?); refusing to write plaintext into it")
        return True

    def _key_required(self) -> KeyRequired:
        return KeyRequired(f"{self.url} is encrypted: give its passphrase (QILBEE_PASSWORD, QILBEE_PASSWORD_FILE "
                           "or --password-file)")

    def referenced_blobs(self) -> set[str]:
        """Every blob a backup needs; IntegrityError while a damaged manifest hides what it needs."""
        catalog = self.catalog()
        if catalog.damaged:
            raise IntegrityError(f"{self.url}: cannot tell which blobs are unreferenced while "
                                 f"{len(catalog.damaged)} manifest(s) are damaged ({catalog.damaged[0].describe()})")
        return {sha for m in catalog.backups for sha in m.blob_shas()}

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
        referenced_ids = {self.blob_id(sha) for sha in referenced}
        doomed = sorted(b for b, info in self.blob_infos().items() if b not in referenced_ids and info.modified < cutoff)

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
        key = f"{LOCKS}{self.key.name_id(source_key) if self.key is not None else source_key}.json"
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
            # Releasing is tidying up: when it fails, the work done under the lock stands (a backup
            # is already committed) and an earlier error stays the one reported. The lock is left
            # to expire, or to be taken over at once by the next run on this host once we exit.
            try:
                handle.release()
            except Exception as exc:  # noqa: BLE001 - any failure here must not replace the outcome
                log.warning("%s: could not release lock %s (%s); it lapses at %s", self.url, key, exc,
                            f"{mine.expires_at:%Y-%m-%dT%H:%M:%SZ}")

    def _try_lock(self, key: str, mine: LockInfo) -> LockInfo | None:
        """None when mine is now the lock; else the lock that stands in the way."""
        for _ in range(3):
            if self._put_lock(key, mine):
                return None
            current = self._read_lock(key)
            if current is not None and current.token == mine.token:
                return None  # our own write, whose answer was lost and whose retry found it there
            if current is not None:
                break
        else:  # released and retaken between our calls, again and again: call it held
            return LockInfo("another run", "unknown", 0, _utcnow(), _utcnow(), "contended")
        holder_dead = _holder_is_gone(current)
        if current.expires_at > _utcnow() and not holder_dead:
            return current
        return self._take_over(key, current, mine, "its holder is dead" if holder_dead else "it expired")

    def _put_lock(self, key: str, mine: LockInfo) -> bool:
        """Create the lock if absent. A write that failed may still have landed: it is ours if the
        stored lock carries our token."""
        try:
            return self.dest.put_bytes(key, mine.to_json(), if_absent=True)
        except QilbeeBackupError:
            current = self._read_lock(key)
            if current is not None and current.token == mine.token:
                return True
            raise

    def _take_over(self, key: str, expired: LockInfo, mine: LockInfo, why: str) -> LockInfo | None:
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
                log.warning("taking over lock %s held by %s: %s", key, expired.describe(), why)
                self.dest.remove(key)
            if self._put_lock(key, mine):
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


def opened_early(url: str, options: dict[str, Any]) -> Repository:
    """The repository at url, opened for ahead.open_ahead (in its thread): unlocked when KMS or a
    passphrase at hand without a prompt opens it. With the key file that opened it last time in the
    local cache (key_cache), the KDF starts on it at once, in another thread, while the repository is
    reached; unlock uses that result only if the repository's key file is the same. A failure to unlock is the caller's to meet, where it
    unlocks: a wrong passphrase or a store that fails is kept and raised there (met twice, it would
    cost a second KDF, or a second round of retries); anything else is left to happen again."""
    cached = key_cache.recall(url)
    passphrase = find_password(interactive=False) if cached else None
    guess = (cached, passphrase, _derive_in_a_thread(cached, passphrase)) if cached and passphrase else None
    repo = Repository.open(url, **options)
    repo.url = url  # as open_repository names it: the key cache's entry is by this name
    repo._guess = guess
    repo._defer_remember = True
    try:
        repo.unlock(interactive=False)
    except (WrongPassphrase, DestinationError, ConnectionError) as exc:
        repo._early_error = exc
    except Exception:  # noqa: BLE001 - met again, and reported, by the caller's own unlock
        pass
    return repo


def _derive_in_a_thread(cached: Remembered, passphrase: str) -> Future:
    """The master key from the cached key file, computed while the repository is being reached."""
    future: Future = Future()

    def work() -> None:
        try:
            future.set_result(unwrap_master_key(cached.key_file, passphrase, cached.repo_id))
        except Exception:  # noqa: BLE001 - a cache entry gone bad: unlock opens it from the repository's keys
            future.set_result(None)

    threading.Thread(target=work, name="open-ahead-kdf", daemon=True).start()
    return future


def open_repository(url: str, *, must_exist: bool = True, **options) -> Repository:
    """The repository at url; options are S3Options fields (storage_class, sse, lock_mode, lock_days, ...).

    must_exist (every command but backup and archive): a location without a repository's config —
    missing, empty, a file, a wrong S3 prefix — is an error, not an empty repository, so a verify
    pointed at the wrong place fails instead of passing. A backup creates the repository itself, once
    its input is valid and its source answered.
    lock_mode/lock_days on a directory: UsageError; on a bucket without Object Lock: DestinationError."""
    repo = ahead.take(url, options)
    if repo is not None:  # the command's input has been checked by now: the key may be remembered
        repo._defer_remember = False
        if repo._to_remember is not None:
            key_cache.remember(url, repo._to_remember)
            repo._to_remember = None
    else:
        repo = Repository.open(url, **options)
    repo.url = url  # as the operator gave it: what reports name
    if must_exist:
        try:
            repo.unlock()  # reads the config; an encrypted repository needs its passphrase from here on
        except NotFound:
            # Archive flows before version 2 wrote no config.json: a location with archives is one.
            if next(iter(repo.dest.list("archives/")), None) is None:
                repo.close()
                raise
        except BaseException:
            repo.close()
            raise
    return repo
