"""The reports an operator reads (qilbee_backup.report): the CLI's plain text and the Prefect artifacts.

RUNS are the results the flows returned in a real run on 2026-11-30 (`qilbee-backup emulator --seed-nodes 200`,
then `backup` into two repositories with --keep-last 1, `list`, `verify`, `prune --dry-run`, `restore`,
`drill`, `dr --dns hosts`, `archive`, `list --archives`, all with --json; the `*_damaged` ones after one blob
was overwritten and a garbage manifest added; the `*_failed_*` ones are the partial results the drill and
DR flows published when they stopped). Variants of them cover what a healthy run never shows: a figure
that differs, a missed target, a declined approval, locked and removed backups.
"""

from __future__ import annotations

import copy
import json
import re

import pytest

from qilbee_backup import report
from qilbee_backup.report import (artifact_key, duration, list_rows, recovery_markdown, render_text, report_markdown,
                                  schedule_text, size, table_rows, utc)

RUNS = json.loads(r"""
{
 "backup": {
  "backup_id": "20261130T062840Z-d62507",
  "bytes_total": 87296,
  "bytes_uploaded": 31950,
  "checkpoints": {"deleted": ["20261130-062840"], "kept": [], "warnings": []},
  "destinations": [{"blobs_sent": 0, "bytes_uploaded": 0, "url": "./repo", "verified": true}, {"blobs_sent": 11, "bytes_uploaded": 31950, "url": "./repo2", "verified": true}],
  "duration_s": 0.271,
  "files": 11,
  "kind": "daily",
  "mode": "online",
  "pruned": [{"removed": ["20261130T062836Z-1eeaee"], "url": "./repo"}, {"removed": [], "url": "./repo2"}],
  "snapshot_id": "20261130-062840",
  "source": "127.0.0.1-17474",
  "stats": {"nodeCount": 200, "relationshipCount": 298}},
 "archive": {
  "archive_bytes": 31729,
  "archive_id": "20261130T062941Z-c9618c",
  "archive_sha256": "6c01a3be46b8705276bb14ab0903480cb98bce30b56874d5e42110c54e1c0df5",
  "bytes_total": 87296,
  "checkpoints": {"deleted": ["20261130-062941"], "kept": [], "warnings": []},
  "destinations": [{"storage_class": "STANDARD", "url": "./arch", "verified": true}],
  "duration_s": 0.475,
  "files": 11,
  "kind": "monthly",
  "mode": "online",
  "pruned": [{"locked": [], "removed": [], "url": "./arch"}],
  "snapshot_id": "20261130-062941",
  "source": "127.0.0.1-17474",
  "stats": {"nodeCount": 200, "relationshipCount": 298}},
 "list": [
  {"backup_id": "20261130T062843Z-1ea6d4", "bytes_total": 87296, "created_at": "2026-11-30T06:28:43.076419+00:00", "files": 11, "kind": "daily", "mode": "online", "source": "127.0.0.1-17474"},
  {"backup_id": "20261130T062854Z-352f79", "bytes_total": 87296, "created_at": "2026-11-30T06:28:54.569575+00:00", "files": 11, "kind": "adhoc", "mode": "online", "source": "127.0.0.1-17474"},
  {"backup_id": "20261129T000000Z-0000aa", "damaged": "./bad/backups/20261129T000000Z-0000aa.0000000000000000000000000000000000000000000000000000000000000000.json: manifest does not match the digest in its name (edited or damaged)"}],
 "archive_list": [
  {"archive_bytes": 31729, "archive_id": "20261130T062941Z-c9618c", "bytes_total": 87296, "created_at": "2026-11-30T06:29:41.480179+00:00", "files": 11, "kind": "monthly", "mode": "online", "source": "127.0.0.1-17474", "storage_class": null}],
 "verify": {
  "backups": [{"backup_id": "20261130T062843Z-1ea6d4", "checked_files": 11, "ok": true, "problems": [], "unchecked": []}, {"backup_id": "20261130T062854Z-352f79", "checked_files": 11, "ok": true, "problems": [], "unchecked": []}],
  "ok": true,
  "read_data": false,
  "url": "./repo"},
 "verify_damaged": {
  "backups": [{"backup_id": "20261130T062843Z-1ea6d4", "checked_files": 11, "ok": false, "problems": ["rocksdict-config.json: wrong size: stored 7 bytes, manifest says 53"], "unchecked": []}, {"backup_id": "20261130T062854Z-352f79", "checked_files": 11, "ok": false, "problems": ["rocksdict-config.json: wrong size: stored 7 bytes, manifest says 53"], "unchecked": []}, {"backup_id": "20261129T000000Z-0000aa", "checked_files": 0, "ok": false, "problems": ["(manifest): ./bad/backups/20261129T000000Z-0000aa.0000000000000000000000000000000000000000000000000000000000000000.json: manifest does not match the digest in its name (edited or damaged)"], "unchecked": []}],
  "ok": false,
  "read_data": true,
  "url": "./bad"},
 "prune_damaged": {
  "blobs_locked": 0,
  "blobs_removed": 0,
  "damaged": [{"backup_id": "20261129T000000Z-0000aa", "reason": "./bad/backups/20261129T000000Z-0000aa.0000000000000000000000000000000000000000000000000000000000000000.json: manifest does not match the digest in its name (edited or damaged)"}],
  "dry_run": true,
  "kept": [{"backup_id": "20261130T062854Z-352f79", "kind": "adhoc", "reasons": ["newest", "last 1"], "source": "127.0.0.1-17474"}, {"backup_id": "20261130T062843Z-1ea6d4", "kind": "daily", "reasons": ["newest", "last 1"], "source": "127.0.0.1-17474"}],
  "locked": [],
  "removed": [],
  "sweep_skipped": true,
  "url": "./bad"},
 "restore": {
  "backup_id": "20261130T062854Z-352f79",
  "bytes": 87296,
  "bytes_downloaded": 31950,
  "data_dir": "/tmp/rep13/restored",
  "duration_s": 0.032,
  "files": 11,
  "integrity": {"compared": {"checksums": "every file's SHA-256 matched its manifest", "figures": {"backup": {"graphs": {"catalog": {"nodeCount": 60, "relationshipCount": 124}, "ops": {"nodeCount": 40, "relationshipCount": 35}, "social": {"nodeCount": 100, "relationshipCount": 139}}, "nodeCount": 200, "relationshipCount": 298}, "instance": {"graphs": {"catalog": {"nodeCount": 60, "relationshipCount": 124}, "ops": {"nodeCount": 40, "relationshipCount": 35}, "social": {"nodeCount": 100, "relationshipCount": 139}}, "nodeCount": 200, "relationshipCount": 298}}, "files": 11, "health": "healthy"}, "differences": [], "ok": true},
  "replaced_existing": false,
  "restored_from": "backup"},
 "drill": {
  "backup_id": "20261130T062854Z-352f79",
  "instance": {"provider": "process", "torn_down": true, "url": "http://127.0.0.1:57529"},
  "integrity": {"compared": {"checksums": "every file's SHA-256 matched its manifest", "figures": {"backup": {"graphs": {"catalog": {"nodeCount": 60, "relationshipCount": 124}, "ops": {"nodeCount": 40, "relationshipCount": 35}, "social": {"nodeCount": 100, "relationshipCount": 139}}, "nodeCount": 200, "relationshipCount": 298}, "instance": {"graphs": {"catalog": {"nodeCount": 60, "relationshipCount": 124}, "ops": {"nodeCount": 40, "relationshipCount": 35}, "social": {"nodeCount": 100, "relationshipCount": 139}}, "nodeCount": 200, "relationshipCount": 298}}, "files": 11, "health": "healthy"}, "differences": [], "ok": true},
  "kind": "adhoc",
  "ok": true,
  "restore": {"bytes": 87296, "bytes_downloaded": 31950, "files": 11},
  "rpo_s": 33.992,
  "rpo_target_s": 86400.0,
  "rto_s": 1.285,
  "rto_target_s": 3600.0,
  "skipped_backups": [],
  "steps": [{"duration_s": 0.036, "name": "choose-backup"}, {"duration_s": 0.003, "name": "provision"}, {"duration_s": 0.038, "name": "restore"}, {"duration_s": 1.16, "name": "start-instance"}, {"duration_s": 0.047, "name": "integrity-check"}, {"duration_s": 0.33, "name": "teardown"}],
  "warnings": []},
 "dr": {
  "backup_id": "20261130T062854Z-352f79",
  "dns": {"new": ["127.0.0.1"], "old": null, "record": "db.example.internal"},
  "instance": {"data_dir": "/tmp/rep13/dr/qilbee-20261130T062854Z-352f79", "pid": 10499, "provider": "process", "url": "http://127.0.0.1:54725"},
  "integrity": {"compared": {"checksums": "every file's SHA-256 matched its manifest", "figures": {"backup": {"graphs": {"catalog": {"nodeCount": 60, "relationshipCount": 124}, "ops": {"nodeCount": 40, "relationshipCount": 35}, "social": {"nodeCount": 100, "relationshipCount": 139}}, "nodeCount": 200, "relationshipCount": 298}, "instance": {"graphs": {"catalog": {"nodeCount": 60, "relationshipCount": 124}, "ops": {"nodeCount": 40, "relationshipCount": 35}, "social": {"nodeCount": 100, "relationshipCount": 139}}, "nodeCount": 200, "relationshipCount": 298}}, "files": 11, "health": "healthy"}, "differences": [], "ok": true},
  "kind": "adhoc",
  "restore": {"bytes": 87296, "bytes_downloaded": 31950, "files": 11},
  "rpo_s": 40.26,
  "rpo_target_s": 86400.0,
  "rto_s": 1.5,
  "rto_target_s": 3600.0,
  "skipped_backups": [],
  "steps": [{"duration_s": 0.202, "name": "choose-backup"}, {"duration_s": 0.007, "name": "provision"}, {"duration_s": 0.053, "name": "restore"}, {"duration_s": 1.076, "name": "start-instance"}, {"duration_s": 0.126, "name": "integrity-check"}, {"duration_s": 0.035, "name": "dns-switch"}, {"duration_s": 0.037, "name": "resume"}],
  "warnings": []},
 "drill_failed_at_restore": {"ok": false, "steps": [{"name": "choose-backup", "duration_s": 0.011, "ok": true}, {"name": "provision", "duration_s": 0.006, "ok": true}, {"name": "restore", "duration_s": 0.039, "ok": false}], "rto_target_s": 3600.0, "rpo_target_s": 86400.0, "rto_s": null, "backup_id": null, "kind": null, "skipped_backups": [], "rpo_s": null, "integrity": null, "restore": null, "failed_step": "restore", "error": "restore of backup 20261130T062854Z-352f79 failed at rocksdict-config.json: not a valid zstd stream: zstd decompressor error: Unknown frame descriptor"},
 "drill_failed_at_choose": {"ok": false, "steps": [{"name": "choose-backup", "duration_s": 0.014, "ok": false}], "rto_target_s": 3600.0, "rpo_target_s": 86400.0, "rto_s": null, "backup_id": null, "kind": null, "skipped_backups": [], "rpo_s": null, "integrity": null, "restore": null, "failed_step": "choose-backup", "error": "every backup in /tmp/rep13/bad is damaged; the newest: 20261130T062854Z-352f79: rocksdict-config.json: wrong size: stored 7 bytes, manifest says 53"}
}
""")
# The DR run stopped at the same step with the same error: its partial result was the drill's (durations
# aside) plus what only a DR reports: the approval and the instance, neither reached.
RUNS["dr_failed_at_restore"] = RUNS["drill_failed_at_restore"] | {"approval": None, "instance": None}


