"""Run records (drills/, verifies/) in a real repository on disk: written once under time-sorted ids,
read back newest last, sealed in an encrypted repository (nothing readable in the bucket, a record
edited or moved to another's name is caught and named, the rest still read), plain JSON in an
unencrypted one, and never plaintext into an encrypted repository opened without its key."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from qilbee_backup.crypto import KeyRequired
from qilbee_backup.destinations.file import FileDestination
from qilbee_backup.drill_history import drill_history, drill_record, record_drill
from qilbee_backup.repository import Repository
from qilbee_backup.run_records import RunRecords
from qilbee_backup.verify_history import last_verify, record_verify

T0 = datetime(2026, 11, 20, 5, tzinfo=timezone.utc)
PASSPHRASE = "records test passphrase"


@pytest.fixture
def encrypted(tmp_path) -> Repository:
    repo = Repository(FileDestination(tmp_path / "repo"))
    repo.init(passphrase=PASSPHRASE)
    return repo


def drill_result(backup_id: str, ok: bool = True, rto_s: float | None = 12.5) -> dict:
    return {"ok": ok, "backup_id": backup_id, "source": "prod", "kind": "daily", "rto_s": rto_s, "rpo_s": 3600.0,
            "rto_target_s": 3600.0, "rpo_target_s": 86400.0, "failed_step": None if ok else "restore",
            "error": None if ok else "blob missing",
            "steps": [{"name": "choose-backup", "duration_s": 0.1, "ok": True}, {"name": "restore", "duration_s": 9.0, "ok": ok}],
            "skipped_backups": [{"backup_id": "20261119T020000Z-aaaaaa", "problems": "damaged"}],
            "integrity": {"ok": True} if ok else None}


def test_records_come_back_oldest_first_with_their_ids_and_times(encrypted):
    records = RunRecords(encrypted, "drill")
    ids = [records.add({"n": i}, at=T0 + timedelta(hours=i)) for i in (2, 0, 1)]
    assert [i[:22] for i in ids] == ["20261120T070000000000Z", "20261120T050000000000Z", "20261120T060000000000Z"]
    got, damaged = records.newest()
    assert [r["n"] for r in got] == [0, 1, 2] and damaged == []
    assert got[0]["recorded_at"] == T0.isoformat() and got[0]["record_id"] == ids[1]
    assert [r["n"] for r in records.newest(2)[0]] == [1, 2]  # the newest two
    assert records.newest(0) == ([], [])


def test_a_drill_record_holds_what_the_drill_measured(encrypted):
    record = drill_record(drill_result("20261120T020000Z-0a1b2c"), started_at=T0, provider="process", source_name=None,
                          backup_created_at=T0 - timedelta(hours=3))
    record_id = record_drill(encrypted, record)
    (back,), _ = drill_history(encrypted)
    assert back["record_id"] == record_id
    assert (back["ok"], back["backup_id"], back["source"], back["rto_s"], back["rto_target_s"]) == (
        True, "20261120T020000Z-0a1b2c", "prod", 12.5, 3600.0)
    assert back["started_at"] == T0.isoformat() and back["backup_created_at"] == (T0 - timedelta(hours=3)).isoformat()
    assert [(s["name"], s["duration_s"]) for s in back["steps"]] == [("choose-backup", 0.1), ("restore", 9.0)]
    assert back["skipped_backups"] == ["20261119T020000Z-aaaaaa"]


def test_a_failed_drill_that_chose_no_backup_is_kept_under_the_source_it_was_asked_for(encrypted):
    result = {"ok": False, "backup_id": None, "rto_s": None, "failed_step": "choose-backup", "error": "no backups",
              "steps": [{"name": "choose-backup", "duration_s": 0.0, "ok": False}], "rto_target_s": 3600.0}
    record_drill(encrypted, drill_record(result, started_at=T0, provider="docker", source_name="prod",
                                         backup_created_at=None))
    (back,), _ = drill_history(encrypted, source="prod")
    assert (back["ok"], back["source"], back["failed_step"], back["error"]) == (False, "prod", "choose-backup", "no backups")


def test_encrypted_records_reveal_nothing_and_an_edit_or_a_swap_is_named(encrypted, tmp_path):
    records = RunRecords(encrypted, "drill")
    first = records.add({"backup_id": "20261120T020000Z-0a1b2c", "secret": "graph-name-social"}, at=T0)
    second = records.add({"n": 2}, at=T0 + timedelta(hours=1))
    third = records.add({"n": 3}, at=T0 + timedelta(hours=2))
    folder = tmp_path / "repo" / "drills"
    raw = (folder / f"{first}.json").read_bytes()
    assert b"graph-name-social" not in raw and b"0a1b2c" not in raw
    with pytest.raises(ValueError):
        json.loads(raw)

    (folder / f"{second}.json").write_bytes((folder / f"{first}.json").read_bytes())  # another's record under its name
    edited = bytearray((folder / f"{third}.json").read_bytes())
    edited[-5] ^= 1
    (folder / f"{third}.json").write_bytes(bytes(edited))
    good, damaged = records.newest()
    assert [r["record_id"] for r in good] == [first]
    assert sorted(d.record_id for d in damaged) == sorted([second, third])
    assert all(f"drills/{d.record_id}.json" in d.reason for d in damaged)


def test_an_unencrypted_repository_keeps_plain_json(tmp_path):
    repo = Repository(FileDestination(tmp_path / "plain"))
    repo.init()
    record_id = RunRecords(repo, "drill").add({"n": 1}, at=T0)
    assert json.loads((tmp_path / "plain" / "drills" / f"{record_id}.json").read_bytes())["n"] == 1


def test_no_plaintext_record_goes_into_an_encrypted_repository_opened_without_its_key(encrypted, tmp_path):
    keyless = Repository(FileDestination(tmp_path / "repo"))
    with pytest.raises(KeyRequired):
        RunRecords(keyless, "drill").add({"n": 1})
    assert not (tmp_path / "repo" / "drills").exists()


def test_stray_objects_under_the_prefix_are_ignored(encrypted, tmp_path):
    RunRecords(encrypted, "drill").add({"n": 1}, at=T0)
    (tmp_path / "repo" / "drills" / "notes.txt").write_text("hello")
    got, damaged = RunRecords(encrypted, "drill").newest()
    assert [r["n"] for r in got] == [1] and damaged == []


def test_the_last_verify_is_the_newest_record(encrypted):
    assert last_verify(encrypted) is None
    record_verify(encrypted, {"ok": True, "read_data": False, "backups": [{"backup_id": "a", "problems": [], "unchecked": []}]})
    record_verify(encrypted, {"ok": False, "read_data": True, "backups": [
        {"backup_id": "a", "problems": [], "unchecked": []},
        {"backup_id": "b", "problems": ["x: missing"], "unchecked": []},
        {"backup_id": "c", "problems": [], "unchecked": ["y: 503"]}]})
    last = last_verify(encrypted)
    assert (last["ok"], last["read_data"], last["backups_checked"], last["damaged"], last["unchecked"]) == (
        False, True, 3, ["b"], ["c"])
    assert last["scope"] == "every backup"
    record_verify(encrypted, {"ok": True, "read_data": False, "backups": [{"backup_id": "b", "problems": [], "unchecked": []}]},
                  "b")
    assert last_verify(encrypted)["scope"] == "b"
