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
