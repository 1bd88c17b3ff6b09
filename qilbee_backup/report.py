"""Plain-text rendering of a run's result (the CLI without --json); the same figures as the artifacts."""

from __future__ import annotations

from typing import Any


def render_text(result: Any) -> str:
    if isinstance(result, list):
        if not result:
            return "(no backups)"
        return "\n".join(_row(item) for item in result)
    if isinstance(result, dict):
        width = max((len(k) for k in result), default=0)
        lines = []
        for key, value in result.items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                lines.append(f"{key}:")
                lines.extend("  " + _row(v) for v in value)
            else:
                lines.append(f"{key.ljust(width)}  {value}")
        return "\n".join(lines)
    return str(result)


def _row(item: Any) -> str:
    if isinstance(item, dict):
        return "  ".join(f"{k}={v}" for k, v in item.items())
    return str(item)


def table_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """A result as a two-column table (figure, value) for a Prefect table artifact."""
    rows = []
    for key, value in result.items():
        if isinstance(value, list):
            value = "; ".join(_row(v) for v in value)
        rows.append({"figure": key, "value": value})
    return rows


def recovery_markdown(title: str, result: dict[str, Any]) -> str:
    """The RTO/RPO report of a disaster recovery or drill, for a Prefect markdown artifact."""
    def verdict(value: float, target: float) -> str:
        return "met" if value <= target else "**MISSED**"

    lines = [
        f"# {title}: backup `{result['backup_id']}`",
        "",
        "| objective | measured | target | |",
        "|---|---|---|---|",
        f"| RTO | {result['rto_s']:.1f} s | {result['rto_target_s']:.0f} s | {verdict(result['rto_s'], result['rto_target_s'])} |",
        f"| RPO | {result['rpo_s']:.1f} s | {result['rpo_target_s']:.0f} s | {verdict(result['rpo_s'], result['rpo_target_s'])} |",
        "",
        "| step | duration |",
        "|---|---|",
        *[f"| {s['name']} | {s['duration_s']:.2f} s |" for s in result["steps"]],
        "",
        f"Integrity: {'passed' if result['integrity']['ok'] else 'FAILED'} — {result['integrity']['compared']}",
    ]
    if result.get("dns"):
        d = result["dns"]
        lines.append(f"\nDNS: `{d['record']}` {d['old']} → {d['new']}")
    if result.get("instance"):
        lines.append(f"\nInstance: {result['instance']}")
    for w in result.get("warnings") or []:
        lines.append(f"\n**Warning:** {w}")
    for s in result.get("skipped_backups") or []:
        lines.append(f"\nSkipped damaged backup `{s['backup_id']}`: {s['problems']}")
    return "\n".join(lines)
