"""The guide's monthly backup, "archive to cold storage, retain for 12 months", as one flow:
snapshot → build the archive (tar + zstd, the manifest inside) → upload in a cold storage class →
verify → prune the archives, each step a task with its own duration in the UI."""

from __future__ import annotations

import time
from typing import Annotated

from pydantic import Field

from flows.parameters import (
    Count,
    EnvName,
    Grace,
    Kind,
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
from qilbee_backup import cold_archive as archives
from qilbee_backup.repository import open_repository
from qilbee_backup import backup as backups
from qilbee_backup import maintenance
from qilbee_backup.client import QilbeeClient
from qilbee_backup.errors import IntegrityError
from qilbee_backup.manifest import check_kind, check_source_name, default_source_name
from qilbee_backup.report import artifact_key
from qilbee_backup.spool import clean_stale_spools, new_spool, remove_spool
from tasks import archive as steps
from tasks import backup as backup_steps
from tasks.secrets import resolve_api_key
from tasks.steps import get_logger, publish_rows, publish_table


@runbook
def archive(
    source: SourceUrl = "http://127.0.0.1:7474",
    repos: Annotated[list[RepoUrl], Field(min_length=1, max_length=16)] = ["./qilbee-repo"],
    mode: Mode = "auto",
    container: Name | None = None,
    data_path: PathText | None = None,
    kind: Kind = archives.DEFAULT_KIND,
    storage_class: StorageClass | None = "GLACIER",
    sse: Sse | None = None,
    api_key_env: EnvName | None = "QILBEE_API_KEY",
    api_key_secret: Name | None = None,
    retention: Retention | None = Retention(keep_within="12m"),
    grace: Grace = "1d",
    read_data: bool = False,
    lock_wait: WaitSeconds = 0.0,
    spool_dir: PathText | None = None,
    source_name: SourceName | None = None,
    keep_checkpoints: Count = 0,
    insecure_no_encryption: bool = False,
) -> dict:
    """Archive one QilbeeDB server: one self-contained tar + zstd file in a cold storage class, then prune old archives.

    The archive lands in each repository as archives/<id>.tar.zst (in storage_class) with its record
    archives/<id>.json (standard class, written last). It restores with `restore --archive ID`, or by
    hand: `zstd -dc ID.tar.zst | tar -x -C DIR && (cd DIR/data && sha256sum -c ../SHA256SUMS)` (in an
    encrypted repository, first `scripts/decrypt_object.py --repo DIR archives/ID.tar.zst > ID.tar.zst`).

    Args:
        source: URL of the QilbeeDB server to archive.
        repos: Repository URLs (a path, file:///path or s3://bucket/prefix); the archive goes to each (3-2-1).
        mode: How to take the snapshot: auto (online, offline when the server has no snapshot API), online or offline.
        container: Docker container running QilbeeDB (offline mode; maps the snapshot path in online mode).
        data_path: Where the server's data directory is readable from here, when it runs elsewhere.
        kind: The archive series, for retention and for restoring `latest` of a series.
        storage_class: S3 storage class of the archive file (GLACIER, DEEP_ARCHIVE, GLACIER_IR, STANDARD_IA, ...); ignored by file repositories. The record stays in the standard class.
        sse: S3 server-side encryption for both objects: AES256 or aws:kms (default: the bucket's).
        api_key_env: Environment variable holding the server's API key.
        api_key_secret: Name of a Prefect Secret block holding the API key (instead of api_key_env).
        retention: Which archives of this series to keep after the run (the guide: 12 months); empty keeps every archive.
        grace: An archive file without a record (an interrupted run) is removed once older than this.
        read_data: Re-read the uploaded archive to check every byte; only where it is readable without a retrieval (file repositories, non-archive classes).
        lock_wait: Seconds to wait for another run's lock on this source (default: fail at once).
        spool_dir: Directory for the local archive file before upload (needs room for one compressed copy of the database; default: the system's temporary directory).
        source_name: The database's name in the repository: its archives form their own series, so retention never
            crosses databases. Default: host-port of the source URL.
        keep_checkpoints: Server checkpoints to keep once the archive is committed: 0 deletes the one this run took;
            N keeps the newest N (other runs' younger than an hour are spared).
        insecure_no_encryption: Make a new repository unencrypted (readable by whoever reads the bucket); by
            default a new repository is encrypted under the passphrase the worker has.
    """
    logger = get_logger()
    started = time.monotonic()
    storage_class = archives.check_storage_class(storage_class)
    rules = retention_rules(retention)
    name = check_source_name(source_name) if source_name is not None else default_source_name(source)
    check_kind(kind)
    maintenance.parse_grace(grace)
    repositories = [open_repository(url, must_exist=False, **({"sse": sse} if sse else {})) for url in repos]
    client = QilbeeClient(source, api_key=resolve_api_key(api_key_env, api_key_secret))
    # Nothing is written before the input is valid and the source answers; then the repositories exist.
    backups.prepare(repositories, client, encrypt=not insecure_no_encryption)
    clean_stale_spools(spool_dir)  # of runs that were killed: nobody else removes them
    spool = new_spool(spool_dir)
    try:
        with backups.locked(repositories, source, wait=lock_wait):
            taken = backup_steps.snapshot(client, mode, container, data_path)
            try:
                built = steps.build(taken, spool, kind, source, name)
            finally:
                taken.cleanup()
            uploads = [steps.upload.submit(repo, built, storage_class) for repo in repositories]
            for u in uploads:
                u.result()
            released = backup_steps.release_checkpoint_step(client, taken, keep_checkpoints)  # committed everywhere
            verified = [steps.verify(repo, built.manifest.backup_id, read_data) for repo in repositories]
            pruned = []
            if rules and all(v["ok"] for v in verified):  # never prune older archives beside a damaged new one
                pruned = [steps.prune(repo, kind, rules, grace, False, name) for repo in repositories]
    finally:
        remove_spool(spool)
        client.close()

    manifest = built.manifest
    result = {
        "archive_id": manifest.backup_id,
        "source": name,
        "kind": kind,
        "mode": taken.mode,
        "snapshot_id": taken.snapshot_id,
        "files": len(manifest.files),
        "bytes_total": manifest.bytes_total,
        "archive_bytes": built.size,
        "archive_sha256": built.sha256,
        "duration_s": round(time.monotonic() - started, 3),
        "destinations": [
            {"url": repo.url, "storage_class": v["storage_class"], "stored_bytes": repo.stored_bytes(built.size),
             "encrypted": repo.key is not None, "verified": v["ok"]}
            for repo, v in zip(repositories, verified)
        ],
        "pruned": [{"url": p["url"], "removed": [r["archive_id"] for r in p["removed"]],
                    "locked": [r["archive_id"] for r in p["locked"]]} for p in pruned],
        "stats": {k: taken.stats.get(k) for k in ("nodeCount", "relationshipCount")},
        "checkpoints": released,
    }
    publish_table(artifact_key("archive-summary", name), result, f"archive {manifest.backup_id} of {source}")
    bad = [v for v in verified if not v["ok"]]
    if bad:
        raise IntegrityError(f"archive {manifest.backup_id} failed verification at {', '.join(v['url'] for v in bad)}: "
                             + "; ".join(bad[0]["problems"][:3]))
    logger.info("archive %s done in %.1f s: %d files, %d bytes, %d bytes archived", manifest.backup_id,
                result["duration_s"], result["files"], result["bytes_total"], built.size)
    return result


@runbook
def list_archives(repo: RepoUrl, kind: Kind | None = None, source_name: SourceName | None = None) -> list[dict]:
    """Every archive in the repository, oldest first (from the records: no retrieval needed).

    Args:
        repo: Repository URL (a path, file:///path or s3://bucket/prefix).
        kind: Only archives of this series.
        source_name: Only the archives of this source database.
    """
    records, damaged = archives.archive_catalog(open_repository(repo), kind=kind, source_name=source_name)
    rows = [r.summary() for r in records] + [{"archive_id": d.backup_id, "damaged": d.reason} for d in damaged]
    publish_rows("archive-list", rows, f"archives in {repo}")
    return rows
