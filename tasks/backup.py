"""Thin steps of a backup: retries, timeouts, logging. The work is in qilbee_backup.backup and .snapshot."""

from __future__ import annotations

from pathlib import Path

from qilbee_backup import backup as backups
from qilbee_backup.client import QilbeeClient
from qilbee_backup.snapshot import TakenSnapshot, release_checkpoint, take_snapshot
from tasks.steps import get_logger, step


@step("snapshot")
def snapshot(client: QilbeeClient, mode: str, container: str | None, data_path: str | None) -> TakenSnapshot:
    logger = get_logger()
    taken = take_snapshot(client, mode=mode, container=container, data_path=Path(data_path) if data_path else None)
    logger.info("%s snapshot %s: %s (%d bytes)", taken.mode, taken.snapshot_id, taken.path, taken.size_bytes)
    return taken


@step("copy")
def copy(taken: TakenSnapshot, repos: list, spool: Path) -> backups.CopyResult:
    logger = get_logger()
    result = backups.copy_snapshot(taken.path, repos, spool)
    logger.info("scanned %d files (%d bytes); staged %d new blobs (%d bytes compressed); sent %s",
                len(result.entries), result.bytes_total, len(result.staged), result.bytes_staged,
                ", ".join(f"{len(shas)} to {url}" for url, shas in result.sent.items()))
    for url, why in result.send_failed.items():
        logger.warning("%s: sending stopped during the copy (%s); the upload step sends the rest", url, why)
    return result


@step("upload", retries=2, retry_delay_seconds=[10, 60])
def upload(repo, copied: backups.CopyResult, manifest) -> backups.UploadResult:
    # A retry is safe: it puts the same content under the same keys again; the manifest comes only at the end.
    logger = get_logger()
    result = backups.upload_backup(repo, copied, manifest)
    logger.info("%s: sent %d blobs (%d bytes), manifest %s written", repo.url, result.blobs_sent, result.bytes_uploaded, manifest.backup_id)
    return result


@step("release-checkpoint")
def release_checkpoint_step(client: QilbeeClient, taken: TakenSnapshot, keep_newest: int) -> dict:
    """Once the backup is committed: delete the server's checkpoint (keeping the newest N if asked).
    What cannot be deleted is a warning, never a failed backup."""
    released = release_checkpoint(client, taken, keep_newest)
    if released.deleted:
        get_logger().info("deleted server checkpoint(s) %s", ", ".join(released.deleted))
    for warning in released.warnings:
        get_logger().warning(warning)
    return released.as_dict()
