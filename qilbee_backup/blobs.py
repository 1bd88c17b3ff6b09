"""Reading a snapshot directory into blobs: scan and hash its files, compress the ones a repository lacks.

Everything streams in chunks (1 MiB for hashing, zstd's own buffers for compression), so memory
stays flat however large the database is. hashlib and zstd release the GIL, so a small thread
pool uses both cores.

Symlinks: a snapshot is the data itself, so a symlink *inside* it is refused (UnsupportedFile):
backing up a pointer would restore a dangling link, and following it could pull in files from
outside the snapshot. The root itself may be a symlink (``snapshots/latest``) only when the caller
says so (``follow_root_symlink=True``); then the directory it points at is scanned. Sockets, FIFOs
and devices are refused the same way. Empty directories are not recorded (RocksDB needs none).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable

import zstandard

from .errors import DestinationError, IntegrityError, QilbeeBackupError, UsageError
from .fsutil import cache_dir
from .manifest import FileEntry

if TYPE_CHECKING:
    from .destinations.base import Destination

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
# zstd level 1: RocksDB's SST blocks are already compressed, so level 3 saves ~3% more for
# ~2.5x the CPU (measured on the benchmark database: ratio 0.81 vs 0.78, 180 vs 65 MB/s a core).
DEFAULT_LEVEL = 1
# A file modified this recently may still change within the same mtime tick, so its hash is not
# cached (git's "racy clean" rule): the cache must never vouch for content it did not see.
_RACY_NS = 2_000_000_000


class UnsupportedFile(QilbeeBackupError):
    """The snapshot holds something that is not a regular file or directory (a symlink, socket, device)."""


class UndecodableBlob(IntegrityError):
    """A stored blob is not a valid zstd stream."""


@dataclass(frozen=True)
class StagedBlob:
    path: Path  # the compressed (and maybe sealed) blob in the spool directory
    stored_sha256: str  # SHA-256 of the file's bytes (what a store checks on upload)
    stored_size: int  # the file's bytes
    compressed_size: int | None = None  # the zstd stream's bytes when sealed (None: the file is the zstd stream)
    sealed_by: Any = None  # the RepoKey it is sealed with (None: plain zstd): that repository uploads it as it is

    @property
    def zstd_size(self) -> int:
        return self.stored_size if self.compressed_size is None else self.compressed_size


# -- hashing ---------------------------------------------------------------------------------


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex SHA-256, bytes read) of a file, streamed in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
            size += n
    return digest.hexdigest(), size


def default_hash_cache_path() -> Path:
    return cache_dir() / "hashes.sqlite"


class HashCache:
    """sha256 by (st_dev, st_ino, size, mtime_ns), in a local sqlite file.

    A RocksDB checkpoint hard-links the immutable SST files of the live database, so tomorrow's
    checkpoint holds the same inodes with the same size and mtime: their hashes are looked up,
    not recomputed. Any change of device, inode, size or mtime is a miss and means re-hashing.
    ctime is deliberately not in the key: every new hard link (every checkpoint) bumps it.
    Entries unused for ``max_age_days`` are dropped on close.
    """

    def __init__(self, path: Path | None = None, *, max_age_days: int = 60) -> None:
        self.path = Path(path) if path is not None else default_hash_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_age_days = max_age_days
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        with self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS hashes (dev INTEGER, ino INTEGER, size INTEGER, mtime_ns INTEGER,"
                " sha256 TEXT NOT NULL, used_at INTEGER NOT NULL, PRIMARY KEY (dev, ino, size, mtime_ns))"
            )

    def get(self, st: os.stat_result) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT sha256 FROM hashes WHERE dev=? AND ino=? AND size=? AND mtime_ns=?",
                (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns),
            ).fetchone()
        return row[0] if row else None

    def put_many(self, items: Iterable[tuple[os.stat_result, str]]) -> None:
        now = int(time.time())
        rows = [(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, sha, now) for st, sha in items]
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?, ?)", rows)

    def touch_many(self, stats: Iterable[os.stat_result]) -> None:
        now = int(time.time())
        rows = [(now, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) for st in stats]
        with self._lock, self._db:
            self._db.executemany("UPDATE hashes SET used_at=? WHERE dev=? AND ino=? AND size=? AND mtime_ns=?", rows)

    def close(self) -> None:
        with self._lock:
            try:
                with self._db:
                    self._db.execute("DELETE FROM hashes WHERE used_at < ?", (int(time.time()) - self.max_age_days * 86400,))
            finally:
                self._db.close()

    def __enter__(self) -> "HashCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- scanning --------------------------------------------------------------------------------


def _walk(root: Path) -> list[tuple[str, Path, os.stat_result]]:
    """(relative POSIX path, path, lstat) of every regular file; UnsupportedFile for anything else."""
    found: list[tuple[str, Path, os.stat_result]] = []
    pending = [(root, "")]
    while pending:
        directory, prefix = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                rel = f"{prefix}{entry.name}"
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    pending.append((Path(entry.path), rel + "/"))
                elif stat.S_ISREG(st.st_mode):
                    found.append((rel, Path(entry.path), st))
                elif stat.S_ISLNK(st.st_mode):
                    raise UnsupportedFile(f"{entry.path} is a symlink; a snapshot must hold the data itself, refusing it")
                else:
                    raise UnsupportedFile(f"{entry.path} is not a regular file or directory (socket, FIFO or device); refusing it")
    found.sort(key=lambda item: item[0])
    return found


HASH_WORKERS = os.cpu_count() or 2  # hashing and zstd release the GIL: one thread per core


def scan_tree(
    root: Path,
    *,
    hash_cache: HashCache | None = None,
    workers: int = HASH_WORKERS,
    follow_root_symlink: bool = False,
    spool: Path | None = None,
    on_hashed: Callable[[str, Path, StagedBlob | None], None] | None = None,
    sealer: Any = None,
) -> list[FileEntry]:
    """Every regular file under root, sorted by relative path, with its size, mode and SHA-256.

    on_hashed(sha, path, staged) is called (from worker threads) as soon as each file's hash is
    known, so the caller can start sending while the scan goes on. With a spool, a file the hash
    cache does not know is compressed into it in the same read as its hashing (staged; None for
    cached files): an unknown file is almost always new content, and reading it once instead of
    twice is most of a full backup's disk and CPU work. With a sealer (crypto.BlobSealer), the
    staged blob is sealed in that same pass, for the sealer's repository."""
    root = Path(root)
    if root.is_symlink():
        if not follow_root_symlink:
            raise UsageError(f"{root} is a symlink; pass follow_root_symlink=True to back up what it points at")
        root = root.resolve()
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory")
    files = _walk(root)
    scan_started_ns = time.time_ns()

    shas: dict[str, str] = {}
    to_hash: list[tuple[str, Path, os.stat_result]] = []
    hits: list[os.stat_result] = []
    for rel, path, st in files:
        cached = hash_cache.get(st) if hash_cache else None
        if cached:
            shas[rel] = cached
            hits.append(st)
            if on_hashed is not None:
                on_hashed(cached, path, None)
        else:
            to_hash.append((rel, path, st))

    def hash_one(item: tuple[str, Path, os.stat_result]) -> tuple[str, str, int]:
        rel, path, st = item
        staged = None
        if spool is None:
            sha, size = sha256_file(path)
        else:
            sha, size, staged = stage_new(path, Path(spool), sealer=sealer)
        if size != st.st_size:
            if staged is not None:
                staged.path.unlink(missing_ok=True)
            raise IntegrityError(f"{path} changed size while it was read ({st.st_size} -> {size} bytes); is the snapshot live?")
        if on_hashed is not None:
            on_hashed(sha, path, staged)
        return rel, sha, size

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for rel, sha, _ in pool.map(hash_one, to_hash):
            shas[rel] = sha

    if hash_cache:
        hash_cache.touch_many(hits)
        hash_cache.put_many(
            (st, shas[rel]) for rel, _, st in to_hash if st.st_mtime_ns < scan_started_ns - _RACY_NS
        )
    log.debug("scanned %s: %d files, %d hashed, %d from the cache", root, len(files), len(to_hash), len(hits))
    return [
        FileEntry(path=rel, size=st.st_size, mode=stat.S_IMODE(st.st_mode), sha256=shas[rel])
        for rel, _, st in files
    ]


