"""The UI form and the API refuse what the CLI refuses: a refusal is a 4xx from the server before any
run exists.

prefect.yaml's deployments are registered on the session's Prefect API server (a real HTTP server) the
way `qilbee-backup serve` registers them (flows.serve: `flow.to_deployment(...)` with prefect.yaml's
parameters), plus an ad-hoc `restore` deployment (prefect.yaml has none), all with the parameter schema
enforced. Then the call the UI's run form makes, POST /deployments/{id}/create_flow_run, gets one bad
value at a time, of the kinds the CLI refuses (tests/flows/test_bad_input.py): the server answers 409
naming the field, and the deployment has no more runs than before. The CLI's own check
(qilbee_cli.common.validate) refuses each of them too, and takes each good value the server takes.

A rule JSON schema cannot express (an IP address's value, a URL's port or scheme) is a validator: such a
value gets a run, and that run fails at once in Prefect's parameter validation, before the flow's first
line (no task run, no report). The same happens when a person turns the form's "Enforce Parameter Schema"
switch off. Both are pinned here, so that moving a rule into or out of the schema is a deliberate change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prefect.exceptions import PrefectHTTPStatusError

from flows.serve import load_deployments

ROOT = Path(__file__).resolve().parents[2]
REPO = "/var/backups/qilbee"  # prefect.yaml's repository: nothing is run against it
# (deployment, parameters merged over the deployment's own, the top-level field the refusal must name)
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    # backup (nightly-backup: source, repos, mode, kind, retention, lock_wait from prefect.yaml)
    ("backup/nightly-backup", {"retention": {"keep_within": "7 days"}}, "retention"),
    ("backup/nightly-backup", {"retention": {"keep_within": "7x"}}, "retention"),
    ("backup/nightly-backup", {"retention": {"keep_last": -1}}, "retention"),
    ("backup/nightly-backup", {"retention": {"keep_forever": 3}}, "retention"),
    ("backup/nightly-backup", {"mode": "sideways"}, "mode"),
    ("backup/nightly-backup", {"kind": "Daily Backups"}, "kind"),
    ("backup/nightly-backup", {"kind": ""}, "kind"),
    ("backup/nightly-backup", {"source": "http://user:secretpw@127.0.0.1:7474"}, "source"),
    ("backup/nightly-backup", {"source": "http://127.0.0.1:7474/?api_key=secretpw"}, "source"),
    ("backup/nightly-backup", {"source": "ftp://127.0.0.1:7474"}, "source"),
    ("backup/nightly-backup", {"lock_mode": "forever"}, "lock_mode"),
    ("backup/nightly-backup", {"lock_days": 0}, "lock_days"),
    ("backup/nightly-backup", {"sse": "rot13"}, "sse"),
    ("backup/nightly-backup", {"storage_class": "cheap"}, "storage_class"),
    ("backup/nightly-backup", {"lock_wait": -1}, "lock_wait"),
    ("backup/nightly-backup", {"repos": []}, "repos"),
    ("backup/nightly-backup", {"repos": [""]}, "repos"),
    ("backup/nightly-backup", {"source_name": "Prod DB"}, "source_name"),
    ("backup/nightly-backup", {"grace": "soon"}, "grace"),
    ("backup/nightly-backup", {"container": "no/slashes"}, "container"),
    ("backup/nightly-backup", {"keep_checkpoints": -1}, "keep_checkpoints"),
    ("archive/monthly-archive", {"storage_class": "cold"}, "storage_class"),
    # disaster recovery (repo, instance, approve from prefect.yaml)
    ("disaster-recovery/disaster-recovery", {"instance": {"provider": "process", "port": 70000}}, "instance"),
    ("disaster-recovery/disaster-recovery", {"instance": {"provider": "kubernetes"}}, "instance"),
    ("disaster-recovery/disaster-recovery", {"instance": {"server_env": ["NOT A NAME"]}}, "instance"),
    ("disaster-recovery/disaster-recovery", {"dns": {"provider": "rfc2136", "record": "db.example.com"}}, "dns"),
    ("disaster-recovery/disaster-recovery", {"dns": {"provider": "hosts", "record": "not a fqdn!!"}}, "dns"),
    ("disaster-recovery/disaster-recovery", {"dns": {"provider": "hosts", "record": "db.example.com", "ttl": -5}}, "dns"),
    ("disaster-recovery/disaster-recovery",
     {"dns": {"provider": "hosts", "record": "db.example.com", "address": "not-an-ip"}}, "dns"),
    ("disaster-recovery/disaster-recovery", {"dns": {"provider": "bind", "record": "db.example.com"}}, "dns"),
    ("disaster-recovery/disaster-recovery", {"backup": ""}, "backup"),
    ("disaster-recovery/disaster-recovery", {"backup": "../../etc/passwd"}, "backup"),
    ("disaster-recovery/disaster-recovery", {"targets": {"rto_s": 0}}, "targets"),
    ("disaster-recovery/disaster-recovery", {"approval_timeout_s": -1}, "approval_timeout_s"),
    ("disaster-recovery/disaster-recovery", {"repo": ""}, "repo"),
    # drill, verify, restore
    ("restore-drill/restore-drill", {"instance": {"port": 70000}}, "instance"),
    ("restore-drill/restore-drill", {"backup": ""}, "backup"),
    ("verify/weekly-verify", {"backup": ""}, "backup"),
    ("verify/weekly-verify", {"backup": "20261130T020000Z"}, "backup"),
    ("restore/restore", {"repo": REPO, "data_dir": ""}, "data_dir"),
    ("restore/restore", {"repo": REPO, "data_dir": "/tmp/t", "backup": "yesterday"}, "backup"),
    ("restore/restore", {"repo": REPO, "data_dir": "/tmp/t", "retrieval_tier": "Fast"}, "retrieval_tier"),
    ("restore/restore", {"repo": REPO}, "data_dir"),  # a required field left empty
]
# Accepted as they are (the good runs): each bad case above differs from one of these in one field.
ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("backup/nightly-backup", {}),
    ("backup/nightly-backup", {"source": "https://db.example.com:7474", "retention": {"keep_within": "4w", "keep_last": 3},
                               "lock_days": 30, "lock_mode": "COMPLIANCE", "repos": [REPO, "s3://bucket/qilbee"]}),
    ("archive/monthly-archive", {}),
    ("disaster-recovery/disaster-recovery",
     {"instance": {"provider": "process", "port": 17999}, "backup": "latest",
      "dns": {"provider": "rfc2136", "record": "db.example.com", "server": "10.0.0.53", "zone": "example.com",
              "address": "10.0.0.7", "ttl": 30}}),
    ("disaster-recovery/disaster-recovery", {"dns": {"provider": "hosts", "record": "db.example.test"}}),
    ("restore-drill/restore-drill", {"instance": {"port": 17998}}),
    ("verify/weekly-verify", {"backup": "latest"}),
    ("restore/restore", {"repo": REPO, "data_dir": "/tmp/t"}),
]
# Beyond JSON schema: the server takes them, the run fails in parameter validation before the flow starts.
VALIDATOR_ONLY: list[tuple[str, dict[str, Any], str]] = [
    ("disaster-recovery/disaster-recovery",
     {"dns": {"provider": "hosts", "record": "db.example.com", "address": "999.1.1.1"}}, "is not an IP address"),
    ("backup/nightly-backup", {"source": "http://127.0.0.1:99999"}, "port is not a number from 1 to 65535"),
    ("backup/nightly-backup", {"repos": ["ftp://host/x"]}, "ftp"),
]


# What Prefect's run form (the v2 UI, the default one) sends for a DNS switch when a person picks the
# route53 or rfc2136 tab and fills it in correctly: the default tab's hosts_file comes along as null.
FORM_DNS_SWITCHES = [
    {"address": "127.0.0.1", "ttl": 60, "provider": "route53", "zone_id": None, "zone_name": None, "hosts_file": None,
     "record": "db.example.com"},
    {"address": "127.0.0.1", "ttl": 60, "provider": "rfc2136", "port": 53, "tsig_key_name": None,
     "tsig_algorithm": "hmac-sha256", "tsig_secret_env": "QILBEE_TSIG_SECRET", "hosts_file": None,
     "record": "db.example.com", "server": "10.0.0.53", "zone": "example.com"},
]


@pytest.fixture(scope="module")
def deployments(prefect_harness) -> dict[str, Any]:
    """prefect.yaml's deployments as `serve` registers them (without schedules: no run may appear on its
    own), and an ad-hoc restore deployment; name -> (flow, deployment as the server has it)."""
    from prefect.client.orchestration import get_client
    from prefect.flows import load_flow_from_entrypoint

    specs = [*load_deployments(ROOT / "prefect.yaml"),
             {"name": "restore", "entrypoint": "flows/deployed.py:restore", "parameters": {}}]
    registered = {}
    with get_client(sync_client=True) as client:
        for spec in specs:
            flow = load_flow_from_entrypoint(str(ROOT / spec["entrypoint"]))
            deployment_id = flow.to_deployment(name=spec["name"], parameters=spec.get("parameters") or {},
                                               description=spec.get("description"), tags=spec.get("tags")).apply()
            registered[f"{flow.name}/{spec['name']}"] = (flow, client.read_deployment(deployment_id))
    return registered


def _runs_of(client, deployment) -> int:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return client.count_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))


def _cli_line(flow, deployment, parameters: dict[str, Any]) -> str | None:
    """The CLI's one-line refusal of these parameters (qilbee_cli.common.validate: before any run exists),
    or None when it takes them."""
    from qilbee_backup.errors import UsageError
    from qilbee_cli.common import validate

    try:
        validate(flow, {**deployment.parameters, **parameters}, {})
    except UsageError as refused:
        return str(refused)
    return None


def test_every_deployment_enforces_its_parameter_schema(deployments):
    from prefect.utilities.callables import parameter_schema

    assert {"backup/nightly-backup", "backup/weekly-full", "archive/monthly-archive", "verify/weekly-verify",
            "restore-drill/restore-drill", "disaster-recovery/disaster-recovery", "restore/restore"} <= set(deployments)
    for name, (flow, deployment) in deployments.items():
        assert deployment.enforce_parameter_schema, name
        stored, own = deployment.parameter_openapi_schema, parameter_schema(flow).model_dump_for_openapi()
        for part in ("properties", "required", "definitions"):  # the server drops an empty part
            assert (stored.get(part) or None) == (own.get(part) or None), (name, part)
        # Every parameter is typed: a choice, a shape, a range, a model or a plain flag; none is "any".
        for field, schema in deployment.parameter_openapi_schema["properties"].items():
            assert {"type", "anyOf", "allOf", "$ref", "enum", "const"} & set(schema), f"{name}: {field} is untyped"


def test_the_form_refuses_what_the_cli_refuses_before_a_run_exists(deployments):
    from prefect.client.orchestration import get_client

    server_took, cli_took = [], []
    with get_client(sync_client=True) as client:
        before = {name: _runs_of(client, d) for name, (_, d) in deployments.items()}
        for name, parameters, field in REFUSED:
            flow, deployment = deployments[name]
            if _cli_line(flow, deployment, parameters) is None:
                cli_took.append((name, parameters))
            try:
                run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
            except PrefectHTTPStatusError as refusal:
                status, detail = refusal.response.status_code, refusal.response.json()["detail"]
                assert status == 409, (name, parameters, status, detail)
                assert detail.startswith(f"Error creating flow run: Validation failed for field '{field}") or (
                    detail == f"Error creating flow run: Validation failed. Failure reason: '{field}' is a required "
                              "property"), (name, parameters, detail)
            else:
                server_took.append((name, parameters, run.state.type.value))
                client.delete_flow_run(run.id)
        after = {name: _runs_of(client, d) for name, (_, d) in deployments.items()}
    assert not server_took, f"the server made runs of parameters the form must refuse: {server_took}"
    assert not cli_took, f"the CLI takes parameters the form refuses: {cli_took}"
    assert after == before


def test_good_values_get_a_run(deployments):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for name, parameters in ACCEPTED:
            flow, deployment = deployments[name]
            assert _cli_line(flow, deployment, parameters) is None, (name, parameters)  # the CLI takes them too
            before = _runs_of(client, deployment)
            run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
            try:
                assert run.state.is_scheduled() and run.deployment_id == deployment.id
                assert run.parameters == {**deployment.parameters, **parameters}
                flow.validate_parameters(run.parameters)  # the flow engine's first step: the run would start
                assert _runs_of(client, deployment) == before + 1
            finally:
                client.delete_flow_run(run.id)  # no worker serves these deployments: it would never start


def _create_run(client, deployment, parameters: dict[str, Any], enforce: bool = True):
    """POST /deployments/{id}/create_flow_run as the form does; enforce=False is the form's "Enforce Parameter
    Schema" switch turned off (the Python client has no argument for it)."""
    from prefect.client.schemas.objects import FlowRun

    response = client.request("POST", "/deployments/{id}/create_flow_run", path_params={"id": deployment.id},
                              json={"parameters": parameters, "enforce_parameter_schema": enforce})
    return FlowRun.model_validate(response.json())


