"""Every restore drill's outcome, kept in the repository beside the backups it tested
(``drills/<id>.json``, see run_records): when it ran, which backup it restored, passed or failed
(and at which step, why), the RTO it measured with each step's duration, and the targets it was
measured against. `status`, the metrics and the next drill's trend read them back.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .repository import Repository
from .run_records import DamagedRecord, RunRecords

FORMAT = "qilbee-backup-drill"
VERSION = 1
HISTORY = 200  # records read by status and the metrics: a year of weekly drills, and then some


def drill_record(result: dict[str, Any], *, started_at: datetime, backup_created_at: datetime | None,
                 provider: str | None, source_name: str | None) -> dict[str, Any]:
    """The record of one drill from the result it reported (passed or failed). source_name: the
    source the drill was asked to choose from, for a drill that stopped before choosing a backup."""
    integrity = result.get("integrity") or {}
    return {
        "format": FORMAT, "version": VERSION,
        "started_at": started_at.isoformat(), "finished_at": datetime.now(timezone.utc).isoformat(),
        "ok": bool(result.get("ok")), "failed_step": result.get("failed_step"), "error": result.get("error"),
        "backup_id": result.get("backup_id"),
        "backup_created_at": backup_created_at.isoformat() if backup_created_at else None,
        "source": result.get("source") or source_name, "kind": result.get("kind"),
        "rto_s": result.get("rto_s"), "rpo_s": result.get("rpo_s"),
        "rto_target_s": result.get("rto_target_s"), "rpo_target_s": result.get("rpo_target_s"),
        "steps": [{"name": s.get("name"), "duration_s": s.get("duration_s"), "ok": s.get("ok")}
                  for s in result.get("steps") or []],
        "skipped_backups": [s.get("backup_id") for s in result.get("skipped_backups") or []],
        "integrity_ok": integrity.get("ok"), "provider": provider,
    }


def record_drill(repo: Repository, record: dict[str, Any]) -> str:
    """Store the record; its id."""
    return RunRecords(repo, "drill").add(record)


def drill_history(repo: Repository, limit: int | None = HISTORY,
                  source: str | None = None) -> tuple[list[dict[str, Any]], list[DamagedRecord]]:
    """The newest `limit` drills (of one source, when asked), oldest first, and the unreadable ones."""
    records, damaged = RunRecords(repo, "drill").newest(limit)
    records = [r for r in records if r.get("format") == FORMAT]
    if source is not None:
        records = [r for r in records if r.get("source") == source]
    return records, damaged