# -- compression -----------------------------------------------------------------------------


class HashingReader:
    """Reads through to a file, hashing (and counting) what passes."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data


class HashingWriter:
    """Writes through to a file (or nowhere), hashing and counting what passes."""

    def __init__(self, raw: BinaryIO | None) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        if self._raw is not None:
            view = memoryview(data)
            while view:  # an unbuffered file may take less than all of it
                view = view[self._raw.write(view):]
        return len(data)

    def flush(self) -> None:
        if self._raw is not None:
            self._raw.flush()


def compress_file(
    src: Path, dst: Path, *, level: int = DEFAULT_LEVEL, threads: int = 0, expect_sha256: str | None = None,
    plain: list | None = None, sealer: Any = None,
) -> tuple[str, int]:
    """Stream-compress src into dst with zstd (frame checksum on); return (SHA-256 of dst's bytes, dst's size).

    The uncompressed bytes are hashed on the way through: with expect_sha256 a mismatch (the file
    changed since it was scanned) raises IntegrityError and removes dst, since a blob must hold
    exactly the content its name promises; plain, when given, receives (their SHA-256, their size)
    and, with a sealer, the zstd stream's size. A sealer (crypto.BlobSealer) seals the zstd stream
    on its way to dst, its name given once the content's hash is known.
    """
    cctx = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
    size = os.stat(src).st_size
    try:
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            reader = HashingReader(fin)
            writer = HashingWriter(fout)
            sealing = sealer.writer(writer) if sealer is not None else None
            cctx.copy_stream(reader, sealing or writer, size=size, read_size=CHUNK, write_size=CHUNK)
            if expect_sha256 is not None and reader.digest.hexdigest() != expect_sha256:
                raise IntegrityError(f"{src} changed since it was scanned (SHA-256 {reader.digest.hexdigest()}, "
                                     f"expected {expect_sha256})")
            if sealing is not None:
                sealing.close(sealer.name_for(reader.digest.hexdigest()))
        if plain is not None:
            plain.extend((reader.digest.hexdigest(), reader.size))
            if sealing is not None:
                plain.append(sealing.plain_size)
    except zstandard.ZstdError as exc:
        Path(dst).unlink(missing_ok=True)
        raise IntegrityError(f"{src} could not be compressed (did it change while read?): {exc}") from None
    except BaseException:
        Path(dst).unlink(missing_ok=True)
        raise
    return writer.digest.hexdigest(), writer.size


def decompress_stream(reader: BinaryIO, writer: BinaryIO | None = None) -> tuple[str, int]:
    """Decompress a zstd stream into writer (None: discard); return (SHA-256 of the output, its size).

    UndecodableBlob when the input is not valid zstd or fails its frame checksum.
    """
    out = HashingWriter(writer)
    try:
        zstandard.ZstdDecompressor().copy_stream(reader, out, read_size=CHUNK, write_size=CHUNK)
    except zstandard.ZstdError as exc:
        raise UndecodableBlob(f"not a valid zstd stream: {exc}") from None
    return out.digest.hexdigest(), out.size


# -- reading a stored blob back (restore and verify share this) -------------------------------

FETCH_ATTEMPTS = 3  # per blob; each request was already retried by the store (botocore), not a broken stream
RETRY_PAUSE = 0.5  # seconds, times the attempt number
# Worth another try: a store that kept failing (5xx, throttling) or a connection dropped mid-stream.
# Damage (NotFound, IntegrityError, UndecodableBlob) never is: the same bytes would come back.
TRANSIENT_ERRORS = (DestinationError, ConnectionError)


@dataclass(frozen=True)
class BlobRead:
    sha256: str  # of the decompressed content
    size: int  # decompressed bytes
    stored: int  # compressed bytes read by the attempt that succeeded


class CountingReader:
    """Reads through to a stream, counting the bytes."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.size += len(data)
        return data


