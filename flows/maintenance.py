"""Repository maintenance flows: list, verify, prune (the CLI's commands of the same names)."""

from __future__ import annotations

from flows.parameters import (
    BackupRef,
    Grace,
    Kind,
    RepoUrl,
    Retention,
    SourceName,
    retention_rules,
)
from flows.runbook import runbook
from qilbee_backup.repository import open_repository
from qilbee_backup.errors import FailedWithReport
from qilbee_backup.manifest import check_backup_ref
from qilbee_backup.verify_history import record_verify
from tasks import maintenance as steps
from tasks.steps import get_logger, publish_rows, publish_table


@runbook
def list_backups(repo: RepoUrl, kind: Kind | None = None, source_name: SourceName | None = None) -> list[dict]:
    """Every backup in the repository, oldest first; a damaged manifest is listed as damaged.

    Args:
        repo: The repository: a path, file:///path or s3://bucket/prefix.
        kind: Only this series (daily, weekly, monthly, adhoc).
        source_name: Only the backups of this source database (its name, as `list` shows it).
    """
    repository = open_repository(repo)
    if repository.key is None:
        get_logger().warning("%s is unencrypted: whoever can read it can read the backups", repo)
    catalog = repository.catalog(kind=kind, source_name=source_name)
    rows = [
        {"backup_id": m.backup_id, "created_at": m.created_at.isoformat(), "source": m.source.series_name,
         "kind": m.kind, "bytes_total": m.bytes_total, "files": len(m.files), "mode": m.source.mode}
        for m in catalog.backups
    ] + [{"backup_id": d.backup_id, "damaged": d.reason} for d in catalog.damaged]
    publish_rows("backup-list", rows, f"backups in {repo}")
    return rows


def _damaged_report(damaged) -> dict:
    return {"backup_id": damaged.backup_id, "ok": False, "checked_files": 0, "problems": [f"(manifest): {damaged.reason}"],
            "unchecked": []}


@runbook
def verify(repo: RepoUrl, backup: BackupRef | None = None, read_data: bool = False) -> dict:
    """Check one backup (or every backup): blobs present with the right size; with read_data, re-hashed.
    A damaged manifest counts as a damaged backup. The run fails when anything is damaged.

    Args:
        repo: The repository: a path, file:///path or s3://bucket/prefix.
        backup: One backup (an id or latest); empty checks every backup.
        read_data: Download, decompress and re-hash every blob (slow, finds silent damage).
    """
    logger = get_logger()
    if backup is not None:
        check_backup_ref(backup)
    repository = open_repository(repo)
    if backup:
        manifests, damaged = [repository.load(backup)], []
    else:
        catalog = repository.catalog()
        manifests, damaged = catalog.backups, catalog.damaged
    reports = [steps.verify(repository, m, read_data) for m in manifests] + [_damaged_report(d) for d in damaged]
    result = {
        "url": repo, "ok": all(r["ok"] for r in reports), "read_data": read_data,
        "backups": [{"backup_id": r["backup_id"], "ok": r["ok"], "checked_files": r["checked_files"],
                     "problems": r["problems"], "unchecked": r["unchecked"]} for r in reports],
    }
    damaged = [r for r in reports if r["problems"]]
    unchecked = [r for r in reports if r["unchecked"] and not r["problems"]]
    verdict = "intact" if result["ok"] else f"{len(damaged)} damaged, {len(unchecked)} could not be checked"
    publish_table("verify-summary", result, f"verify {repo}: {verdict}")
    for r in damaged:
        logger.error("damaged backup %s: %s", r["backup_id"], "; ".join(r["problems"]))
    for r in unchecked:
        logger.error("could not check backup %s: %s", r["backup_id"], "; ".join(r["unchecked"]))
    try:  # kept beside the backups for `status` and the metrics; advice: the verify's verdict stands
        record_verify(repository, result, backup)
    except Exception as exc:  # noqa: BLE001 - a read-only or locked store must not fail a verify
        logger.warning("this verify is not recorded in %s: %s", repo, exc)
    if damaged or unchecked:
        parts = []
        if damaged:
            first = damaged[0]
            parts.append(f"{len(damaged)} of {len(reports)} backup(s) in {repo} damaged: "
                         + ", ".join(r["backup_id"] for r in damaged[:5]) + (" ..." if len(damaged) > 5 else "")
                         + f" (first: {first['problems'][0]})")
        if unchecked:
            parts.append(f"{len(unchecked)} backup(s) could not be checked (blobs unreadable, not found damaged): "
                         + ", ".join(r["backup_id"] for r in unchecked[:5]) + f"; {unchecked[0]['unchecked'][0]}")
        raise FailedWithReport("; ".join(parts), result)
    return result


@runbook
def prune(repo: RepoUrl, kind: Kind | None = None, retention: Retention | None = None, grace: Grace = "1h",
          dry_run: bool = False, source_name: SourceName | None = None) -> dict:
    """Apply the retention rules to each series (a source database and a kind) or the ones selected,
    then sweep unreferenced blobs. Retention never crosses databases.

    Args:
        repo: The repository: a path, file:///path or s3://bucket/prefix.
        kind: Only the series of this kind; empty applies the rules to every kind.
        retention: Which backups to keep; empty keeps everything (only the sweep runs).
        grace: Unreferenced blobs younger than this are spared (a backup may be in flight).
        dry_run: Say what would be kept and removed, and why; change nothing.
        source_name: Only the series of this source database; empty applies the rules to every source.
    """
    repository = open_repository(repo)
    result = steps.prune(repository, kind, retention_rules(retention), grace, dry_run, source_name)
    publish_rows("prune-decisions",
                 [{"backup_id": k["backup_id"], "source": k["source"], "kind": k["kind"], "decision": "keep",
                   "reasons": ", ".join(k["reasons"])} for k in result["kept"]]
                 + [{"backup_id": r["backup_id"], "source": r["source"], "kind": r["kind"], "decision": "remove",
                     "reasons": ""} for r in result["removed"]]
                 + [{"backup_id": r["backup_id"], "source": r["source"], "kind": r["kind"], "decision": "locked",
                     "reasons": r["reason"]} for r in result["locked"]]
                 + [{"backup_id": d["backup_id"], "source": None, "kind": None, "decision": "damaged: left alone",
                     "reasons": d["reason"]} for d in result["damaged"]],
                 f"prune {repo}{' (dry run)' if dry_run else ''}")
    return result