def run(name: str):
    return copy.deepcopy(RUNS[name])


REPR = re.compile(r"\{'|\['|\[\{|\bNone\b|\bTrue\b|\bFalse\b|\bnull\b|\btrue\b|\bfalse\b")


def readable(text: str) -> str:
    """No Python (or JSON) reprs anywhere: no dicts, no lists of dicts, no None/True/False."""
    found = REPR.findall(text)
    assert not found, f"repr {found} in:\n{text}"
    return text


def cells(rows: list[dict]) -> str:
    """A table artifact's headings and cells, one a line; each must be a string."""
    assert all(isinstance(k, str) and isinstance(v, str) for row in rows for k, v in row.items())
    return "\n".join(f"{k} | {v}" for row in rows for k, v in row.items())


def every_form(result, title=None) -> list[str]:
    """The CLI's text, the markdown artifact and the table artifact's cells, each checked readable."""
    rows = table_rows(result)
    assert rows and all(set(row) == {"figure", "value"} for row in rows)
    table = "\n".join(f"{row['figure']} | {row['value']}" for row in rows)
    return [readable(render_text(result, title)), readable(report_markdown(result, title)), readable(table)]


# -- values -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, text", [
    (0, "0 bytes"), (1, "1 byte"), (1023, "1,023 bytes"), (87296, "85.2 KiB (87,296 bytes)"),
    (1288490188, "1.2 GiB (1,288,490,188 bytes)"), (5 * 1024 ** 4, "5.0 TiB (5,497,558,138,880 bytes)"), (None, "—"),
])
def test_sizes_read_in_binary_units_with_the_exact_bytes(n, text):
    assert size(n) == text


