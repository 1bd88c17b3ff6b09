"""Restore a backup into a data directory, checked file by file.

Into a directory that already holds data (an existing instance) the old data is moved aside, never
deleted until the restored data passes its checks on a running server; on any failure the old
data is put back and the instance restarted as it was.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from qilbee_backup import pipeline, recovery
from qilbee_backup.client import QilbeeClient
from qilbee_backup.provision import open_provisioner
from tasks import recovery as steps
from tasks.artifacts import publish_table


@flow(name="restore")
def restore(
    repo: str,
    data_dir: str,
    backup: str = "latest",
    kind: str | None = None,
    replace: bool = False,
    container: str | None = None,
    source: str | None = None,
    server_cmd: str | None = None,
    check: bool = True,
) -> dict:
    """Restore `backup` (an id or latest) into data_dir; with replace, swap out the data there."""
    logger = get_run_logger()
    repository = pipeline.open_repository(repo)
    manifest = repository.load(backup, kind=kind)
    target = Path(data_dir).resolve()
    stopped = None
    if container:
        import docker

        stopped = docker.from_env().containers.get(container)
        logger.info("stopping container %s before restoring into its data directory", container)
        stopped.stop(timeout=30)
    try:
        restored = steps.restore(repository, manifest, target, replace_existing=replace or bool(container))
        integrity = None
        try:
            if stopped is not None:
                stopped.start()
                with QilbeeClient(source or "http://127.0.0.1:7474") as client:
                    client.wait_healthy(timeout=120)
                    integrity = recovery.check_instance(client, manifest, restored.files)
            elif check:
                integrity = _check_on_throwaway_server(target, manifest, restored.files, server_cmd)
            if integrity is not None and not integrity.ok:
                raise recovery.RecoveryError(f"restored backup {manifest.backup_id} failed its check: " + "; ".join(integrity.differences))
        except BaseException:
            if restored.swap is not None:
                if stopped is not None:
                    stopped.stop(timeout=30)
                restored.swap.rollback()
                logger.error("restore rolled back: the previous data of %s is in place again", target)
            raise
        if restored.swap is not None:
            restored.swap.commit()
    finally:
        if stopped is not None:
            stopped.reload()
            if stopped.status != "running":
                stopped.start()  # restarted as it was, whatever happened
    result = {
        "backup_id": manifest.backup_id, "data_dir": str(target), "files": restored.files, "bytes": restored.bytes,
        "bytes_downloaded": restored.bytes_downloaded, "duration_s": round(restored.duration_s, 3),
        "replaced_existing": restored.swap is not None, "integrity": integrity.to_dict() if integrity else None,
    }
    publish_table("restore-summary", result, f"restore of {manifest.backup_id} into {target}")
    return result


def _check_on_throwaway_server(data_dir: Path, manifest, files: int, server_cmd: str | None):
    """Start a server on the restored data for a moment and compare its figures with the backup's."""
    provisioner = open_provisioner("process", server_cmd=server_cmd, health_timeout=120)
    instance = provisioner.start(data_dir)
    try:
        with QilbeeClient(instance.url) as client:
            return recovery.check_instance(client, manifest, files)
    finally:
        provisioner.stop(instance)
