"""Every verify's outcome, kept in the repository beside the backups (``verifies/<id>.json``, see
run_records): when, whether it re-read the data, how many backups it checked, which were damaged or
could not be checked. `status` and the metrics show the last one.

The verify runbook (flows/maintenance.py) records it with ``record_verify(repository, result,
backup)`` just before it reports (and fails on) damage.
"""

from __future__ import annotations

from typing import Any

from .repository import Repository
from .run_records import RunRecords

FORMAT = "qilbee-backup-verify"
VERSION = 1


def verify_record(result: dict[str, Any], backup: str | None = None) -> dict[str, Any]:
    """The record of one verify from the result it reported ({url, ok, read_data, backups: [...]});
    backup: the one backup it was asked to check (None: every backup)."""
    backups = result.get("backups") or []
    return {
        "format": FORMAT, "version": VERSION, "scope": backup or "every backup",
        "ok": bool(result.get("ok")), "read_data": bool(result.get("read_data")),
        "backups_checked": len(backups),
        "damaged": [b.get("backup_id") for b in backups if b.get("problems")],
        "unchecked": [b.get("backup_id") for b in backups if b.get("unchecked") and not b.get("problems")],
    }


def record_verify(repo: Repository, result: dict[str, Any], backup: str | None = None) -> str:
    """Store the record of a verify's result; its id (its time is the id's)."""
    return RunRecords(repo, "verify").add(verify_record(result, backup))


def last_verify(repo: Repository) -> dict[str, Any] | None:
    """The newest readable verify record, or None when no verify was recorded."""
    records, _ = RunRecords(repo, "verify").newest(5)  # a few: the newest may be unreadable
    records = [r for r in records if r.get("format") == FORMAT]
    return records[-1] if records else None