def _run_fails_before_the_flow_starts(client, flow, run, reason: str) -> None:
    """Run it here as a worker would: Prefect's parameter validation (the flow engine's first step) fails it
    with the validator's line, before the flow's first line: no task run, no report."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.exceptions import ParameterTypeError
    from prefect.flow_engine import run_flow

    # Never run a flow whose parameters pass: it would act (on prefect.yaml's paths and servers).
    with pytest.raises(ParameterTypeError):
        flow.validate_parameters(run.parameters)
    state = run_flow(flow, flow_run=run, parameters=run.parameters, return_type="state")
    final = client.read_flow_run(run.id).state
    assert state.is_failed() and final.is_failed(), final
    assert final.message.startswith("Validation of flow parameters failed with error:"), final.message
    assert reason in final.message, final.message
    ran = FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
    assert client.read_task_runs(flow_run_filter=ran) == []
    # No report (a table or markdown artifact); Prefect's own record of the failed state has no type.
    assert [a.key for a in client.read_artifacts(flow_run_filter=ran) if a.type] == []


def test_a_value_beyond_json_schema_fails_its_run_before_the_flow_starts(deployments):
    """What the schema cannot say, the server lets through; the run then fails at once."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for name, parameters, reason in VALIDATOR_ONLY:
            flow, deployment = deployments[name]
            assert reason in (_cli_line(flow, deployment, parameters) or "(the CLI takes it)")
            run = _create_run(client, deployment, parameters)
            try:
                _run_fails_before_the_flow_starts(client, flow, run, reason)
            finally:
                client.delete_flow_run(run.id)


