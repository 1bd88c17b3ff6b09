"""status: if the database died now, how fast and from what would we recover? Per source database:
the newest backup and its age against the RPO, the newest point a drill proved restorable and its
RTO, the last drill and verify, sizes; ready or at risk, with the reasons. Read only: never a flow
run. Exit 0 when every source is ready, 1 when one is at risk (the report is printed first)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from qilbee_cli.common import add_repo, add_source_name, pick, run_flow

NAME = "status"
HELP = "ready or at risk: each database's newest backup against the RPO, its last drill against the RTO (read-only)"
FLAGS = {"repos": "--repo", "targets.rto_s": "--rto-target", "targets.rpo_s": "--rpo-target", "textfile": "--textfile"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_repo(p, many=True)
    add_source_name(p, "only this source database")
    p.add_argument("--rpo-target", "--rpo", dest="rpo_target", type=float, metavar="SECONDS",
                   help="the recovery point objective: a newer backup than this must exist (default 86400: 24 h)")
    p.add_argument("--rto-target", "--rto", dest="rto_target", type=float, metavar="SECONDS",
                   help="the recovery time objective the last drill's RTO is held to (default 3600: 1 h)")
    p.add_argument("--textfile", metavar="PATH.prom",
                   help="also write the Prometheus metrics to this node_exporter textfile (replaced atomically)")
    # Not `--json`'s usual destination: the shared printer has no status report, so this command prints its own.
    p.add_argument("--json", dest="status_json", action="store_true", help="print the status as one JSON object on stdout")


def run(given: dict[str, Any]) -> None:
    from flows.status import status
    from qilbee_backup.errors import FailedWithReport, QilbeeBackupError

    params = pick(given, "source_name", "textfile", repos="repo")
    targets = {field: given[flag] for field, flag in (("rpo_s", "rpo_target"), ("rto_s", "rto_target")) if flag in given}
    if targets:
        params["targets"] = targets
    try:
        result = run_flow(status, params, FLAGS, read_only=True)  # reading only: never a flow run
    except FailedWithReport as exc:  # a source at risk: the report, then the one line, exit 1
        _print(exc.result, given.get("status_json", False))
        raise QilbeeBackupError(str(exc)) from None
    _print(result, given.get("status_json", False))


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, default=str, sort_keys=True))
    else:
        from qilbee_backup.readiness_report import status_text

        print(status_text(result))