def read_blob(dest: Destination, key: str, sink: Callable[[], BinaryIO | None] = lambda: None, *,
              opener: Callable[[BinaryIO], BinaryIO] | None = None) -> BlobRead:
    """Stream the stored blob ``key`` from dest, decompressed, into the writer ``sink()`` gives for
    each attempt (None: hash only), so a retry never appends to a broken first try. opener wraps
    the stored stream before decompression (an encrypted repository's authenticated decryption).

    A transient failure (TRANSIENT_ERRORS) is tried again, FETCH_ATTEMPTS times in all, and the last
    one raised; damage is raised at once (NotFound, UndecodableBlob, IntegrityError).
    """
    attempt = 1
    while True:
        writer = sink()
        try:
            with dest.open_read(key) as raw:
                reader = CountingReader(raw)
                sha, size = decompress_stream(reader if opener is None else opener(reader), writer)
            return BlobRead(sha, size, reader.size)
        except TRANSIENT_ERRORS as exc:
            if attempt >= FETCH_ATTEMPTS:
                raise
            log.warning("%s: attempt %d of %d failed (%s); reading it again", key, attempt, FETCH_ATTEMPTS, exc)
            time.sleep(RETRY_PAUSE * attempt)
            attempt += 1


def stage_blobs(
    root: Path,
    entries: Iterable[FileEntry],
    needed: set[str],
    spool: Path,
    workers: int = 2,
    *,
    level: int = DEFAULT_LEVEL,
) -> dict[str, StagedBlob]:
    """Compress each needed content (unique by sha) once, into ``spool/<sha>.zst``, in parallel."""
    spool = Path(spool)
    spool.mkdir(parents=True, exist_ok=True)
    sources: dict[str, Path] = {}
    for entry in entries:
        if entry.sha256 in needed and entry.sha256 not in sources:
            sources[entry.sha256] = Path(root) / entry.path
    missing = needed - set(sources)
    if missing:
        raise UsageError(f"{len(missing)} needed blob(s) are not among the scanned files, e.g. {sorted(missing)[0]}")
    staged: dict[str, StagedBlob] = {}
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = {sha: pool.submit(stage_one, src, sha, spool, level=level) for sha, src in sorted(sources.items())}
            for sha, future in futures.items():
                staged[sha] = future.result()
    except BaseException:
        for sha in sources:  # leave no half-made spool behind
            (spool / f"{sha}.zst").unlink(missing_ok=True)
        raise
    return staged


