"""Failback's judgement calls, without Prefect: may the original primary take the traffic back, and
the report of what was done.

After a disaster recovery the DR instance took the writes; the original primary, once back, holds
what it had when it went down plus whatever was copied onto it since. Switching DNS back to a
primary that holds less than the DR instance would lose the difference silently, so its figures
(node and relationship counts, per graph and whole) are compared with the DR instance's first: a
primary with fewer of any, or whose figures cannot be read, is refused unless forced.
"""

from __future__ import annotations

from typing import Any

from .errors import QilbeeBackupError
from .report import NONE, Report, Table, _markdown, _rows, _text, approval_text, duration, joined, number, plain, yes_no

FIGURES = ("nodeCount", "relationshipCount")
WORDS = {"nodeCount": "nodes", "relationshipCount": "relationships"}


class FailbackError(QilbeeBackupError):
    """Failback stopped before DNS was switched back (or while it was): the message says why and what changed."""


def figures(stats: Any) -> dict[str, Any]:
    """A client's Stats (or the dict of one) as {"nodeCount", "relationshipCount", "graphs": {name: {...}}}."""
    if isinstance(stats, dict):
        return {"nodeCount": stats.get("nodeCount"), "relationshipCount": stats.get("relationshipCount"),
                "graphs": {g: dict(v) for g, v in (stats.get("graphs") or {}).items()}}
    return {"nodeCount": stats.node_count, "relationshipCount": stats.relationship_count,
            "graphs": {g: dict(v) for g, v in (stats.graphs or {}).items()}}


def compare(primary: dict[str, Any], dr: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows (graph by graph, then the whole database) and the shortfalls: every figure where the primary
    has fewer than the DR instance, or where one side cannot say (then nobody can tell what would be lost)."""
    rows: list[dict[str, Any]] = []
    shortfalls: list[str] = []
    pg, dg = primary.get("graphs") or {}, dr.get("graphs") or {}

    def row(name: str, p: dict | None, d: dict | None, whole: bool = False) -> None:
        problems = []
        if p is None:
            if any((d or {}).get(k) for k in FIGURES):
                problems.append(f"graph {name} is missing on the primary")
        else:
            for key in FIGURES:
                have, want = p.get(key), (d or {}).get(key)
                if want is None and d is None:
                    continue  # a graph only the primary has: nothing of the DR's is lost
                if have is None or want is None:
                    side = "primary" if have is None else "DR instance"
                    problems.append(f"{'the database' if whole else f'graph {name}'}: the {side} does not report its "
                                    f"{WORDS[key]}")
                elif have < want:
                    problems.append(f"{'the database' if whole else f'graph {name}'}: {have:,} {WORDS[key]} on the "
                                    f"primary, {want:,} on the DR instance")
        rows.append({"graph": name, "primary": p or {}, "dr": d or {}, "ok": not problems})
        shortfalls.extend(problems)

    for name in sorted(set(pg) | set(dg)):
        row(name, pg.get(name), dg.get(name))
    row("(whole database)", primary, dr, whole=True)
    return rows, shortfalls


def figures_table(rows: list[dict[str, Any]]) -> Table:
    return Table("Figures: primary against the DR instance",
                 ["graph", "nodes (primary)", "nodes (DR)", "relationships (primary)", "relationships (DR)",
                  "primary ≥ DR"],
                 [[r["graph"], number(r["primary"].get("nodeCount")), number(r["dr"].get("nodeCount")),
                   number(r["primary"].get("relationshipCount")), number(r["dr"].get("relationshipCount")),
                   "✓" if r["ok"] else "✗"] for r in rows], "not compared")


def figures_markdown(rows: list[dict[str, Any]]) -> str:
    table = figures_table(rows)
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in table.rows]
    return "\n".join(lines) + "\n"


def report(result: dict[str, Any]) -> Report:
    """The failback, done, refused or stopped: what DNS and the DR instance became, the figures compared,
    each step with its duration."""
    failed = result.get("failed_step") or result.get("error")
    dns = result.get("dns")
    if failed:
        status = f"FAILED at {result.get('failed_step') or 'an unnamed step'}: {result.get('error') or 'no error recorded'}"
    elif dns and dns.get("switched"):
        status = f"done: {dns['record']} → {joined(dns.get('new'))}, the primary"
    else:
        status = "done" + ("" if dns else ": the recovery switched no DNS record, so none was switched back")
    rep = Report(f"Failback of recovery {result.get('recovery_id') or NONE}", status)
    primary = result.get("primary") or {}
    rep.add("primary", f"{plain(primary.get('url'))} (health: {plain(primary.get('health'))})")
    if result.get("source"):
        rep.add("source", plain(result["source"]))
    if result.get("backup_id"):
        rep.add("DR restored", f"backup {result['backup_id']}")
    inst = result.get("dr_instance") or {}
    if inst:
        how = ", ".join(filter(None, [inst.get("provider"), inst.get("pid") and f"pid {inst['pid']}",
                                      inst.get("container") and f"container {inst['container']}"]))
        rep.add("DR instance", f"{plain(inst.get('url'))} ({how})")
        rep.add("DR instance now", {"stopped": "stopped (its data directory is left in place)",
                                    "kept": "kept running, as asked", "running": "still running (not touched)"}
                .get(str(inst.get("state")), plain(inst.get("state"))))
        if inst.get("data_dir"):
            rep.add("DR data directory", plain(inst["data_dir"]))
    if dns:
        if dns.get("switched"):
            rep.add("DNS", f"{dns['record']} → {joined(dns.get('new'))} (was {joined(dns.get('old'))})")
        else:
            rep.add("DNS", f"{dns['record']}: not switched back (points at {joined(dns.get('current'))})")
    elif "dns" in result:
        rep.add("DNS", "not switched by the recovery: nothing to switch back")
    if "approval" in result:
        rep.add("approval", approval_text(result.get("approval")))
    if result.get("forced"):
        rep.add("forced", yes_no(True) + " (figures not required to match)")
    if result.get("comparison"):
        rep.tables.append(figures_table(result["comparison"]))
    rep.tables.append(Table("Steps", ["step", "duration", "outcome"],
                            [[plain(s.get("name")), duration(s.get("duration_s")), "ok" if s.get("ok") else "FAILED"]
                             for s in result.get("steps") or []], "no step ran"))
    rep.notes += [str(w) for w in result.get("warnings") or []]
    return rep


def report_text(result: dict[str, Any]) -> str:
    return _text(report(result))


def report_markdown(result: dict[str, Any]) -> str:
    return _markdown(report(result))


def report_rows(result: dict[str, Any]) -> list[dict[str, str]]:
    """The same report as rows (figure, value), for a table artifact."""
    return _rows(report(result))
