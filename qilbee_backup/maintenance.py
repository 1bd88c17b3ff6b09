"""Looking after a repository's backups: verify one, apply retention and sweep (prune).

verify: check a backup's blobs (sizes; with read_data, contents);
prune:  retention on each series, then sweep blobs no backup references; what is still under
        S3 Object Lock is left and said so.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from .checker import verify_backup
from .errors import ObjectLocked
from .manifest import Manifest
from .repository import Repository, SweepResult
from .retention import Policy, apply_policy, parse_duration

log = logging.getLogger(__name__)


def verify(repo: Repository, backup: str | Manifest, *, read_data: bool = False) -> dict:
    """Check one backup (an id, 'latest', or a manifest already read) as a plain dict report."""
    manifest = backup if isinstance(backup, Manifest) else repo.load(backup)
    report = verify_backup(repo, manifest, read_data=read_data)
    return {
        "url": repo.url, "backup_id": manifest.backup_id, "ok": report.ok, "read_data": read_data,
        "checked_files": report.checked_files, "checked_bytes": report.checked_bytes,
        "problems": [f"{p.path}: {p.reason}" for p in report.problems],  # damage
        "unchecked": [f"{p.path}: {p.reason}" for p in report.unchecked],  # could not be read: neither good nor bad
        "summary": report.summary(),
    }


def parse_grace(text: str):
    """The sweep's grace period: a duration like 1h or 2d, or 0 for none (only when nothing else writes)."""
    if str(text).strip() in ("0", "0h", "0d"):
        return timedelta(0)
    return parse_duration(text)


def policy_from(retention: dict | None) -> Policy:
    return Policy.from_mapping(dict(retention or {}))


def _lock_reason(until: datetime) -> str:
    if until.year == datetime.max.year:
        return "under legal hold (S3 Object Lock)"
    return f"locked until {until:%Y-%m-%dT%H:%M:%SZ} (S3 Object Lock)"


def prune(repo: Repository, *, kind: str | None, retention: dict | None, grace: str = "1h", dry_run: bool = False,
          now: datetime | None = None, source_name: str | None = None) -> dict:
    """Retention per series (source name, kind) — every series, or those of the source and/or kind
    named — then sweep blobs that no remaining backup needs.

    A backup the policy would remove but whose manifest is still under object lock is left whole
    and listed under "locked" (kept, removed and locked partition the decisions); unreferenced
    blobs still locked are left too ("blobs_locked"). A damaged manifest belongs to no series it
    can be trusted with: it is never removed, and while one exists nothing is swept (the blobs it
    names are unknown); both are reported ("damaged", "sweep_skipped"). A dry run reports the same
    without changing anything, including how many blobs the sweep would remove. `now` drives the
    retention rules; locks are judged by the clock, as S3 enforces them.
    """
    now = now or datetime.now(timezone.utc)
    policy = policy_from(retention)
    catalog = repo.catalog()
    series: dict[tuple[str, str], list[Manifest]] = {}
    for m in catalog.backups:
        if (kind is None or m.kind == kind) and (source_name is None or m.source.series_name == source_name):
            series.setdefault(m.series, []).append(m)
    decisions = []
    for (name, series_kind), members in sorted(series.items()):
        for d in apply_policy(members, policy, now):
            decisions.append({"backup_id": d.backup_id, "source": name, "kind": series_kind, "keep": d.keep,
                              "reasons": d.reasons})
    doomed = [d for d in decisions if not d["keep"]]
    doomed_ids = [d["backup_id"] for d in doomed]
    with ThreadPoolExecutor(max_workers=8) as pool:  # a HEAD per backup, on a lock-enabled bucket only
        lock_ends = dict(zip(doomed_ids, pool.map(repo.backup_locked_until, doomed_ids)))
    if not dry_run:
        for d in doomed:
            if lock_ends[d["backup_id"]] is not None:
                continue
            try:
                repo.remove_backup(d["backup_id"], missing_ok=True)
            except ObjectLocked:  # locked since we looked: it stays whole, like the others
                lock_ends[d["backup_id"]] = repo.backup_locked_until(d["backup_id"]) or now
    locked = [d for d in doomed if lock_ends[d["backup_id"]] is not None]
    for d in locked:
        log.info("%s: keeping backup %s (%s %s): the policy would remove it but it is %s", repo.url, d["backup_id"],
                 d["source"], d["kind"], _lock_reason(lock_ends[d["backup_id"]]))
    gone = {d["backup_id"] for d in doomed} - {d["backup_id"] for d in locked}
    damaged = catalog.damaged
    swept = SweepResult(removed=[], locked={})
    if not dry_run:
        fresh = repo.catalog()  # a backup may have landed, or a manifest been damaged, since
        damaged = fresh.damaged
        referenced = {f.sha256 for m in fresh.backups for f in m.files}
    else:
        referenced = {f.sha256 for m in catalog.backups if m.backup_id not in gone for f in m.files}
    if damaged:
        log.warning("%s: not sweeping unreferenced blobs: %d damaged manifest(s) may name some of them (%s); "
                    "repair or remove them first", repo.url, len(damaged), damaged[0].describe())
    else:
        swept = repo.sweep(referenced, parse_grace(grace), now, dry_run=dry_run)
    return {
        "url": repo.url, "dry_run": dry_run,
        "kept": [{"backup_id": d["backup_id"], "source": d["source"], "kind": d["kind"], "reasons": d["reasons"]}
                 for d in decisions if d["keep"]],
        "removed": [{"backup_id": d["backup_id"], "source": d["source"], "kind": d["kind"]}
                    for d in doomed if d["backup_id"] in gone],
        "locked": [{"backup_id": d["backup_id"], "source": d["source"], "kind": d["kind"],
                    "locked_until": lock_ends[d["backup_id"]].isoformat(), "reason": _lock_reason(lock_ends[d["backup_id"]])}
                   for d in locked],
        "damaged": [{"backup_id": d.backup_id, "reason": d.reason} for d in damaged],
        "sweep_skipped": bool(damaged),
        "blobs_removed": len(swept.removed),
        "blobs_locked": len(swept.locked),
    }
