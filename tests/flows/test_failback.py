"""Failback end to end, against real parts: a real emulator is the original primary, a real disaster recovery
(process provider, hosts-file DNS; BIND over RFC 2136) records what it did in the repository, then the failback
checks the primary against the DR instance, switches DNS back and stops (or keeps) the DR instance."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from flows.backup import backup
from flows.disaster_recovery import disaster_recovery
from flows.failback import failback
from qilbee_backup.errors import NotFound, QilbeeBackupError
from qilbee_backup.failback import FailbackError
from qilbee_backup.recovery_records import failbacks, load_recovery
from qilbee_backup.repository import open_repository
from tests.flows.approvals import InThread, alive, pause_description, resume, stop_pid, wait_paused

RECORD = "db.qilbee.test"
PRIMARY_ADDRESS = "127.0.0.1"  # what the record holds before the disaster: the primary's address
DR_ADDRESS = "127.0.0.2"  # what the DR points it at (the DR instance's host, as far as DNS is concerned)


@dataclass
class Recovered:
    repo: str
    hosts: Path
    dr: dict
    primary: object  # the emulator process: the original primary

    @property
    def pid(self) -> int:
        return self.dr["instance"]["pid"]

    def hosts_address(self) -> list[str]:
        return [line.split()[0] for line in self.hosts.read_text().splitlines() if line.split()[1:] == [RECORD]]


@pytest.fixture
def dr_pids():
    pids: list[int] = []
    yield pids
    for pid in pids:
        stop_pid(pid)


@pytest.fixture
def recovered(emulator, tmp_path, dr_pids) -> Recovered:
    """The primary backed up, then 'lost': a DR restored it on a new instance and pointed the record there."""
    repo = str(tmp_path / "repo")
    backup(source=emulator.url, repos=[repo], kind="daily")
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{PRIMARY_ADDRESS} {RECORD}\n")
    dr = disaster_recovery(repo=repo, data_root=str(tmp_path / "dr"),
                           dns={"provider": "hosts", "record": RECORD, "address": DR_ADDRESS, "hosts_file": str(hosts)})
    dr_pids.append(dr["instance"]["pid"])
    done = Recovered(repo, hosts, dr, emulator)
    assert done.hosts_address() == [DR_ADDRESS] and alive(done.pid)
    return done


def test_the_dr_records_what_a_failback_needs_and_no_secret(recovered, emulator):
    record = load_recovery(open_repository(recovered.repo), "latest")
    assert record["record_id"] == recovered.dr["recovery_id"]
    assert record["primary"]["url"] == emulator.url  # where the restored backup was taken from
    assert record["dns"]["change"] == {"provider": "hosts", "record": RECORD, "old": [PRIMARY_ADDRESS], "new": [DR_ADDRESS],
                                       "ttl": 60, "old_ttl": None}
    assert record["dns"]["settings"]["hosts_file"] == str(recovered.hosts)
    assert record["dns"]["settings"]["tsig_secret_env"] == "QILBEE_TSIG_SECRET"  # a variable's name, never a value
    assert {k: record["instance"][k] for k in ("provider", "url", "pid", "data_dir")} == {
        "provider": "process", "url": recovered.dr["instance"]["url"], "pid": recovered.pid,
        "data_dir": recovered.dr["instance"]["data_dir"]}
    # Sealed like a manifest: the bucket shows neither the record's name nor the addresses.
    (stored,) = list((Path(recovered.repo) / "recoveries").iterdir())
    assert stored.name == f"{record['record_id']}.json"
    assert RECORD.encode() not in stored.read_bytes() and DR_ADDRESS.encode() not in stored.read_bytes()


def test_failback_switches_dns_back_and_stops_the_dr_instance(recovered):
    result = failback(repo=recovered.repo)

    assert result["ok"] and result["recovery_id"] == recovered.dr["recovery_id"]
    assert recovered.hosts_address() == [PRIMARY_ADDRESS]
    assert result["dns"] == {"record": RECORD, "old": [DR_ADDRESS], "new": [PRIMARY_ADDRESS], "switched": True,
                             "current": [PRIMARY_ADDRESS]}
    assert not alive(recovered.pid) and result["dr_instance"]["state"] == "stopped"
    assert Path(recovered.dr["instance"]["data_dir"]).is_dir()  # its data stays (writes taken during the DR are there)
    assert [s["name"] for s in result["steps"]] == ["load-recovery", "check-primary", "check-dr-instance", "compare-figures",
                                                     "check-dns", "dns-switch-back", "stop-dr-instance"]
    assert result["primary"]["health"] == "healthy" and all(row["ok"] for row in result["comparison"])
    (done,), _ = failbacks(open_repository(recovered.repo)).newest()
    assert done["recovery_id"] == recovered.dr["recovery_id"] and done["record_id"] == result["failback_id"]

    # A recovery is failed back once: a second try is refused, and changes nothing.
    with pytest.raises(FailbackError, match="was failed back already"):
        failback(repo=recovered.repo, recovery=recovered.dr["recovery_id"])
    assert recovered.hosts_address() == [PRIMARY_ADDRESS]


def test_failback_can_keep_the_dr_instance(recovered):
    result = failback(repo=recovered.repo, keep_dr_instance=True)
    assert recovered.hosts_address() == [PRIMARY_ADDRESS]
    assert alive(recovered.pid) and result["dr_instance"]["state"] == "kept"
    assert httpx.get(f"{recovered.dr['instance']['url']}/health").json()["status"] == "healthy"
    assert "stop-dr-instance" not in [s["name"] for s in result["steps"]]


def test_a_primary_with_fewer_nodes_than_the_dr_instance_is_refused_unless_forced(recovered):
    # The DR instance took writes while it served: the primary lacks them.
    httpx.post(f"{recovered.dr['instance']['url']}/graphs/ops/nodes", json={"labels": ["Job"], "properties": {}}).raise_for_status()

    before = httpx.get(f"{recovered.primary.url}/admin/stats").json()["graphs"]["ops"]["nodeCount"]
    with pytest.raises(FailbackError, match=f"may hold less than the DR instance: graph ops: {before} nodes on the primary, "
                                            f"{before + 1} on the DR instance") as refused:
        failback(repo=recovered.repo)
    assert "nothing changed" in str(refused.value)
    assert refused.value.result["failed_step"] == "compare-figures"
    assert [r["graph"] for r in refused.value.result["comparison"] if not r["ok"]] == ["ops", "(whole database)"]
    assert recovered.hosts_address() == [DR_ADDRESS] and alive(recovered.pid)
    assert failbacks(open_repository(recovered.repo)).newest() == ([], [])

    # Copied onto the primary, the difference is no longer a loss: the same failback goes through.
    httpx.post(f"{recovered.primary.url}/graphs/ops/nodes", json={"labels": ["Job"], "properties": {}}).raise_for_status()
    result = failback(repo=recovered.repo, keep_dr_instance=True)
    assert result["ok"] and not result["warnings"] and recovered.hosts_address() == [PRIMARY_ADDRESS]


def test_force_fails_back_past_the_shortfall_and_says_so(recovered):
    httpx.post(f"{recovered.dr['instance']['url']}/graphs/ops/nodes", json={"labels": ["Job"], "properties": {}}).raise_for_status()
    result = failback(repo=recovered.repo, force=True)
    assert recovered.hosts_address() == [PRIMARY_ADDRESS] and not alive(recovered.pid)
    assert result["forced"] is True
    assert any(w.startswith("forced past: graph ops: ") and w.endswith(" on the DR instance") for w in result["warnings"])
    assert any(w.startswith("forced past: the database: ") for w in result["warnings"])


def test_a_primary_that_is_down_is_refused_and_nothing_changes(recovered):
    recovered.primary.stop()
    with pytest.raises(QilbeeBackupError) as refused:
        failback(repo=recovered.repo, force=True)  # force never switches to a server that does not answer
    assert refused.value.result["failed_step"] == "check-primary"
    assert "\n" not in str(refused.value)
    assert recovered.hosts_address() == [DR_ADDRESS] and alive(recovered.pid)


def test_dns_changed_since_the_recovery_is_refused(recovered):
    recovered.hosts.write_text(f"127.0.0.1 localhost\n127.0.0.9 {RECORD}\n")  # someone pointed it elsewhere by hand
    with pytest.raises(FailbackError, match=r"points at 127\.0\.0\.9 now, neither the DR instance's 127\.0\.0\.2 nor the "
                                            r"primary's 127\.0\.0\.1"):
        failback(repo=recovered.repo)
    assert recovered.hosts_address() == ["127.0.0.9"] and alive(recovered.pid)


def test_no_recovery_recorded_is_one_line(emulator, tmp_path):
    repo = str(tmp_path / "repo")
    backup(source=emulator.url, repos=[repo])
    with pytest.raises(NotFound, match="no disaster recovery is recorded in .*: nothing to fail back"):
        failback(repo=repo)
    with pytest.raises(NotFound, match="no recovery 20261130T020000123456Z-0a1b2c in"):
        failback(repo=repo, recovery="20261130T020000123456Z-0a1b2c")


@pytest.mark.parametrize("approve", [False, True])
def test_approval_pauses_before_dns_is_switched_back(recovered, approve):
    from flows import deployed  # a pause needs a flow run

    worker = InThread(deployed.failback, repo=recovered.repo, approve=True)
    paused = wait_paused("failback", lambda p: p.get("repo") == recovered.repo, worker)
    assert recovered.hosts_address() == [DR_ADDRESS] and alive(recovered.pid)  # nothing changed while waiting
    shown = pause_description(paused.id)
    assert f"Switch `{RECORD}` back from {DR_ADDRESS} to {PRIMARY_ADDRESS}?" in shown
    assert "| ops |" in shown and "primary ≥ DR" in shown  # the figures being approved
    assert "the DR instance is **stopped**" in shown
    resume(paused.id, approve=approve, decided_by="alice@example.com", note="primary rebuilt and synced")
    outcome = worker.join()
    if approve:
        result = outcome["result"]
        assert recovered.hosts_address() == [PRIMARY_ADDRESS] and not alive(recovered.pid)
        assert result["approval"]["approved"] is True and result["approval"]["decided_by"] == "alice@example.com"
        assert [s["name"] for s in result["steps"]][-3:] == ["approval", "dns-switch-back", "stop-dr-instance"]
    else:
        error = outcome.get("error")
        assert isinstance(error, FailbackError), outcome
        assert str(error) == ("the failback was declined by alice@example.com (primary rebuilt and synced); nothing "
                              "changed: DNS and the DR instance are as they were")
        assert recovered.hosts_address() == [DR_ADDRESS] and alive(recovered.pid)
        assert failbacks(open_repository(recovered.repo)).newest() == ([], [])  # it can still be failed back


def test_failback_over_rfc2136_against_bind(emulator, tmp_path, bind_server, monkeypatch, dr_pids):
    import dns.message
    import dns.query

    from qilbee_backup.dns import open_dns_provider

    record = f"fb-{secrets.token_hex(4)}.{bind_server.zone.rstrip('.')}"
    monkeypatch.setenv("QILBEE_TEST_TSIG", bind_server.key_secret)
    options = {"server": bind_server.server, "port": bind_server.port, "zone": bind_server.zone,
               "key_name": bind_server.key_name, "key_secret": bind_server.key_secret}
    with open_dns_provider("rfc2136", **options) as provider:
        provider.switch(record, [PRIMARY_ADDRESS], ttl=30)  # the primary's record before the disaster

    def served() -> list[str]:
        answer = dns.query.tcp(dns.message.make_query(record, "A"), bind_server.server, port=bind_server.port, timeout=5)
        return [r.address for rrset in answer.answer for r in rrset]

    repo = str(tmp_path / "repo")
    backup(source=emulator.url, repos=[repo])
    dr = disaster_recovery(repo=repo, data_root=str(tmp_path / "dr"), dns={
        "provider": "rfc2136", "record": record, "address": DR_ADDRESS, "server": bind_server.server,
        "port": bind_server.port, "zone": bind_server.zone, "tsig_key_name": bind_server.key_name,
        "tsig_secret_env": "QILBEE_TEST_TSIG"})
    dr_pids.append(dr["instance"]["pid"])
    assert served() == [DR_ADDRESS]
    assert bind_server.key_secret not in json.dumps(load_recovery(open_repository(repo), "latest"))

    result = failback(repo=repo, recovery=dr["recovery_id"])
    assert served() == [PRIMARY_ADDRESS]
    assert result["dns"]["switched"] and not alive(dr["instance"]["pid"])
    assert bind_server.key_secret not in json.dumps(result)


def test_cli_failback_refuses_reports_and_refuses_a_second_time(recovered, run_cli):
    httpx.post(f"{recovered.dr['instance']['url']}/graphs/ops/nodes", json={"labels": ["Job"], "properties": {}}).raise_for_status()
    refused = run_cli("failback", "--repo", recovered.repo)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith("qilbee-backup: error: the primary may hold less than the DR "
                                                               "instance: graph ops: ")
    assert "Traceback" not in refused.stderr
    # The report before the error line: the figures side by side, the step that stopped it.
    assert refused.stdout.startswith(f"Failback of recovery {recovered.dr['recovery_id']}: FAILED at compare-figures")
    assert "Figures: primary against the DR instance" in refused.stdout and "✗" in refused.stdout
    assert recovered.hosts_address() == [DR_ADDRESS] and alive(recovered.pid)

    done = run_cli("failback", "--repo", recovered.repo, "--force", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["forced"] is True
    assert result["dns"]["switched"] and recovered.hosts_address() == [PRIMARY_ADDRESS] and not alive(recovered.pid)

    again = run_cli("failback", "--repo", recovered.repo)
    assert again.returncode == 1
    last = again.stderr.strip().splitlines()[-1]
    assert last.startswith(f"qilbee-backup: error: recovery {recovered.dr['recovery_id']} was failed back already, at ")
    assert last.endswith(f"(failbacks/{result['failback_id']}.json); nothing changed")
    assert "Traceback" not in again.stderr
    assert again.stdout == ""  # stopped at the first step: the error line says it all


@pytest.mark.parametrize("args, line", [
    (["--recovery", "yesterday"], "--recovery: 'yesterday' is not a recovery id or latest"),
    (["--primary", "http://admin:pw@127.0.0.1:7474"], "--primary: not a server URL without credentials or query"),
    (["--primary", "ftp://127.0.0.1:7474"], "--primary: not a server URL without credentials or query"),
    (["--approval-timeout", "-1"], "--approval-timeout: Input should be greater than 0"),
    (["--approve", "--no-prefect"], "--approve waits for a person in the Prefect UI"),
    (["--api-key-secret", "not a block!"], "--api-key-secret: "),
    (["--keep-dr-instance=yes"], "argument --keep-dr-instance: ignored explicit argument 'yes'"),
])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(tmp_path, run_cli, args, line):
    done = run_cli("failback", "--repo", str(tmp_path / "repo"), *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"qilbee-backup: error: {line}"), done.stderr
    assert done.stdout == "" and not (tmp_path / "repo").exists()


def _registered(name: str) -> str:
    """prefect.yaml's deployment on the session's Prefect server, as `serve` registers it; its id."""
    from prefect.flows import load_flow_from_entrypoint

    from flows.serve import load_deployments

    root = Path(__file__).resolve().parents[2]
    (spec,) = load_deployments(root / "prefect.yaml", [name])
    flow = load_flow_from_entrypoint(str(root / spec["entrypoint"]))
    return flow.to_deployment(name=spec["name"], parameters=spec["parameters"], description=spec["description"]).apply()


@pytest.mark.parametrize("name, parameters, field", [
    ("failback", {"recovery": "yesterday"}, "recovery"),
    ("failback", {"primary": "http://admin:pw@10.0.0.5:7474"}, "primary"),
    ("failback", {"approval_timeout_s": 0}, "approval_timeout_s"),
    ("failback", {"api_key_env": "NOT A NAME"}, "api_key_env"),
    ("failback", {"force": "maybe"}, "force"),
    ("restore", {"approval_timeout_s": -1}, "approval_timeout_s"),
    ("restore", {"approve": "perhaps"}, "approve"),
])
def test_the_ui_form_refuses_bad_input_before_a_run_exists(name, parameters, field):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    deployment_id = _registered(name)
    with get_client(sync_client=True) as client:
        with pytest.raises(PrefectHTTPStatusError) as refused:
            client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
        assert refused.value.response.status_code == 409
        assert f"Validation failed for field '{field}" in refused.value.response.json()["detail"]
        # The same form with a good value gets a run (deleted at once: no worker serves it).
        good = client.create_flow_run_from_deployment(deployment_id, parameters={})
        try:
            assert good.state.is_scheduled() and good.parameters["approve"] is True
        finally:
            client.delete_flow_run(good.id)
