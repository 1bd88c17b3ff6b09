"""backup: snapshot → copy → upload → verify → prune."""

from __future__ import annotations

import argparse
from typing import Any

from qilbee_cli.common import (
    SOURCE_FLAGS,
    add_snapshot_source,
    pick,
    run_flow,
    snapshot_source,
)

NAME = "backup"
HELP = "snapshot → copy → upload → verify → prune"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_snapshot_source(p)
    p.add_argument("--lock-days", type=int, metavar="N", help="S3 Object Lock: write blobs and manifests locked for N days")
    p.add_argument("--lock-mode", type=str.upper, help="with --lock-days: GOVERNANCE (default: privileged users may lift it) "
                                                       "or COMPLIANCE (nobody can)")
    p.add_argument("--grace", metavar="DURATION", help="with --keep-*: spare unreferenced blobs younger than this (default 1h)")


def run(given: dict[str, Any]) -> Any:
    from flows.backup import backup, check_lock_repositories

    params = snapshot_source(given) | pick(given, "lock_days", "lock_mode", "grace")
    check_lock_repositories(params.get("repos", []), params.get("lock_days"))
    return run_flow(backup, params, SOURCE_FLAGS)
