"""Apply the notification automations of `deployments/automations.yaml` to a Prefect server.

    python -m deployments.automations apply [--webhook-url URL] [--block-name NAME] [--rpo 24h] [--dry-run]
    python -m deployments.automations list [--block-name NAME]
    python -m deployments.automations delete [--block-name NAME] [--with-block]

`apply` creates or updates one Custom Webhook notification block and then creates each automation of the
file, or replaces the one of the same name, so applying again leaves one of each. The webhook URL usually
holds a token: it is read from --webhook-url or, better (no shell history, no `ps`), from
$QILBEE_WEBHOOK_URL, kept in the block's secrets (masked in the UI and API) and never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import string
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit
from uuid import UUID

import yaml

from qilbee_backup.errors import QilbeeBackupError, UsageError

AUTOMATIONS_FILE = Path(__file__).with_name("automations.yaml")
DEFAULT_BLOCK_NAME = "qilbee-backup-webhook"
DEFAULT_RPO = "24h"
WEBHOOK_URL_ENV = "QILBEE_WEBHOOK_URL"
# The block's `url` is this placeholder; the real URL sits in `secrets`, substituted only when it sends.
URL_SECRET_KEY = "webhook_url"
# Slack, Mattermost, Rocket.Chat and Google Chat read `text`; other receivers get the parts separately.
DEFAULT_PAYLOAD = {"text": "{{subject}}\n\n{{body}}", "subject": "{{subject}}", "body": "{{body}}", "source": "{{name}}"}
# Proactive triggers cannot watch a shorter window (Prefect's EventTrigger validation).
MIN_RPO = timedelta(seconds=10)
DRY_RUN_BLOCK_ID = UUID(int=0)

_RPO_PART = re.compile(r"(\d+)(min|s|h|d|w)")
_RPO_UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_rpo(text: str) -> timedelta:
    """'24h', '36h', '1d', '90min', '1h30min', '20s' -> timedelta (at least 10 s)."""
    cleaned = text.strip().lower()
    if not cleaned or _RPO_PART.sub("", cleaned):
        raise UsageError(f"bad --rpo {text!r}: use numbers with units w, d, h, min, s (e.g. 24h, 36h, 90min)")
    rpo = timedelta(seconds=sum(int(n) * _RPO_UNITS[unit] for n, unit in _RPO_PART.findall(cleaned)))
    if rpo < MIN_RPO:
        raise UsageError(f"--rpo {text!r} is shorter than Prefect's minimum of 10s for a proactive trigger")
    return rpo


def load_automations(rpo_text: str, block_id: UUID, path: Path = AUTOMATIONS_FILE) -> list:
    """The file's automations with the block id and RPO filled in, validated as Prefect's AutomationCore."""
    from prefect.events.schemas.automations import AutomationCore

    rpo = parse_rpo(rpo_text)
    template = string.Template(path.read_text())
    try:
        text = template.substitute(webhook_block_id=str(block_id), rpo=rpo_text.strip().lower(),
                                   rpo_s=int(rpo.total_seconds()))
    except (KeyError, ValueError) as e:
        raise UsageError(f"{path}: unknown or malformed ${{...}} placeholder: {e}") from None
    entries = yaml.safe_load(text)["automations"]
    return [AutomationCore.model_validate(entry) for entry in entries]


def webhook_block(url: str, payload: dict[str, Any] | None = None):
    """A Custom Webhook block that POSTs JSON to `url`, the URL kept among the block's secrets."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError("the webhook URL must be an absolute http:// or https:// URL")  # never echo it
    return CustomWebhookNotificationBlock(name="qilbee-backup", url="{{" + URL_SECRET_KEY + "}}", method="POST",
                                          json_data=payload or DEFAULT_PAYLOAD, secrets={URL_SECRET_KEY: url})


def existing_block_id(client, name: str) -> UUID | None:
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_block_document_by_name(name, block_type_slug="custom-webhook", include_secrets=False).id
    except ObjectNotFound:
        return None


def apply_automations(client, automations: list) -> list[tuple[str, UUID, str]]:
    """Create each automation, or replace the one with its name (deleting extra copies); leave it alone if equal."""
    from prefect.events.schemas.automations import AutomationCore

    done = []
    for automation in automations:
        existing = client.read_automations_by_name(automation.name)
        if not existing:
            done.append((automation.name, client.create_automation(automation), "created"))
            continue
        keep, *extra = existing
        for duplicate in extra:
            client.delete_automation(duplicate.id)
        # The server gives an updated automation a new trigger id, which drops the trigger's open window
        # (the RPO watch restarts from now, forgetting the last backup): only update what really changed.
        if AutomationCore.model_validate(keep.model_dump(exclude={"id"})) == automation:
            done.append((automation.name, keep.id, "unchanged"))
        else:
            client.update_automation(keep.id, automation)
            done.append((automation.name, keep.id, "updated"))
    return done


def automation_names(path: Path = AUTOMATIONS_FILE) -> list[str]:
    return [entry["name"] for entry in yaml.safe_load(path.read_text())["automations"]]


def _require_api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        # Without it Prefect would start a throwaway local server and the automations would vanish with it.
        raise UsageError("PREFECT_API_URL is not set: point it at the Prefect server, e.g. http://host:4200/api")
    return url