@pytest.mark.parametrize("seconds, text", [
    (0.036, "36 ms"), (1.284, "1.3 s"), (34.2, "34 s"), (59.6, "1 min"), (252, "4 min 12 s"), (3600, "1 h"),
    (21780, "6 h 3 min"), (86400, "24 h"), (3 * 86400 + 4 * 3600, "3 d 4 h"), (None, "—"),
])
def test_durations_read_in_hours_minutes_and_seconds(seconds, text):
    assert duration(seconds) == text


def test_times_read_in_utc_whatever_zone_they_were_written_in():
    assert utc("2026-11-30T02:00:03.123+00:00") == "2026-11-30 02:00:03 UTC"
    assert utc("2026-11-30T03:00:03+01:00") == "2026-11-30 02:00:03 UTC"
    assert utc("2026-11-30T02:00:03") == "2026-11-30 02:00:03 UTC"  # no zone: the repository writes UTC
    assert utc(None) == "—"


# -- every result, in every form -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RUNS))
def test_every_real_result_reads_without_a_python_repr_in_every_form(name):
    for text in every_form(run(name)):
        assert text.strip()


def test_backup_report_names_the_backup_humanises_sizes_and_tabulates_each_repository():
    text, markdown, table = every_form(run("backup"))
    first = text.splitlines()[0]
    assert first == "Backup 20261130T062840Z-d62507 of 127.0.0.1-17474: verified in every repository"
    assert "85.2 KiB (87,296 bytes)" in text and "31.2 KiB (31,950 bytes)" in text
    assert re.search(r"\./repo2\s+11\s+31\.2 KiB \(31,950 bytes\)\s+yes", text)
    assert "| ./repo2 | 11 | 31.2 KiB (31,950 bytes) | yes |" in markdown
    assert "| ./repo | 20261130T062836Z-1eeaee |" in markdown and "| ./repo2 | nothing |" in markdown
    assert "server checkpoints deleted" in text and "20261130-062840" in text
    assert "Repositories: ./repo2 | blobs sent 11 · uploaded 31.2 KiB (31,950 bytes) · verified yes" in table


