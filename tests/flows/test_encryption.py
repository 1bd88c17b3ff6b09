"""Issue 12: client-side encryption, through the real CLI on a real emulator, moto_server and Prefect
server. The bucket holds nothing readable; a wrong or missing passphrase stops a run before it
writes; keys change without touching data; unencrypted repositories keep working; an object can
be decrypted by hand; no passphrase or key leaks anywhere."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest
import zstandard

from qilbee_backup.repository import open_repository
from tests.conftest import TEST_PASSWORD

REPO_ROOT = Path(__file__).resolve().parents[2]
MARKER = "zebra-property-7f3a9c"  # a node property string written through the API


def ok(done) -> dict | list:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout) if done.stdout.strip() else {}


def one_error_line(done, code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("qilbee-backup: error:"), done.stderr[-3000:]
    return last


def add_marked_nodes(emulator, count: int = 300) -> None:
    with httpx.Client(base_url=emulator.url, timeout=30) as http:
        http.post("/graphs/secret")
        for i in range(count):
            http.post("/graphs/secret/nodes", json={"labels": ["Secret"], "properties": {"note": f"{MARKER}-{i}"}}
                      ).raise_for_status()


def bucket_objects(s3_client, url: str) -> dict[str, bytes]:
    bucket, prefix = url[len("s3://"):].split("/", 1)
    found = {}
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for item in page.get("Contents", []):
            found[item["Key"]] = s3_client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


def snapshot_secrets(snapshot: Path) -> list[bytes]:
    """What must not be readable in the bucket: the marker, every file's name, every file's SHA-256
    (hex and raw)."""
    found = [MARKER.encode()]
    for path in snapshot.rglob("*"):
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).digest()
            found += [path.name.encode(), digest.hex().encode(), digest]
    return found


def decoded(objects: dict[str, bytes]) -> dict[str, bytes]:
    """What a reader of the bucket gets from each object with standard tools: JSON as it is, zstd
    frames decompressed (the repository's own metadata, config.json and keys/, left out)."""
    found = {}
    for key, data in objects.items():
        if key.endswith("/config.json") or "/keys/" in key:
            continue
        try:
            found[key] = zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 30)
            continue
        except zstandard.ZstdError:
            pass
        try:
            json.loads(data)
            found[key] = data
        except ValueError:
            pass
    return found


def leaks(objects: dict[str, bytes], secrets: list[bytes]) -> list[str]:
    readable = {**objects, **{f"{k} (decoded)": v for k, v in decoded(objects).items()}}
    return sorted({f"{key}: {secret[:40]!r}" for key, data in readable.items() for secret in secrets
                   if secret in key.encode() or secret in data})


def marker_readable_from(objects: dict[str, bytes], tmp_path: Path) -> bool:
    """Rebuild the database from the bucket's bytes alone (manifest JSON, zstd blobs) and look for
    the marker in its records: what a bucket reader could do with an unencrypted repository."""
    readable = decoded(objects)
    manifests = [json.loads(v) for k, v in readable.items() if "/backups/" in k]
    if not manifests:
        return False
    blobs = {k.rsplit("/", 1)[-1]: v for k, v in readable.items() if "/blobs/" in k}
    rebuilt = tmp_path / "rebuilt-from-bucket"
    for entry in manifests[0]["files"]:
        (rebuilt / entry["path"]).parent.mkdir(parents=True, exist_ok=True)
        (rebuilt / entry["path"]).write_bytes(blobs[entry["sha256"]])
    from qilbee_backup.datadir import open_readonly

    with open_readonly(rebuilt) as db:
        return any(MARKER.encode() in value for _, value in db.get_column_family("nodes").items())


def test_the_bucket_holds_nothing_readable_and_the_same_scan_finds_plaintext_without_encryption(
        emulator, s3_repo_url, s3_client, run_cli, tmp_path):
    add_marked_nodes(emulator)
    made = ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", s3_repo_url,
                      "--keep-checkpoints", "5", "--json"))
    snapshot = emulator.data_dir / "snapshots" / made["snapshot_id"]
    secrets = snapshot_secrets(snapshot)
    ok(run_cli("archive", "--no-prefect", "--source", emulator.url, "--repo", s3_repo_url, "--storage-class",
               "STANDARD", "--keep-checkpoints", "5", "--json"))

    objects = bucket_objects(s3_client, s3_repo_url)
    assert any("/blobs/" in k for k in objects) and any("/archives/" in k for k in objects)
    assert leaks(objects, secrets) == []
    assert decoded(objects) == {}  # not one blob, manifest, archive or record decodes
    assert not marker_readable_from(objects, tmp_path)

    # The checks can fail: the same database in an unencrypted repository shows names, hashes, and
    # its records to whoever rebuilds it from the bucket.
    plain_repo = s3_repo_url + "-plain"
    ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", plain_repo, "--insecure-no-encryption",
               "--json"))
    plain = bucket_objects(s3_client, plain_repo)
    assert leaks(plain, secrets) != [] and decoded(plain) != {}
    assert marker_readable_from(plain, tmp_path)

    # ... and what is sealed restores, byte for byte, every file checked.
    target = tmp_path / "restored"
    ok(run_cli("restore", "--no-prefect", "--repo", s3_repo_url, "--backup", made["backup_id"],
               "--data-dir", str(target), "--no-check", "--json"))
    assert {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()} == \
           {p.relative_to(snapshot): p.read_bytes() for p in snapshot.rglob("*") if p.is_file()}


