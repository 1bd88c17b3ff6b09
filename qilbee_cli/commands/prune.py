"""prune: retention on each series (a source database and a kind), then the blob sweep."""

from __future__ import annotations

import argparse
from typing import Any

from qilbee_cli.common import (
    add_json,
    add_repo,
    add_retention,
    add_source_name,
    pick,
    retention,
    run_flow,
)

NAME = "prune"
HELP = "apply retention to each series (or those selected), then sweep unreferenced blobs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_repo(p)
    p.add_argument("--kind", help="only the series of this kind (default: every kind; each series separately)")
    add_source_name(p, "only the series of this source database (default: every source; retention never crosses sources)")
    add_retention(p)
    p.add_argument("--grace", metavar="DURATION", help="spare unreferenced blobs younger than this (default 1h: a backup may be in flight)")
    p.add_argument("--dry-run", action="store_true", help="say what would be kept and removed, change nothing")
    add_json(p)


def run(given: dict[str, Any]) -> Any:
    from flows.maintenance import prune

    params = pick(given, "repo", "kind", "source_name", "grace", "dry_run")
    rules = retention(given)
    if rules is not None:
        params["retention"] = rules
    return run_flow(prune, params)