def stage_one(src: Path, sha: str, spool: Path, *, level: int = DEFAULT_LEVEL, sealer: Any = None) -> StagedBlob:
    """Compress (and with a sealer, seal) one file into the spool, checking its content still has the scanned hash."""
    dst = Path(spool) / (f"{sha}.zst" if sealer is None else f"{sha}.{time.monotonic_ns()}.sealed")
    plain: list = []
    stored_sha, stored_size = compress_file(src, dst, level=level, expect_sha256=sha, plain=plain, sealer=sealer)
    if sealer is None:
        return StagedBlob(dst, stored_sha, stored_size)
    return StagedBlob(dst, stored_sha, stored_size, compressed_size=plain[2], sealed_by=sealer.key)


def stage_new(src: Path, spool: Path, *, level: int = DEFAULT_LEVEL, sealer: Any = None) -> tuple[str, int, StagedBlob]:
    """Hash and compress (and with a sealer, seal) a file in one read: (its SHA-256, its size, the
    blob staged as spool/<sha>.zst)."""
    temp = Path(spool) / f".new-{threading.get_ident()}-{time.monotonic_ns()}.zst"
    plain: list = []
    stored_sha, stored_size = compress_file(src, temp, level=level, plain=plain, sealer=sealer)
    sha, size = plain[:2]
    # Equal contents compress to equal bytes, so a second file's rename over the first is harmless;
    # sealed ones differ (each has its own salt), so each keeps its own name.
    dst = Path(spool) / (f"{sha}.zst" if sealer is None else f"{sha}.{time.monotonic_ns()}.sealed")
    os.replace(temp, dst)
    if sealer is None:
        return sha, size, StagedBlob(dst, stored_sha, stored_size)
    return sha, size, StagedBlob(dst, stored_sha, stored_size, compressed_size=plain[2], sealed_by=sealer.key)