def test_a_wrong_or_missing_passphrase_is_one_line_and_nothing_is_written(emulator, s3_repo_url, s3_client, run_cli,
                                                                          cli_env):
    ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", s3_repo_url, "--json"))
    before = {k: hashlib.sha256(v).hexdigest() for k, v in bucket_objects(s3_client, s3_repo_url).items()}
    checkpoints = sorted(p.name for p in (emulator.data_dir / "snapshots").iterdir())

    wrong = dict(cli_env, QILBEE_PASSWORD="not the passphrase")
    for command in (["backup", "--no-prefect", "--source", emulator.url, "--repo", s3_repo_url],
                    ["backup", "--prefect", "--source", emulator.url, "--repo", s3_repo_url],
                    ["verify", "--no-prefect", "--repo", s3_repo_url],
                    ["list", "--repo", s3_repo_url]):
        line = one_error_line(run_cli(*command, env=wrong), 1)
        assert "wrong passphrase" in line and "not the passphrase" not in line

    missing = {k: v for k, v in cli_env.items() if not k.startswith("QILBEE_PASSWORD")}
    line = one_error_line(run_cli("list", "--repo", s3_repo_url, env=missing), 2)
    assert "is encrypted: give its passphrase" in line
    line = one_error_line(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", s3_repo_url + "-new",
                                  env=missing), 2)
    assert "--insecure-no-encryption" in line

    after = {k: hashlib.sha256(v).hexdigest() for k, v in bucket_objects(s3_client, s3_repo_url).items()}
    assert after == before  # not a lock, not a blob, not a manifest
    assert bucket_objects(s3_client, s3_repo_url + "-new") == {}
    assert sorted(p.name for p in (emulator.data_dir / "snapshots").iterdir()) == checkpoints  # no snapshot taken


def test_keys_change_without_touching_data_and_the_last_key_stays(emulator, run_cli, cli_env, tmp_path):
    repo = tmp_path / "repo"
    (tmp_path / "one").write_text("first passphrase\n")
    (tmp_path / "two").write_text("second passphrase\n")
    (tmp_path / "three").write_text("third passphrase\n")
    env = {k: v for k, v in cli_env.items() if not k.startswith("QILBEE_PASSWORD")}
    one, two, three = (["--password-file", str(tmp_path / n)] for n in ("one", "two", "three"))

    made = ok(run_cli("init", "--repo", str(repo), *one, "--json", env=env))
    ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", str(repo), *one, "--json", env=env))

    def data() -> dict[str, str]:
        return {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in repo.rglob("*") if p.is_file() and p.parts[len(repo.parts)] in ("blobs", "backups")}

    stored = data()
    added = ok(run_cli("key", "add", "--repo", str(repo), *one, "--new-password-file", str(tmp_path / "two"),
                       "--json", env=env))
    assert len(added["keys"]) == 2 and ok(run_cli("list", "--repo", str(repo), *two, "--json", env=env))
    changed = ok(run_cli("key", "passwd", "--repo", str(repo), *two, "--new-password-file", str(tmp_path / "three"),
                         "--json", env=env))
    assert changed["removed"] == added["added"]
    assert "wrong passphrase" in one_error_line(run_cli("list", "--repo", str(repo), *two, env=env), 1)
    ok(run_cli("key", "remove", made["key_id"], "--repo", str(repo), *three, "--json", env=env))
    assert "wrong passphrase" in one_error_line(run_cli("list", "--repo", str(repo), *one, env=env), 1)
    line = one_error_line(run_cli("key", "remove", changed["added"], "--repo", str(repo), *three, env=env), 2)
    assert "last key" in line
    listed = ok(run_cli("key", "list", "--repo", str(repo), *three, "--json", env=env))
    assert [k["key_id"] for k in listed["keys"]] == [changed["added"]] and listed["keys"][0]["current"]
    assert data() == stored  # not one blob or manifest rewritten
    ok(run_cli("verify", "--no-prefect", "--repo", str(repo), "--read-data", *three, "--json", env=env))


