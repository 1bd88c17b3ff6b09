"""Disaster recovery and restore drills end to end: real emulator, repositories, provisioners and DNS."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from flows.backup import backup
from flows.disaster_recovery import disaster_recovery
from flows.drill import drill
from qilbee_backup.emulator.store import open_readonly_counts
from qilbee_backup.manifest import SourceInfo
from qilbee_backup.repository import open_repository
from qilbee_backup.recovery import RecoveryError
from qilbee_backup.backup import backup_directory

STEPS = ["choose-backup", "provision", "restore", "start-instance", "integrity-check"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/status").read_text().count("zombie")


@pytest.fixture
def stop_instances():
    pids: list[int] = []
    yield pids
    for pid in pids:  # DR instances outlive their flow by design; the test stops its own by PID
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)


@pytest.fixture
def backed_up(emulator, tmp_path):
    repo = str(tmp_path / "repo")
    result = backup(source=emulator.url, repos=[repo], kind="daily")
    return repo, result


def test_dr_with_process_provider_and_hosts_file(backed_up, tmp_path, stop_instances):
    repo, made = backed_up
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.9.9.9 db.qilbee.test\n")

    result = disaster_recovery(repo=repo, data_root=str(tmp_path / "dr"),
                               dns={"provider": "hosts", "record": "db.qilbee.test", "hosts_file": str(hosts)})
    stop_instances.append(result["instance"]["pid"])

    assert result["backup_id"] == made["backup_id"]
    assert [s["name"] for s in result["steps"]] == ["check-dns"] + STEPS + ["dns-switch", "resume"]
    assert all(s["duration_s"] >= 0 for s in result["steps"])
    assert 0 < result["rto_s"] < result["rto_target_s"] == 3600
    assert 0 <= result["rpo_s"] < result["rpo_target_s"] == 86400
    assert result["dns"] == {"record": "db.qilbee.test", "old": ["10.9.9.9"], "new": ["127.0.0.1"]}
    assert [line.split() for line in hosts.read_text().splitlines()] == [["127.0.0.1", "localhost"], ["127.0.0.1", "db.qilbee.test"]]
    assert result["integrity"]["ok"] is True
    stats = httpx.get(f"{result['instance']['url']}/admin/stats").json()
    assert stats["storage"]["nodeCount"] == made["stats"]["nodeCount"]
    assert result["warnings"] == []


def test_integrity_mismatch_stops_before_dns(emulator, tmp_path, stop_instances):
    # A backup whose recorded figures disagree with its data: the check must catch it.
    snap = Path(httpx.post(f"{emulator.url}/admin/snapshot").json()["path"])
    real = open_readonly_counts(snap)
    wrong = dict(real, nodeCount=real["nodeCount"] + 1,
                 graphs={g: dict(v, nodeCount=v["nodeCount"] + (1 if g == "social" else 0)) for g, v in real["graphs"].items()})
    repo = str(tmp_path / "repo")
    backup_directory([open_repository(repo, must_exist=False)], snap, kind="daily", source=SourceInfo(url=emulator.url, mode="online"),
                     stats=wrong, spool=tmp_path / "spool")
    hosts = tmp_path / "hosts"
    hosts.write_text("10.9.9.9 db.qilbee.test\n")

    before = set(_pids_with(str(tmp_path / "dr")))
    with pytest.raises(RecoveryError, match="graph social: nodeCount") as err:
        disaster_recovery(repo=repo, data_root=str(tmp_path / "dr"),
                          dns={"provider": "hosts", "record": "db.qilbee.test", "hosts_file": str(hosts)})
    assert "DNS not touched" in str(err.value)
    assert hosts.read_text() == "10.9.9.9 db.qilbee.test\n"
    assert set(_pids_with(str(tmp_path / "dr"))) == before  # the failed instance was torn down


def test_dr_skips_a_damaged_newest_backup(emulator, tmp_path, stop_instances):
    repo = str(tmp_path / "repo")
    good = backup(source=emulator.url, repos=[repo])
    httpx.post(f"{emulator.url}/graphs/ops/nodes", json={"labels": ["Job"], "properties": {}}).raise_for_status()
    bad = backup(source=emulator.url, repos=[repo])
    r = open_repository(repo)
    newest_only = {f.sha256 for f in r.load(bad["backup_id"]).files} - {f.sha256 for f in r.load(good["backup_id"]).files}
    victim = sorted(newest_only)[0]
    r.dest.remove(r.blob_key(victim))

    result = disaster_recovery(repo=repo, data_root=str(tmp_path / "dr"))
    stop_instances.append(result["instance"]["pid"])
    assert result["backup_id"] == good["backup_id"]
    assert [s["backup_id"] for s in result["skipped_backups"]] == [bad["backup_id"]]
    assert result["dns"] is None


def test_dr_with_rfc2136_against_bind(backed_up, tmp_path, bind_server, monkeypatch, stop_instances):
    repo, _ = backed_up
    monkeypatch.setenv("QILBEE_TEST_TSIG", bind_server.key_secret)
    record = f"db.{bind_server.zone.rstrip('.')}"
    result = disaster_recovery(repo=repo, data_root=str(tmp_path / "dr"), dns={
        "provider": "rfc2136", "record": record, "server": bind_server.server, "port": bind_server.port,
        "zone": bind_server.zone, "tsig_key_name": bind_server.key_name, "tsig_secret_env": "QILBEE_TEST_TSIG"})
    stop_instances.append(result["instance"]["pid"])
    assert result["dns"]["new"] == ["127.0.0.1"]
    import dns.message
    import dns.query

    answer = dns.query.tcp(dns.message.make_query(record, "A"), bind_server.server, port=bind_server.port, timeout=5)
    assert [r.address for rrset in answer.answer for r in rrset] == ["127.0.0.1"]
    assert bind_server.key_secret not in str(result)


def test_dr_with_route53_on_moto(backed_up, tmp_path, moto_server, stop_instances):
    import boto3

    repo, _ = backed_up
    r53 = boto3.client("route53", endpoint_url=moto_server, region_name="us-east-1")
    zone = r53.create_hosted_zone(Name="qilbee-dr.test", CallerReference=str(tmp_path))["HostedZone"]["Id"]
    result = disaster_recovery(repo=repo, data_root=str(tmp_path / "dr"),
                               dns={"provider": "route53", "record": "db.qilbee-dr.test", "address": "127.0.0.1"})
    stop_instances.append(result["instance"]["pid"])
    sets = r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    a = [s for s in sets if s["Type"] == "A" and s["Name"].rstrip(".") == "db.qilbee-dr.test"]
    assert [v["Value"] for v in a[0]["ResourceRecords"]] == ["127.0.0.1"]
    assert result["dns"]["old"] is None


def test_dr_with_docker_provider(backed_up, tmp_path, emulator_image, docker_client):
    repo, made = backed_up
    result = disaster_recovery(repo=repo, data_root=str(tmp_path / "dr"), instance={
        "provider": "docker", "image": emulator_image, "network": "host",
        "container_command": "--data-dir /data --host 127.0.0.1 --port {port}"})
    try:
        c = docker_client.containers.get(result["instance"]["container"])
        assert c.status == "running" and c.attrs["HostConfig"]["Init"] is True
        assert httpx.get(f"{result['instance']['url']}/admin/stats").json()["storage"]["nodeCount"] == made["stats"]["nodeCount"]
        assert result["integrity"]["ok"]
    finally:
        docker_client.containers.get(result["instance"]["container"]).remove(force=True)


def test_missed_targets_are_warnings_and_events(backed_up, tmp_path, monkeypatch):
    import flows.instance_recovery as dr_flow

    sent = []
    monkeypatch.setattr(dr_flow, "emit_event", lambda **event: sent.append(event))  # the boundary to Prefect's event bus
    repo, made = backed_up
    result = drill(repo=repo, targets={"rto_s": 0.001, "rpo_s": 0.001})
    assert len(result["warnings"]) == 2
    assert result["warnings"][0].startswith("RTO") and "missed its target" in result["warnings"][0]
    assert result["warnings"][1].startswith("RPO")
    assert [e["event"] for e in sent] == ["qilbee.recovery.rto-missed", "qilbee.recovery.rpo-missed"]
    assert sent[0]["resource"] == {"prefect.resource.id": f"qilbee.backup.{made['backup_id']}"}
    assert sent[0]["payload"]["value_s"] == result["rto_s"]


def test_drill_tears_down_and_reports_rto(backed_up, tmp_path):
    repo, made = backed_up
    result = drill(repo=repo)
    assert result["ok"] and result["instance"]["torn_down"]
    assert [s["name"] for s in result["steps"]] == STEPS + ["teardown"]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{result['instance']['url']}/health", timeout=2)
    assert 0 < result["rto_s"] < 3600


def test_failing_drill_still_tears_down(emulator, tmp_path):
    snap = Path(httpx.post(f"{emulator.url}/admin/snapshot").json()["path"])
    real = open_readonly_counts(snap)
    repo = str(tmp_path / "repo")
    backup_directory([open_repository(repo, must_exist=False)], snap, kind="daily", source=SourceInfo(url=emulator.url, mode="online"),
                     stats=dict(real, relationshipCount=real["relationshipCount"] + 5), spool=tmp_path / "spool")
    before = set(_pids_with("qilbee-drill-"))
    with pytest.raises(RecoveryError, match="relationshipCount"):
        drill(repo=repo)
    assert set(_pids_with("qilbee-drill-")) == before  # the throwaway server is gone



@pytest.mark.parametrize("approve", [True, False])
def test_approval_pauses_before_the_dns_switch(backed_up, tmp_path, stop_instances, approve):
    import threading
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.flow_runs import resume_flow_run

    from flows import deployed  # a pause needs a flow run
    repo, _ = backed_up
    hosts = tmp_path / "hosts"
    hosts.write_text("10.9.9.9 db.qilbee.test\n")
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = deployed.disaster_recovery(repo=repo, data_root=str(tmp_path / "dr"), approve=True, dns={
                "provider": "hosts", "record": "db.qilbee.test", "hosts_file": str(hosts)})
        except Exception as e:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = e

    worker = threading.Thread(target=run)
    worker.start()
    paused = None
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 120
        while paused is None and time.monotonic() < deadline and worker.is_alive():
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
            paused = next((r for r in runs if (r.parameters.get("dns") or {}).get("hosts_file") == str(hosts)), None)
            time.sleep(0.5)
    assert paused is not None, f"the flow never paused: {outcome}"
    assert hosts.read_text() == "10.9.9.9 db.qilbee.test\n"  # nothing switched while waiting
    description = _pause_description(paused.id)
    assert "db.qilbee.test" in description and "10.9.9.9" in description and "127.0.0.1" in description
    assert "| graph |" in description  # the integrity figures being approved
    resume_flow_run(paused.id, run_input={"approve": approve, "decided_by": "alice@example.com", "note": "checked by the on-call"})
    worker.join(180)
    if approve:
        result = outcome["result"]
        stop_instances.append(result["instance"]["pid"])
        assert result["dns"]["new"] == ["127.0.0.1"]
        assert result["approval"]["approved"] is True and result["approval"]["decided_by"] == "alice@example.com"
        assert "approval" in [s["name"] for s in result["steps"]]  # the wait is a step: RTO adds up
    else:
        assert isinstance(outcome.get("error"), RecoveryError) and "declined by alice@example.com" in str(outcome["error"])
        assert hosts.read_text() == "10.9.9.9 db.qilbee.test\n"
        assert _pids_with(str(tmp_path / "dr")) == []  # a declined DR tears its instance down


def _pause_description(flow_run_id) -> str:
    """What the approval form shows: the description of the run's pending input."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        keys = client.filter_flow_run_input(flow_run_id=flow_run_id, key_prefix="paused", limit=10, exclude_keys=set())
        return " ".join(k.value for k in keys)


def _pids_with(fragment: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if fragment.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids
