"""The guide's online/file-system backup and nightly upload as one flow:
snapshot → copy → upload → verify → prune, each step a task with its own duration in the UI."""

from __future__ import annotations

import time
from typing import Annotated

from pydantic import Field

from flows.parameters import (
    Count,
    EnvName,
    Grace,
    Kind,
    LockDays,
    LockMode,
    Mode,
    Name,
    PathText,
    RepoUrl,
    Retention,
    SourceName,
    SourceUrl,
    Sse,
    StorageClass,
    WaitSeconds,
    retention_rules,
)
from flows.runbook import runbook
from qilbee_backup.repository import open_repository
from qilbee_backup import backup as backups
from qilbee_backup import maintenance
from qilbee_backup.client import QilbeeClient
from qilbee_backup.destinations.url import S3Location, parse_url
from qilbee_backup.errors import IntegrityError, UsageError
from qilbee_backup.manifest import (
    SourceInfo,
    check_kind,
    check_source_name,
    default_source_name,
)
from qilbee_backup.report import artifact_key
from qilbee_backup.spool import clean_stale_spools, new_spool, remove_spool
from tasks import backup as steps
from tasks import maintenance as maintenance_steps
from tasks.secrets import resolve_api_key
from tasks.steps import get_logger, publish_table


def check_lock_repositories(repos: list[str], lock_days: int | None) -> None:
    """Object Lock needs an S3 repository among those written to (the CLI asks before the run)."""
    if lock_days and not any(isinstance(parse_url(u), S3Location) for u in repos):
        raise UsageError("object lock (--lock-days) needs an s3:// repository; none of the repositories is one")


def _lock_options(url: str, lock_days: int | None, lock_mode: str) -> dict:
    """Object Lock applies to the S3 repositories of a fan-out; a local copy cannot be locked, and says so."""
    if not lock_days:
        return {}
    if isinstance(parse_url(url), S3Location):
        return {"lock_days": lock_days, "lock_mode": lock_mode}
    get_logger().warning("%s is not S3: its copy of the backup is not locked", url)
    return {}


