"""verify: every blob a backup needs is there with the right size; with --read-data, re-hashed."""

from __future__ import annotations

import argparse
from typing import Any

from qilbee_cli.common import add_json, add_repo, pick, run_flow

NAME = "verify"
HELP = "check that every blob a backup needs is there (and intact, with --read-data)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_repo(p)
    p.add_argument("--backup", metavar="ID", help="one backup (an id or 'latest'); default: all")
    p.add_argument("--read-data", action="store_true", help="download, decompress and re-hash every blob")
    add_json(p)


def run(given: dict[str, Any]) -> Any:
    from flows.maintenance import verify

    return run_flow(verify, pick(given, "repo", "backup", "read_data"))