def test_a_copy_that_failed_to_verify_is_the_first_thing_said():
    result = run("backup")
    result["destinations"][1]["verified"] = False
    text = render_text(result)
    assert text.splitlines()[0].endswith("NOT VERIFIED at ./repo2")


def test_archive_report_shows_the_archive_its_storage_class_and_what_was_pruned():
    text, markdown, _ = every_form(run("archive"))
    assert text.startswith("Archive 20261130T062941Z-c9618c of 127.0.0.1-17474: verified in the repository")
    assert "31.0 KiB (31,729 bytes)" in text and "STANDARD" in text
    assert "| ./arch | nothing | nothing |" in markdown


def test_list_is_a_table_with_utc_times_and_sizes_and_damaged_manifests_apart():
    text, markdown, _ = every_form(run("list"))
    assert text.splitlines()[0] == "Backups: 2 (and 1 damaged manifest, skipped by every reader)"
    assert re.search(r"20261130T062843Z-1ea6d4\s+2026-11-30 06:28:43 UTC\s+127\.0\.0\.1-17474\s+daily\s+online\s+11\s+"
                     r"85\.2 KiB \(87,296 bytes\)", text)
    assert "### Damaged manifests" in markdown and "does not match the digest in its name" in markdown
    assert render_text([]) == "Backups: no backups"


