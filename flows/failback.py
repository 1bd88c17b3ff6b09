"""Failback: once the original primary is back, point DNS at it again and retire the DR instance.

The runbook reads what the disaster recovery recorded beside the backups (recoveries/<id>.json:
the DNS record, its old value and the provider's settings; the DR instance), then:
load the recovery → check the primary (/health, its figures) → check the DR instance (its figures
now) → compare (the primary must not hold fewer nodes or relationships, in any graph, than the DR
instance: unless forced) → check the DNS record (it must still point at the DR instance) → approval
(in the Prefect UI, as the DR's) → switch DNS back → stop the DR instance (or keep it, as asked) →
record the failback (failbacks/<id>.json: a recovery is failed back once).

Anything refused or failed before the switch changes nothing: DNS and the DR instance stay as they
are. Every outcome publishes its report (markdown and table artifacts), naming the step that failed.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from flows import approval as gate
from flows.instance_recovery import StepClock
# _shaped: the one builder of text parameter types (pattern in the form's schema, the message in words).
from flows.parameters import DnsSwitch, EnvName, Name, RepoUrl, Seconds, SourceUrl, _shaped
from flows.runbook import runbook
from qilbee_backup import failback as judge
from qilbee_backup.dns.base import DnsChange
from qilbee_backup.errors import UsageError
from qilbee_backup.failback import FailbackError
from qilbee_backup.recovery_records import RECOVERY_REF_RE, failback_record
from qilbee_backup.report import artifact_key
from qilbee_backup.repository import open_repository
from tasks import failback as steps
from tasks.recovery import check_dns
from tasks.secrets import resolve_api_key
from tasks.steps import get_logger, publish_markdown, publish_rows

KEY = "failback-report"
RecoveryRef = _shaped(RECOVERY_REF_RE, "a recovery id or latest", ["latest", "20261130T020000123456Z-0a1b2c"], max_length=32)


class FailbackApproval(BaseModel):
    """Shown in the Prefect UI before DNS is switched back: a decision, recorded in the report."""

    approve: bool = Field(False, description="Switch DNS back to the primary. Leave unticked to decline (nothing changes).")
    decided_by: str = Field("", max_length=200, description="Who decides (name or e-mail): recorded in the report.")
    note: str = Field("", max_length=2000, description="Why: recorded in the report.")


@runbook
def failback(
    repo: RepoUrl,
    recovery: RecoveryRef = "latest",
    primary: SourceUrl | None = None,
    api_key_env: EnvName | None = "QILBEE_API_KEY",
    api_key_secret: Name | None = None,
    force: bool = False,
    keep_dr_instance: bool = False,
    approve: bool = False,
    approval_timeout_s: Seconds = 3600.0,
) -> dict:
    """Point DNS back at the original primary once it is back, and stop the DR instance.

    Args:
        repo: The repository the disaster recovery restored from (it holds recoveries/<id>.json).
        recovery: The recovery to undo: its id (as the DR's report shows it) or latest.
        primary: The original primary's URL, to check; empty: the URL the restored backup was taken from.
        api_key_env: Environment variable holding the primary's API key (never a parameter: the UI shows those).
        api_key_secret: Name of a Prefect Secret block holding the primary's API key (used if the variable is unset).
        force: Fail back even when the primary holds fewer nodes or relationships than the DR instance (that
            difference is lost), when their figures cannot be compared, or when DNS was changed since the recovery.
        keep_dr_instance: Leave the DR instance running after the switch (to copy data off it); default: stop it.
        approve: Pause before the DNS switch until a person decides in the Prefect UI (default there: decline).
        approval_timeout_s: Seconds to wait for that decision; no decision fails the run, and nothing changes.
    """
    logger = get_logger()
    clock = StepClock()
    result: dict = {"ok": True, "recovery_id": None, "primary": {"url": primary}, "forced": force, "steps": clock.steps,
                    "warnings": []}
    if approve:
        result["approval"] = None
    recovery_record = None
    try:
        repository = open_repository(repo)
        recovery_record = clock.run("load-recovery", steps.load_recovery, repository, recovery)
        result.update(recovery_id=recovery_record["record_id"], source=recovery_record.get("source"),
                      backup_id=recovery_record.get("backup_id"))
        instance = dict(recovery_record.get("instance") or {})
        result["dr_instance"] = {k: instance.get(k) for k in ("provider", "url", "pid", "container", "data_dir")
                                 if instance.get(k) is not None} | {"state": "running"}
        url = primary or (recovery_record.get("primary") or {}).get("url")
        if not url:
            raise UsageError("the recovery does not record the primary's URL: give primary")
        result["primary"]["url"] = url
        graphs = _graph_names(recovery_record)

        checked = clock.run("check-primary", steps.check_primary, url, resolve_api_key(api_key_env, api_key_secret), graphs)
        result["primary"].update(health=checked["health"], figures=checked["figures"])
        dr = clock.run("check-dr-instance", steps.check_dr_instance, instance, graphs)
        if dr.get("figures") is not None:
            result["dr_instance"]["figures"] = dr["figures"]
        clock.run("compare-figures", _compare, checked["figures"], dr, force, result)

        dns = recovery_record.get("dns")
        switch = change = None
        if dns:
            switch, change = DnsSwitch.model_validate(dns["settings"]), DnsChange.from_dict(dns["change"])
            # As the failback sees it: from the DR instance's address (old) back to the primary's (new).
            result["dns"] = {"record": change.record, "old": change.new, "new": change.old, "switched": False}
            _warn_if_primary_is_elsewhere(url, change.old, result)
            current = clock.run("check-dns", check_dns, switch)
            result["dns"]["current"] = current
            if current == change.old:
                result["warnings"].append(f"{change.record} points at the primary's {', '.join(change.old or [])} "
                                          "already: nothing to switch back")
                switch = None
            elif current != change.new:
                message = (f"{change.record} points at {', '.join(current or []) or 'nothing'} now, neither the DR "
                           f"instance's {', '.join(change.new)} nor the primary's "
                           f"{', '.join(change.old or []) or '(no record)'}: it was changed since the recovery")
                if not force:
                    clock.steps[-1]["ok"] = False
                    raise FailbackError(f"{message}; nothing changed (force to switch it back all the same)")
                result["warnings"].append(f"forced past: {message}")
        else:
            result["dns"] = None

        if approve:
            result["approval"] = clock.run("approval", gate.ask, _approval_text(result, keep_dr_instance),
                                           FailbackApproval, approval_timeout_s)
            if not result["approval"]["approved"]:
                clock.steps[-1]["ok"] = False
                raise FailbackError(gate.declined("the failback", result["approval"],
                                                  "nothing changed: DNS and the DR instance are as they were"))
        if switch is not None:
            result["dns"]["current"] = clock.run("dns-switch-back", steps.dns_switch_back, switch, change)
            result["dns"]["switched"] = True
        if keep_dr_instance:
            result["dr_instance"]["state"] = "kept"
            logger.info("keeping the DR instance at %s running, as asked", instance.get("url"))
            _record(repository, recovery_record, result, clock)
        else:
            try:
                clock.run("stop-dr-instance", steps.stop_dr_instance, instance)
                result["dr_instance"]["state"] = "stopped"
            finally:  # DNS is back on the primary either way: this recovery is failed back
                _record(repository, recovery_record, result, clock)
    except BaseException as exc:  # a cancelled run too: its report says where it stopped
        result |= {"ok": False, "failed_step": _failed_step(clock), "error": " ".join(str(exc).split()) or type(exc).__name__}
        switched = (result.get("dns") or {}).get("switched")
        if switched:
            result["error"] = f"DNS was switched back to the primary, but then: {result['error']}"
        if recovery_record is not None and not isinstance(exc, UsageError) and isinstance(exc, Exception):
            exc.result = result  # the CLI prints the report (figures, steps) before the error line
        _publish(result, f"failback of {result['recovery_id'] or recovery}: FAILED at {result['failed_step']}")
        if switched and isinstance(exc, Exception):
            error = FailbackError(result["error"])
            error.result = result
            raise error from None
        raise
    for warning in result["warnings"]:
        logger.warning(warning)
    _publish(result, f"failback of {result['recovery_id']}")
    return result


def _compare(primary: dict, dr: dict, force: bool, result: dict) -> None:
    """The figures side by side (result["comparison"]); a primary holding less than the DR instance (or
    figures that cannot be compared) stops the failback here, unless forced (then each shortfall is a warning)."""
    if dr.get("figures") is None:
        result["comparison"], shortfalls = [], [f"the DR instance's figures cannot be read ({dr['error']})"]
    else:
        result["comparison"], shortfalls = judge.compare(primary, dr["figures"])
    if shortfalls and not force:
        raise FailbackError(f"the primary may hold less than the DR instance: {'; '.join(shortfalls)}; nothing changed "
                            "(copy the difference onto the primary, or force to lose it)")
    result["warnings"] += [f"forced past: {line}" for line in shortfalls]


def _graph_names(recovery_record: dict) -> list[str] | None:
    """The graphs the recovery's integrity check saw: counted by name where a server cannot list them."""
    figures = (recovery_record.get("figures") or {}).get("backup") or {}
    return sorted(figures.get("graphs") or {}) or None


def _warn_if_primary_is_elsewhere(url: str, old: list[str] | None, result: dict) -> None:
    """The server checked should be the one DNS goes back to: say so when its address is not among them."""
    host = urlsplit(url).hostname or ""
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        return  # a name: where it points is DNS's business
    if old and address not in old:
        result["warnings"].append(f"the primary checked ({url}) is not at the address DNS goes back to ({', '.join(old)})")


def _approval_text(result: dict, keep: bool) -> str:
    dns, inst, primary = result.get("dns"), result["dr_instance"], result["primary"]
    head = (f"### Switch `{dns['record']}` back from {', '.join(dns['old'])} to {', '.join(dns['new'] or []) or '(no record)'}?"
            if dns else "### Fail back? (the recovery switched no DNS record)")
    lines = [head, "",
             f"The primary at {primary['url']} is {primary.get('health')}. The DR instance at {inst.get('url')} has served "
             f"backup `{result.get('backup_id')}` of {result.get('source')} since the recovery "
             f"`{result['recovery_id']}`.", ""]
    if result.get("comparison"):
        lines += ["Figures now (the primary must hold at least as much as the DR instance):", "",
                  judge.figures_markdown(result["comparison"])]
    lines += [f"- **Warning:** {w}" for w in result["warnings"]]
    lines += ["", f"After the switch the DR instance is {'**kept running**' if keep else '**stopped**'} "
                  "(its data directory stays).",
              "Tick **approve** to fail back; leave it unticked to decline (nothing changes)."]
    return "\n".join(lines)


def _record(repository, recovery_record: dict, result: dict, clock: StepClock) -> None:
    """Once DNS went back (or there was none to switch), the recovery is failed back: recorded so it is
    never done twice. A record that cannot be written is a warning: the switch stands."""
    try:
        result["failback_id"] = steps.record_failback(repository, failback_record(recovery_record, result,
                                                                                   started_at=clock.trigger))
    except Exception as exc:  # noqa: BLE001 - advice; what was done is done, and the report says it
        result["warnings"].append(f"this failback is not recorded in {repository.url}: {' '.join(str(exc).split())}")


def _failed_step(clock: StepClock) -> str:
    return clock.failed_step() or "(before the first step)"


def _publish(result: dict, description: str) -> None:
    """Every outcome publishes its report: the markdown (figures and steps) and the same as a table."""
    key = artifact_key(KEY, result.get("source"))
    publish_markdown(key, judge.report_markdown(result), description[:500])
    publish_rows(artifact_key(f"{KEY}-table", result.get("source")), judge.report_rows(result), description[:500])
