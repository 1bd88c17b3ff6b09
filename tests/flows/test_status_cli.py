"""Issue 13 part 2: `qilbee-backup status` through the real CLI, on repositories made by real
backups and drills of the emulator (a directory and moto's S3): ready, or at risk with the reason;
exit 0 / 1 with the report first; --json; --textfile for node_exporter; one line and exit 2 for bad
input; never a flow run. As a Prefect flow it publishes its report and fails while at risk."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from qilbee_backup.backup import backup_directory
from qilbee_backup.emulator.store import open_readonly_counts
from qilbee_backup.manifest import SourceInfo
from qilbee_backup.repository import open_repository


def ok(done) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def at_risk(done) -> tuple[dict, str]:
    """The report on stdout, then one error line, exit 1, no traceback."""
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("qilbee-backup: error: AT RISK: "), done.stderr
    return json.loads(done.stdout), lines[-1]


def usage(done) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("qilbee-backup: error: ") and not done.stdout.strip(), done.stderr
    return lines[0]


def flow_runs() -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.count_flow_runs()


@pytest.fixture
def drilled(run_cli, emulator, tmp_path):
    """A backup of prod and a passing drill of it: (repository, backup result, drill result)."""
    repo = str(tmp_path / "repo")
    made = ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", repo, "--kind", "daily",
                      "--source-name", "prod", "--json"))
    drilled = ok(run_cli("drill", "--no-prefect", "--repo", repo, "--json"))
    return repo, made, drilled


def test_ready_after_a_backup_and_a_passing_drill(drilled, run_cli, tmp_path):
    repo, made, drill = drilled
    runs = flow_runs()
    result = ok(run_cli("status", "--repo", repo, "--json"))
    assert flow_runs() == runs  # reading only: never a flow run, even with a Prefect API configured
    (repository,) = result["repositories"]
    (prod,) = repository["sources"]
    assert result["ok"] and prod["verdict"] == "ready" and prod["reasons"] == []
    assert prod["recovery_point"]["backup_id"] == made["backup_id"] and 0 < prod["recovery_point"]["age_s"] < 600
    assert prod["verified_point"]["backup_id"] == made["backup_id"]
    assert prod["verified_point"]["rto_s"] == drill["rto_s"] and prod["verified_point"]["record_id"] == drill["drill_id"]
    stats = ok(run_cli("stats", "--repo", repo, "--json"))
    blobs_on_disk = sum(p.stat().st_size for p in (Path(repo) / "blobs").glob("*/*"))
    assert repository["stored_bytes"] == blobs_on_disk and repository["dedup_ratio"] == stats["dedup_ratio"]
    assert [(s["kind"], s["newest_backup_id"]) for s in prod["series"]] == [("daily", made["backup_id"])]

    text = run_cli("status", "--repo", repo)
    assert text.returncode == 0 and text.stdout.startswith("Status: READY: 1 source recoverable within the targets")
    assert f"{made['backup_id']} (daily)" in text.stdout


def test_a_backup_never_drilled_is_at_risk(run_cli, emulator, tmp_path):
    repo = str(tmp_path / "repo")
    ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", repo, "--source-name", "prod", "--json"))
    textfile = tmp_path / "qilbee_backup.prom"
    result, line = at_risk(run_cli("status", "--repo", repo, "--textfile", str(textfile), "--json"))
    assert result["ok"] is False
    assert result["repositories"][0]["sources"][0]["reasons"] == ["no restore drill has passed for this source (none recorded)"]
    assert line == "qilbee-backup: error: AT RISK: prod (no restore drill has passed for this source (none recorded))"
    assert f'qilbee_backup_ready{{repository="{repo}",source="prod"}} 0.0' in textfile.read_text()  # written all the same


def test_targets_missed_are_reasons(drilled, run_cli):
    repo, made, _ = drilled
    result, line = at_risk(run_cli("status", "--repo", repo, "--rpo-target", "0.001", "--rto", "0.001", "--json"))
    reasons = result["repositories"][0]["sources"][0]["reasons"]
    assert reasons[0].startswith(f"no backup within the RPO target: the newest ({made['backup_id']}) is ")
    assert reasons[1].startswith("the last passing drill's RTO ") and reasons[1].endswith("is over the target 1 ms")
    assert "prod (no backup within the RPO target" in line
    text = run_cli("status", "--repo", repo, "--rpo-target", "0.001")
    assert text.returncode == 1 and text.stdout.startswith("Status: AT RISK: prod (no backup within the RPO target")


def test_a_failed_drill_puts_its_source_at_risk_and_not_the_others(drilled, run_cli, emulator, tmp_path):
    repo, made, _ = drilled
    snap = Path(httpx.post(f"{emulator.url}/admin/snapshot").json()["path"])
    real = open_readonly_counts(snap)
    backup_directory([open_repository(repo)], snap, kind="daily", spool=tmp_path / "spool",
                     source=SourceInfo(url=emulator.url, mode="online", name="broken"),
                     stats=dict(real, relationshipCount=real["relationshipCount"] + 5))
    failed = run_cli("drill", "--no-prefect", "--repo", repo, "--source-name", "broken", "--json")
    assert failed.returncode == 1 and "relationshipCount" in failed.stderr
    result, line = at_risk(run_cli("status", "--repo", repo, "--json"))
    sources = {s["source"]: s for s in result["repositories"][0]["sources"]}
    assert sources["prod"]["verdict"] == "ready"
    assert sources["broken"]["verdict"] == "at risk"
    assert sources["broken"]["last_drill"]["failed_step"] == "integrity-check"
    assert any(r.startswith("the last restore drill (") and "FAILED at integrity-check: " in r and "relationshipCount" in r
               for r in sources["broken"]["reasons"])
    only_prod = ok(run_cli("status", "--repo", repo, "--source-name", "prod", "--json"))
    assert [s["source"] for s in only_prod["repositories"][0]["sources"]] == ["prod"]


def test_textfile_for_node_exporter(drilled, run_cli, tmp_path):
    repo, made, drill = drilled
    folder = tmp_path / "textfile"
    folder.mkdir()
    path = folder / "qilbee_backup.prom"
    path.write_text("# an older file, replaced whole\n")
    result = ok(run_cli("status", "--repo", repo, "--textfile", str(path), "--json"))
    assert [p.name for p in folder.iterdir()] == ["qilbee_backup.prom"]  # written beside, renamed over: nothing left
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(path.read_text()) for s in family.samples}
    source = (("repository", repo), ("source", "prod"))
    point = result["repositories"][0]["sources"][0]["recovery_point"]
    assert samples[("qilbee_backup_ready", source)] == 1
    assert samples[("qilbee_backup_recovery_point_age_seconds", source)] == point["age_s"]
    assert samples[("qilbee_backup_restore_drill_rto_seconds", source)] == drill["rto_s"]
    assert samples[("qilbee_backup_restore_drill_success", source)] == 1
    assert samples[("qilbee_backup_last_backup_size_bytes", (("kind", "daily"), *source))] == made["bytes_total"]
    assert samples[("qilbee_backup_repository_up", (("repository", repo),))] == 1


def test_an_unreadable_repository_is_reported_beside_the_others(drilled, run_cli, tmp_path):
    repo, _, _ = drilled
    empty = tmp_path / "not-a-repo"
    empty.mkdir()
    result, line = at_risk(run_cli("status", "--repo", repo, "--repo", str(empty), "--json"))
    good, bad = result["repositories"]
    assert good["verdict"] == "ready" and bad["readable"] is False
    assert "is not a qilbee-backup repository" in bad["error"]
    assert line.startswith(f"qilbee-backup: error: AT RISK: {empty} (the repository cannot be read: ")


def test_a_wrong_passphrase_is_a_failure_and_none_is_bad_input(drilled, run_cli, cli_env):
    repo, _, _ = drilled
    result, _ = at_risk(run_cli("status", "--repo", repo, "--json", env=dict(cli_env, QILBEE_PASSWORD="not it")))
    assert "wrong passphrase" in result["repositories"][0]["error"]
    no_key = {k: v for k, v in cli_env.items() if k != "QILBEE_PASSWORD"}
    line = usage(run_cli("status", "--repo", repo, env=no_key))
    assert "is encrypted: give its passphrase" in line


@pytest.mark.parametrize("args, message", [
    ((), "the following arguments are required: --repo"),
    (("--repo", "/tmp/x", "--rpo-target", "0"), "--rpo-target: Input should be greater than 0"),
    (("--repo", "/tmp/x", "--rto", "-5"), "--rto-target: Input should be greater than 0"),
    (("--repo", "/tmp/x", "--textfile", "/tmp/metrics.txt"), "--textfile: '/tmp/metrics.txt' is not a file name ending in .prom"),
    (("--repo", "/tmp/x", "--textfile", "/no/such/dir/q.prom"), "--textfile: /no/such/dir is not a directory"),
    (("--repo", "s3:/bucket"), "--repo: bad repository URL"),
    (("--repo", "/tmp/x", "--source-name", "Prod!"), "--source-name: 'Prod!' is not a source name"),
])
def test_bad_input_is_one_line_and_exit_2(run_cli, args, message):
    assert message in usage(run_cli("status", *args))


def test_drills_and_status_on_s3(s3_repo_url, run_cli, emulator, s3_client):
    ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", s3_repo_url, "--source-name", "prod", "--json"))
    drill = ok(run_cli("drill", "--no-prefect", "--repo", s3_repo_url, "--json"))
    bucket, prefix = s3_repo_url.removeprefix("s3://").split("/", 1)
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/drills/")["Contents"]]
    assert keys == [f"{prefix}/drills/{drill['drill_id']}.json"]
    result = ok(run_cli("status", "--repo", s3_repo_url, "--json"))
    (prod,) = result["repositories"][0]["sources"]
    assert prod["verdict"] == "ready" and prod["verified_point"]["record_id"] == drill["drill_id"]


def test_as_a_flow_it_publishes_its_report_and_fails_while_at_risk(run_cli, emulator, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    import flows.deployed
    from qilbee_backup.errors import FailedWithReport

    repo = str(tmp_path / "repo")
    ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", repo, "--source-name", "prod", "--json"))
    with pytest.raises(FailedWithReport, match="AT RISK: prod"):
        flows.deployed.status(repos=[repo])  # no drill yet
    ok(run_cli("drill", "--no-prefect", "--repo", repo, "--json"))
    state = flows.deployed.status(repos=[repo], return_state=True)
    assert state.is_completed() and state.result()["ok"]
    with get_client(sync_client=True) as client:
        (report,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["backup-status"])),
                                          sort="CREATED_DESC", limit=1)
        (rows,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["backup-status-sources"])),
                                        sort="CREATED_DESC", limit=1)
    assert report.data.startswith("# Backup status\n\n**READY: 1 source recoverable within the targets**")
    table = json.loads(rows.data) if isinstance(rows.data, str) else rows.data
    assert [(r["source"], r["verdict"]) for r in table] == [("prod", "ready")]