def test_archive_list_says_archives_and_a_missing_storage_class_is_a_dash():
    text, _, _ = every_form(run("archive_list"))
    assert text.startswith("Archives: 1")
    assert text.rstrip().endswith("31.0 KiB (31,729 bytes)  —")


def test_verify_reports_each_backup_and_each_problem_on_its_own_row():
    text, markdown, _ = every_form(run("verify_damaged"))
    assert text.splitlines()[0] == "Verify ./bad: 3 of 3 backup(s) DAMAGED"
    assert "data re-read     yes (every blob re-hashed)" in text
    assert "| 20261130T062843Z-1ea6d4 | DAMAGED | 11 |" in markdown
    assert "| 20261130T062843Z-1ea6d4 | damaged | rocksdict-config.json: wrong size: stored 7 bytes, manifest says 53 |" in markdown
    assert render_text(run("verify")).splitlines()[0] == "Verify ./repo: every backup intact (2 checked)"


def test_verify_tells_unreadable_apart_from_damaged():
    result = run("verify")
    result["backups"][0].update(ok=False, unchecked=["000001.sst: unreadable: SlowDown"])
    text = readable(render_text(result))
    assert "1 could not be checked" in text.splitlines()[0]
    assert re.search(r"20261130T062843Z-1ea6d4\s+could not read\s+000001\.sst: unreadable: SlowDown", text)


def test_prune_lists_every_decision_with_its_reason_and_says_why_nothing_was_swept():
    text, markdown, _ = every_form(run("prune_damaged"))
    assert text.splitlines()[0] == "Prune ./bad (dry run: nothing changed): kept 2, would remove 0, left 0 locked"
    assert "| 20261130T062854Z-352f79 | 127.0.0.1-17474 | adhoc | keep | newest, last 1 |" in markdown
    assert "damaged: left alone" in text
    assert "no unreferenced blobs were swept" in text and "**Warning:** no unreferenced blobs were swept" in markdown


def test_prune_shows_removed_and_locked_backups_with_the_lock_end_in_utc():
    result = run("prune_damaged")
    result.update(dry_run=False, damaged=[], sweep_skipped=False, blobs_removed=3)
    result["removed"] = [{"backup_id": "20261101T020000Z-aaaaaa", "source": "prod", "kind": "daily"}]
    result["locked"] = [{"backup_id": "20261102T020000Z-bbbbbb", "source": "prod", "kind": "daily",
                         "locked_until": "2026-12-02T02:00:00+00:00", "reason": "locked until 2026-12-02"}]
    text = readable(render_text(result))
    assert text.splitlines()[0] == "Prune ./bad: kept 2, removed 1, left 1 locked"
    assert re.search(r"20261101T020000Z-aaaaaa\s+prod\s+daily\s+removed", text)
    assert re.search(r"20261102T020000Z-bbbbbb\s+prod\s+daily\s+locked: kept\s+until 2026-12-02 02:00:00 UTC", text)
    assert re.search(r"unreferenced blobs removed\s+3\n", text)


def test_restore_report_shows_the_integrity_check_as_a_table():
    text, markdown, _ = every_form(run("restore"))
    assert text.splitlines()[0] == ("Restore of backup 20261130T062854Z-352f79 into /tmp/rep13/restored: "
                                    "restored and checked on a running server: it matches the backup")
    assert "| social | 100 | 100 | 139 | 139 | ✓ |" in markdown
    assert "| (whole database) | 200 | 200 | 298 | 298 | ✓ |" in markdown
    unchecked = run("restore") | {"integrity": None}
    assert "not checked on a running server" in readable(render_text(unchecked)).splitlines()[0]


# -- disaster recovery and drills -------------------------------------------------------------------------


