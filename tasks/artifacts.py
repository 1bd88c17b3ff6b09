"""Prefect artifacts: the same figures a run returns, readable in the UI."""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from qilbee_backup.report import table_rows


def publish_table(key: str, result: dict[str, Any], description: str) -> None:
    # Artifact keys allow lowercase letters, digits and dashes only.
    create_table_artifact(key=key, table=table_rows(result), description=description)


def publish_markdown(key: str, markdown: str, description: str) -> None:
    create_markdown_artifact(key=key, markdown=markdown, description=description)


def publish_rows(key: str, rows: list[dict[str, Any]], description: str) -> None:
    create_table_artifact(key=key, table=rows or [{"note": "none"}], description=description)
