"""The on-call question — if the database died now, how fast and from what would we recover? —
answered per source database from what the repository holds: its backups (newest per series, the
recovery point's age against the RPO target), the drills recorded beside them (the newest point a
drill proved restorable, its RTO against the target, the trend) and the last verify.

Each source gets a verdict: ``ready``, or ``at risk`` with every reason (no backup within the RPO,
the newest backup missing blobs, no drill ever passed, the last drill failed, the RTO measured over
its target, damaged manifests, a verify that found damage). Cost: what `stats` costs (one listing
of blobs/, the manifests) plus the newest drill and verify records: no blob is downloaded.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from . import drill_history, verify_history
from .drill_trend import rto_trend
from .errors import NotFound, QilbeeBackupError, UsageError
from .inspection import encryption_of, figures
from .manifest import Manifest
from .report import duration, utc
from .repository import Repository, open_repository

READY, AT_RISK = "ready", "at risk"


def check_repository(url: str, *, rpo_target_s: float, rto_target_s: float, source_name: str | None = None,
                     now: datetime | None = None, raise_usage: bool = True) -> dict[str, Any]:
    """The status of the repository at url. One that cannot be read (gone, not a repository, a wrong
    passphrase, the store failing) is reported unreadable, never raised, so the others are still
    reported; bad input (no passphrase given at all, a malformed URL) is raised when raise_usage."""
    try:
        repo = open_repository(url)
    except UsageError as exc:
        if raise_usage:
            raise
        repo, error = None, _one_line(exc)
    except QilbeeBackupError as exc:
        repo, error = None, _one_line(exc)
    if repo is None:
        return unreadable(url, error, rpo_target_s, rto_target_s)
    try:
        return repository_status(repo, rpo_target_s=rpo_target_s, rto_target_s=rto_target_s, source_name=source_name,
                                 now=now)
    except QilbeeBackupError as exc:
        return unreadable(url, _one_line(exc), rpo_target_s, rto_target_s)
    finally:
        repo.close()


def unreadable(url: str, error: str, rpo_target_s: float, rto_target_s: float) -> dict[str, Any]:
    return {"url": url, "checked_at": datetime.now(timezone.utc).isoformat(), "readable": False, "error": error,
            "verdict": AT_RISK,
            "reasons": [f"the repository cannot be read: {error}"], "rpo_target_s": rpo_target_s,
            "rto_target_s": rto_target_s, "sources": []}


def repository_status(repo: Repository, *, rpo_target_s: float, rto_target_s: float, source_name: str | None = None,
                      now: datetime | None = None) -> dict[str, Any]:
    """Every source's readiness in one repository (or the one named), with the repository's figures."""
    now = now or datetime.now(timezone.utc)
    try:
        config: dict[str, Any] | None = repo.config()
    except NotFound:
        config = None  # only archives, written before config.json existed
    catalog = repo.catalog()
    by_id = repo.blob_sizes()
    # An encrypted repository names a blob by a keyed id: map the names back to content hashes.
    content_of = {repo.blob_id(sha): sha for m in catalog.backups for sha in m.blob_shas()}
    blob_sizes = {content_of[blob]: size for blob, size in by_id.items() if blob in content_of}
    drills, damaged_drills = drill_history.drill_history(repo)
    last_verify = verify_history.last_verify(repo)

    by_source: dict[str, list[Manifest]] = {}
    for manifest in catalog.backups:
        by_source.setdefault(manifest.source.series_name, []).append(manifest)
    names = [source_name] if source_name else sorted(by_source)
    damaged_ids = {d.backup_id for d in catalog.damaged}
    sources = [_source_status(name, by_source.get(name, []), [d for d in drills if d.get("source") == name],
                              blob_sizes, catalog.damaged, last_verify, damaged_ids, rpo_target_s, rto_target_s, now)
               for name in names]
    overall = figures(catalog.backups, blob_sizes)
    return {
        "url": repo.url, "checked_at": now.isoformat(), "readable": True, "error": None,
        "verdict": READY if sources and all(s["verdict"] == READY for s in sources) else AT_RISK,
        "reasons": [] if sources else ["the repository holds no backup"],
        "rpo_target_s": rpo_target_s, "rto_target_s": rto_target_s,
        "encryption": encryption_of(config),
        "backups": overall["backups"], "logical_bytes": overall["logical_bytes"], "unique_bytes": overall["unique_bytes"],
        "stored_bytes": sum(by_id.values()), "dedup_ratio": overall["dedup_ratio"],
        "compression_ratio": overall["compression_ratio"],
        "damaged_manifests": [{"backup_id": d.backup_id, "reason": d.reason} for d in catalog.damaged],
        "drills_recorded": len(drills),
        "damaged_drill_records": [{"record_id": d.record_id, "reason": d.reason} for d in damaged_drills],
        "last_drill": _drill_summary(drills[-1]) if drills else None,
        "last_verify": last_verify,
        "sources": sources,
    }


def _source_status(name: str, backups: list[Manifest], drills: list[dict], blob_sizes: dict[str, int], damaged: list,
                   last_verify: dict | None, damaged_ids: set[str], rpo_target_s: float, rto_target_s: float,
                   now: datetime) -> dict[str, Any]:
    reasons: list[str] = []
    series: dict[str, list[Manifest]] = {}
    for manifest in backups:  # oldest first
        series.setdefault(manifest.kind, []).append(manifest)
    newest = max(backups, key=lambda m: (m.created_at, m.backup_id)) if backups else None
    point = None
    if newest is None:
        reasons.append("no backup of this source in the repository")
    else:
        age = max(0.0, (now - newest.created_at).total_seconds())
        missing = len({sha for sha in newest.blob_shas() if sha not in blob_sizes})
        point = {"backup_id": newest.backup_id, "kind": newest.kind, "created_at": newest.created_at.isoformat(),
                 "age_s": round(age, 3), "missing_blobs": missing}
        if age > rpo_target_s:
            reasons.append(f"no backup within the RPO target: the newest ({newest.backup_id}) is {duration(age)} old, "
                           f"the target {duration(rpo_target_s)}")
        if missing:
            reasons.append(f"the newest backup {newest.backup_id} is missing {missing} blob(s) from the store (run verify)")
    if damaged:
        reasons.append(f"{len(damaged)} damaged manifest(s) in the repository ({', '.join(d.backup_id for d in damaged[:3])}): "
                       "a backup may be unreadable (run verify)")

    passed = [d for d in drills if d.get("ok")]
    last, proven = (drills[-1] if drills else None), (passed[-1] if passed else None)
    if proven is None:
        reasons.append("no restore drill has passed for this source" + (f" (of the last {len(drills)} recorded)" if drills else
                                                                       " (none recorded)"))
    if last is not None and not last.get("ok"):
        reasons.append(f"the last restore drill ({utc(last.get('started_at'))}) FAILED at "
                       f"{last.get('failed_step') or 'an unnamed step'}: {last.get('error') or 'no error recorded'}")
    if proven is not None and isinstance(proven.get("rto_s"), (int, float)) and proven["rto_s"] > rto_target_s:
        reasons.append(f"the last passing drill's RTO {duration(proven['rto_s'])} is over the target {duration(rto_target_s)}")
    reasons += _verify_reasons(last_verify, {m.backup_id for m in backups}, damaged_ids)

    trend = rto_trend(drills, rto_target_s)
    return {
        "source": name, "verdict": AT_RISK if reasons else READY, "reasons": reasons, "warnings": trend["warnings"],
        "recovery_point": point,
        "verified_point": _drill_summary(proven) if proven else None,
        "last_drill": _drill_summary(last) if last else None,
        "rto_trend": trend,
        "series": [_series(kind, ms, blob_sizes, now) for kind, ms in sorted(series.items())],
    }


def _verify_reasons(record: dict | None, mine: set[str], damaged_manifests: set[str]) -> list[str]:
    """The last verify's damage that touches this source: its own backups, or a damaged manifest
    (whose source cannot be told)."""
    if not record or record.get("ok"):
        return []
    bad = [b for b in (record.get("damaged") or []) + (record.get("unchecked") or [])
           if b in mine or b in damaged_manifests]
    if not bad:
        return []
    return [f"the last verify ({utc(record.get('recorded_at'))}) found {len(bad)} backup(s) of this source damaged or "
            f"unreadable: {', '.join(bad[:3])}" + (" ..." if len(bad) > 3 else "")]


def _drill_summary(record: dict) -> dict[str, Any]:
    return {key: record.get(key) for key in ("record_id", "started_at", "ok", "backup_id", "backup_created_at", "kind",
                                             "rto_s", "rto_target_s", "rpo_s", "failed_step", "error", "steps")}


def _series(kind: str, manifests: list[Manifest], blob_sizes: dict[str, int], now: datetime) -> dict[str, Any]:
    newest = manifests[-1]
    figs = figures(manifests, blob_sizes)
    return {"kind": kind, "backups": len(manifests), "newest_backup_id": newest.backup_id,
            "newest_at": newest.created_at.isoformat(), "age_s": round(max(0.0, (now - newest.created_at).total_seconds()), 3),
            "bytes_total": newest.bytes_total, "files": len(newest.files), "logical_bytes": figs["logical_bytes"],
            "stored_bytes": figs["stored_bytes"], "missing_blobs": figs["missing_blobs"]}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__

