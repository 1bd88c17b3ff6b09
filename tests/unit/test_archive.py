"""Monthly archives on a file repository: the tar + zstd layout, a hand restore with the real zstd, tar
and sha256sum binaries, the tool's restore and its refusals, retention, and flat memory."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import zstandard

from qilbee_backup import cold_archive as archives
from qilbee_backup.cold_archive import format as archive_format
from qilbee_backup.cold_archive import (
    MANIFEST_NAME,
    SUMS_NAME,
    ArchiveExists,
    ArchiveFile,
    ArchiveRecord,
    build_archive,
    list_archives,
    load_archive,
    prune_archives,
    restore_archive,
    restore_archive_stream,
    upload_archive,
    verify_archive,
)
from qilbee_backup.retrieval import check_retrieval_options, ensure_readable
from qilbee_backup.destinations.file import FileDestination
from qilbee_backup.errors import IntegrityError, NotFound, UsageError
from qilbee_backup.manifest import FileEntry, Manifest, SourceInfo, new_backup_id
from qilbee_backup.repository import Repository
from qilbee_backup.restorer import RestoreBlocked
from tests.files import tree, write

MiB = 1024 * 1024
SOURCE = SourceInfo(url="http://127.0.0.1:7474", server_version="0.9.0", mode="online", snapshot_id="s1")
NEEDS = [shutil.which(b) for b in ("zstd", "tar", "sha256sum", "bash")]


def siblings(target: Path) -> list[str]:
    """Temporary or aside directories a restore left next to target (the lock file is expected)."""
    return sorted(p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.") and not p.name.endswith(".lock"))


@pytest.fixture
def snapshot(tmp_path) -> Path:
    root = tmp_path / "snap"
    write(root / "CURRENT", b"MANIFEST-000005\n")
    write(root / "MANIFEST-000005", os.urandom(5000), 0o600)
    write(root / "000012.sst", os.urandom(300_000), 0o640)
    write(root / "000013.sst", b"same content" * 1000)
    write(root / "archive" / "old" / "copy.sst", b"same content" * 1000)  # duplicate content, deeper
    write(root / "LOCK", b"", 0o600)
    write(root / "weird name with spaces.log", b"log line\n")
    return root


@pytest.fixture
def repo(tmp_path) -> Repository:
    return Repository(FileDestination(tmp_path / "repo"))


def build(root: Path, tmp_path: Path, **kw) -> archives.BuiltArchive:
    return build_archive(root, tmp_path / "spool", source=SOURCE, stats={"nodeCount": 3}, **kw)


def members(path: Path) -> list[tarfile.TarInfo]:
    with open(path, "rb") as f, zstandard.ZstdDecompressor().stream_reader(f) as plain, tarfile.open(fileobj=plain, mode="r|") as tar:
        return list(tar)


# -- the file ----------------------------------------------------------------------------------------


def test_the_archive_holds_the_manifest_then_sha256sums_then_every_file(snapshot, tmp_path):
    built = build(snapshot, tmp_path, kind="monthly")
    data = built.path.read_bytes()
    assert (built.size, built.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert built.path.name == f"{built.manifest.backup_id}.tar.zst"

    names = [m.name for m in members(built.path)]
    assert names[:2] == [MANIFEST_NAME, SUMS_NAME]
    assert names[2:] == ["data/" + f.path for f in built.manifest.files] == sorted("data/" + p for p in tree(snapshot))
    assert all(m.isreg() for m in members(built.path))

    with io.BytesIO(zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()) as plain, tarfile.open(fileobj=plain) as tar:
        inner = Manifest.from_json(tar.extractfile(MANIFEST_NAME).read())
        sums = tar.extractfile(SUMS_NAME).read().decode()
    assert inner == built.manifest and inner.kind == "monthly" and inner.stats == {"nodeCount": 3}
    assert sums.splitlines() == [f"{sha}  {path}" for path, (sha, _) in sorted(tree(snapshot).items())]


@pytest.mark.skipif(not all(NEEDS), reason="needs zstd, tar, sha256sum and bash on PATH")
def test_an_archive_restores_by_hand_with_zstd_tar_and_sha256sum(snapshot, tmp_path):
    write(snapshot / "odd" / "new\nline", b"a file name with a newline")  # sha256sum's escaped form
    built = build(snapshot, tmp_path)
    out = tmp_path / "by-hand"
    out.mkdir()
    # Exactly the README's commands.
    command = f'zstd -dc {built.path.name} | tar -x -C {out} && (cd {out}/data && sha256sum -c ../SHA256SUMS)'
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=built.path.parent, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": OK") == len(built.manifest.files)
    assert tree(out / "data") == tree(snapshot)
    assert Manifest.from_json((out / MANIFEST_NAME).read_bytes()) == built.manifest

    # And sha256sum does notice a damaged file.
    (out / "data" / "000012.sst").write_bytes(b"damaged")
    again = subprocess.run(["sha256sum", "-c", "--quiet", "../SHA256SUMS"], cwd=out / "data", capture_output=True, text=True)
    assert again.returncode == 1 and "000012.sst: FAILED" in again.stdout


def test_a_file_changing_between_scan_and_archive_is_refused(snapshot, tmp_path, monkeypatch):
    real_scan = archive_format.scan_tree

    def scan_then_change(*args, **kw):
        entries = real_scan(*args, **kw)
        (snapshot / "000012.sst").write_bytes(os.urandom(300_000))  # same size, other content
        return entries

    monkeypatch.setattr(archive_format, "scan_tree", scan_then_change)  # where build_archive looks it up
    with pytest.raises(IntegrityError, match=r"000012\.sst changed since it was scanned"):
        build(snapshot, tmp_path)
    assert list((tmp_path / "spool").iterdir()) == []


def test_an_empty_snapshot_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no files"):
        build(tmp_path / "empty", tmp_path)


# -- upload, list, restore through a file repository ---------------------------------------------------------


def test_round_trip_through_a_file_repository(repo, snapshot, tmp_path):
    built = build(snapshot, tmp_path)
    record = upload_archive(repo, built, storage_class="GLACIER")
    archive_id = built.manifest.backup_id
    root = repo.dest.root
    assert (root / "archives" / f"{archive_id}.tar.zst").read_bytes() == built.path.read_bytes()
    assert ArchiveRecord.from_json((root / "archives" / f"{archive_id}.json").read_bytes(), origin="x") == record
    assert record.archive.storage_class is None  # a file repository has no storage classes
    assert (root / "config.json").is_file()
    assert [r.archive_id for r in list_archives(repo)] == [archive_id] and repo.list_backups() == []
    report = verify_archive(repo, "latest", read_data=True)
    assert report["ok"] and report["read_data"] and report["problems"] == []

    target = tmp_path / "restored"
    seen = []
    result = restore_archive(repo, load_archive(repo, "latest"), target, progress=lambda n, b: seen.append((n, b)))
    assert tree(target) == tree(snapshot)
    assert (result.backup_id, result.files, result.bytes, result.bytes_downloaded) == (archive_id, 7, built.manifest.bytes_total, built.size)
    assert result.swap is None and siblings(target) == [] and seen[-1] == (7, built.manifest.bytes_total)

    with pytest.raises(ArchiveExists):
        upload_archive(repo, built)


def test_latest_and_ids_and_kinds(repo, snapshot, tmp_path):
    t0 = datetime(2025, 3, 1, 4, tzinfo=timezone.utc)
    ids = [upload_archive(repo, build(snapshot, tmp_path, now=t0 + timedelta(days=31 * i), kind=kind)).archive_id
           for i, kind in enumerate(["monthly", "monthly", "yearly"])]
    assert load_archive(repo).archive_id == ids[2]
    assert load_archive(repo, kind="monthly").archive_id == ids[1]
    assert load_archive(repo, ids[0]).archive_id == ids[0]
    with pytest.raises(NotFound, match="archive 20200101T000000Z-abcdef not found"):
        load_archive(repo, "20200101T000000Z-abcdef")
    with pytest.raises(UsageError, match="malformed backup id"):
        load_archive(repo, "../../etc")
    with pytest.raises(NotFound, match="no weekly archives"):
        load_archive(repo, kind="weekly")


def test_restore_over_existing_data_needs_replace_and_can_roll_back(repo, snapshot, tmp_path):
    record = upload_archive(repo, build(snapshot, tmp_path))
    target = tmp_path / "instance"
    write(target / "precious", b"old data")
    with pytest.raises(RestoreBlocked, match="holds data"):
        restore_archive(repo, record, target)
    result = restore_archive(repo, record, target, replace_existing=True)
    assert tree(target) == tree(snapshot) and result.swap is not None
    result.swap.rollback()
    assert (target / "precious").read_bytes() == b"old data" and siblings(target) == []


# -- damaged and hostile archives ---------------------------------------------------------------------------


def test_a_flipped_byte_names_the_damaged_file_and_leaves_the_target_untouched(repo, tmp_path):
    root = tmp_path / "snap"
    write(root / "000001.sst", b"small" * 10)
    write(root / "000777.sst", os.urandom(4 * MiB))  # random: zstd stores it raw, so a flip changes content
    record = upload_archive(repo, build(root, tmp_path))
    stored = repo.dest.root / "archives" / f"{record.archive_id}.tar.zst"
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x40
    stored.write_bytes(bytes(data))

    target = tmp_path / "instance"
    write(target / "keep", b"current data")
    # Caught by the file's SHA-256 or, when the decompressor has read ahead to the frame's end, by zstd's
    # frame checksum: either way while that file is being written, and the message names it.
    with pytest.raises(IntegrityError, match=rf"archive {record.archive_id} failed at 000777\.sst: (content hashes to|the archive is damaged)"):
        restore_archive(repo, record, target, replace_existing=True)
    assert tree(target) == {"keep": (hashlib.sha256(b"current data").hexdigest(), 0o644)}
    assert siblings(target) == []

    fresh = tmp_path / "fresh"
    with pytest.raises(IntegrityError, match=r"000777\.sst"):
        restore_archive(repo, record, fresh)
    assert not fresh.exists() and siblings(fresh) == []

    report = verify_archive(repo, record.archive_id, read_data=True)
    assert not report["ok"] and "000777.sst" in report["problems"][0]


def test_a_truncated_archive_is_refused(repo, snapshot, tmp_path):
    record = upload_archive(repo, build(snapshot, tmp_path))
    stored = repo.dest.root / "archives" / f"{record.archive_id}.tar.zst"
    stored.write_bytes(stored.read_bytes()[: record.archive.size // 2])
    target = tmp_path / "restored"
    with pytest.raises(IntegrityError, match=f"restore of archive {record.archive_id} failed"):
        restore_archive(repo, record, target)
    assert not target.exists() and siblings(target) == []


def test_the_whole_file_must_match_its_record(snapshot, tmp_path):
    built = build(snapshot, tmp_path)
    record = _record(built.manifest, built.path.read_bytes())
    wrong = record.model_copy(update={"archive": record.archive.model_copy(update={"sha256": "0" * 64})})
    target = tmp_path / "restored"
    with open(built.path, "rb") as f, pytest.raises(IntegrityError, match="its record says"):
        restore_archive_stream(f, wrong, target)
    assert not target.exists()


def test_the_inner_manifest_must_match_the_record(snapshot, tmp_path):
    built = build(snapshot, tmp_path)
    other = built.manifest.model_copy(update={"stats": {"nodeCount": 999}})
    record = _record(other, built.path.read_bytes())
    with open(built.path, "rb") as f, pytest.raises(IntegrityError, match=f"{MANIFEST_NAME} differs from its record"):
        restore_archive_stream(f, record, tmp_path / "restored")


def _record(manifest: Manifest, data: bytes) -> ArchiveRecord:
    return ArchiveRecord(archive=ArchiveFile(name=f"{manifest.backup_id}.tar.zst", size=len(data),
                                             sha256=hashlib.sha256(data).hexdigest()), manifest=manifest)


def _crafted(members_: list[tuple[tarfile.TarInfo, bytes]]) -> tuple[bytes, ArchiveRecord]:
    """A tar.zst with a valid manifest and SHA256SUMS for one file 'ok', then the given members."""
    content = b"fine"
    entry = FileEntry(path="ok", size=len(content), mode=0o644, sha256=hashlib.sha256(content).hexdigest())
    manifest = Manifest(backup_id=new_backup_id(), kind="monthly", created_at=datetime.now(timezone.utc), source=SOURCE, files=[entry])
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((MANIFEST_NAME, manifest.to_json()), (SUMS_NAME, archives.sums_text([entry]))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in members_:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    data = zstandard.ZstdCompressor().compress(plain.getvalue())
    return data, _record(manifest, data)


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 4, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mode = kind, size if kind == tarfile.REGTYPE else 0, link, 0o644
    return info


@pytest.mark.parametrize(
    "member, message",
    [
        (_info("data/../escape"), "would leave the target"),
        (_info("data/sub/../../escape"), "would leave the target"),
        (_info("/tmp/escape"), "is outside data/"),
        (_info("../escape"), "is outside data/"),
        (_info("data/ok", tarfile.SYMTYPE, link="/etc/passwd"), "is a link"),
        (_info("data/ok", tarfile.LNKTYPE, link="/etc/passwd"), "is a link"),
        (_info("data/dir", tarfile.DIRTYPE), "not a regular file"),
        (_info("data/ok", tarfile.CHRTYPE), "not a regular file"),
        (_info("data/stowaway"), "not in the manifest"),
    ],
    ids=["dotdot", "deep-dotdot", "absolute", "outside-data", "symlink", "hardlink", "directory", "device", "extra-file"],
)
def test_members_that_could_leave_the_target_are_refused(tmp_path, member, message):
    data, record = _crafted([(member, b"evil"[: member.size]), (_info("data/ok"), b"fine")])
    work = tmp_path / "work"
    target = work / "restored"
    with pytest.raises(IntegrityError, match=message):
        restore_archive_stream(io.BytesIO(data), record, target)
    assert not target.exists() and siblings(target) == []
    assert {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")} == {"work", "work/.restored.qilbee-restore.lock"}


def test_a_crafted_archive_with_only_safe_members_restores(tmp_path):
    data, record = _crafted([(_info("data/ok"), b"fine")])  # the crafting helper itself makes good archives
    restore_archive_stream(io.BytesIO(data), record, tmp_path / "restored")
    assert (tmp_path / "restored" / "ok").read_bytes() == b"fine"


def test_a_member_listed_twice_or_missing_is_refused(tmp_path):
    data, record = _crafted([(_info("data/ok"), b"fine"), (_info("data/ok"), b"fine")])
    with pytest.raises(IntegrityError, match="appears twice"):
        restore_archive_stream(io.BytesIO(data), record, tmp_path / "a")
    data, record = _crafted([])
    with pytest.raises(IntegrityError, match="lacks 1 file"):
        restore_archive_stream(io.BytesIO(data), record, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# -- retention ---------------------------------------------------------------------------------------


def test_retention_keeps_twelve_months_of_monthly_archives(repo, tmp_path):
    root = tmp_path / "snap"
    write(root / "CURRENT", b"x")
    months = [datetime(2024 + (m - 1) // 12, (m - 1) % 12 + 1, 1, 4, 0, 7, tzinfo=timezone.utc) for m in range(1, 16)]
    ids = [upload_archive(repo, build(root, tmp_path, now=t), storage_class="GLACIER").archive_id for t in months]
    weekly = upload_archive(repo, build(root, tmp_path, now=months[0], kind="weekly")).archive_id
    # An archive file whose run died before its record, and one being uploaded right now.
    leftover, in_flight = new_backup_id(months[0]), new_backup_id(months[-1])
    for orphan in (leftover, in_flight):
        repo.dest.put_bytes(archives.archive_key(orphan), b"partial")
    os.utime(repo.dest.root / archives.archive_key(leftover), (months[0].timestamp(),) * 2)
    now = months[-1] + timedelta(hours=1)

    dry = prune_archives(repo, kind="monthly", dry_run=True, now=now)
    assert [r["archive_id"] for r in dry["removed"]] == list(reversed(ids[:3]))
    assert len(list_archives(repo)) == 16

    done = prune_archives(repo, kind="monthly", now=now)  # the default: kept 12 months
    assert [k["archive_id"] for k in done["kept"]] == list(reversed(ids[3:]))
    assert done["leftovers_removed"] == [leftover]
    assert [r.archive_id for r in list_archives(repo)] == [weekly] + ids[3:]
    left = sorted(p.name for p in (repo.dest.root / "archives").iterdir())
    expected = {f"{i}{suffix}" for i in ids[3:] + [weekly] for suffix in (".json", ".tar.zst")} | {f"{in_flight}.tar.zst"}
    assert set(left) == expected  # both objects of a removed archive are gone


def test_keep_monthly_keeps_one_archive_per_month_when_a_month_was_run_twice(repo, tmp_path):
    root = tmp_path / "snap"
    write(root / "CURRENT", b"x")
    times = [datetime(2025 + (m - 1) // 12, (m - 1) % 12 + 1, 1, 4, tzinfo=timezone.utc) for m in range(1, 14)]
    retry = datetime(2025, 6, 1, 9, tzinfo=timezone.utc)  # the June run was retried the same day
    ids = {t: upload_archive(repo, build(root, tmp_path, now=t)).archive_id for t in times + [retry]}
    done = prune_archives(repo, retention={"keep_monthly": 12}, now=times[-1])
    kept = {k["archive_id"] for k in done["kept"]}
    assert ids[retry] in kept and ids[datetime(2025, 6, 1, 4, tzinfo=timezone.utc)] not in kept
    assert len(kept) == 12


# -- memory, retrieval options --------------------------------------------------------------------------


def test_memory_stays_flat_building_and_restoring_a_large_file(repo, tmp_path):
    root = tmp_path / "snap"
    write(root / "big.sst", os.urandom(64 * MiB))
    write(root / "CURRENT", b"x")
    tracemalloc.start()
    try:
        built = build(root, tmp_path)
        _, build_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        record = upload_archive(repo, built)
        target = tmp_path / "restored"
        restore_archive(repo, record, target)
        _, restore_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"archive of 64 MiB: tracemalloc peak build {build_peak / MiB:.2f} MiB, upload+restore {restore_peak / MiB:.2f} MiB")
    assert build_peak < 4 * MiB and restore_peak < 4 * MiB
    assert tree(target) == tree(root)


def test_retrieval_options_are_checked_and_a_file_repository_is_always_readable(repo, snapshot, tmp_path):
    with pytest.raises(UsageError, match="tier must be one of Expedited, Standard, Bulk"):
        check_retrieval_options(wait_s=0, poll_s=1, days=1, tier="standard")
    with pytest.raises(UsageError, match="days must be a whole number"):
        check_retrieval_options(wait_s=0, poll_s=1, days=0, tier="Bulk")
    with pytest.raises(UsageError, match="wait must be"):
        check_retrieval_options(wait_s=-1, poll_s=1, days=1, tier="Bulk")
    with pytest.raises(UsageError, match="storage_class must be an S3 class name"):
        upload_archive(repo, build(snapshot, tmp_path), storage_class="glacier")
    record = upload_archive(repo, build(snapshot, tmp_path))
    state = ensure_readable(repo.dest, archives.archive_key(record.archive_id), wait_s=0)
    assert state.readable and state.storage_class == "STANDARD" and state.size == record.archive.size


def test_s3_answers_moto_never_gives(monkeypatch):
    """A retrieval someone else started between our look and our request; no Expedited capacity (botocore's Stubber)."""
    from botocore.stub import Stubber

    from qilbee_backup.retrieval import RetrievalPending
    from qilbee_backup.destinations.s3 import S3Destination, S3Options
    from qilbee_backup.errors import DestinationError

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    dest = S3Destination("qb-stubbed", "repo", S3Options(endpoint_url="http://127.0.0.1:9", max_attempts=1))
    key = archives.archive_key(new_backup_id())
    where = {"Bucket": "qb-stubbed", "Key": f"repo/{key}"}
    with Stubber(dest._client) as stub:
        stub.add_response("head_object", {"ContentLength": 10, "StorageClass": "GLACIER"}, where)
        stub.add_client_error("restore_object", "RestoreAlreadyInProgress", "Object restore is already in progress", 409)
        with pytest.raises(RetrievalPending, match="is in GLACIER: retrieval started"):
            ensure_readable(dest, key, wait_s=0)

        stub.add_response("head_object", {"ContentLength": 10, "StorageClass": "GLACIER"}, where)
        stub.add_client_error("restore_object", "GlacierExpeditedRetrievalNotAvailable", "", 503)
        with pytest.raises(DestinationError, match="no Expedited retrieval capacity right now; use the Standard tier"):
            ensure_readable(dest, key, wait_s=0, tier="Expedited")
        stub.assert_no_pending_responses()
    dest.close()
