"""Disaster recovery's judgement calls, without Prefect: which backup, is the new instance right, RTO/RPO.

The guide's steps are provision → restore → verify data integrity → update DNS → resume; the flow in
flows/disaster_recovery.py runs them in that order and times each one with these helpers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from .checker import verify_backup
from .client import QilbeeClient
from .errors import IntegrityError, NotFound, QilbeeBackupError
from .manifest import Manifest
from .repository import Repository

log = logging.getLogger(__name__)


@dataclass
class Choice:
    manifest: Manifest
    skipped: list[dict[str, Any]] = field(default_factory=list)  # newer backups passed over, and why
    explicit: bool = False  # named by the operator: never replaced by another backup


def choose_backup(repo: Repository, backup: str | None = None, kind: str | None = None,
                  source_name: str | None = None, *, exclude: Iterable[str] = ()) -> Choice:
    """The named backup, or the newest (of a series) that passes a quick verify (every blob there,
    right size), leaving out `exclude` (backups already found damaged by a restore).

    A damaged newer backup — its manifest unreadable or a blob missing — is skipped with a warning
    that names it: restoring an older whole backup beats failing half-way through a newer broken one.
    """
    if backup and backup != "latest":
        return Choice(repo.load(backup), explicit=True)
    catalog = repo.catalog(kind=kind, source_name=source_name)
    skipped = [{"backup_id": d.backup_id, "problems": d.reason} for d in catalog.damaged]
    excluded = set(exclude)
    candidates = [m for m in reversed(catalog.backups) if m.backup_id not in excluded]
    if not candidates:
        what = " ".join(filter(None, [source_name and f"source {source_name}", kind]))
        if skipped or excluded:
            raise IntegrityError(f"no intact {what + ' ' if what else ''}backup in {repo.url}: "
                                 + "; ".join(f"{s['backup_id']}: {s['problems']}" for s in skipped[:3]))
        raise NotFound(f"no {what + ' ' if what else ''}backups in {repo.url}")
    sizes = repo.blob_sizes()
    for manifest in candidates:
        report = verify_backup(repo, manifest, blob_sizes=sizes)
        if report.ok:
            return Choice(manifest, skipped)
        reason = "; ".join(f"{p.path}: {p.reason}" for p in report.problems[:3])
        log.warning("skipping damaged backup %s: %s", manifest.backup_id, reason)
        skipped.append({"backup_id": manifest.backup_id, "problems": reason})
    raise IntegrityError(f"every backup in {repo.url} is damaged; the newest: {skipped[-len(candidates)]['backup_id']}: "
                         f"{skipped[-len(candidates)]['problems']}")


def is_damage(exc: BaseException) -> bool:
    """Did a restore fail because the backup's data is damaged (so an older backup may do), rather
    than because of the target, the store or the operator (where an older backup fails the same)?"""
    return isinstance(exc, (IntegrityError, NotFound))


@dataclass
class IntegrityReport:
    ok: bool
    compared: dict[str, Any]
    differences: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "compared": self.compared, "differences": self.differences}


def check_instance(client: QilbeeClient, manifest: Manifest, restored_files: int) -> IntegrityReport:
    """The new instance against the backup: files (checked while restored), /health, and its figures.

    Figures are compared where the backup recorded them exactly; an offline backup whose figures
    changed around the copy is marked approximate, and then only /health and the files count.
    """
    compared: dict[str, Any] = {"files": restored_files, "checksums": "every file's SHA-256 matched its manifest"}
    differences: list[str] = []
    health = client.health()
    compared["health"] = health.get("status")
    if health.get("status") != "healthy":
        differences.append(f"/health says {health.get('status')!r}")
    recorded = manifest.stats or {}
    if not recorded.get("graphs"):
        compared["figures"] = "not recorded at backup time"
    elif recorded.get("exact") is False:
        compared["figures"] = "recorded approximately (the database changed around the offline copy): not compared"
    else:
        now = client.stats(graphs=list(recorded["graphs"]))
        compared["figures"] = {"backup": _figures(recorded), "instance": _figures({
            "graphs": now.graphs, "nodeCount": now.node_count, "relationshipCount": now.relationship_count})}
        differences += _differences(recorded, now)
    return IntegrityReport(ok=not differences, compared=compared, differences=differences)


def _figures(stats: dict) -> dict:
    return {"nodeCount": stats.get("nodeCount"), "relationshipCount": stats.get("relationshipCount"),
            "graphs": {g: dict(v) for g, v in (stats.get("graphs") or {}).items()}}


def _differences(recorded: dict, now) -> list[str]:
    out = []
    for name, figures in sorted(recorded["graphs"].items()):
        live = now.graphs.get(name)
        if live is None:
            out.append(f"graph {name} is missing")
            continue
        for key in ("nodeCount", "relationshipCount"):
            want, have = figures.get(key), live.get(key)
            if want is not None and have is not None and want != have:
                out.append(f"graph {name}: {key} {have} != {want} at backup time")
    extra = sorted(set(now.graphs) - set(recorded["graphs"]))
    if extra:
        out.append(f"graphs not in the backup: {', '.join(extra)}")
    for key, have in (("nodeCount", now.node_count), ("relationshipCount", now.relationship_count)):
        want = recorded.get(key)
        if want is not None and have is not None and want != have:
            out.append(f"{key} {have} != {want} at backup time")
    return out


def rpo_seconds(manifest: Manifest, trigger: datetime) -> float:
    """The data lost if this backup is what comes back: its age when recovery was triggered."""
    return max(0.0, (trigger - manifest.created_at).total_seconds())


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class RecoveryError(QilbeeBackupError):
    """Disaster recovery stopped before the DNS switch; the message says which step and why."""