def test_drill_report_gives_rto_and_rpo_against_their_targets_and_every_step():
    text, markdown, _ = every_form(run("drill"))
    assert text.splitlines()[0] == ("Restore drill of backup 20261130T062854Z-352f79: passed "
                                    "(RTO 1.3 s of a 1 h target, RPO 34 s of a 24 h target)")
    assert re.search(r"start-instance\s+1\.2 s\s+ok", text)
    assert "| teardown | 330 ms | ok |" in markdown
    assert "torn down        yes" in text


def test_rto_and_rpo_read_in_minutes_and_hours_and_a_missed_target_is_said_first():
    result = run("dr") | {"rto_s": 252.4, "rpo_s": 21780.0}
    text = readable(render_text(result))
    assert "RTO 4 min 12 s of a 1 h target" in text and "RPO 6 h 3 min of a 24 h target" in text
    late = run("dr") | {"rto_s": 4325.0}
    first = readable(render_text(late)).splitlines()[0]
    assert "RTO target MISSED" in first and "1 h 12 min of a 1 h target" in first
    assert "| RTO | 1 h 12 min of a 1 h target: MISSED |" in recovery_markdown("Disaster recovery", late)


def test_dr_report_names_the_instance_the_dns_change_and_the_approval():
    result = run("dr") | {"approval": {"approved": True, "decided_by": "ops@example.com", "note": "primary gone",
                                       "asked_at": "2026-11-30T06:29:30+00:00", "decided_at": "2026-11-30T06:31:02+00:00"}}
    text = readable(render_text(result))
    assert text.startswith("Disaster recovery of backup 20261130T062854Z-352f79: passed")
    assert "http://127.0.0.1:54725 (process, pid 10499)" in text
    assert "db.example.internal → 127.0.0.1 (was —)" in text
    assert "approved by ops@example.com at 2026-11-30 06:31:02 UTC: primary gone" in text


def test_a_figure_that_differs_is_marked_in_the_integrity_table():
    result = run("drill")
    result["integrity"]["compared"]["figures"]["instance"]["graphs"]["social"]["nodeCount"] = 99
    result["integrity"]["compared"]["figures"]["instance"]["nodeCount"] = 199
    result["integrity"]["ok"] = result["ok"] = False
    result["integrity"]["differences"] = ["graph social: nodeCount 99 != 100 at backup time",
                                          "nodeCount 199 != 200 at backup time"]
    text, markdown, _ = every_form(result)
    assert text.splitlines()[0].startswith("Restore drill of backup 20261130T062854Z-352f79: FAILED at integrity-check: "
                                           "graph social: nodeCount 99 != 100")
    assert re.search(r"social\s+100\s+99\s+139\s+139\s+✗ differs", text)
    assert re.search(r"catalog\s+60\s+60\s+124\s+124\s+✓", text)
    assert "| (whole database) | 200 | 199 | 298 | 298 | ✗ differs |" in markdown
    assert re.search(r"integrity-check\s+47 ms\s+FAILED", text)


def test_a_graph_missing_on_the_instance_is_marked():
    result = run("restore")
    del result["integrity"]["compared"]["figures"]["instance"]["graphs"]["ops"]
    assert re.search(r"ops\s+40\s+—\s+35\s+—\s+✗ missing on the instance", render_text(result))


def test_figures_not_compared_are_said_in_words():
    result = run("restore")
    result["integrity"]["compared"]["figures"] = "not recorded at backup time"
    text = readable(render_text(result))
    assert "figures                 not recorded at backup time" in text and "Integrity:" not in text


@pytest.mark.parametrize("name, step", [("drill_failed_at_restore", "restore"), ("dr_failed_at_restore", "restore"),
                                        ("drill_failed_at_choose", "choose-backup")])
def test_a_failed_drill_or_dr_reports_the_step_it_failed_at_and_why(name, step):
    result = run(name)
    text, markdown, table = every_form(result)
    assert text.splitlines()[0].endswith(f"FAILED at {step}: {result['error']}")
    assert f"**FAILED at {step}: " in markdown
    assert re.search(rf"{step}\s+\d+ ms\s+FAILED", text)
    assert "not reached (target 1 h)" in text and "integrity check  not run" in text
    assert f"result | FAILED at {step}" in table


