"""`status` as an operator reads it: the verdict first, then per repository each source's recovery
point (newest backup and its age), the newest point a drill proved restorable (and its RTO), the
last drill and verify, the series, and every reason a source is at risk. Text for the terminal,
markdown for the Prefect artifact, rows for its table artifact: one model (report.Report), as
every other report.
"""

from __future__ import annotations

from typing import Any

# report.py holds the one text and the one markdown writer of every report (private names there, for now).
from .report import NONE, Report, Table, _markdown, _text, duration, number, size, utc
from .readiness import READY


def headline(result: dict[str, Any]) -> str:
    """'READY: 2 sources' or 'AT RISK: prod (no backup within the RPO target ...)'."""
    at_risk = [(repo, s) for repo in result["repositories"] for s in repo["sources"] if s["verdict"] != READY]
    unreadable = [repo for repo in result["repositories"] if not repo["sources"] and repo["verdict"] != READY]
    if not at_risk and not unreadable:
        count = sum(len(repo["sources"]) for repo in result["repositories"])
        return f"READY: {count} source{'s' if count != 1 else ''} recoverable within the targets"
    parts = [f"{s['source']} ({s['reasons'][0]}{'; …' if len(s['reasons']) > 1 else ''})" for _, s in at_risk]
    parts += [f"{repo['url']} ({repo['reasons'][0]})" for repo in unreadable]
    return "AT RISK: " + "; ".join(parts)


def _point(point: dict | None) -> str:
    if not point:
        return NONE
    return f"{point['backup_id']} ({point.get('kind') or NONE}), {duration(point.get('age_s'))} old"


def _proven(drill: dict | None) -> str:
    if not drill:
        return "never (no passing drill)"
    return f"{drill.get('backup_id')} at {utc(drill.get('started_at'))}: RTO {duration(drill.get('rto_s'))}"


def _last(drill: dict | None) -> str:
    if not drill:
        return NONE
    outcome = "passed" if drill.get("ok") else f"FAILED at {drill.get('failed_step') or 'an unnamed step'}"
    return f"{utc(drill.get('started_at'))}: {outcome}"


def _verify(record: dict | None) -> str:
    if not record:
        return "none recorded"
    how = ("data re-read" if record.get("read_data") else "sizes checked") + (
        f", backup {record['scope']} only" if record.get("scope") not in (None, "every backup") else "")
    if record.get("ok"):
        return f"{utc(record.get('recorded_at'))}: {number(record.get('backups_checked'))} backups intact ({how})"
    bad = len(record.get("damaged") or []) + len(record.get("unchecked") or [])
    return f"{utc(record.get('recorded_at'))}: {bad} of {number(record.get('backups_checked'))} DAMAGED or unreadable ({how})"


def repository_report(repo: dict[str, Any]) -> Report:
    report = Report(f"Repository {repo['url']}", repo["verdict"].upper())
    if not repo["readable"]:
        report.notes += repo["reasons"]
        return report
    report.add("RPO target", duration(repo["rpo_target_s"]))
    report.add("RTO target", duration(repo["rto_target_s"]))
    report.add("encryption", repo.get("encryption") or NONE)
    report.add("backups", number(repo.get("backups")))
    report.add("stored", size(repo.get("stored_bytes")))
    report.add("deduplication", f"{repo['dedup_ratio']:,.2f}×" if repo.get("dedup_ratio") else NONE)
    report.add("drills recorded", number(repo.get("drills_recorded")))
    report.add("last verify", _verify(repo.get("last_verify")))
    report.tables.append(Table("Sources", ["source", "verdict", "recovery point (newest backup)",
                                           "proven restorable (last passing drill)", "last drill"],
                               [[s["source"], s["verdict"], _point(s["recovery_point"]), _proven(s["verified_point"]),
                                 _last(s["last_drill"])] for s in repo["sources"]], "no backups"))
    report.tables.append(Table("Series", ["source", "kind", "backups", "newest", "age", "size"],
                               [[s["source"], x["kind"], number(x["backups"]), x["newest_backup_id"], duration(x["age_s"]),
                                 size(x["bytes_total"]).split(" (", 1)[0]]
                                for s in repo["sources"] for x in s["series"]], "no backups"))
    report.notes += [f"{s['source']}: {reason}" for s in repo["sources"] for reason in s["reasons"]]
    report.notes += [f"{s['source']}: {warning}" for s in repo["sources"] for warning in s["warnings"]]
    report.notes += repo["reasons"]
    report.notes += [f"unreadable drill record {d['record_id']}: {d['reason']}" for d in repo.get("damaged_drill_records") or []]
    return report


def status_text(result: dict[str, Any]) -> str:
    return "\n\n".join([f"Status: {headline(result)}"] + [_text(repository_report(r)) for r in result["repositories"]])


def status_markdown(result: dict[str, Any]) -> str:
    # Each repository's report under the page's title: its "# Repository" heading one level down.
    return "\n".join([f"# Backup status\n\n**{headline(result)}**\n"]
                     + ["#" + _markdown(repository_report(r)) for r in result["repositories"]])


def status_rows(result: dict[str, Any]) -> list[dict[str, str]]:
    """One row per repository and source, for a table artifact."""
    rows = []
    for repo in result["repositories"]:
        if not repo["sources"]:
            rows.append({"repository": repo["url"], "source": NONE, "verdict": repo["verdict"],
                         "recovery point": NONE, "proven restorable": NONE, "last drill": NONE,
                         "reasons": "; ".join(repo["reasons"])})
        for s in repo["sources"]:
            rows.append({"repository": repo["url"], "source": s["source"], "verdict": s["verdict"],
                         "recovery point": _point(s["recovery_point"]), "proven restorable": _proven(s["verified_point"]),
                         "last drill": _last(s["last_drill"]), "reasons": "; ".join(s["reasons"]) or NONE})
    return rows
