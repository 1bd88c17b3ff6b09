"""The guide's online/file-system backup and nightly upload as one flow:
snapshot → copy → upload → verify → prune, each step a task with its own duration in the UI."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from prefect import flow, get_run_logger

from qilbee_backup import pipeline
from qilbee_backup.client import QilbeeClient
from qilbee_backup.errors import IntegrityError
from qilbee_backup.manifest import SourceInfo
from tasks import backup as steps
from tasks.artifacts import publish_table
from tasks.secrets import resolve_api_key


@flow(name="backup")
def backup(
    source: str = "http://127.0.0.1:7474",
    repos: list[str] = ["./qilbee-repo"],
    mode: str = "auto",
    container: str | None = None,
    data_path: str | None = None,
    kind: str = "adhoc",
    api_key_env: str | None = "QILBEE_API_KEY",
    api_key_secret: str | None = None,
    storage_class: str | None = None,
    sse: str | None = None,
    read_data: bool = False,
    lock_wait: float = 0.0,
    retention: dict | None = None,
    grace: str = "1h",
) -> dict:
    """Back up one QilbeeDB server to one or more repositories (3-2-1), then verify and prune them."""
    logger = get_run_logger()
    started = time.monotonic()
    s3_options = {k: v for k, v in {"storage_class": storage_class, "sse": sse}.items() if v}
    repositories = [pipeline.open_repository(url, **s3_options) for url in repos]
    client = QilbeeClient(source, api_key=resolve_api_key(api_key_env, api_key_secret))
    spool = Path(tempfile.mkdtemp(prefix="qilbee-spool-"))
    try:
        with pipeline.locked(repositories, source, wait=lock_wait):
            taken = steps.snapshot(client, mode, container, data_path)
            try:
                copied = steps.copy(taken, repositories, spool)
                manifest = pipeline.make_manifest(
                    copied, kind=kind, stats=taken.stats,
                    source=SourceInfo(url=source, server_version=taken.server_version, mode=taken.mode,
                                      snapshot_id=taken.snapshot_id, container=taken.container),
                )
                uploads = [steps.upload.submit(repo, copied, manifest) for repo in repositories]
                uploaded = [u.result() for u in uploads]
            finally:
                taken.cleanup()
            checks = [steps.verify.submit(repo, manifest.backup_id, read_data) for repo in repositories]
            verified = [c.result() for c in checks]
            pruned = []
            if retention:
                pruned = [steps.prune(repo, kind, retention, grace, False) for repo in repositories]
    finally:
        shutil.rmtree(spool, ignore_errors=True)
        client.close()

    result = {
        "backup_id": manifest.backup_id,
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
        "stats": {k: taken.stats.get(k) for k in ("nodeCount", "relationshipCount")},
    }
    publish_table("backup-summary", result, f"backup {manifest.backup_id} of {source}")
    bad = [v for v in verified if not v["ok"]]
    if bad:
        raise IntegrityError(f"backup {manifest.backup_id} failed verification at {', '.join(v['url'] for v in bad)}: "
                             + "; ".join(bad[0]["problems"][:3]))
    logger.info("backup %s done in %.1f s: %d files, %d bytes, %d uploaded", manifest.backup_id,
                result["duration_s"], result["files"], result["bytes_total"], result["bytes_uploaded"])
    return result