def cmd_apply(args: argparse.Namespace, url: str | None) -> None:
    payload = json.loads(args.payload) if args.payload else None
    if args.dry_run:
        if url:
            webhook_block(url, payload)  # validates the URL and payload placeholders
        automations = load_automations(args.rpo, DRY_RUN_BLOCK_ID, args.file)
        dump = [a.model_dump(mode="json") for a in automations]
        text = yaml.dump({"automations": dump}, Dumper=_ReadableDumper, sort_keys=False, allow_unicode=True, width=120)
        print(text.replace(str(DRY_RUN_BLOCK_ID), f"<id of webhook block {args.block_name}>"), end="")
        print(f"# dry run: nothing sent; webhook block {args.block_name!r} "
              + ("would be created or updated (URL hidden)" if url else "must already exist"))
        return

    from prefect.client.orchestration import get_client

    parse_rpo(args.rpo)  # fail on a bad value before touching the server
    _require_api_url()
    with get_client(sync_client=True) as client:
        if url:
            block_id = webhook_block(url, payload).save(args.block_name, overwrite=True)
            print(f"webhook block {args.block_name!r} saved ({block_id}); its URL is stored as a secret")
        else:
            block_id = existing_block_id(client, args.block_name)
            if block_id is None:
                raise UsageError(f"webhook block {args.block_name!r} does not exist yet: pass --webhook-url or set {WEBHOOK_URL_ENV}")
            print(f"webhook block {args.block_name!r} kept as it is ({block_id})")
        for name, automation_id, what in apply_automations(client, load_automations(args.rpo, block_id, args.file)):
            print(f"automation {name!r} {what} ({automation_id})")


def cmd_list(args: argparse.Namespace) -> None:
    from prefect.client.orchestration import get_client

    _require_api_url()
    with get_client(sync_client=True) as client:
        for name in automation_names(args.file):
            found = client.read_automations_by_name(name)
            if not found:
                print(f"{name}: not applied")
            for automation in found:
                state = "enabled" if automation.enabled else "paused"
                print(f"{name}: {state} ({automation.id}) - {automation.trigger.describe_for_cli().strip()}")
        block_id = existing_block_id(client, args.block_name)
        print(f"webhook block {args.block_name!r}: " + (f"present ({block_id})" if block_id else "missing"))


def cmd_delete(args: argparse.Namespace) -> None:
    from prefect.client.orchestration import get_client

    _require_api_url()
    with get_client(sync_client=True) as client:
        for name in automation_names(args.file):
            for automation in client.read_automations_by_name(name):
                client.delete_automation(automation.id)
                print(f"automation {name!r} deleted ({automation.id})")
        if args.with_block:
            block_id = existing_block_id(client, args.block_name)
            if block_id:
                client.delete_block_document(block_id)
                print(f"webhook block {args.block_name!r} deleted ({block_id})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deployments.automations",
                                     description="Notifications for qilbee-backup as Prefect automations.")
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--block-name", default=DEFAULT_BLOCK_NAME, help=f"the webhook block's name (default {DEFAULT_BLOCK_NAME})")
    common.add_argument("--file", type=Path, default=AUTOMATIONS_FILE, help=argparse.SUPPRESS)

    apply = commands.add_parser("apply", parents=[common], help="create or update the webhook block and the automations")
    apply.add_argument("--webhook-url", help=f"where notifications are POSTed (default ${WEBHOOK_URL_ENV}; "
                                             "without either, the existing block is kept)")
    apply.add_argument("--rpo", default=DEFAULT_RPO, help="alert when no backup completed for this long (default 24h)")
    apply.add_argument("--payload", help="JSON body with {{subject}}, {{body}} and {{name}} placeholders "
                                         "(default: text, subject, body, source)")
    apply.add_argument("--dry-run", action="store_true", help="print the automations that would be applied, contact nothing")
    commands.add_parser("list", parents=[common], help="show which automations are applied")
    delete = commands.add_parser("delete", parents=[common], help="delete the automations of the file")
    delete.add_argument("--with-block", action="store_true", help="also delete the webhook block")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    url = (getattr(args, "webhook_url", None) or os.environ.get(WEBHOOK_URL_ENV) or "").strip() or None
    try:
        if args.command == "apply":
            cmd_apply(args, url)
        elif args.command == "list":
            cmd_list(args)
        else:
            cmd_delete(args)
    except QilbeeBackupError as e:
        print(f"automations: error: {_scrub(str(e), url)}", file=sys.stderr)
        return e.exit_code
    except Exception as e:  # Prefect and HTTP errors: one line, never the webhook URL
        print(f"automations: error: {type(e).__name__}: {_scrub(str(e), url)}", file=sys.stderr)
        return 1
    return 0


class _ReadableDumper(yaml.SafeDumper):
    """Multi-line templates as YAML block text, the way the file writes them."""


_ReadableDumper.add_representer(str, lambda dumper, s: dumper.represent_scalar(
    "tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def _scrub(message: str, secret: str | None) -> str:
    line = " ".join(message.split())
    return line.replace(secret, "***") if secret else line


if __name__ == "__main__":
    sys.exit(main())
