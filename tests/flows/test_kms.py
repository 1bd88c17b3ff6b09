"""Issue 12 (optional part): the master key wrapped by AWS KMS instead of a passphrase, through the real
CLI against moto_server's KMS and S3 and the emulator. Whoever may decrypt with the KMS key opens the
repository with no passphrase; KMS out of reach closes it in one line, a passphrase added beside it
still opens it; the wrapped key is bound to its repository."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

from tests.flows.test_encryption import bucket_objects, ok, one_error_line
from tests.plugins.s3 import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def kms_key(moto_server) -> dict[str, str]:
    client = boto3.session.Session().client("kms", endpoint_url=moto_server, region_name="us-east-1")
    key_id = client.create_key(Description="qilbee-backup test")["KeyMetadata"]["KeyId"]
    alias = f"alias/qilbee-test-{uuid.uuid4().hex[:8]}"
    client.create_alias(AliasName=alias, TargetKeyId=key_id)
    return {"id": key_id, "alias": alias, "client": client}


@pytest.fixture
def no_passphrase(cli_env) -> dict[str, str]:
    return {k: v for k, v in cli_env.items() if not k.startswith("QILBEE_PASSWORD")}


def test_a_kms_key_opens_the_repository_with_no_passphrase_anywhere(moto_server, kms_key, emulator, s3_repo_url, s3_client,
                                                                    run_cli, no_passphrase, tmp_path):
    env = no_passphrase
    made = ok(run_cli("init", "--repo", s3_repo_url, "--kms-key-id", kms_key["alias"], "--json", env=env))
    backup = ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", s3_repo_url, "--json", env=env))
    listed = ok(run_cli("list", "--repo", s3_repo_url, "--json", env=env))
    assert [b["backup_id"] for b in listed] == [backup["backup_id"]]
    ok(run_cli("verify", "--no-prefect", "--repo", s3_repo_url, "--read-data", "--json", env=env))
    restored = ok(run_cli("restore", "--no-prefect", "--repo", s3_repo_url, "--data-dir", str(tmp_path / "out"),
                          "--no-check", "--json", env=env))
    assert restored["backup_id"] == backup["backup_id"] and restored["bytes"] == backup["bytes_total"]

    keys = ok(run_cli("key", "list", "--repo", s3_repo_url, "--json", env=env))["keys"]
    assert [(k["key_id"], k["kdf"], k["current"]) for k in keys] == [(made["key_id"], f"aws-kms {kms_key['alias']}", True)]
    # What the bucket holds is the master key as KMS encrypted it, bound to this repository's id.
    objects = bucket_objects(s3_client, s3_repo_url)
    key_file = json.loads(objects[f"{s3_repo_url[len('s3://'):].split('/', 1)[1]}/keys/{made['key_id']}.json"])
    assert key_file["kdf"] == "aws-kms" and key_file["kms_key_id"] == kms_key["alias"] and "salt" not in key_file

    # By hand: KMS gives the master key (what `aws kms decrypt` does in the script's instructions), and
    # the script needs nothing else to open a manifest.
    prefix = s3_repo_url[len("s3://"):].split("/", 1)[1] + "/"
    copy = tmp_path / "copy"
    for key, data in objects.items():
        (copy / key[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)
        (copy / key[len(prefix):]).write_bytes(data)
    repo_id = json.loads((copy / "config.json").read_text())["id"]
    (tmp_path / "master.key").write_bytes(kms_key["client"].decrypt(
        CiphertextBlob=base64.b64decode(key_file["wrapped"]),
        EncryptionContext={"qilbee-backup-repository": repo_id})["Plaintext"])
    manifest = next(p for p in (copy / "backups").glob("*.json"))
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "decrypt_object.py"), "--repo", str(copy),
                           "--master-key-file", str(tmp_path / "master.key"), str(manifest.relative_to(copy))],
                          capture_output=True, env={"PATH": os.environ["PATH"]}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["backup_id"] == backup["backup_id"]


def test_kms_out_of_reach_closes_it_and_a_passphrase_beside_it_still_opens_it(moto_server, kms_key, emulator,
                                                                              s3_repo_url, run_cli, no_passphrase,
                                                                              tmp_path):
    env = no_passphrase
    (tmp_path / "offline").write_text("kept in the safe\n")
    ok(run_cli("init", "--repo", s3_repo_url, "--kms-key-id", kms_key["id"], "--json", env=env))
    ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", s3_repo_url, "--json", env=env))
    added = ok(run_cli("key", "add", "--repo", s3_repo_url, "--new-password-file", str(tmp_path / "offline"), "--json",
                       env=env))
    assert len(added["keys"]) == 2
    # Opened by KMS, there is no passphrase to change.
    line = one_error_line(run_cli("key", "passwd", "--repo", s3_repo_url, "--new-password-file",
                                  str(tmp_path / "offline"), env=env), 2)
    assert "opened by KMS" in line

    # KMS out of reach (moto does not refuse a disabled key, so the refusal is a KMS endpoint nobody answers).
    env = dict(env, AWS_ENDPOINT_URL_KMS=f"http://127.0.0.1:{free_port()}")
    line = one_error_line(run_cli("list", "--repo", s3_repo_url, env=env), 1)
    assert "KMS did not open it" in line and "no passphrase was given" in line and kms_key["id"] in line
    line = one_error_line(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", s3_repo_url, env=env), 1)
    assert "KMS did not open it" in line
    listed = ok(run_cli("list", "--repo", s3_repo_url, "--password-file", str(tmp_path / "offline"), "--json", env=env))
    assert len(listed) == 1
    line = one_error_line(run_cli("list", "--repo", s3_repo_url, env=dict(env, QILBEE_PASSWORD="not it")), 1)
    assert "wrong passphrase" in line and "KMS did not open it either" in line


def test_a_kms_wrapped_key_is_bound_to_its_repository(moto_server, kms_key, s3_bucket_factory, s3_client, run_cli,
                                                      no_passphrase):
    first, second = (f"s3://{s3_bucket_factory()}/repo" for _ in range(2))
    made = ok(run_cli("init", "--repo", first, "--kms-key-id", kms_key["alias"], "--json", env=no_passphrase))
    ok(run_cli("init", "--repo", second, "--kms-key-id", kms_key["alias"], "--json", env=no_passphrase))
    # The first repository's key file put in the second one's place: KMS refuses it under the other id.
    bucket_a, bucket_b = first[5:].split("/")[0], second[5:].split("/")[0]
    body = s3_client.get_object(Bucket=bucket_a, Key=f"repo/keys/{made['key_id']}.json")["Body"].read()
    for item in s3_client.list_objects_v2(Bucket=bucket_b, Prefix="repo/keys/")["Contents"]:
        s3_client.delete_object(Bucket=bucket_b, Key=item["Key"])
    s3_client.put_object(Bucket=bucket_b, Key=f"repo/keys/{made['key_id']}.json", Body=body)
    line = one_error_line(run_cli("list", "--repo", second, env=no_passphrase), 1)
    assert "KMS did not open it" in line


@pytest.mark.parametrize("value", ["bad key", "alias/", "arn:aws:kms:us-east-1:12:key/x"])
def test_a_malformed_kms_key_id_is_refused_before_anything_is_written(moto_server, s3_repo_url, s3_client, run_cli,
                                                                      no_passphrase, value):
    line = one_error_line(run_cli("init", "--repo", s3_repo_url, "--kms-key-id", value, env=no_passphrase), 2)
    assert line.startswith("qilbee-backup: error: --kms-key-id:")
    assert bucket_objects(s3_client, s3_repo_url) == {}