@runbook
def backup(
    source: SourceUrl = "http://127.0.0.1:7474",
    repos: Annotated[list[RepoUrl], Field(min_length=1, max_length=16)] = ["./qilbee-repo"],
    mode: Mode = "auto",
    container: Name | None = None,
    data_path: PathText | None = None,
    kind: Kind = "adhoc",
    api_key_env: EnvName | None = "QILBEE_API_KEY",
    api_key_secret: Name | None = None,
    storage_class: StorageClass | None = None,
    sse: Sse | None = None,
    lock_days: LockDays | None = None,
    lock_mode: LockMode = "GOVERNANCE",
    read_data: bool = False,
    lock_wait: WaitSeconds = 0.0,
    retention: Retention | None = None,
    grace: Grace = "1h",
    source_name: SourceName | None = None,
    keep_checkpoints: Count = 0,
    insecure_no_encryption: bool = False,
) -> dict:
    """Back up one QilbeeDB server to one or more repositories (3-2-1), then verify and prune them.

    Args:
        source: The QilbeeDB server's URL.
        repos: Repositories to write to, each a path, file:///path or s3://bucket/prefix (several: 3-2-1).
        mode: online (POST /admin/snapshot), offline (stop the container, copy its data directory, start
            it again) or auto (online where the server has the snapshot API, else offline with a container).
        container: The Docker container running QilbeeDB: offline mode, and mapping the snapshot path.
        data_path: Where the server's data directory is readable on this machine, if not found from the container.
        kind: The series this backup belongs to (daily, weekly, monthly, adhoc); retention works per series.
        api_key_env: Environment variable holding the server's API key (never a parameter: the UI shows those).
        api_key_secret: Name of a Prefect Secret block holding the API key (used if the variable is unset).
        storage_class: S3 storage class of uploaded objects (e.g. STANDARD_IA); ignored for paths.
        sse: S3 server-side encryption: AES256 or aws:kms.
        lock_days: S3 Object Lock: write blobs and manifests locked for this many days (the bucket must have
            Object Lock enabled); prune leaves locked backups in place.
        lock_mode: GOVERNANCE (privileged users may lift the lock) or COMPLIANCE (nobody can, until it expires).
        read_data: Verify by downloading and re-hashing every blob instead of checking sizes.
        lock_wait: Seconds to wait for another run's lock on this source before failing.
        retention: Which backups of this series (this source and kind) to keep after the backup; empty keeps
            everything. Nothing is pruned unless the new backup verified in every repository.
        grace: Unreferenced blobs younger than this are spared by the sweep (a backup may be in flight).
        source_name: The database's name in the repository: its backups form their own series, so retention
            never crosses databases. Default: host-port of the source URL; set it so a database keeps its
            series when disaster recovery moves it to another URL.
        keep_checkpoints: Server checkpoints to keep once the backup is committed: 0 deletes the one this run took;
            N keeps the newest N (other runs' younger than an hour are spared).
        insecure_no_encryption: Make a new repository unencrypted (readable by whoever reads the bucket). By
            default a new repository is encrypted under the passphrase the worker has (QILBEE_PASSWORD, or
            the Prefect Secret block qilbee-backup-password); existing repositories stay as they are.
    """
    logger = get_logger()
    started = time.monotonic()
    s3_options = {k: v for k, v in {"storage_class": storage_class, "sse": sse}.items() if v}
    check_lock_repositories(repos, lock_days)
    rules = retention_rules(retention)
    name = check_source_name(source_name) if source_name is not None else default_source_name(source)
    check_kind(kind)
    maintenance.parse_grace(grace)
    repositories = [open_repository(url, must_exist=False, **s3_options, **_lock_options(url, lock_days, lock_mode))
                    for url in repos]
    client = QilbeeClient(source, api_key=resolve_api_key(api_key_env, api_key_secret))
    # Nothing is written before the input is valid and the source answers; then the repositories exist.
    backups.prepare(repositories, client, encrypt=not insecure_no_encryption)
    clean_stale_spools()  # of runs that were killed: nobody else removes them
    spool = new_spool()
    try:
        with backups.locked(repositories, source, wait=lock_wait):
            taken = steps.snapshot(client, mode, container, data_path)
            try:
                copied = steps.copy(taken, repositories, spool)
                manifest = backups.make_manifest(
                    copied, kind=kind, stats=taken.stats,
                    source=SourceInfo(url=source, server_version=taken.server_version, mode=taken.mode,
                                      snapshot_id=taken.snapshot_id, container=taken.container, name=name),
                )
                uploads = [steps.upload.submit(repo, copied, manifest) for repo in repositories]
                uploaded = [u.result() for u in uploads]
                released = steps.release_checkpoint_step(client, taken, keep_checkpoints)  # committed everywhere
            finally:
                taken.cleanup()
            checks = [maintenance_steps.verify.submit(repo, manifest.backup_id, read_data) for repo in repositories]
            verified = [c.result() for c in checks]
            pruned = []
            # Never prune beside a failed verify: the new backup may not be restorable, and the
            # rules would count it and remove an older good one in its place.
            if rules and all(v["ok"] for v in verified):
                pruned = [maintenance_steps.prune(repo, kind, rules, grace, False, name) for repo in repositories]
            elif rules:
                logger.warning("not pruning: backup %s failed verification", manifest.backup_id)
    finally:
        remove_spool(spool)
        client.close()

    result = {
        "backup_id": manifest.backup_id,
        "source": name,
        "kind": kind,
        "mode": taken.mode,
        "snapshot_id": taken.snapshot_id,
        "files": len(copied.entries),
        "bytes_total": copied.bytes_total,
        "bytes_uploaded": sum(u.bytes_uploaded for u in uploaded),
        "duration_s": round(time.monotonic() - started, 3),
        "destinations": [
            {"url": u.url, "blobs_sent": u.blobs_sent, "bytes_uploaded": u.bytes_uploaded, "verified": v["ok"]}
            for u, v in zip(uploaded, verified)
        ],
        "pruned": [{"url": p["url"], "removed": [r["backup_id"] for r in p["removed"]]} for p in pruned],
        "checkpoints": released,
        "stats": {k: taken.stats.get(k) for k in ("nodeCount", "relationshipCount")},
    }
    publish_table(artifact_key("backup-summary", name), result, f"backup {manifest.backup_id} of {source}")
    bad = [v for v in verified if not v["ok"]]
    if bad:
        raise IntegrityError(f"backup {manifest.backup_id} failed verification at {', '.join(v['url'] for v in bad)}: "
                             + "; ".join(bad[0]["problems"][:3]))
    logger.info("backup %s done in %.1f s: %d files, %d bytes, %d uploaded", manifest.backup_id,
                result["duration_s"], result["files"], result["bytes_total"], result["bytes_uploaded"])
    return result
