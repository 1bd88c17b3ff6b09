"""Thin Prefect tasks of the monthly archive and of restoring one: retries, logging. The work is in qilbee_backup."""

from __future__ import annotations

from pathlib import Path

from qilbee_backup import cold_archive as archives
from qilbee_backup.blobs import HashCache
from qilbee_backup.retrieval import ColdState, ensure_readable
from qilbee_backup.errors import DestinationError
from qilbee_backup.manifest import SourceInfo
from qilbee_backup.restorer import RestoreResult
from qilbee_backup.snapshot import TakenSnapshot
from tasks.steps import get_logger, step


@step("build-archive")
def build(taken: TakenSnapshot, spool: Path, kind: str, source: str, source_name: str) -> archives.BuiltArchive:
    logger = get_logger()
    with HashCache() as cache:
        built = archives.build_archive(
            taken.path, spool, kind=kind, stats=taken.stats, hash_cache=cache,
            source=SourceInfo(url=source, server_version=taken.server_version, mode=taken.mode,
                              snapshot_id=taken.snapshot_id, container=taken.container, name=source_name),
        )
    logger.info("archive %s built: %d files, %d bytes -> %d bytes (tar + zstd), SHA-256 %s", built.manifest.backup_id,
                len(built.manifest.files), built.manifest.bytes_total, built.size, built.sha256)
    return built


@step("upload-archive", retries=2, retry_delay_seconds=[10, 60])
def upload(repo, built: archives.BuiltArchive, storage_class: str | None) -> archives.ArchiveRecord:
    # A retry sends the file again (same key); the record is written only at the end.
    record = archives.upload_archive(repo, built, storage_class=storage_class)
    get_logger().info("%s: archive %s uploaded (%d bytes, storage class %s), record written", repo.url,
                          record.archive_id, built.size, record.archive.storage_class or "default")
    return record


@step("verify-archive")
def verify(repo, archive_id: str, read_data: bool = False) -> dict:
    logger = get_logger()
    report = archives.verify_archive(repo, archive_id, read_data=read_data)
    if report["ok"]:
        logger.info("%s: archive %s verified (%d bytes, %s%s)", repo.url, archive_id, report["archive_bytes"],
                    report["storage_class"], ", every byte re-read" if report["read_data"] else "")
    else:
        logger.error("%s: archive %s is damaged: %s", repo.url, archive_id, "; ".join(report["problems"]))
    return report


@step("prune-archives")
def prune(repo, kind: str | None, retention: dict | None, grace: str, dry_run: bool, source_name: str | None = None) -> dict:
    result = archives.prune_archives(repo, kind=kind, retention=retention, grace=grace, dry_run=dry_run,
                                     source_name=source_name)
    get_logger().info("%s: kept %d, removed %d archives (%d still locked), %d leftover files%s", repo.url,
                          len(result["kept"]), len(result["removed"]), len(result["locked"]),
                          len(result["leftovers_removed"]), " (dry run)" if dry_run else "")
    for damaged in result["damaged"]:
        get_logger().warning("%s: damaged archive record left alone: %s", repo.url, damaged["reason"])
    return result


@step("retrieve-archive")
def retrieve(repo, record: archives.ArchiveRecord, wait_s: float, poll_s: float, days: int, tier: str) -> ColdState:
    """Make the archive file readable: start its retrieval from a cold class and wait (see qilbee_backup.retrieval)."""
    logger = get_logger()

    def still_running(state: ColdState, waited: float) -> None:
        logger.info("archive %s: retrieval from %s still in progress after %.0f s (waiting up to %.0f s)",
                    record.archive_id, state.storage_class, waited, wait_s)

    state = ensure_readable(repo.dest, archives.archive_key(record.archive_id), wait_s=wait_s, poll_s=poll_s,
                            days=days, tier=tier, on_poll=still_running)
    logger.info("archive %s is readable (%s%s)", record.archive_id, state.storage_class,
                ", retrieved copy until " + state.expiry if state.expiry else "")
    return state


def _transient(exc: BaseException) -> bool:
    """Retry only a store that failed (a connection dropped mid-stream): damage or a bad target stays failed."""
    return isinstance(exc, DestinationError)


# One stream per archive, so a dropped connection means starting again; a failed attempt leaves the target untouched.
@step("restore-archive", retries=2, retry_delay_seconds=[30, 120], retry_if=_transient)
def restore(repo, record: archives.ArchiveRecord, data_dir: Path, replace_existing: bool = False) -> RestoreResult:
    result = archives.restore_archive(repo, record, data_dir, replace_existing=replace_existing)
    get_logger().info("restored archive %s: %d files (%d bytes, %d downloaded) in %.1f s", record.archive_id,
                          result.files, result.bytes, result.bytes_downloaded, result.duration_s)
    return result
