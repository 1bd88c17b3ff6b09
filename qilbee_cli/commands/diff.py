"""diff A B: what changed from backup A to backup B — files added, removed and changed, and the
figures before and after (restic's `diff`), from the two manifests."""

from __future__ import annotations

import argparse
from typing import Any

from qilbee_cli.common import add_json, add_repo, pick, run_flow

NAME = "diff"
HELP = "what changed from backup A to backup B: files and figures (read-only)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("first", metavar="A", help="the backup to compare from: an id or latest")
    p.add_argument("second", metavar="B", help="the backup to compare with: an id or latest")
    add_repo(p)
    add_json(p)


def run(given: dict[str, Any]) -> Any:
    from flows.inspection import diff

    # Reading only: never a flow run, whatever the mode.
    return run_flow(diff, pick(given, "repo", "first", "second"), {"first": "A", "second": "B"}, read_only=True)
