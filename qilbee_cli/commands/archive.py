"""archive: the monthly cold-storage archive (tar + zstd in a storage class), then its retention."""

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

NAME = "archive"
HELP = "monthly cold-storage archive: snapshot → tar + zstd → upload in a storage class → verify → prune"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_snapshot_source(p)  # --storage-class: default GLACIER; no --keep-*: the flow's default, 12 months
    p.add_argument("--spool-dir", metavar="DIR", help="where the archive file is built before upload (room for one compressed copy)")
    p.add_argument("--grace", metavar="DURATION", help="an archive file without a record is removed once older than this (default 1d)")


def run(given: dict[str, Any]) -> Any:
    from flows.archive import archive

    return run_flow(archive, snapshot_source(given) | pick(given, "spool_dir", "grace"), SOURCE_FLAGS)