def test_an_unencrypted_repository_keeps_working_and_says_so(emulator, run_cli, tmp_path):
    repo = str(tmp_path / "plain")
    first = ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", repo, "--insecure-no-encryption",
                       "--json"))
    # Existing unencrypted repositories stay unencrypted: the passphrase in the environment changes nothing.
    second = ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", repo, "--json"))
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["version"] == 2
    assert not (tmp_path / "plain" / "keys").exists()
    # Plain zstd named by the content's SHA-256, as before encryption existed.
    blob = next(p for p in (tmp_path / "plain" / "blobs").rglob("*") if p.is_file())
    content = zstandard.ZstdDecompressor().decompress(blob.read_bytes(), max_output_size=1 << 30)
    assert hashlib.sha256(content).hexdigest() == blob.name
    listed = run_cli("list", "--repo", repo, "--json")
    assert [b["backup_id"] for b in ok(listed)] == [first["backup_id"], second["backup_id"]]
    assert "unencrypted" in listed.stderr
    assert ok(run_cli("stats", "--repo", repo, "--json"))["encryption"] == "unencrypted"
    ok(run_cli("verify", "--no-prefect", "--repo", repo, "--read-data", "--json"))
    ok(run_cli("restore", "--no-prefect", "--repo", repo, "--data-dir", str(tmp_path / "out"), "--no-check", "--json"))
    pruned = ok(run_cli("prune", "--no-prefect", "--repo", repo, "--keep-last", "1", "--grace", "0", "--json"))
    assert [r["backup_id"] for r in pruned["removed"]] == [first["backup_id"]] and pruned["blobs_removed"] >= 0
    assert ok(run_cli("stats", "--repo", repo, "--json"))["backups"] == 1


