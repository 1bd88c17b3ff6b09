"""Issue 13 part 1: every restore drill — passed or failed — is kept in the repository beside the
backups, sealed; the drill's result and report show the RTO trend over the last drills; failing to
record is a warning, never a failed drill. Real emulator, real repositories, real drills."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from flows.backup import backup
from flows.drill import drill
from qilbee_backup.backup import backup_directory
from qilbee_backup.drill_history import drill_history
from qilbee_backup.emulator.store import open_readonly_counts
from qilbee_backup.manifest import SourceInfo
from qilbee_backup.recovery import RecoveryError
from qilbee_backup.repository import open_repository
from qilbee_backup.run_records import RunRecords

STEPS = ["choose-backup", "provision", "restore", "start-instance", "integrity-check", "teardown"]


@pytest.fixture
def backed_up(emulator, tmp_path):
    repo = str(tmp_path / "repo")
    made = backup(source=emulator.url, repos=[repo], kind="daily", source_name="prod")
    return repo, made


def history(repo: str) -> list[dict]:
    records, damaged = drill_history(open_repository(repo))
    assert damaged == []
    return records


def test_a_passed_drill_is_recorded_sealed_beside_the_backups(backed_up, tmp_path):
    repo, made = backed_up
    result = drill(repo=repo, targets={"rto_s": 1800, "rpo_s": 7200})
    (record,) = history(repo)
    assert record["record_id"] == result["drill_id"]
    assert (record["ok"], record["backup_id"], record["source"], record["kind"]) == (True, made["backup_id"], "prod", "daily")
    assert record["rto_s"] == result["rto_s"] > 0 and record["rpo_s"] == result["rpo_s"]
    assert (record["rto_target_s"], record["rpo_target_s"]) == (1800, 7200)
    assert [s["name"] for s in record["steps"]] == STEPS
    assert [s["duration_s"] for s in record["steps"]] == [s["duration_s"] for s in result["steps"]]
    assert record["backup_created_at"] and record["provider"] == "process" and record["integrity_ok"] is True
    raw = (Path(repo) / "drills" / f"{result['drill_id']}.json").read_bytes()
    assert made["backup_id"].encode() not in raw  # sealed: the bucket does not say what was drilled
    assert result["trend"]["drills"] == 1 and result["trend"]["rto_latest_s"] == result["rto_s"]


def test_a_failed_drill_is_recorded_and_still_fails(emulator, tmp_path):
    snap = Path(httpx.post(f"{emulator.url}/admin/snapshot").json()["path"])
    real = open_readonly_counts(snap)
    repo = str(tmp_path / "repo")
    backup_directory([open_repository(repo, must_exist=False)], snap, kind="daily",
                     source=SourceInfo(url=emulator.url, mode="online", name="broken"),
                     stats=dict(real, nodeCount=real["nodeCount"] + 1), spool=tmp_path / "spool")
    with pytest.raises(RecoveryError, match="nodeCount") as caught:
        drill(repo=repo)
    (record,) = history(repo)
    assert (record["ok"], record["failed_step"], record["source"], record["rto_s"]) == (False, "integrity-check", "broken", None)
    assert "nodeCount" in record["error"]
    assert caught.value.result["drill_id"] == record["record_id"]  # the report printed with the error names it


def test_the_trend_warns_when_the_rto_keeps_rising(backed_up):
    repo, made = backed_up
    # Two earlier drills of this source, far quicker than any real one: this drill makes three rises in a row.
    records = RunRecords(open_repository(repo), "drill")
    then = datetime.now(timezone.utc) - timedelta(days=14)
    for i, rto in enumerate((0.001, 0.002)):
        records.add({"format": "qilbee-backup-drill", "ok": True, "source": "prod", "rto_s": rto,
                     "started_at": (then + timedelta(days=7 * i)).isoformat(), "backup_id": made["backup_id"]},
                    at=then + timedelta(days=7 * i))
    records.add({"format": "qilbee-backup-drill", "ok": True, "source": "other", "rto_s": 99.0}, at=then)  # not prod's
    result = drill(repo=repo)
    trend = result["trend"]
    assert (trend["drills"], trend["passed"], trend["rto_min_s"], trend["rto_max_s"]) == (3, 3, 0.001, result["rto_s"])
    assert trend["rto_median_s"] == 0.002 and trend["rising"]
    assert any(w.startswith("RTO rising over the last 3 drills") for w in result["warnings"])


def test_failing_to_record_is_a_warning_and_the_drill_passes(backed_up, caplog):
    repo, made = backed_up
    (Path(repo) / "drills").write_text("a file where the records' folder goes")  # every record write fails
    with caplog.at_level(logging.WARNING, logger="qilbee_backup.run"):
        result = drill(repo=repo)
    assert result["ok"] and result["backup_id"] == made["backup_id"] and "drill_id" not in result
    assert any("this drill is not recorded in" in r.getMessage() for r in caplog.records)


def test_failing_to_record_leaves_the_flow_run_completed(backed_up):
    import flows.deployed

    repo, made = backed_up
    (Path(repo) / "drills").write_text("a file where the records' folder goes")
    state = flows.deployed.drill(repo=repo, return_state=True)  # its record-drill task run fails, and is caught
    assert state.is_completed(), state
    assert state.result()["backup_id"] == made["backup_id"]


def test_the_drill_report_shows_the_trend_in_the_prefect_ui(backed_up):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    import flows.deployed
    from qilbee_backup.report import artifact_key

    repo, _ = backed_up
    flows.deployed.drill(repo=repo)
    result = flows.deployed.drill(repo=repo)
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[artifact_key("restore-drill-report", "prod")])), limit=1,
            sort="CREATED_DESC")
    markdown = artifact.data
    assert markdown.startswith("# Restore drill of backup") and "Restore drills (the last 2)" in markdown
    assert "RTO over the last 2 drills (2 passed)" in markdown
    assert "](data:image/svg+xml;base64," in markdown
    assert result["trend"]["drills"] == 2 and json.dumps(result["trend"])
