"""stats: what a repository holds — backups, logical, unique and stored sizes, dedup and compression
ratios, oldest and newest, per series — from one listing and the manifests (restic's `stats`)."""

from __future__ import annotations

import argparse
from typing import Any

from qilbee_cli.common import add_json, add_repo, add_source_name, pick, run_flow

NAME = "stats"
HELP = "what a repository holds: sizes, deduplication, compression, per series (read-only)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_repo(p)
    p.add_argument("--kind", help="only this series")
    add_source_name(p, "only the backups of this source database")
    add_json(p)


def run(given: dict[str, Any]) -> Any:
    from flows.inspection import stats

    # Reading only: never a flow run, whatever the mode.
    return run_flow(stats, pick(given, "repo", "kind", "source_name"), read_only=True)
