"""failback: once the original primary is back, switch DNS back to it and stop the DR instance."""

from __future__ import annotations

import argparse
import json
from typing import Any

from qilbee_cli.common import API_KEY_ENV, MODE, add_repo, pick, run_flow, secret_to_env

NAME = "failback"
HELP = "after a DR: check the primary against the DR instance, switch DNS back to it, stop the DR instance"
FLAGS = {"approval_timeout_s": "--approval-timeout", "keep_dr_instance": "--keep-dr-instance"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_repo(p)
    p.add_argument("--recovery", metavar="ID", help="the recovery to undo: its id (the DR's recovery_id) or 'latest' (default)")
    p.add_argument("--primary", metavar="URL", help="the original primary (default: the URL the restored backup came from)")
    p.add_argument("--api-key", help=f"the primary's API key (or set {API_KEY_ENV})")
    p.add_argument("--api-key-secret", metavar="BLOCK", help="name of a Prefect Secret block holding the primary's API key")
    p.add_argument("--force", action="store_true",
                   help="fail back even if the primary holds fewer nodes or relationships than the DR instance (lost)")
    p.add_argument("--keep-dr-instance", action="store_true", help="leave the DR instance running after the switch")
    p.add_argument("--approve", action="store_true", help="pause for a person to approve the switch in the Prefect UI")
    p.add_argument("--approval-timeout", type=float, metavar="SECONDS", help="wait this long for that decision (default 3600)")
    # Printed here, not by the shared printer: a failback's report is its own (qilbee_backup.failback).
    p.add_argument("--json", dest="failback_json", action="store_true", help="print the run's result as one JSON object on stdout")


def run(given: dict[str, Any]) -> Any:
    from flows.failback import failback
    from qilbee_backup.errors import QilbeeBackupError, UsageError

    as_json = bool(given.pop("failback_json", False))
    if given.get("approve") and not MODE.prefect:
        raise UsageError("--approve waits for a person in the Prefect UI: it needs a Prefect API (set PREFECT_API_URL)")
    secret_to_env(given, "api_key", API_KEY_ENV)
    params = pick(given, "repo", "recovery", "primary", "api_key_secret", "force", "keep_dr_instance", "approve",
                  approval_timeout_s="approval_timeout")
    try:
        result = run_flow(failback, params, FLAGS)
    except QilbeeBackupError as exc:
        report = getattr(exc, "result", None)
        if report is not None:
            _print(report, as_json)
            exc.result = None  # printed: the entry point adds only the error line
        raise
    _print(result, as_json)
    return None


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, default=str, sort_keys=True))
    else:
        from qilbee_backup.failback import report_text

        print(report_text(result))
