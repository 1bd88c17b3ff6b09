"""The command-line contract: exit codes, one-line errors, --json results on stdout."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize(
    "args, needle",
    [
        (["backup", "--repo", "ftp://host/x"], "unsupported scheme"),
        (["backup", "--repo", "s3://"], "no bucket"),
        (["list"], "--repo"),
        (["verify", "--repo", "/tmp/x", "--bogus"], "unrecognized arguments"),
        (["prune", "--repo", "/tmp/x", "--keep-daily", "-1"], "--keep-daily: Input should be greater than or equal to 0"),
        (["prune", "--repo", "/tmp/x", "--keep-within", "7 fortnights"], "7 fortnights"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(run_cli, args, needle, tmp_path):
    done = run_cli(*args)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], done.stderr
    assert done.stdout == ""


def test_bad_backup_id_is_a_usage_error(run_cli, tmp_path):
    done = run_cli("verify", "--repo", str(tmp_path / "repo"), "--backup", "../../etc/passwd")
    assert done.returncode == 2
    assert "backup id" in done.stderr.lower()


def test_unreachable_server_is_one_line_and_nothing_written(run_cli, tmp_path):
    repo = tmp_path / "repo"
    done = run_cli("backup", "--source", "http://127.0.0.1:9", "--repo", str(repo))
    assert done.returncode == 1
    assert "qilbee-backup: error:" in done.stderr and "127.0.0.1:9" in done.stderr
    assert not list(repo.glob("backups/*.json"))


def test_backup_list_verify_json(run_cli, emulator, tmp_path):
    repo = str(tmp_path / "repo")
    done = run_cli("backup", "--source", emulator.url, "--repo", repo, "--kind", "daily", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for key in ("backup_id", "mode", "files", "bytes_total", "bytes_uploaded", "duration_s", "destinations"):
        assert key in result
    assert result["destinations"] == [{"url": repo, "verified": True, "blobs_sent": result["destinations"][0]["blobs_sent"],
                                       "bytes_uploaded": result["bytes_uploaded"]}]
    listed = json.loads(run_cli("list", "--repo", repo, "--json").stdout)
    assert [{k: r[k] for k in ("backup_id", "kind", "bytes_total")} for r in listed] == [
        {"backup_id": result["backup_id"], "kind": "daily", "bytes_total": result["bytes_total"]}]
    assert {"backup_id", "created_at", "kind", "bytes_total"} <= set(listed[0])
    checked = run_cli("verify", "--repo", repo, "--read-data", "--json")
    assert checked.returncode == 0 and json.loads(checked.stdout)["ok"] is True
