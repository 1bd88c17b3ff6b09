"""restore: a backup (or an archive) into a data directory, checked file by file and on a server."""

from __future__ import annotations

import argparse
from typing import Any

from qilbee_cli.common import add_json, add_repo, add_source_name, pick, run_flow

NAME = "restore"
HELP = "restore a backup into a data directory, checked file by file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_repo(p)
    p.add_argument("--backup", metavar="ID", help="a backup id or 'latest' (default)")
    p.add_argument("--kind", help="with latest: the newest of this series")
    add_source_name(p, "with latest: the newest backup of this source database")
    p.add_argument("--data-dir", required=True, metavar="DIR", help="where to restore (missing or empty, or see --replace)")
    p.add_argument("--replace", action="store_true", help="DIR holds data: move it aside, put it back if the restore fails its checks")
    p.add_argument("--container", metavar="NAME", help="the Docker container using DIR: stopped, restored, started and checked")
    p.add_argument("--source", metavar="URL", help="the container's URL for the check (default http://127.0.0.1:7474)")
    p.add_argument("--server-cmd", metavar="CMD", help="server to check the restored data with ({data_dir}, {port}, {host}); default: the emulator")
    p.add_argument("--server-env", action="append", metavar="NAME",
                   help="an environment variable the check server gets from here (repeatable; it gets no others)")
    p.add_argument("--no-check", action="store_true", help="skip starting a server on the restored data to compare its figures")
    p.add_argument("--archive", metavar="ID", help="restore a cold-storage archive (an id or 'latest') instead of a backup")
    p.add_argument("--retrieval-wait", type=float, metavar="SECONDS",
                   help="archive in GLACIER/DEEP_ARCHIVE: wait this long for its retrieval (default 12 h); 0 starts it and "
                        "stops (exit 75): run again later")
    p.add_argument("--retrieval-tier", help="Expedited, Standard (default) or Bulk")
    p.add_argument("--retrieval-days", type=int, metavar="DAYS", help="how long the retrieved copy stays readable (default 7)")
    add_json(p)


def run(given: dict[str, Any]) -> Any:
    from flows.restore import restore

    params = pick(given, "repo", "data_dir", "backup", "kind", "source_name", "replace", "container", "source", "server_cmd",
                  "server_env", "archive", "retrieval_wait", "retrieval_tier", "retrieval_days")
    if given.get("no_check"):
        params["check"] = False
    return run_flow(restore, params)
