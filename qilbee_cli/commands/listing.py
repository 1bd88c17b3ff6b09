"""list: the backups (or archives) in a repository, with their source, kind, time, size and files."""

from __future__ import annotations

import argparse
from typing import Any

from qilbee_cli.common import add_json, add_repo, add_source_name, pick, run_flow

NAME = "list"
HELP = "list the backups (or archives) in a repository"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_repo(p)
    p.add_argument("--kind", help="only this series")
    add_source_name(p, "only the backups of this source database")
    p.add_argument("--archives", action="store_true", help="list the cold-storage archives instead of the backups")
    add_json(p)


def run(given: dict[str, Any]) -> Any:
    # Reading only: never a flow run, whatever the mode (as quick as the listing itself); and only
    # the runbook asked for is imported (the archive flow pulls in the server client).
    if given.get("archives"):
        from flows.archive import list_archives as runbook
    else:
        from flows.maintenance import list_backups as runbook
    return run_flow(runbook, pick(given, "repo", "kind", "source_name"), read_only=True)