def test_a_config_edited_to_unencrypted_is_refused_and_nothing_plain_is_written(emulator, run_cli, cli_env, tmp_path):
    """Someone with write access to the bucket rewrites config.json to say "unencrypted": every command
    refuses (with or without a passphrase) rather than write plaintext beside the sealed objects."""
    repo = tmp_path / "repo"
    ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", str(repo), "--json"))
    config = json.loads((repo / "config.json").read_text())
    config.pop("encryption")
    config["version"] = 2
    (repo / "config.json").write_text(json.dumps(config))
    before = {str(p.relative_to(repo)): p.read_bytes() for p in repo.rglob("*") if p.is_file()}

    missing = {k: v for k, v in cli_env.items() if not k.startswith("QILBEE_PASSWORD")}
    for env in (cli_env, missing):
        for command in (["backup", "--no-prefect", "--source", emulator.url, "--repo", str(repo)],
                        ["prune", "--no-prefect", "--repo", str(repo), "--keep-last", "1", "--grace", "0"],
                        ["list", "--repo", str(repo)]):
            line = one_error_line(run_cli(*command, env=env), 1)
            assert "says the repository is unencrypted, yet it holds keys" in line, (command, line)
    after = {str(p.relative_to(repo)): p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    assert after == before


def test_an_archive_and_a_blob_decrypt_by_hand_with_only_the_script(emulator, run_cli, cli_env, tmp_path):
    repo = tmp_path / "repo"
    made = ok(run_cli("archive", "--no-prefect", "--source", emulator.url, "--repo", str(repo), "--keep-checkpoints", "5",
                      "--json"))
    backup = ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", str(repo), "--json"))
    script = REPO_ROOT / "scripts" / "decrypt_object.py"
    imported = {n.names[0].name.split(".")[0] if isinstance(n, ast.Import) else (n.module or "").split(".")[0]
                for n in ast.walk(ast.parse(script.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))}
    assert imported - set(sys.stdlib_module_names) == {"cryptography"}  # nothing of qilbee-backup

    env = {"PATH": os.environ["PATH"], "QILBEE_PASSWORD": TEST_PASSWORD}  # no PYTHONPATH: not the project

    def decrypt(*args: str) -> bytes:
        done = subprocess.run([sys.executable, str(script), "--repo", str(repo), *args], env=env, capture_output=True,
                              timeout=120, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return done.stdout

    # The archive: decrypt, then the README's zstd | tar and the SHA256SUMS check.
    tar_zst = decrypt(f"archives/{made['archive_id']}.tar.zst")
    out = tmp_path / "by-hand"
    out.mkdir()
    with zstandard.ZstdDecompressor().stream_reader(tar_zst) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        tar.extractall(out, filter="data")
    sums = subprocess.run(["sha256sum", "-c", "../SHA256SUMS"], cwd=out / "data", capture_output=True, text=True)
    assert sums.returncode == 0 and sums.stdout.count(": OK") == made["files"], sums.stdout + sums.stderr

    # A backup: its manifest, then one file's blob found through --blob-id.
    (manifest_path,) = (repo / "backups").glob(f"{backup['backup_id']}.*.json")
    manifest = json.loads(decrypt(str(manifest_path.relative_to(repo))))
    entry = max(manifest["files"], key=lambda f: f["size"])
    blob_id = decrypt("--blob-id", entry["sha256"]).decode().strip()
    content = zstandard.ZstdDecompressor().decompress(decrypt(f"blobs/{blob_id[:2]}/{blob_id}"), max_output_size=1 << 30)
    assert hashlib.sha256(content).hexdigest() == entry["sha256"] and len(content) == entry["size"]

    wrong = subprocess.run([sys.executable, str(script), "--repo", str(repo), "--blob-id", entry["sha256"]],
                           env=dict(env, QILBEE_PASSWORD="nope"), capture_output=True, text=True, timeout=120)
    assert wrong.returncode != 0 and "opens none" in wrong.stderr


def test_no_passphrase_or_key_reaches_output_logs_parameters_artifacts_events_or_the_repository(
        emulator, run_cli, cli_env, tmp_path, prefect_harness):
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    secret = f"leak-canary-passphrase-{os.urandom(6).hex()}"
    (tmp_path / "pw").write_text(secret + "\n")
    env = {k: v for k, v in cli_env.items() if not k.startswith("QILBEE_PASSWORD")}
    repo = tmp_path / "repo"
    via_file = ["--password-file", str(tmp_path / "pw")]
    outputs = [run_cli("backup", "--prefect", "--source", emulator.url, "--repo", str(repo), *via_file, "--json", env=env),
               run_cli("verify", "--prefect", "--repo", str(repo), "--read-data", *via_file, "--json", env=env),
               run_cli("restore", "--prefect", "--repo", str(repo), "--data-dir", str(tmp_path / "out"), *via_file,
                       "--json", env=dict(env, QILBEE_PASSWORD=secret)),
               run_cli("list", "--repo", str(repo), "--json", env=dict(env, QILBEE_PASSWORD=secret)),
               run_cli("list", "--repo", str(repo), "--json", env=dict(env, QILBEE_PASSWORD="wrong " + secret))]
    for done in outputs[:-1]:
        ok(done)
    for done in outputs:
        assert secret not in done.stdout + done.stderr

    repository = open_repository(str(repo), must_exist=False)
    repository.unlock(secret)
    master = repository.key.master
    forms = [secret.encode(), master, master.hex().encode(), master[:32], master[32:], master[:32].hex().encode()]
    import base64

    forms += [base64.b64encode(master), base64.b64encode(master[:32])]
    for path in repo.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [f for f in forms if f in data], f"{path} holds the passphrase or a key"

    time.sleep(6)  # logs and events reach the server in batches
    database = PREFECT_API_DATABASE_CONNECTION_URL.value().split("///", 1)[-1]
    stored = b"".join(Path(p).read_bytes() for p in (database, database + "-wal") if Path(p).exists())
    assert len(stored) > 100_000 and b"restore" in stored  # it is the database these runs went to
    assert secret.encode() not in stored and master.hex().encode() not in stored


def test_a_worker_finds_the_passphrase_in_a_prefect_secret_block(emulator, run_cli, tmp_path, monkeypatch):
    from prefect.blocks.system import Secret

    import flows.deployed as deployed

    repo = str(tmp_path / "repo")
    ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", repo, "--json"))
    Secret(value=TEST_PASSWORD).save("qilbee-backup-password", overwrite=True)
    try:
        monkeypatch.delenv("QILBEE_PASSWORD")
        rows = deployed.list_backups(repo=repo)
        assert len(rows) == 1 and "backup_id" in rows[0]
        Secret(value="not it").save("qilbee-backup-password", overwrite=True)
        from qilbee_backup.crypto import WrongPassphrase

        with pytest.raises(WrongPassphrase):
            deployed.list_backups(repo=repo)
    finally:
        Secret(value="").save("qilbee-backup-password", overwrite=True)


def test_the_kdf_runs_once_per_command(emulator, run_cli, tmp_path, monkeypatch):
    from flows.maintenance import verify
    from qilbee_backup import crypto

    repo = str(tmp_path / "repo")
    ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", repo, "--json"))
    ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", repo, "--json"))
    calls = []
    real = crypto._kek
    monkeypatch.setattr(crypto, "_kek", lambda *a: calls.append(1) or real(*a))
    assert verify(repo=repo, read_data=True)["ok"]
    assert len(calls) == 1
