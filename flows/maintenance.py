"""Repository maintenance flows: list, verify, prune (the CLI's commands of the same names)."""

from __future__ import annotations

from prefect import flow, get_run_logger

from qilbee_backup import pipeline
from flows.parameters import Retention, retention_rules
from tasks import backup as steps
from tasks.artifacts import publish_rows, publish_table


@flow(name="list-backups")
def list_backups(repo: str, kind: str | None = None) -> list[dict]:
    """Every backup in the repository, oldest first.

    Args:
        repo: The repository: a path, file:///path or s3://bucket/prefix.
        kind: Only this series (daily, weekly, monthly, adhoc).
    """
    repository = pipeline.open_repository(repo)
    rows = [
        {"backup_id": m.backup_id, "created_at": m.created_at.isoformat(), "kind": m.kind, "bytes_total": m.bytes_total,
         "files": len(m.files), "mode": m.source.mode}
        for m in repository.list_backups(kind=kind)
    ]
    publish_rows("backup-list", rows, f"backups in {repo}")
    return rows


@flow(name="verify")
def verify(repo: str, backup: str | None = None, read_data: bool = False) -> dict:
    """Check one backup (or every backup): blobs present with the right size; with read_data, re-hashed.

    Args:
        repo: The repository: a path, file:///path or s3://bucket/prefix.
        backup: One backup (an id or latest); empty checks every backup.
        read_data: Download, decompress and re-hash every blob (slow, finds silent damage).
    """
    logger = get_run_logger()
    repository = pipeline.open_repository(repo)
    ids = [repository.load(backup).backup_id] if backup else [m.backup_id for m in repository.list_backups()]
    reports = [steps.verify(repository, backup_id, read_data) for backup_id in ids]
    result = {
        "url": repo, "ok": all(r["ok"] for r in reports), "read_data": read_data,
        "backups": [{"backup_id": r["backup_id"], "ok": r["ok"], "checked_files": r["checked_files"],
                     "problems": r["problems"]} for r in reports],
    }
    publish_table("verify-summary", {"url": repo, "ok": result["ok"], "backups_checked": len(reports),
                                     "damaged": [r["backup_id"] for r in reports if not r["ok"]]}, f"verify {repo}")
    if not result["ok"]:
        damaged = [r for r in reports if not r["ok"]]
        for r in damaged:
            logger.error("damaged backup %s: %s", r["backup_id"], "; ".join(r["problems"]))
    return result


@flow(name="prune")
def prune(repo: str, kind: str | None = None, retention: Retention | None = None, grace: str = "1h",
          dry_run: bool = False) -> dict:
    """Apply the retention rules to one series (or each series), then sweep unreferenced blobs.

    Args:
        repo: The repository: a path, file:///path or s3://bucket/prefix.
        kind: The series to apply the rules to; empty applies them to each series separately.
        retention: Which backups to keep; empty keeps everything (only the sweep runs).
        grace: Unreferenced blobs younger than this are spared (a backup may be in flight).
        dry_run: Say what would be kept and removed, and why; change nothing.
    """
    repository = pipeline.open_repository(repo)
    result = steps.prune(repository, kind, retention_rules(retention), grace, dry_run)
    publish_rows("prune-decisions",
                 [{"backup_id": k["backup_id"], "kind": k["kind"], "decision": "keep", "reasons": ", ".join(k["reasons"])}
                  for k in result["kept"]]
                 + [{"backup_id": r["backup_id"], "kind": r["kind"], "decision": "remove", "reasons": ""}
                    for r in result["removed"]]
                 + [{"backup_id": r["backup_id"], "kind": r["kind"], "decision": "locked", "reasons": r["reason"]}
                    for r in result["locked"]],
                 f"prune {repo}{' (dry run)' if dry_run else ''}")
    return result