def test_a_failed_dr_that_kept_its_instance_says_where_it_runs():
    result = run("dr_failed_at_restore") | {
        "failed_step": "approval", "error": "the DNS switch of db.example.internal was declined by ops; DNS not touched",
        "instance": {"url": "http://127.0.0.1:5555", "data_dir": "/srv/dr/x", "provider": "process", "pid": 42, "running": True},
        "approval": {"approved": False, "decided_by": "ops", "note": "", "asked_at": "2026-11-30T06:29:30+00:00",
                     "decided_at": "2026-11-30T06:30:00+00:00"}}
    result["steps"].append({"name": "approval", "duration_s": 30.2, "ok": True})
    text = readable(render_text(result))
    assert text.startswith("Disaster recovery: FAILED at approval: the DNS switch of db.example.internal was declined")
    assert "still running    yes (kept as asked, to look at)" in text
    assert "DECLINED by ops at 2026-11-30 06:30:00 UTC" in text
    assert re.search(r"approval\s+30 s\s+FAILED", text)


def test_backups_passed_over_and_warnings_are_listed():
    result = run("drill") | {"skipped_backups": [{"backup_id": "20261130T070000Z-cccccc",
                                                  "problems": "restore failed: 000003.sst: not a valid zstd stream"}],
                             "warnings": ["RPO 90000 s missed its target of 86400 s"]}
    result["steps"][2:2] = [{"name": "restore", "duration_s": 0.02, "ok": False}]
    text, markdown, _ = every_form(result)
    assert re.search(r"20261130T070000Z-cccccc\s+restore failed: 000003\.sst", text)
    assert "failed: backup damaged, the next older one was tried" in text
    assert "**Warning:** RPO 90000 s missed its target of 86400 s" in markdown


def test_recovery_markdown_keeps_its_signature_and_title():
    markdown = recovery_markdown("Disaster recovery", run("dr"))
    assert markdown.startswith("# Disaster recovery of backup 20261130T062854Z-352f79\n")
    assert "### Integrity: backup against instance" in markdown and "### Steps" in markdown


def test_figures_markdown_is_the_integrity_table_alone():
    figures = run("dr")["integrity"]["compared"]["figures"]
    assert report.figures_markdown(figures).splitlines()[2] == "| catalog | 60 | 60 | 124 | 124 | ✓ |"
    assert report.figures_markdown("not recorded at backup time") == ""


# -- table artifacts ----------------------------------------------------------------------------------------


def test_table_rows_are_figure_and_value_in_words():
    rows = {row["figure"]: row["value"] for row in table_rows(run("backup"))}
    assert rows["report"] == "Backup 20261130T062840Z-d62507 of 127.0.0.1-17474"
    assert rows["result"] == "verified in every repository"
    assert rows["size"] == "85.2 KiB (87,296 bytes)" and rows["duration"] == "271 ms"


def test_list_rows_give_every_row_every_column_with_readable_headings():
    rows = list_rows(run("list"))
    assert rows[0]["backup"] == "20261130T062843Z-1ea6d4" and rows[0]["taken"] == "2026-11-30 06:28:43 UTC"
    assert rows[0]["size"] == "85.2 KiB (87,296 bytes)" and rows[0]["damaged"] == "—"
    assert rows[2]["taken"] == "—" and "digest" in rows[2]["damaged"]
    assert {len(r) for r in rows} == {8}
    readable(cells(rows))


def test_a_generic_result_is_laid_out_without_reprs():
    summary = {"url": "./bad", "ok": False, "backups_checked": 3, "damaged": ["a", "b"], "could_not_check": [],
               "nested": {"deleted": [], "kept": None, "inner": {"x_bytes": 2048}}, "rows": [{"a": 1, "b": None}]}
    text, markdown, _ = every_form(summary)
    assert re.search(r"passed\s+no\n", text) and re.search(r"damaged\s+a, b\n", text)
    assert "nested inner x bytes" in text and "2.0 KiB (2,048 bytes)" in text
    assert "| 1 | — |" in markdown


# -- artifact keys and schedules --------------------------------------------------------------------------


