"""Readiness (status and the metrics) on a real encrypted repository on disk, with backups, drill and
verify records at known times: each reason a source is at risk appears when, and only when, its
cause is there, for that source only; and the metrics carry the same figures."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from qilbee_backup.backup import backup_directory
from qilbee_backup.destinations.file import FileDestination
from qilbee_backup.drill_history import drill_record
from qilbee_backup.manifest import SourceInfo
from qilbee_backup.metrics import write_textfile
from qilbee_backup.readiness import AT_RISK, READY, repository_status
from qilbee_backup.readiness_report import headline, status_markdown, status_text
from qilbee_backup.repository import Repository, blob_key
from qilbee_backup.run_records import RunRecords
from qilbee_backup.verify_history import record_verify
from tests.files import write

UTC = timezone.utc
T0 = datetime(2026, 11, 20, 2, tzinfo=UTC)
PROD = SourceInfo(url="http://10.0.0.5:7474", mode="online", name="prod")
TEST = SourceInfo(url="http://10.0.0.6:7474", mode="online", name="test")
DAY, HOUR = 86400.0, 3600.0


@pytest.fixture
def repo(tmp_path) -> Repository:
    repo = Repository(FileDestination(tmp_path / "repo"))
    repo.init(passphrase="readiness test passphrase")
    return repo


def backup(repo: Repository, tmp_path: Path, source: SourceInfo, at: datetime, kind: str = "daily"):
    root = tmp_path / f"data-{source.name}-{at:%H%M}-{kind}"
    write(root / "000001.sst", os.urandom(20_000))
    write(root / "CURRENT", b"MANIFEST-000001\n")
    return backup_directory([repo], root, kind=kind, source=source, spool=tmp_path / "spool", now=at)


def drilled(repo: Repository, manifest, at: datetime, ok: bool = True, rto_s: float = 120.0, source: str | None = None):
    result = {"ok": ok, "backup_id": manifest.backup_id, "source": source or manifest.source.series_name,
              "kind": manifest.kind, "rto_s": rto_s if ok else None, "rto_target_s": HOUR, "rpo_target_s": DAY,
              "failed_step": None if ok else "integrity-check", "error": None if ok else "nodeCount 9 != 10",
              "steps": [{"name": "restore", "duration_s": rto_s / 2, "ok": ok}]}
    RunRecords(repo, "drill").add(drill_record(result, started_at=at, provider="process", source_name=None,
                                               backup_created_at=manifest.created_at), at=at)


def status(repo: Repository, now: datetime, **kw) -> dict:
    return repository_status(repo, rpo_target_s=kw.pop("rpo", DAY), rto_target_s=kw.pop("rto", HOUR), now=now, **kw)


def source(result: dict, name: str) -> dict:
    return next(s for s in result["sources"] if s["source"] == name)


def test_a_fresh_backup_proven_by_a_passing_drill_is_ready(repo, tmp_path):
    m = backup(repo, tmp_path, PROD, T0)
    drilled(repo, m, T0 + timedelta(hours=1), rto_s=120)
    result = status(repo, T0 + timedelta(hours=2))
    prod = source(result, "prod")
    assert (result["verdict"], prod["verdict"], prod["reasons"]) == (READY, READY, [])
    assert prod["recovery_point"] == {"backup_id": m.backup_id, "kind": "daily", "created_at": T0.isoformat(),
                                      "age_s": 2 * HOUR, "missing_blobs": 0}
    assert prod["verified_point"]["backup_id"] == m.backup_id and prod["verified_point"]["rto_s"] == 120
    assert result["stored_bytes"] == sum(p.stat().st_size for p in (tmp_path / "repo" / "blobs").glob("*/*"))
    assert result["backups"] == 1 and result["drills_recorded"] == 1
    assert headline({"repositories": [result]}) == "READY: 1 source recoverable within the targets"


def test_each_reason_appears_with_its_cause_and_for_its_source_only(repo, tmp_path):
    old = backup(repo, tmp_path, PROD, T0)
    new = backup(repo, tmp_path, PROD, T0 + timedelta(hours=20), kind="weekly")
    t = backup(repo, tmp_path, TEST, T0 + timedelta(hours=20))
    drilled(repo, old, T0 + timedelta(hours=1), rto_s=100)
    drilled(repo, new, T0 + timedelta(hours=21), ok=False)  # prod's last drill failed
    drilled(repo, t, T0 + timedelta(hours=21), rto_s=4000)  # test's passed, over the 1 h target
    result = status(repo, T0 + timedelta(hours=30))
    prod, test = source(result, "prod"), source(result, "test")
    assert result["verdict"] == AT_RISK and prod["verdict"] == test["verdict"] == AT_RISK
    assert prod["reasons"] == ["the last restore drill (2026-11-20 23:00:00 UTC) FAILED at integrity-check: nodeCount 9 != 10"]
    # prod's newest backup (any kind) is 10 h old: within the RPO; its proven point stays the older drill's
    assert prod["recovery_point"]["backup_id"] == new.backup_id and prod["recovery_point"]["age_s"] == 10 * HOUR
    assert prod["verified_point"]["backup_id"] == old.backup_id
    assert prod["last_drill"]["ok"] is False
    assert [s["kind"] for s in prod["series"]] == ["daily", "weekly"]
    assert test["reasons"] == ["the last passing drill's RTO 1 h 7 min is over the target 1 h"]

    later = status(repo, T0 + timedelta(hours=45))  # 25 h after the newest backups
    assert any(r.startswith("no backup within the RPO target: the newest") and "25 h old" in r
               for r in source(later, "test")["reasons"])


def test_no_drill_and_no_backup_are_reasons(repo, tmp_path):
    backup(repo, tmp_path, PROD, T0)
    result = status(repo, T0 + timedelta(hours=1))
    assert source(result, "prod")["reasons"] == ["no restore drill has passed for this source (none recorded)"]
    assert source(result, "prod")["verified_point"] is None
    missing = status(repo, T0 + timedelta(hours=1), source_name="staging")
    assert [s["source"] for s in missing["sources"]] == ["staging"]
    assert "no backup of this source in the repository" in missing["sources"][0]["reasons"]


def test_an_empty_repository_is_at_risk(repo):
    result = status(repo, T0)
    assert (result["verdict"], result["reasons"], result["sources"]) == (AT_RISK, ["the repository holds no backup"], [])


def test_damage_in_the_store_makes_every_source_at_risk(repo, tmp_path):
    m = backup(repo, tmp_path, PROD, T0)
    t = backup(repo, tmp_path, TEST, T0)
    for manifest in (m, t):
        drilled(repo, manifest, T0 + timedelta(hours=1))
    sha = next(e.sha256 for e in m.files if e.path == "000001.sst")
    (tmp_path / "repo" / blob_key(repo.blob_id(sha))).unlink()  # prod's newest backup lost a blob
    manifest_file = next((tmp_path / "repo" / "backups").glob(f"{t.backup_id}.*.json"))
    manifest_file.write_bytes(b"garbage")  # and test's manifest is damaged
    result = status(repo, T0 + timedelta(hours=2))
    prod = source(result, "prod")
    assert f"the newest backup {m.backup_id} is missing 1 blob(s) from the store (run verify)" in prod["reasons"]
    assert prod["series"][0]["missing_blobs"] == 1
    assert any(r.startswith("1 damaged manifest(s) in the repository") for r in prod["reasons"])
    assert [d["backup_id"] for d in result["damaged_manifests"]] == [t.backup_id]
    assert "test" not in [s["source"] for s in result["sources"]]  # its only manifest cannot be read


def test_a_failed_verify_is_a_reason_for_the_sources_it_found_damaged(repo, tmp_path):
    m = backup(repo, tmp_path, PROD, T0)
    t = backup(repo, tmp_path, TEST, T0)
    for manifest in (m, t):
        drilled(repo, manifest, T0 + timedelta(hours=1))
    record_verify(repo, {"ok": False, "read_data": True, "backups": [
        {"backup_id": m.backup_id, "problems": ["000001.sst: checksum mismatch"], "unchecked": []},
        {"backup_id": t.backup_id, "problems": [], "unchecked": []}]})
    result = status(repo, T0 + timedelta(hours=2))
    assert source(result, "test")["verdict"] == READY
    (reason,) = source(result, "prod")["reasons"]
    assert "found 1 backup(s) of this source damaged or unreadable: " + m.backup_id in reason
    assert result["last_verify"]["ok"] is False


def test_reports_and_metrics_carry_the_same_figures(repo, tmp_path):
    m = backup(repo, tmp_path, PROD, T0)
    drilled(repo, m, T0 + timedelta(hours=1), rto_s=120)
    drilled(repo, m, T0 + timedelta(hours=2), ok=False)
    record_verify(repo, {"ok": True, "read_data": False, "backups": [{"backup_id": m.backup_id, "problems": [],
                                                                      "unchecked": []}]})
    result = status(repo, T0 + timedelta(hours=3))
    shown = status_text({"repositories": [result]})
    assert shown.startswith("Status: AT RISK: prod (the last restore drill (2026-11-20 04:00:00 UTC) FAILED")
    assert f"{m.backup_id} at 2026-11-20 03:00:00 UTC: RTO 2 min" in shown  # proven restorable
    assert "1 backups intact (sizes checked)" in shown
    assert "| prod | at risk |" in status_markdown({"repositories": [result]})

    path = tmp_path / "metrics" / "qilbee_backup.prom"
    path.parent.mkdir()
    write_textfile(str(path), [result])
    assert [p.name for p in path.parent.iterdir()] == ["qilbee_backup.prom"]  # nothing left beside it
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for family in text_string_to_metric_families(path.read_text()) for s in family.samples}
    url = result["url"]
    labels = (("repository", url), ("source", "prod"))
    assert got[("qilbee_backup_recovery_point_timestamp_seconds", labels)] == T0.timestamp()
    assert got[("qilbee_backup_recovery_point_age_seconds", labels)] == 3 * HOUR
    assert got[("qilbee_backup_last_success_timestamp_seconds", (("kind", "daily"), *labels))] == T0.timestamp()
    assert got[("qilbee_backup_last_backup_size_bytes", (("kind", "daily"), *labels))] == m.bytes_total
    assert got[("qilbee_backup_ready", labels)] == 0
    assert got[("qilbee_backup_restore_drill_success", labels)] == 0
    assert got[("qilbee_backup_restore_drill_rto_seconds", labels)] == 120
    assert got[("qilbee_backup_restore_drill_last_success_timestamp_seconds", labels)] == (T0 + timedelta(hours=1)).timestamp()
    assert got[("qilbee_backup_verified_recovery_point_timestamp_seconds", labels)] == T0.timestamp()
    assert got[("qilbee_backup_restore_drill_step_duration_seconds", (*labels, ("step", "restore")))] == 60
    assert got[("qilbee_backup_repository_stored_bytes", (("repository", url),))] == result["stored_bytes"]
    assert got[("qilbee_backup_verify_success", (("repository", url),))] == 1
    assert got[("qilbee_backup_rpo_target_seconds", (("repository", url),))] == DAY
