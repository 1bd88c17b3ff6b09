"""prune as a flow and a CLI command: per-series retention, dry run, blob sweep."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from flows.maintenance import prune
from qilbee_backup.manifest import SourceInfo
from qilbee_backup.repository import open_repository
from qilbee_backup.backup import backup_directory

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)


def _make_series(repo_url: str, tmp_path) -> dict[str, list[str]]:
    """14 daily backups of a rolling window of 3 day-files plus a base file, and weekly ones on day 0 and 7."""
    repo = open_repository(repo_url, must_exist=False)
    src = tmp_path / "src"
    src.mkdir()
    (src / "base.sst").write_bytes(b"base" * 1000)
    ids: dict[str, list[str]] = {"daily": [], "weekly": []}
    for day in range(14):
        (src / f"{day:06d}.sst").write_bytes(f"day {day}".encode() * 100)
        if day >= 3:
            (src / f"{day - 3:06d}.sst").unlink()
        m = backup_directory([repo], src, kind="daily", source=SourceInfo(url="http://db:7474", mode="online"),
                             spool=tmp_path / "spool", now=T0 + timedelta(days=day))
        ids["daily"].append(m.backup_id)
        if day % 7 == 0:
            w = backup_directory([repo], src, kind="weekly", source=SourceInfo(url="http://db:7474", mode="offline"),
                                 spool=tmp_path / "spool", now=T0 + timedelta(days=day, hours=1))
            ids["weekly"].append(w.backup_id)
    return ids


def test_prune_daily_series_keeps_7_days_and_leaves_weekly_alone(tmp_path):
    url = str(tmp_path / "repo")
    ids = _make_series(url, tmp_path)
    repo = open_repository(url)

    dry = prune(repo=url, kind="daily", retention={"keep_within": "7d"}, grace="0", dry_run=True)
    # Exactly 7 days before the newest is outside "within 7d": seven daily backups stay.
    assert {r["backup_id"] for r in dry["removed"]} == set(ids["daily"][:7])
    assert len(repo.list_backups()) == 16  # a dry run changes nothing
    assert all(k["reasons"] for k in dry["kept"])

    done = prune(repo=url, kind="daily", retention={"keep_within": "7d"}, grace="0")
    left = [m.backup_id for m in repo.list_backups(kind="daily")]
    assert left == ids["daily"][7:]
    assert [m.backup_id for m in repo.list_backups(kind="weekly")] == ids["weekly"]
    # The weekly backups still need the files of days 0, 5, 6 and 7; days 1 to 4 are needed by nothing left.
    needed = {f.sha256 for m in repo.list_backups() for f in m.files}
    assert set(repo.blob_sizes()) == needed
    assert done["blobs_removed"] == 4

    again = prune(repo=url, kind="daily", retention={"keep_within": "7d"}, grace="0")
    assert again["removed"] == [] and again["blobs_removed"] == 0


def test_prune_sweeps_blobs_no_backup_needs(tmp_path):
    url = str(tmp_path / "repo")
    ids = _make_series(url, tmp_path)
    repo = open_repository(url)
    before = set(repo.blob_sizes())
    prune(repo=url, kind="weekly", retention={"keep_last": 1}, grace="0")
    prune(repo=url, kind="daily", retention={"keep_last": 1}, grace="0")
    assert [m.backup_id for m in repo.list_backups()] == [ids["daily"][-1], ids["weekly"][-1]] or \
        {m.backup_id for m in repo.list_backups()} == {ids["daily"][-1], ids["weekly"][-1]}
    after = set(repo.blob_sizes())
    assert after == {f.sha256 for m in repo.list_backups() for f in m.files}
    assert after < before


def test_prune_cli_dry_run_json_names_every_backup(run_cli, tmp_path):
    url = str(tmp_path / "repo")
    ids = _make_series(url, tmp_path)
    done = run_cli("prune", "--repo", url, "--kind", "daily", "--keep-daily", "3", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["dry_run"] is True
    assert {k["backup_id"] for k in result["kept"]} == set(ids["daily"][-3:])
    assert {r["backup_id"] for r in result["removed"]} == set(ids["daily"][:-3])
    assert all(any(reason.startswith("daily") for reason in k["reasons"]) for k in result["kept"])