PREFECT_KEY = re.compile(r"^[a-z0-9-]*$")  # Prefect's own rule (prefect.types.names)


@pytest.mark.parametrize("name, key", [
    ("db.example.com:7474", "backup-summary-db-example-com-7474"),
    ("127.0.0.1-17474", "backup-summary-127-0-0-1-17474"),
    ("Prod_DB (eu-west-1)", "backup-summary-prod-db-eu-west-1"),
    ("Zürich--primär", "backup-summary-zurich-primar"),
])
def test_artifact_keys_are_per_source_and_valid_for_prefect(name, key):
    assert artifact_key("backup-summary", name) == key
    assert PREFECT_KEY.match(key)


@pytest.mark.parametrize("name", ["", "///", "東京", "x" * 500, "a.b" * 200, "-" * 300])
def test_any_source_name_gives_a_valid_key_within_the_length(name):
    key = artifact_key("Restore-Drill_Report", name)
    assert PREFECT_KEY.match(key) and 0 < len(key) <= report.ARTIFACT_KEY_MAX
    assert key.startswith("restore-drill-report") and not key.endswith("-") and "--" not in key


def test_long_or_empty_names_keep_apart_by_a_digest():
    a, b = artifact_key("backup-summary", "x" * 200 + "a"), artifact_key("backup-summary", "x" * 200 + "b")
    assert a != b and len(a) == report.ARTIFACT_KEY_MAX
    assert artifact_key("backup-summary", "東京") != artifact_key("backup-summary", "大阪")
    assert artifact_key("backup-summary", None) == "backup-summary"
    assert artifact_key("x" * 300) == "x" * report.ARTIFACT_KEY_MAX


@pytest.mark.parametrize("cron, text", [
    ("0 2 * * *", "daily at 02:00 UTC"), ("0 3 * * 0", "Sundays at 03:00 UTC"), ("0 6 * * 6", "Saturdays at 06:00 UTC"),
    ("0 5 * * 3", "Wednesdays at 05:00 UTC"), ("0 4 1 * *", "on the 1st of each month at 04:00 UTC"),
    ("30 23 22 * *", "on the 22nd of each month at 23:30 UTC"), ("0 */6 * * *", "cron 0 */6 * * * (UTC)"),
])
def test_schedules_read_in_words_in_utc(cron, text):
    assert schedule_text(cron) == text


def test_every_schedule_in_prefect_yaml_reads_in_words():
    import pathlib

    import yaml

    config = yaml.safe_load((pathlib.Path(__file__).parents[2] / "prefect.yaml").read_text())
    crons = [(s["cron"], s.get("timezone", "UTC")) for d in config["deployments"] for s in d.get("schedules") or []]
    assert crons and all(not schedule_text(c, tz).startswith("cron ") and tz == "UTC" for c, tz in crons)


# -- the artifacts a flow publishes ------------------------------------------------------------------------


def test_published_artifacts_carry_valid_keys_and_the_readable_report(monkeypatch):
    from tasks import artifacts

    made = []
    monkeypatch.setattr(artifacts, "create_table_artifact", lambda **kw: made.append(("table", kw)))
    monkeypatch.setattr(artifacts, "create_markdown_artifact", lambda **kw: made.append(("markdown", kw)))
    artifacts.publish_table(artifacts.artifact_key("backup-summary", "DB.example.com:7474"), run("backup"), "backup")
    artifacts.publish_rows("backup-list", run("list"), "list")
    artifacts.publish_rows("backup-list", [], "list")
    artifacts.publish_report("verify-summary", run("verify_damaged"), "verify")
    artifacts.publish_markdown("Restore Drill Report", recovery_markdown("Restore drill", run("drill_failed_at_restore")), "d")
    keys = [kw["key"] for _, kw in made]
    assert keys == ["backup-summary-db-example-com-7474", "backup-list", "backup-list", "verify-summary",
                    "restore-drill-report"]
    for kind, kw in made:
        readable(kw["markdown"] if kind == "markdown" else cells(kw["table"]))
    assert made[2][1]["table"] == [{"note": "none"}]
    assert "FAILED at restore" in made[4][1]["markdown"]
