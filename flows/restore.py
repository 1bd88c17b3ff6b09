"""Restore a backup (or a monthly archive) into a data directory, checked file by file.

Into a directory that already holds data (an existing instance) the old data is moved aside, never
deleted until the restored data passes its checks on a running server; on any failure the old
data is put back and the instance restarted as it was. Into a new or empty directory, a failure
leaves it as it was too (absent, or empty): nothing restored stays to fill a disk or to be taken
for a good copy. The restore refuses a directory a running server uses (--container stops it first).

An archive in a cold storage class (GLACIER, DEEP_ARCHIVE) is retrieved first, before any container
is stopped: the flow starts the retrieval and waits for it, or with retrieval_wait=0 stops at once
saying the retrieval was started and to run again later.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field

from flows import approval as gate
from flows.parameters import (
    BackupRef,
    EnvName,
    Kind,
    Name,
    PathText,
    RepoUrl,
    RetrievalDays,
    RetrievalTier,
    Seconds,
    SourceName,
    SourceUrl,
    Text,
    WaitSeconds,
)
from flows.runbook import runbook
from qilbee_backup import cold_archive as archives
from qilbee_backup import docker_engine, recovery
from qilbee_backup.repository import open_repository
from qilbee_backup.client import QilbeeClient
from qilbee_backup.retrieval import check_retrieval_options
from qilbee_backup.errors import UsageError
from qilbee_backup.manifest import check_backup_ref
from qilbee_backup.provision import ProvisionError, open_provisioner
from qilbee_backup.report import artifact_key, number, size, utc
from tasks import archive as archive_steps
from tasks import recovery as steps
from tasks.steps import get_logger, publish_table


@runbook
def restore(
    repo: RepoUrl,
    data_dir: PathText,
    backup: BackupRef = "latest",
    kind: Kind | None = None,
    source_name: SourceName | None = None,
    replace: bool = False,
    container: Name | None = None,
    source: SourceUrl | None = None,
    server_cmd: Text | None = None,
    server_env: Annotated[list[EnvName], Field(max_length=64)] = [],
    check: bool = True,
    archive: BackupRef | None = None,
    retrieval_wait: WaitSeconds = 12 * 3600.0,
    retrieval_tier: RetrievalTier = "Standard",
    retrieval_days: RetrievalDays = 7,
    retrieval_poll: Seconds = 60.0,
    approve: bool = False,
    approval_timeout_s: Seconds = 3600.0,
) -> dict:
    """Restore a backup (an id or latest), or an archive, into data_dir; with replace, swap out the data there.

    Args:
        repo: Repository URL (a path, file:///path or s3://bucket/prefix).
        data_dir: Directory to restore into: missing or empty, or holding data with replace (or container).
        backup: The backup to restore: an id or latest. Not used with archive.
        kind: With latest (backup or archive): the newest of this series.
        source_name: With latest: the newest backup of this source database (its name, as `list` shows it).
        replace: data_dir holds data: move it aside, and put it back if the restored data fails its check.
        container: Docker container using data_dir: stopped, restored into, started again and checked.
        source: The container's URL for the check (default http://127.0.0.1:7474).
        server_cmd: Server command to check the restored data with ({data_dir}, {port}, {host}); default: the emulator.
        server_env: Names of environment variables that check server gets from the worker (it gets no others).
        check: Start a throwaway server on the restored data and compare its figures with the backup's.
        archive: Restore this archive (an id or latest) from the repository's archives/ instead of a backup.
        retrieval_wait: Seconds to wait for an archive in GLACIER or DEEP_ARCHIVE to be retrieved (Standard tier: hours). 0: start the retrieval and stop; run again later.
        retrieval_tier: S3 retrieval tier: Expedited (GLACIER only, minutes), Standard or Bulk (cheapest, slowest).
        retrieval_days: Days the retrieved copy stays readable in S3.
        retrieval_poll: Seconds between two looks at a running retrieval.
        approve: Pause before data_dir (or the container) is touched until a person decides in the Prefect UI
            (default there: decline).
        approval_timeout_s: Seconds to wait for that decision; no decision fails the run, and nothing is touched.
    """
    logger = get_logger()
    # The input first: nothing is read, stopped or written for a request that cannot run.
    if not data_dir or not data_dir.strip():
        raise UsageError("data_dir is empty: name the directory to restore into")
    if archive is not None:
        if backup not in ("latest", None):
            raise UsageError("give a backup or an archive to restore, not both")
        check_backup_ref(archive)
        check_retrieval_options(wait_s=retrieval_wait, poll_s=retrieval_poll, days=retrieval_days, tier=retrieval_tier)
    else:
        check_backup_ref(backup)
    repository = open_repository(repo)
    target = Path(data_dir).resolve()
    record = None
    if archive is not None:
        record = archives.load_archive(repository, archive, kind=kind)
        manifest = record.manifest
        # Before any container is stopped: a retrieval from cold storage can take hours.
        archive_steps.retrieve(repository, record, retrieval_wait, retrieval_poll, retrieval_days, retrieval_tier)
    else:
        manifest = repository.load(backup, kind=kind, source_name=source_name)
    approval = None
    if approve:  # the last moment nothing is touched yet: what is restored, and what it replaces, is known now
        approval = gate.ask(_approval_text(manifest, record, target, container), RestoreApproval, approval_timeout_s)
        if not approval["approved"]:
            raise recovery.RecoveryError(gate.declined(f"the restore of {manifest.backup_id} into {target}", approval,
                                                       "nothing was touched"))
    stopped = None
    if container:
        stopped = docker_engine.container(docker_engine.docker_client("restore --container"), container)
        logger.info("stopping container %s before restoring into its data directory", container)
        stopped.stop(timeout=30)
    try:
        if record is not None:
            restored = archive_steps.restore(repository, record, target, replace_existing=replace or bool(container))
        else:
            restored = steps.restore(repository, manifest, target, replace_existing=replace or bool(container))
        integrity = None
        try:
            if stopped is not None:
                stopped.start()
                with QilbeeClient(source or "http://127.0.0.1:7474") as client:
                    client.wait_healthy(timeout=120)
                    integrity = recovery.check_instance(client, manifest, restored.files)
            elif check:
                integrity = _check_on_throwaway_server(target, manifest, restored.files, server_cmd, server_env)
            if integrity is not None and not integrity.ok:
                raise recovery.RecoveryError(f"restored backup {manifest.backup_id} failed its check: " + "; ".join(integrity.differences))
        except BaseException:
            if stopped is not None:
                stopped.stop(timeout=30)  # the restored data is moved away: no server may use it
            restored.undo()
            logger.error("restore undone: %s", f"the previous data of {target} is in place again" if restored.swap
                         else f"nothing restored stays in {target}")
            raise
        if restored.swap is not None:
            restored.swap.commit()
    finally:
        if stopped is not None:
            stopped.reload()
            if stopped.status != "running":
                stopped.start()  # restarted as it was, whatever happened
    result = {
        "backup_id": manifest.backup_id, "restored_from": "archive" if record is not None else "backup",
        "data_dir": str(target), "files": restored.files, "bytes": restored.bytes,
        "bytes_downloaded": restored.bytes_downloaded, "duration_s": round(restored.duration_s, 3),
        "replaced_existing": restored.swap is not None, "integrity": integrity.to_dict() if integrity else None,
    }
    if approval is not None:
        result["approval"] = approval
    publish_table(artifact_key("restore-summary", manifest.source.series_name), result, f"restore of {manifest.backup_id} into {target}")
    return result


class RestoreApproval(BaseModel):
    """Shown in the Prefect UI before the restore touches its target: a decision, recorded in the result."""

    approve: bool = Field(False, description="Restore into the target now. Leave unticked to decline (nothing is touched).")
    decided_by: str = Field("", max_length=200, description="Who decides (name or e-mail): recorded in the result.")
    note: str = Field("", max_length=2000, description="Why: recorded in the result.")


def _approval_text(manifest, record, target: Path, container: str | None) -> str:
    holds = target.is_dir() and any(target.iterdir())
    what = f"archive `{record.archive_id}`" if record is not None else f"backup `{manifest.backup_id}`"
    lines = [f"### Restore {what} into `{target}`?", "",
             f"It was taken {utc(manifest.created_at)} from {manifest.source.series_name} ({manifest.kind}, "
             f"{len(manifest.files)} files, {size(manifest.bytes_total)}).", ""]
    if container:
        lines.append(f"- The container **{container}** is stopped, restored into, started again and checked.")
    if holds:
        lines.append(f"- `{target}` **holds data now**: it is moved aside, and deleted only once the restored data "
                     "passed its check (put back otherwise).")
    else:
        lines.append(f"- `{target}` is empty or missing: nothing there is replaced.")
    stats = manifest.stats or {}
    if stats.get("nodeCount") is not None:
        lines.append(f"- The backup holds {number(stats['nodeCount'])} nodes and {number(stats.get('relationshipCount'))} "
                     "relationships.")
    lines += ["", "Tick **approve** to restore; leave it unticked to decline (nothing is touched)."]
    return "\n".join(lines)


def _check_on_throwaway_server(data_dir: Path, manifest, files: int, server_cmd: str | None, server_env: list[str]):
    """Start a server on the restored data for a moment and compare its figures with the backup's.

    Its log goes to a temporary directory, never beside data_dir (an undone restore leaves nothing
    there); it is kept only when the server did not start and the error names it."""
    log_dir = Path(tempfile.mkdtemp(prefix="qilbee-restore-check-"))
    keep_log = False
    try:
        provisioner = open_provisioner("process", server_cmd=server_cmd, health_timeout=120, log_dir=log_dir,
                                       pass_env=server_env)
        try:
            instance = provisioner.start(data_dir)
        except ProvisionError as exc:
            keep_log = str(log_dir) in str(exc)  # only a log the error points at is worth keeping
            raise recovery.RecoveryError(f"restored backup {manifest.backup_id} failed its check: {exc}") from None
        try:
            with QilbeeClient(instance.url) as client:
                return recovery.check_instance(client, manifest, files)
        finally:
            provisioner.stop(instance)
    finally:
        if not keep_log:
            shutil.rmtree(log_dir, ignore_errors=True)
