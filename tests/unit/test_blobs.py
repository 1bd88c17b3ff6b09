"""Blobs on real files: scanning, hashing (with the inode cache), zstd streaming, staging."""

from __future__ import annotations

import hashlib
import io
import os
import time
import tracemalloc
from pathlib import Path

import pytest
import zstandard

from qilbee_backup.blobs import (
    HashCache,
    UndecodableBlob,
    UnsupportedFile,
    compress_file,
    decompress_stream,
    scan_tree,
    sha256_file,
    stage_blobs,
)
from qilbee_backup.errors import IntegrityError, UsageError

OLD = time.time() - 3600  # an mtime old enough for the cache to trust


def write(path: Path, data: bytes, *, mtime: float | None = OLD, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "snap"
    write(root / "000010.sst", os.urandom(300_000))
    write(root / "CURRENT", b"MANIFEST-000005\n", mode=0o600)
    write(root / "sub" / "deep" / "OPTIONS-000007", b"[Version]\n" * 100)
    write(root / "sub" / "copy.sst", (root / "000010.sst").read_bytes())  # same content, one blob
    write(root / "empty.log", b"")
    (root / "empty-dir").mkdir()
    return root


def test_scan_lists_every_file_sorted_with_size_mode_and_content_hash(tree):
    entries = scan_tree(tree)
    assert [e.path for e in entries] == ["000010.sst", "CURRENT", "empty.log", "sub/copy.sst", "sub/deep/OPTIONS-000007"]
    for e in entries:
        data = (tree / e.path).read_bytes()
        assert e.sha256 == hashlib.sha256(data).hexdigest() and e.size == len(data)
    assert {e.path: e.mode for e in entries}["CURRENT"] == 0o600
    assert entries[0].sha256 == entries[3].sha256


def test_symlinks_inside_a_snapshot_are_refused(tree):
    (tree / "sub" / "link").symlink_to(tree / "CURRENT")
    with pytest.raises(UnsupportedFile, match="symlink"):
        scan_tree(tree)


def test_fifos_are_refused(tree):
    os.mkfifo(tree / "pipe")
    with pytest.raises(UnsupportedFile, match="regular file"):
        scan_tree(tree)


def test_a_symlinked_root_is_followed_only_when_asked(tree, tmp_path):
    latest = tmp_path / "latest"
    latest.symlink_to(tree)
    with pytest.raises(UsageError, match="follow_root_symlink"):
        scan_tree(latest)
    assert scan_tree(latest, follow_root_symlink=True) == scan_tree(tree)
    with pytest.raises(UsageError, match="not a directory"):
        scan_tree(tmp_path / "missing")


def test_hash_cache_reuses_hashes_of_unchanged_inodes_and_rehashes_changes(tmp_path):
    root = tmp_path / "snap"
    sst = write(root / "000001.sst", b"A" * 5000)
    with HashCache(tmp_path / "cache.sqlite") as cache:
        first = scan_tree(root, hash_cache=cache)[0]
        assert first.sha256 == hashlib.sha256(b"A" * 5000).hexdigest()

        # Same inode, size and mtime: the cache answers, so even a (forbidden) in-place rewrite
        # that restores the mtime is not noticed. This is exactly what the cache promises to trust.
        sst.write_bytes(b"B" * 5000)
        os.utime(sst, (OLD, OLD))
        assert scan_tree(root, hash_cache=cache)[0].sha256 == first.sha256

        # A new mtime (or size) is a miss: re-hashed.
        os.utime(sst, (OLD + 10, OLD + 10))
        assert scan_tree(root, hash_cache=cache)[0].sha256 == hashlib.sha256(b"B" * 5000).hexdigest()

        # A hard link in the next checkpoint is the same inode: a hit.
        os.link(sst, tmp_path / "linked.sst")
        other = tmp_path / "snap2"
        other.mkdir()
        os.replace(tmp_path / "linked.sst", other / "000001.sst")
        assert scan_tree(other, hash_cache=cache)[0].sha256 == hashlib.sha256(b"B" * 5000).hexdigest()


def test_hash_cache_does_not_trust_files_modified_just_now(tmp_path):
    root = tmp_path / "snap"
    fresh = write(root / "LOG", b"one", mtime=None)
    with HashCache(tmp_path / "cache.sqlite") as cache:
        scan_tree(root, hash_cache=cache)
        stat_before = fresh.stat()
        assert cache.get(stat_before) is None


def test_hash_cache_survives_reopening(tmp_path):
    root = tmp_path / "snap"
    write(root / "a.sst", b"content")
    with HashCache(tmp_path / "c.sqlite") as cache:
        scan_tree(root, hash_cache=cache)
    with HashCache(tmp_path / "c.sqlite") as cache:
        assert cache.get((root / "a.sst").stat()) == hashlib.sha256(b"content").hexdigest()


def test_compress_and_decompress_round_trip_with_hashes(tmp_path):
    data = os.urandom(2_000_000) + b"x" * 3_000_000
    src = write(tmp_path / "src", data)
    stored_sha, stored_size = compress_file(src, tmp_path / "blob.zst")
    blob = (tmp_path / "blob.zst").read_bytes()
    assert stored_sha == hashlib.sha256(blob).hexdigest() and stored_size == len(blob) < len(data)
    assert zstandard.ZstdDecompressor().decompress(blob) == data  # a standard zstd frame
    out = io.BytesIO()
    with open(tmp_path / "blob.zst", "rb") as reader:
        assert decompress_stream(reader, out) == (hashlib.sha256(data).hexdigest(), len(data))
    assert out.getvalue() == data


def test_compress_refuses_a_file_that_changed_since_the_scan(tmp_path):
    src = write(tmp_path / "src", b"now different")
    with pytest.raises(IntegrityError, match="changed since it was scanned"):
        compress_file(src, tmp_path / "blob.zst", expect_sha256=hashlib.sha256(b"as scanned").hexdigest())
    assert not (tmp_path / "blob.zst").exists()


def test_garbage_and_bit_flips_are_undecodable(tmp_path):
    with pytest.raises(UndecodableBlob):
        decompress_stream(io.BytesIO(b"this is not zstd at all"))
    src = write(tmp_path / "src", os.urandom(100_000))
    compress_file(src, tmp_path / "blob.zst")
    blob = bytearray((tmp_path / "blob.zst").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(UndecodableBlob):  # zstd's frame checksum (or block decoding) catches it
        decompress_stream(io.BytesIO(bytes(blob)))


def test_stage_blobs_compresses_each_needed_content_once(tree, tmp_path):
    entries = scan_tree(tree)
    by_path = {e.path: e for e in entries}
    needed = {by_path["000010.sst"].sha256, by_path["CURRENT"].sha256}
    staged = stage_blobs(tree, entries, needed, tmp_path / "spool", workers=2)
    assert set(staged) == needed
    assert sorted(p.name for p in (tmp_path / "spool").iterdir()) == sorted(f"{sha}.zst" for sha in needed)
    for sha, blob in staged.items():
        assert blob.stored_sha256 == hashlib.sha256(blob.path.read_bytes()).hexdigest()
        assert blob.stored_size == blob.path.stat().st_size
        with open(blob.path, "rb") as reader:
            assert decompress_stream(reader)[0] == sha
    with pytest.raises(UsageError, match="not among the scanned files"):
        stage_blobs(tree, entries, {"f" * 64}, tmp_path / "spool2")


def test_hashing_and_compressing_a_large_file_keeps_memory_flat(tmp_path):
    big = tmp_path / "big.sst"
    with open(big, "wb") as f:  # 96 MiB: a sparse file, cheap to make, real bytes to read
        f.truncate(96 * 1024 * 1024)
    tracemalloc.start()
    try:
        sha, size = sha256_file(big)
        compress_file(big, tmp_path / "big.zst", expect_sha256=sha)
        with open(tmp_path / "big.zst", "rb") as reader:
            assert decompress_stream(reader) == (sha, size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == 96 * 1024 * 1024
    assert peak < 12 * 1024 * 1024, f"peak Python memory {peak} bytes: something read a whole file"
