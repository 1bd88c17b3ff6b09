"""Immutability end to end: `backup --lock-days` writes locked objects to an Object Lock bucket on
moto_server, and `prune` leaves a locked backup in place and says why."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import httpx

from qilbee_backup.repository import open_repository


def _add_nodes(url: str, count: int) -> None:
    for i in range(count):
        httpx.post(f"{url}/graphs/social/nodes", json={"labels": ["Person"], "properties": {"lock": i}}).raise_for_status()


def test_locked_backup_survives_prune_while_the_local_copy_is_pruned(run_cli, emulator, s3_bucket_factory, s3_client, tmp_path):
    bucket = s3_bucket_factory(object_lock=True)
    s3_url, local = f"s3://{bucket}/repo", str(tmp_path / "local")
    backup = ["backup", "--source", emulator.url, "--repo", local, "--repo", s3_url, "--lock-days", "1", "--json"]

    first = run_cli(*backup)
    assert first.returncode == 0, first.stderr
    first_id = json.loads(first.stdout)["backup_id"]
    assert "is not S3: its copy of the backup is not locked" in first.stderr
    (key,) = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket, Prefix=f"repo/backups/{first_id}.")["Contents"]]
    head = s3_client.head_object(Bucket=bucket, Key=key)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert timedelta(hours=23) < until - datetime.now(timezone.utc) <= timedelta(days=1)

    _add_nodes(emulator.url, 5)
    second = run_cli(*backup)
    assert second.returncode == 0, second.stderr
    second_id = json.loads(second.stdout)["backup_id"]

    pruned = run_cli("prune", "--repo", s3_url, "--keep-last", "1", "--grace", "0", "--json")
    assert pruned.returncode == 0, pruned.stderr
    result = json.loads(pruned.stdout)
    assert result["removed"] == []
    assert [(r["backup_id"], r["reason"].startswith("locked until")) for r in result["locked"]] == [(first_id, True)]
    assert f"kept {first_id}: locked until" in pruned.stderr
    assert {m.backup_id for m in open_repository(s3_url).list_backups()} == {first_id, second_id}
    listed = run_cli("verify", "--repo", s3_url, "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)["ok"], listed.stderr

    # The same rule on the unlocked local copy removes the older backup.
    local_pruned = json.loads(run_cli("prune", "--repo", local, "--keep-last", "1", "--grace", "0", "--json").stdout)
    assert [r["backup_id"] for r in local_pruned["removed"]] == [first_id] and local_pruned["locked"] == []


def test_lock_days_without_an_s3_repository_is_a_usage_error(run_cli, emulator, tmp_path):
    done = run_cli("backup", "--source", emulator.url, "--repo", str(tmp_path / "repo"), "--lock-days", "7")
    assert done.returncode == 2
    assert done.stderr.strip() == ("qilbee-backup: error: object lock (--lock-days) needs an s3:// repository; "
                                   "none of the repositories is one")
    assert not (tmp_path / "repo" / "backups").exists()


def test_lock_days_on_a_bucket_without_object_lock_fails_before_writing(run_cli, emulator, s3_bucket_factory, s3_client):
    bucket = s3_bucket_factory()
    done = run_cli("backup", "--source", emulator.url, "--repo", f"s3://{bucket}/repo", "--lock-days", "7",
                   "--lock-mode", "compliance")
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("qilbee-backup: error:")]
    assert len(errors) == 1 and "has no Object Lock enabled" in errors[0], done.stderr
    assert "testing" not in done.stderr  # the fake AWS secret
    assert s3_client.list_objects_v2(Bucket=bucket, Prefix="repo/backups/").get("KeyCount", 0) == 0
