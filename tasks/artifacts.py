"""Prefect artifacts: the same figures a run returns, written as the report an operator reads in the UI
(qilbee_backup.report: sizes, durations and UTC times in words, tables for lists, no Python reprs).

Keys: lowercase letters, digits and dashes (Prefect's rule). Every function here passes the key it is
given through `artifact_key`, so a key built from a source name is always valid; use
`artifact_key("backup-summary", source_name)` for one artifact history per database.
"""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from qilbee_backup.report import artifact_key, list_rows, report_markdown, table_rows

__all__ = ["artifact_key", "publish_markdown", "publish_report", "publish_rows", "publish_table"]


def publish_table(key: str, result: dict[str, Any], description: str) -> None:
    """A result as a two-column table (figure, value): the verdict, the figures, one row per record."""
    create_table_artifact(key=artifact_key(key), table=table_rows(result), description=description)


def publish_rows(key: str, rows: list[dict[str, Any]], description: str) -> None:
    """Records (backups, archives, decisions) as a table, one row each, values in words."""
    create_table_artifact(key=artifact_key(key), table=list_rows(rows) or [{"note": "none"}], description=description)


def publish_report(key: str, result: Any, description: str, title: str | None = None) -> None:
    """A result as a markdown report: the verdict, the figures, each list as its own table."""
    create_markdown_artifact(key=artifact_key(key), markdown=report_markdown(result, title), description=description)


def publish_markdown(key: str, markdown: str, description: str) -> None:
    create_markdown_artifact(key=artifact_key(key), markdown=markdown, description=description)
