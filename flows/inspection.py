"""Inspection runbooks: stats and diff (the CLI's commands of the same names). Read only: they change
nothing, and the CLI never makes a flow run of them (as with list)."""

from __future__ import annotations

from flows.parameters import BackupRef, Kind, RepoUrl, SourceName
from flows.runbook import runbook
from qilbee_backup import inspection
from qilbee_backup.repository import open_repository
from tasks.steps import publish_table


@runbook
def stats(repo: RepoUrl, kind: Kind | None = None, source_name: SourceName | None = None) -> dict:
    """What the repository holds: backups, logical, unique and stored sizes, deduplication and
    compression ratios, oldest and newest backup, per series; and the blobs no backup references.
    One listing of blobs/ and the manifests: no blob is downloaded.

    Args:
        repo: The repository: a path, file:///path or s3://bucket/prefix.
        kind: Only this series (daily, weekly, monthly, adhoc).
        source_name: Only the backups of this source database (its name, as `list` shows it).
    """
    repository = open_repository(repo)
    try:
        result = inspection.repository_stats(repository, kind=kind, source_name=source_name)
    finally:
        repository.close()
    publish_table("repository-stats", result, f"stats of {repo}")
    return result


@runbook
def diff(repo: RepoUrl, first: BackupRef, second: BackupRef) -> dict:
    """What changed from one backup to another: files added, removed and changed (content, size or
    mode), how many are unchanged, and the figures before and after (size, files, nodes and
    relationships, per graph where recorded). Reads the two manifests only.

    Args:
        repo: The repository: a path, file:///path or s3://bucket/prefix.
        first: The backup to compare from: an id or latest.
        second: The backup to compare with: an id or latest.
    """
    repository = open_repository(repo)
    try:
        result = inspection.diff_backups(repository, first, second)
    finally:
        repository.close()
    publish_table("backup-diff", result, f"diff {result['first']['backup_id']} → {result['second']['backup_id']} in {repo}")
    return result
