"""A real S3 for the tests: moto's server as a separate process on 127.0.0.1.

moto_server (session): starts `python -m moto.server` on a free loopback port, waits until
    it answers, points the standard AWS variables at it for the session (fake "testing"
    credentials, us-east-1, AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL) with no profile or
    config file of the machine's leaking in, yields the endpoint URL; at the end restores
    the environment and stops the server by its PID.
s3_client: a boto3 S3 client on that server, for looking behind a destination's back.
s3_bucket_factory: make(object_lock=False, versioning=False) -> a fresh uniquely named bucket;
    every bucket it made is emptied and deleted after the test.
s3_bucket: one fresh bucket (versioning and object lock off).
s3_repo_url: "s3://<fresh bucket>/repo".
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

FAKE_ACCESS_KEY = "testing"
FAKE_SECRET_KEY = "testing"
REGION = "us-east-1"
_START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _start_moto(log_path: Path) -> tuple[subprocess.Popen, str]:
    """Start moto on a free port; try a few ports in case another process takes ours first."""
    for _ in range(3):
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(endpoint):
                return process, endpoint
            time.sleep(0.1)
        _stop(process)
    tail = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"moto server did not start on 127.0.0.1; its log ends with:\n{tail}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()  # signals process.pid, the server we started, and nothing else
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def moto_server():
    with tempfile.TemporaryDirectory(prefix="qilbee-moto-") as scratch:
        scratch_dir = Path(scratch)
        process, endpoint = _start_moto(scratch_dir / "moto.log")
        try:
            with pytest.MonkeyPatch.context() as env:
                for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE"):
                    env.delenv(name, raising=False)
                # The machine's ~/.aws must not decide anything in a test.
                env.setenv("AWS_CONFIG_FILE", str(scratch_dir / "no-aws-config"))
                env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(scratch_dir / "no-aws-credentials"))
                env.setenv("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY)
                env.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_KEY)
                env.setenv("AWS_DEFAULT_REGION", REGION)
                env.setenv("AWS_ENDPOINT_URL", endpoint)
                env.setenv("AWS_ENDPOINT_URL_S3", endpoint)
                yield endpoint
        finally:
            _stop(process)


@pytest.fixture(scope="session")
def s3_client(moto_server):
    import boto3

    client = boto3.session.Session().client("s3", endpoint_url=moto_server, region_name=REGION)
    yield client
    client.close()


@pytest.fixture
def s3_bucket_factory(s3_client):
    made: list[str] = []

    def make(object_lock: bool = False, versioning: bool = False) -> str:
        name = f"qb-test-{uuid.uuid4().hex[:16]}"
        s3_client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        if versioning and not object_lock:  # object lock turns versioning on by itself
            s3_client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        made.append(name)
        return name

    yield make
    for name in made:
        _delete_bucket(s3_client, name)


def _delete_bucket(client, name: str) -> None:
    """Best effort: empty the bucket (every version, open uploads) and delete it."""
    try:
        for page in client.get_paginator("list_object_versions").paginate(Bucket=name):
            doomed = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if doomed:
                client.delete_objects(Bucket=name, Delete={"Objects": doomed, "Quiet": True}, BypassGovernanceRetention=True)
        for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        client.delete_bucket(Bucket=name)
    except Exception:  # noqa: BLE001 - moto dies with the session anyway; a locked object may stay
        pass


@pytest.fixture
def s3_bucket(s3_bucket_factory) -> str:
    return s3_bucket_factory()


@pytest.fixture
def s3_repo_url(s3_bucket) -> str:
    return f"s3://{s3_bucket}/repo"
