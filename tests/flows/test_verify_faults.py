"""`qilbee-backup verify --read-data` against S3 (moto_server) behind a proxy that drops a download
half way: where the operator sees it, a good backup is reported good."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from qilbee_backup.destinations import open_destination
from qilbee_backup.manifest import SourceInfo
from qilbee_backup.backup import backup_directory
from qilbee_backup.repository import Repository
from tests.files import write

CLI = Path(sys.executable).parent / "qilbee-backup"


def test_verify_read_data_reads_a_dropped_blob_again_and_passes(s3_repo_url, s3_fault_proxy, cli_env, tmp_path):
    snapshot = tmp_path / "snapshot"
    for i in range(3):
        write(snapshot / f"00000{i}.sst", os.urandom(300_000 + i))
    repo = Repository(open_destination(s3_repo_url))
    made = backup_directory([repo], snapshot, kind="daily", spool=tmp_path / "spool",
                            source=SourceInfo(url="http://127.0.0.1:7474", mode="online"))
    repo.close()
    victim = made.files[0].sha256
    s3_fault_proxy.fail(victim, how="drop")
    env = dict(cli_env, AWS_ENDPOINT_URL_S3=s3_fault_proxy.url, AWS_ENDPOINT_URL=s3_fault_proxy.url)

    done = subprocess.run([str(CLI), "verify", "--repo", s3_repo_url, "--read-data", "--json"], env=env,
                          capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    assert s3_fault_proxy.gets(victim) == 2  # the broken download was read again