def test_with_the_forms_schema_switch_off_the_run_still_fails_before_the_flow_starts(deployments):
    """The run form has an "Enforce Parameter Schema" switch: off, the server makes the run, and every rule
    of the schema is a validator too, so the run fails in parameter validation before anything happens."""
    from prefect.client.orchestration import get_client

    cases = [("backup/nightly-backup", {"mode": "sideways"}, "mode: Input should be 'auto', 'online' or 'offline'"),
             ("backup/nightly-backup", {"retention": {"keep_within": "7 days"}}, "retention.keep_within:"),
             ("disaster-recovery/disaster-recovery", {"instance": {"port": 70000}},
              "instance.port: Input should be less than or equal to 65535")]
    with get_client(sync_client=True) as client:
        for name, parameters, reason in cases:
            flow, deployment = deployments[name]
            run = _create_run(client, deployment, parameters, enforce=False)
            try:
                _run_fails_before_the_flow_starts(client, flow, run, reason)
            finally:
                client.delete_flow_run(run.id)


# The v2 run form sends every DNS option, null where the provider does not use it (as seen in a browser).
@pytest.mark.parametrize("dns", FORM_DNS_SWITCHES, ids=[d["provider"] for d in FORM_DNS_SWITCHES])
def test_the_form_can_start_a_dr_with_every_dns_provider(deployments, dns):
    from prefect.client.orchestration import get_client

    flow, deployment = deployments["disaster-recovery/disaster-recovery"]
    with get_client(sync_client=True) as client:
        run = _create_run(client, deployment, {"dns": dns})
        try:
            flow.validate_parameters(run.parameters)
        finally:
            client.delete_flow_run(run.id)
