"""What a disaster recovery leaves behind for its failback, kept in the repository beside the backups
(``recoveries/<id>.json``), and what each failback did (``failbacks/<id>.json``).

A failback runs days after its DR, from another process, maybe another worker, maybe after the
Prefect database was lost with the primary: so the DR writes down, where the backups live, what
undoing it needs. The DNS record it switched, the value it had before and what it got; the DNS
provider's settings (the hosts file, the zone, the server, the TSIG key's name and the name of the
environment variable holding its secret: never a secret itself); the instance it started (provider,
URL, data directory, PID or container); the backup it restored and the URL that backup was taken
from (the original primary). One small JSON object each, written once, sealed in an encrypted
repository like the drill records (qilbee_backup.run_records), so the bucket shows neither the DNS
names nor the addresses.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from .errors import IntegrityError, NotFound, UsageError
from .repository import Repository
from .run_records import RECORD_ID_RE, RunRecords

RECOVERY_FORMAT = "qilbee-backup-recovery"
FAILBACK_FORMAT = "qilbee-backup-failback"
VERSION = 1
RECOVERY_REF_RE = re.compile(f"latest|{RECORD_ID_RE.pattern}")


class _Records(RunRecords):
    """RunRecords under a plural the English way (recoveries/, not recoverys/)."""

    def __init__(self, repo: Repository, kind: str, prefix: str) -> None:
        super().__init__(repo, kind)
        self.prefix = prefix
        self._key_re = re.compile(re.escape(prefix) + f"({RECORD_ID_RE.pattern})\\.json")


def recoveries(repo: Repository) -> RunRecords:
    return _Records(repo, "recovery", "recoveries/")


def failbacks(repo: Repository) -> RunRecords:
    return RunRecords(repo, "failback")


def recovery_record(*, started_at: datetime, manifest: Any, instance: dict[str, Any], instance_settings: dict[str, Any],
                    dns_settings: dict[str, Any] | None, dns_change: dict[str, Any] | None,
                    figures: Any, rto_s: float | None) -> dict[str, Any]:
    """The record of one finished disaster recovery: everything its failback needs, no secret."""
    return {
        "format": RECOVERY_FORMAT, "version": VERSION,
        "started_at": started_at.isoformat(), "finished_at": datetime.now(timezone.utc).isoformat(),
        "backup_id": manifest.backup_id, "backup_created_at": manifest.created_at.isoformat(),
        "source": manifest.source.series_name, "kind": manifest.kind,
        # The server the restored backup was taken from: the original primary, unless told otherwise.
        "primary": {"url": manifest.source.url, "container": manifest.source.container},
        "instance": instance, "instance_settings": instance_settings,
        "dns": {"settings": dns_settings, "change": dns_change} if dns_change else None,
        "figures": figures if isinstance(figures, dict) else None, "rto_s": rto_s,
    }


def record_recovery(repo: Repository, record: dict[str, Any]) -> str:
    return recoveries(repo).add(record)


def load_recovery(repo: Repository, ref: str) -> dict[str, Any]:
    """The recovery `ref` names (its id, or latest: the newest readable one). NotFound when there is
    none such; IntegrityError when the one named cannot be read (its seal, its JSON)."""
    if not isinstance(ref, str) or not RECOVERY_REF_RE.fullmatch(ref):
        raise UsageError(f"{str(ref)[:60]!r} is not a recovery id or latest (e.g. 20261130T020000123456Z-0a1b2c)")
    records, damaged = recoveries(repo).newest()
    records = [r for r in records if r.get("format") == RECOVERY_FORMAT]
    if ref == "latest":
        if not records:
            why = f" ({len(damaged)} unreadable: {damaged[-1].reason})" if damaged else ""
            raise NotFound(f"no disaster recovery is recorded in {repo.url}{why}: nothing to fail back")
        return records[-1]
    found = next((r for r in records if r.get("record_id") == ref), None)
    if found is not None:
        return found
    bad = next((d for d in damaged if d.record_id == ref), None)
    if bad is not None:
        raise IntegrityError(f"recovery {ref} cannot be read: {bad.reason}")
    known = ", ".join(r["record_id"] for r in records[-3:])
    raise NotFound(f"no recovery {ref} in {repo.url}" + (f"; the newest: {known}" if known else "; none is recorded"))


def failback_record(recovery: dict[str, Any], result: dict[str, Any], *, started_at: datetime) -> dict[str, Any]:
    return {
        "format": FAILBACK_FORMAT, "version": VERSION, "recovery_id": recovery.get("record_id"),
        "started_at": started_at.isoformat(), "finished_at": datetime.now(timezone.utc).isoformat(),
        "source": recovery.get("source"), "primary": result.get("primary", {}).get("url"),
        "dns": result.get("dns"), "dr_instance": result.get("dr_instance"), "forced": result.get("forced"),
        "approval": result.get("approval"),
    }


def record_failback(repo: Repository, record: dict[str, Any]) -> str:
    return failbacks(repo).add(record)


def failback_of(repo: Repository, recovery_id: str) -> dict[str, Any] | None:
    """The failback already made of this recovery, if any (unreadable failback records are skipped)."""
    records, _ = failbacks(repo).newest()
    return next((r for r in reversed(records) if r.get("format") == FAILBACK_FORMAT and r.get("recovery_id") == recovery_id),
                None)
