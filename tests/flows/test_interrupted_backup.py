"""A backup killed mid-upload leaves no backup behind, and the next run reuses what was sent."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

from qilbee_backup.repository import open_repository
from tests.flows.conftest import REPO_ROOT


def _keys(s3_client, bucket: str, prefix: str) -> set[str]:
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_killed_mid_upload_then_rerun(emulator_factory, moto_server, s3_client, s3_bucket, cli_env, throttled_proxy):
    server = emulator_factory(seed_nodes=4000)
    repo = f"s3://{s3_bucket}/repo"
    endpoint = urlsplit(moto_server)
    slow = throttled_proxy(endpoint.hostname, endpoint.port, bytes_per_second=64 * 1024)
    env = dict(cli_env, AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{slow.port}", AWS_ENDPOINT_URL=f"http://127.0.0.1:{slow.port}")

    run = subprocess.Popen([sys.executable, "-m", "qilbee_cli", "backup", "--source", server.url, "--repo", repo, "--json"],
                           env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None:
            if _keys(s3_client, s3_bucket, "repo/blobs/"):
                break
            time.sleep(0.05)
        assert run.poll() is None, f"the backup ended before it could be interrupted: {run.stderr.read()[-2000:]}"
        run.send_signal(signal.SIGKILL)  # our own child, by PID
    finally:
        run.wait(30)
        # Bytes the killed process had already handed to the kernel would still reach S3 through the
        # proxy: stopping it cuts those uploads off where the kill left them.
        slow.stop()
        run.stdout.close()
        run.stderr.close()

    sent_before = _keys(s3_client, s3_bucket, "repo/blobs/")
    assert sent_before, "nothing was uploaded before the kill"
    assert not _keys(s3_client, s3_bucket, "repo/backups/"), "a killed backup must leave no manifest"
    assert _keys(s3_client, s3_bucket, "repo/locks/"), "the killed run's lock is still there"

    done = subprocess.run([sys.executable, "-m", "qilbee_cli", "backup", "--source", server.url, "--repo", repo, "--json"],
                          env=cli_env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    sent_after = _keys(s3_client, s3_bucket, "repo/blobs/")
    new_blobs = sent_after - sent_before
    assert result["destinations"][0]["blobs_sent"] == len(new_blobs)
    # The rerun's backup needs blobs the killed run had sent, and did not send them again.
    repository = open_repository(repo)  # the manifest, decrypted; each blob's stored name
    needed = {f"repo/{repository.blob_key(sha)}" for sha in repository.load(result["backup_id"]).blob_shas()}
    assert _manifest_key(s3_client, s3_bucket, result["backup_id"])
    assert needed & sent_before, "the rerun reused none of the blobs sent before the kill"
    assert needed <= sent_after
    assert result["destinations"][0]["verified"] is True
    assert not _keys(s3_client, s3_bucket, "repo/locks/")


def _manifest_key(s3_client, bucket: str, backup_id: str) -> str:
    (key,) = _keys(s3_client, bucket, f"repo/backups/{backup_id}.")
    return key
