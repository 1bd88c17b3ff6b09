"""The entry point: one parser made of the commands' own, then the command, one line per error."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from qilbee_backup.errors import QilbeeBackupError
from qilbee_cli.commands import (
    archive,
    backup,
    diff,
    failback,
    keys,
    listing,
    prune,
    recovery,
    restore,
    serve,
    stats,
    status,
    verify,
)
from qilbee_cli.common import (
    MODE,
    Parser,
    add_password,
    add_prefect_choice,
    open_repositories_ahead,
    prefect_api_configured,
    print_result,
    use_passwords,
)

COMMANDS = [backup, archive, listing, stats, diff, verify, prune, restore, recovery.DisasterRecovery, recovery.Drill, failback,
            serve, keys.Init, keys.Key, status]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="qilbee-backup", description="Backup and disaster recovery for QilbeeDB, as Prefect flows.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    from qilbee_backup.emulator.cli import add_arguments as add_emulator_arguments

    add_emulator_arguments(sub.add_parser("emulator", help="run the QilbeeDB-compatible emulator"))
    for command in COMMANDS:
        # Only the flags given reach the flow: every default lives once, in the flow's signature.
        p = sub.add_parser(command.NAME, help=command.HELP, argument_default=argparse.SUPPRESS)
        command.add_arguments(p)
        if command is not serve:
            if command not in (keys.Init, keys.Key):  # local by nature: never a flow run
                add_prefect_choice(p)
            add_password(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "emulator":
        from qilbee_backup.emulator.cli import run as run_emulator

        return run_emulator(args)
    given = {k: v for k, v in vars(args).items() if k != "command"}
    as_json = bool(given.pop("json", False))
    MODE.prefect = given.pop("prefect", None)
    if MODE.prefect is None:
        MODE.prefect = prefect_api_configured()
    _log_to_stderr()
    command = next(c for c in COMMANDS if c.NAME == args.command)
    try:
        use_passwords(given)
        opened_ahead = not MODE.prefect and open_repositories_ahead(given)
        try:
            result = command.run(given)
        finally:
            if opened_ahead:  # settled before anything is printed: the error stays the last line
                from qilbee_backup.ahead import forget

                forget()
    except QilbeeBackupError as e:
        report = getattr(e, "result", None)
        if report is not None:  # the run published its report before failing: show it too
            print_result(report, as_json)
        print(f"qilbee-backup: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("qilbee-backup: interrupted", file=sys.stderr)
        return 130
    if result is not None:
        print_result(result, as_json)
    return 1 if isinstance(result, dict) and result.get("ok") is False else 0


def _log_to_stderr() -> None:
    import os

    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per HTTP request to the Prefect API drowns the progress an operator reads.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # botocore says where it found credentials and endpoints each time it makes a client: not news either.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    # Prefect's event sender says it is flushing as the process exits: after the error line, not news.
    logging.getLogger("EventsWorker").setLevel(logging.ERROR)


