"""prefect.yaml: every deployment loads its flow, its parameters fit the flow, and the schedules are the guide's.

Read the way `prefect deploy` reads it (PyYAML, anchors resolved) and checked offline: no Prefect server.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta, timezone
from itertools import combinations
from pathlib import Path

import prefect
import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel  # what `prefect deploy` validates the file with
from prefect.exceptions import ParameterTypeError
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
from prefect.server.schemas.schedules import CronSchedule  # the scheduler's own date arithmetic

from qilbee_backup.retention import Policy

ROOT = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((ROOT / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in CONFIG["deployments"]}

# deployment -> the flow it runs (by the flow's registered name)
EXPECTED_FLOWS = {
    "nightly-backup": "backup",
    "weekly-full": "backup",
    "monthly-archive": "archive",
    "weekly-verify": "verify",
    "restore-drill": "restore-drill",
    "disaster-recovery": "disaster-recovery",
    "backup-status": "status",
    "list-backups": "list-backups",
    "restore": "restore",
    "failback": "failback",
}
# Started by a person (from the UI) or an automation, never on a schedule.
ON_DEMAND = ["disaster-recovery", "list-backups", "restore", "failback"]
# Each of these changes what serves production: the run pauses for a decision in the UI first.
GATED = ["disaster-recovery", "restore", "failback"]
# The guide's backup strategy: series kind -> how long its backups are kept, as (years, months, days, hours).
GUIDE_RETENTION = {"daily": (0, 0, 7, 0), "weekly": (0, 0, 28, 0), "monthly": (0, 12, 0, 0)}

WEEK = timedelta(days=7)


@pytest.fixture(scope="module")
def flows() -> dict:
    """Each entrypoint imported for real (no placeholder flow), resolved against the repository root."""
    loaded = {}
    for name, deployment in DEPLOYMENTS.items():
        path, function = deployment["entrypoint"].split(":")
        loaded[name] = load_flow_from_entrypoint(f"{ROOT / path}:{function}", use_placeholder_flow=False)
    return loaded


def next_runs(schedule: dict, count: int) -> list[datetime]:
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    # As plain UTC datetimes: on Python < 3.13 Prefect returns pendulum's, whose differences are not timedeltas.
    return [datetime.fromtimestamp(d.timestamp(), timezone.utc) for d in asyncio.run(cron.get_dates(n=count, start=start))]


def test_the_file_is_valid_for_prefect_deploy():
    model = PrefectYamlModel.model_validate(CONFIG)
    assert model.name == "qilbee-backup"
    assert CONFIG["prefect-version"].split(".")[:2] == prefect.__version__.split(".")[:2]
    assert len(model.deployments) == len(DEPLOYMENTS), "two deployments share a name"


def test_code_runs_from_the_working_directory_without_build_or_push():
    assert not CONFIG.get("build") and not CONFIG.get("push")
    assert CONFIG["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PWD }}"}}]


def test_every_job_of_the_guide_is_deployed():
    assert set(DEPLOYMENTS) == set(EXPECTED_FLOWS)


@pytest.mark.parametrize("name", sorted(EXPECTED_FLOWS))
def test_entrypoint_loads_the_expected_flow(name, flows):
    assert flows[name].name == EXPECTED_FLOWS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_FLOWS))
def test_parameters_fit_the_flow_signature(name, flows):
    # Raises on an unknown name, a wrong type or a missing required parameter: a scheduled run gets no others.
    validated = flows[name].validate_parameters(DEPLOYMENTS[name].get("parameters", {}))
    assert set(DEPLOYMENTS[name]["parameters"]) <= set(validated)


@pytest.mark.parametrize("name", sorted(EXPECTED_FLOWS))
def test_the_ui_form_describes_every_parameter(name, flows):
    # The schema the Prefect UI builds its form from: flat parameters get their text from the
    # docstring's Args, model parameters (retention) from their fields.
    schema = parameter_schema(flows[name]).model_dump()
    for parameter, spec in schema["properties"].items():
        models = re.findall(r"#/definitions/(\w+)", json.dumps(spec))
        if models:
            fields = schema["definitions"][models[0]]["properties"]
            assert all(field.get("description") for field in fields.values()), f"{name}: {parameter} has undescribed fields"
        else:
            assert spec.get("description"), f"{name}: parameter {parameter} has no description in the UI form"


@pytest.mark.parametrize("name", ["nightly-backup", "weekly-full", "monthly-archive"])
def test_a_bad_retention_rule_is_refused_before_the_run(name, flows):
    parameters = dict(DEPLOYMENTS[name]["parameters"], retention={"keep_within": "7 days please"})
    with pytest.raises(ParameterTypeError, match="keep_within"):
        flows[name].validate_parameters(parameters)


@pytest.mark.parametrize("name", sorted(EXPECTED_FLOWS))
def test_work_pool_is_the_shared_process_pool(name):
    assert DEPLOYMENTS[name]["work_pool"] == {"name": "qilbee-process"}


def test_only_the_on_demand_jobs_are_unscheduled_and_those_that_change_production_wait_for_approval(flows):
    unscheduled = [name for name, d in DEPLOYMENTS.items() if not d.get("schedules")]
    assert unscheduled == ON_DEMAND
    for name in GATED:
        assert DEPLOYMENTS[name]["parameters"]["approve"] is True, name
        # The flow's own default is the safe one for a run started without the deployment's parameters.
        assert flows[name].parameters.properties["approve"]["default"] is False, name


def test_an_operator_needs_no_shell_on_the_worker():
    """Restore a chosen backup (or the newest) into a chosen target, list, status and failback: each a deployment."""
    assert DEPLOYMENTS["restore"]["parameters"]["backup"] == "latest" and DEPLOYMENTS["restore"]["parameters"]["data_dir"]
    assert DEPLOYMENTS["failback"]["parameters"]["recovery"] == "latest"
    assert {"list-backups", "backup-status", "restore", "failback"} <= set(DEPLOYMENTS)


@pytest.mark.parametrize("name", sorted(set(EXPECTED_FLOWS) - set(ON_DEMAND)))
def test_every_schedule_is_a_cron_in_utc(name):
    for schedule in DEPLOYMENTS[name]["schedules"]:
        assert schedule["cron"] and schedule["timezone"] == "UTC"
        assert next_runs(schedule, 1), f"{name}: {schedule['cron']} never fires"


def test_schedules_follow_the_guide():
    (nightly,) = DEPLOYMENTS["nightly-backup"]["schedules"]
    runs = next_runs(nightly, 8)
    assert {(r.hour, r.minute) for r in runs} == {(2, 0)}
    assert {b - a for a, b in zip(runs, runs[1:])} == {timedelta(days=1)}

    (weekly,) = DEPLOYMENTS["weekly-full"]["schedules"]
    assert {(r.isoweekday(), r.hour) for r in next_runs(weekly, 5)} == {(7, 3)}  # Sunday 03:00

    (monthly,) = DEPLOYMENTS["monthly-archive"]["schedules"]
    runs = next_runs(monthly, 13)
    assert {(r.day, r.hour) for r in runs} == {(1, 4)}
    assert len({(r.year, r.month) for r in runs}) == 13

    for name in ("restore-drill", "weekly-verify"):
        (schedule,) = DEPLOYMENTS[name]["schedules"]
        runs = next_runs(schedule, 5)
        assert {b - a for a, b in zip(runs, runs[1:])} == {WEEK}, f"{name} is not weekly"


def test_scheduled_backups_never_start_together():
    # They share the repository lock; starting together would only make one of them wait.
    starts = {n: set(next_runs(DEPLOYMENTS[n]["schedules"][0], 60)) for n in ("nightly-backup", "weekly-full", "monthly-archive")}
    for a, b in combinations(starts, 2):
        assert not starts[a] & starts[b], f"{a} and {b} start at the same time"


@pytest.mark.parametrize("name", ["nightly-backup", "weekly-full", "monthly-archive"])
def test_backup_retention_follows_the_guide(name):
    parameters = DEPLOYMENTS[name]["parameters"]
    policy = Policy.from_mapping(parameters["retention"])  # the engine's own parser: unknown rules fail here
    within = policy.keep_within
    assert (within.years, within.months, within.days, within.hours) == GUIDE_RETENTION[parameters["kind"]]


def test_weekly_verify_rereads_the_data():
    assert DEPLOYMENTS["weekly-verify"]["parameters"]["read_data"] is True


def test_weekly_full_is_an_offline_file_system_backup():
    parameters = DEPLOYMENTS["weekly-full"]["parameters"]
    assert parameters["mode"] == "offline" and parameters["container"]
