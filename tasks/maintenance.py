"""Thin steps of looking after a repository (verify, prune): retries and logging; the work is in
qilbee_backup.maintenance. Kept apart from the backup steps so a read-only command imports no
server client."""

from __future__ import annotations

from qilbee_backup import maintenance
from tasks.steps import get_logger, step


# Read-only, so a retry is safe: a store answering 503s or dropping connections is not damage.
@step("verify", retries=2, retry_delay_seconds=[5, 20])
def verify(repo, backup, read_data: bool = False) -> dict:
    """backup: an id, or the manifest already read (saves reading it again)."""
    logger = get_logger()
    report = maintenance.verify(repo, backup, read_data=read_data)
    backup_id = report["backup_id"]
    if report["ok"]:
        logger.info("%s: backup %s verified (%d files, %d bytes%s)", repo.url, backup_id, report["checked_files"],
                    report["checked_bytes"], ", data re-hashed" if read_data else "")
    else:
        logger.error("%s: %s", repo.url, report["summary"])
    return report


@step("prune")
def prune(repo, kind: str | None, retention: dict, grace: str, dry_run: bool, source_name: str | None = None) -> dict:
    logger = get_logger()
    result = maintenance.prune(repo, kind=kind, retention=retention, grace=grace, dry_run=dry_run, source_name=source_name)
    logger.info("%s: kept %d, removed %d, locked %d backups; swept %d blobs (%d still locked)%s", repo.url,
                len(result["kept"]), len(result["removed"]), len(result["locked"]), result["blobs_removed"],
                result["blobs_locked"], " (dry run)" if dry_run else "")
    for locked in result["locked"]:
        logger.info("%s: kept %s: %s", repo.url, locked["backup_id"], locked["reason"])
    for damaged in result["damaged"]:
        logger.warning("%s: damaged manifest left alone: %s", repo.url, damaged["reason"])
    if result["sweep_skipped"]:
        logger.warning("%s: no blobs swept while a manifest is damaged (it may name some of them)", repo.url)
    return result
