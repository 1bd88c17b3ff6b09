"""Issue 9, nothing lost: each case seen to lose data or block a recovery, through the real CLI on a
real emulator and repository (a directory, and S3 on moto_server where the store matters)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from qilbee_backup.repository import open_repository


@pytest.fixture(params=["prefect", "direct"])
def run_cli(request, run_cli):
    """Each case both ways: as a Prefect flow run, and directly (the CLI without a Prefect API)."""
    flag = "--prefect" if request.param == "prefect" else "--no-prefect"

    def run(*args, **kw):
        return run_cli(args[0], flag, *args[1:], **kw) if args and args[0] != "list" else run_cli(*args, **kw)

    return run


def ok(done) -> dict | list:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout) if done.stdout.strip() else {}


def one_error_line(done, code: int = 1) -> str:
    """The command failed with exit `code` and one `qilbee-backup: error:` line last, no traceback."""
    assert done.returncode == code, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("qilbee-backup: error:"), done.stderr[-3000:]
    return last


def add_nodes(emulator, count: int, tag: str) -> None:
    with httpx.Client(base_url=emulator.url, timeout=30) as http:
        http.post("/graphs/extra")
        for i in range(count):
            http.post("/graphs/extra/nodes", json={"labels": ["Extra"], "properties": {"tag": tag, "i": i, "pad": "x" * 200}})


def manifest_file(repo_dir: Path, backup_id: str) -> Path:
    (path,) = (repo_dir / "backups").glob(f"{backup_id}.*json")
    return path


def edit_manifest(repo_dir: Path, backup_id: str, edit) -> None:
    """Edit a manifest in place, as one holding the repository's key could (re-sealed, same name)."""
    repo = open_repository(str(repo_dir))
    path = manifest_file(repo_dir, backup_id)
    raw = json.loads(repo.open_sealed(path.read_bytes(), f"manifest:{backup_id}", str(path)))
    edit(raw)
    path.write_bytes(repo.seal(json.dumps(raw, indent=1).encode(), f"manifest:{backup_id}"))


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# -- 1. retention stays inside its series: (database, kind) ------------------------------------------


def test_retention_never_crosses_databases(run_cli, emulator_factory, tmp_path):
    a, b = emulator_factory(seed_nodes=50), emulator_factory(seed_nodes=60)
    repo = str(tmp_path / "repo")
    first_a = ok(run_cli("backup", "--source", a.url, "--repo", repo, "--kind", "daily", "--json"))
    ok(run_cli("backup", "--source", b.url, "--repo", repo, "--kind", "daily", "--json"))
    last_b = ok(run_cli("backup", "--source", b.url, "--repo", repo, "--kind", "daily", "--keep-last", "1", "--json"))
    assert last_b["source"] == f"127.0.0.1-{b.port}" and len(last_b["pruned"][0]["removed"]) == 1
    listed = ok(run_cli("list", "--repo", repo, "--json"))
    assert {(r["source"], r["kind"]) for r in listed} == {(f"127.0.0.1-{a.port}", "daily"), (f"127.0.0.1-{b.port}", "daily")}
    assert first_a["backup_id"] in [r["backup_id"] for r in listed], "A's only backup was pruned by B's retention"

    # prune over the whole repository keeps one per (source, kind); --source-name selects one source.
    ok(run_cli("backup", "--source", a.url, "--repo", repo, "--kind", "daily", "--json"))
    dry = ok(run_cli("prune", "--repo", repo, "--keep-last", "1", "--dry-run", "--json"))
    assert [r["backup_id"] for r in dry["removed"]] == [first_a["backup_id"]]
    only_b = ok(run_cli("prune", "--repo", repo, "--keep-last", "1", "--source-name", f"127.0.0.1-{b.port}", "--json"))
    assert only_b["removed"] == [] and {k["source"] for k in only_b["kept"]} == {f"127.0.0.1-{b.port}"}
    mine = ok(run_cli("list", "--repo", repo, "--source-name", f"127.0.0.1-{a.port}", "--json"))
    assert len(mine) == 2 and {r["source"] for r in mine} == {f"127.0.0.1-{a.port}"}


def test_a_source_name_keeps_the_series_across_a_new_url(run_cli, emulator_factory, tmp_path):
    """After a DR the database answers at another URL; --source-name keeps it in its series."""
    old, new = emulator_factory(seed_nodes=30), emulator_factory(seed_nodes=30)
    repo = str(tmp_path / "repo")
    before = ok(run_cli("backup", "--source", old.url, "--repo", repo, "--source-name", "prod", "--kind", "daily", "--json"))
    after = ok(run_cli("backup", "--source", new.url, "--repo", repo, "--source-name", "prod", "--kind", "daily",
                       "--keep-last", "1", "--json"))
    assert after["pruned"][0]["removed"] == [before["backup_id"]]
    bad = run_cli("backup", "--source", new.url, "--repo", repo, "--source-name", "Prod DB")
    assert one_error_line(bad, 2) and "source name" in bad.stderr
    assert [r["backup_id"] for r in ok(run_cli("list", "--repo", repo, "--json"))] == [after["backup_id"]]


def test_archive_retention_is_per_database_too(run_cli, emulator_factory, tmp_path):
    a, b = emulator_factory(seed_nodes=20), emulator_factory(seed_nodes=20)
    repo = str(tmp_path / "repo")
    first_a = ok(run_cli("archive", "--source", a.url, "--repo", repo, "--json"))
    ok(run_cli("archive", "--source", b.url, "--repo", repo, "--json"))
    ok(run_cli("archive", "--source", b.url, "--repo", repo, "--keep-last", "1", "--json"))
    listed = ok(run_cli("list", "--repo", repo, "--archives", "--json"))
    assert first_a["archive_id"] in [r["archive_id"] for r in listed]
    assert sorted(r["source"] for r in listed) == sorted([f"127.0.0.1-{a.port}", f"127.0.0.1-{b.port}"])


# -- 3. no prune beside a failed verify -------------------------------------------------------------


def test_no_prune_when_the_new_backup_fails_verification(run_cli, emulator, tmp_path):
    repo_dir = tmp_path / "repo"
    first = ok(run_cli("backup", "--source", emulator.url, "--repo", str(repo_dir), "--json"))
    # Damage a blob the next backup reuses (same size: the upload's listing cannot tell).
    repo = open_repository(str(repo_dir))
    biggest = max(repo.load(first["backup_id"]).files, key=lambda f: f.size)
    flip_byte(repo_dir / repo.blob_key(biggest.sha256))
    done = run_cli("backup", "--source", emulator.url, "--repo", str(repo_dir), "--read-data", "--keep-last", "1")
    assert "failed verification" in one_error_line(done)
    assert first["backup_id"] in open_repository(str(repo_dir)).backup_ids(), "pruned beside a failed verify"
    assert "not pruning" in done.stderr


# -- 4, 6. a damaged or edited manifest never blocks the others --------------------------------------


@pytest.fixture
def two_backups(run_cli, emulator, tmp_path):
    repo_dir = tmp_path / "repo"
    older = ok(run_cli("backup", "--source", emulator.url, "--repo", str(repo_dir), "--kind", "daily", "--json"))
    add_nodes(emulator, 200, "newer")
    newer = ok(run_cli("backup", "--source", emulator.url, "--repo", str(repo_dir), "--kind", "daily", "--json"))
    return repo_dir, older, newer


def test_a_truncated_manifest_is_skipped_and_named_everywhere(run_cli, two_backups, tmp_path):
    repo_dir, older, newer = two_backups
    repo = str(repo_dir)
    path = manifest_file(repo_dir, older["backup_id"])
    path.write_bytes(path.read_bytes()[:200])  # the OLDEST one

    listed = ok(run_cli("list", "--repo", repo, "--json"))
    assert [r["backup_id"] for r in listed if "damaged" not in r] == [newer["backup_id"]]
    assert [r["backup_id"] for r in listed if "damaged" in r] == [older["backup_id"]]
    text = run_cli("list", "--repo", repo)
    assert text.returncode == 0 and "damaged" in text.stdout

    checked = run_cli("verify", "--repo", repo, "--json")
    assert older["backup_id"] in one_error_line(checked)
    report = json.loads(checked.stdout)
    assert {b["backup_id"]: b["ok"] for b in report["backups"]} == {newer["backup_id"]: True, older["backup_id"]: False}

    restored = ok(run_cli("restore", "--repo", repo, "--backup", "latest", "--data-dir", str(tmp_path / "r"), "--json"))
    assert restored["backup_id"] == newer["backup_id"]

    blobs_before = set(open_repository(repo).blob_sizes())
    pruned = ok(run_cli("prune", "--repo", repo, "--keep-last", "1", "--grace", "0", "--json"))
    assert pruned["removed"] == [] and pruned["sweep_skipped"] is True
    assert [d["backup_id"] for d in pruned["damaged"]] == [older["backup_id"]]
    assert path.exists() and set(open_repository(repo).blob_sizes()) == blobs_before

    drilled = ok(run_cli("drill", "--repo", repo, "--json"))
    assert drilled["backup_id"] == newer["backup_id"] and drilled["integrity"]["ok"]


def test_a_damaged_newest_manifest_leaves_the_older_backup_restorable(run_cli, two_backups, tmp_path):
    repo_dir, older, newer = two_backups
    path = manifest_file(repo_dir, newer["backup_id"])
    path.write_bytes(b"{" + path.read_bytes()[1:-50])
    restored = run_cli("restore", "--repo", str(repo_dir), "--data-dir", str(tmp_path / "r"), "--json")
    assert ok(restored)["backup_id"] == older["backup_id"]
    assert newer["backup_id"] in restored.stderr  # named as skipped
    explicit = run_cli("restore", "--repo", str(repo_dir), "--backup", newer["backup_id"], "--data-dir", str(tmp_path / "r2"))
    assert newer["backup_id"] in one_error_line(explicit) and "manifest" in one_error_line(explicit)
    assert not (tmp_path / "r2").exists()


def test_an_edited_manifest_is_caught_by_verify_restore_and_dr(run_cli, two_backups, tmp_path):
    repo_dir, older, newer = two_backups

    def drop_a_file(raw: dict) -> None:
        dropped = raw["files"].pop()
        raw["bytes_total"] -= dropped["size"]

    edit_manifest(repo_dir, newer["backup_id"], drop_a_file)

    assert "does not match the digest" in one_error_line(run_cli("verify", "--repo", str(repo_dir), "--read-data"))
    edited = run_cli("restore", "--repo", str(repo_dir), "--backup", newer["backup_id"], "--data-dir", str(tmp_path / "r"))
    assert "does not match the digest" in one_error_line(edited)
    drilled = ok(run_cli("drill", "--repo", str(repo_dir), "--json"))
    assert drilled["backup_id"] == older["backup_id"]
    assert [s["backup_id"] for s in drilled["skipped_backups"]] == [newer["backup_id"]]


# -- 5. DR and drill fall back on content damage -------------------------------------------------------


def test_drill_and_dr_fall_back_to_the_newest_intact_backup(run_cli, two_backups, tmp_path):
    repo_dir, older, newer = two_backups
    repo = open_repository(str(repo_dir))
    only_newest = repo.load(newer["backup_id"]).blob_shas() - repo.load(older["backup_id"]).blob_shas()
    assert only_newest, "the newer backup must have a blob of its own"
    flip_byte(repo_dir / repo.blob_key(max(only_newest, key=lambda s: repo.blob_sizes()[repo.blob_id(s)])))

    drilled = run_cli("drill", "--repo", str(repo_dir), "--json")
    result = ok(drilled)
    assert result["backup_id"] == older["backup_id"] and result["integrity"]["ok"]
    (skipped,) = result["skipped_backups"]
    assert skipped["backup_id"] == newer["backup_id"] and "restore failed" in skipped["problems"]
    assert f"backup {newer['backup_id']} is damaged" in drilled.stderr

    dr = ok(run_cli("dr", "--repo", str(repo_dir), "--data-root", str(tmp_path / "dr"), "--json"))
    try:
        assert dr["backup_id"] == older["backup_id"]
        assert [s["backup_id"] for s in dr["skipped_backups"]] == [newer["backup_id"]]
        assert not (tmp_path / "dr" / f"qilbee-{newer['backup_id']}").exists() or not any(
            (tmp_path / "dr" / f"qilbee-{newer['backup_id']}").iterdir())
    finally:
        import os
        import signal

        os.kill(dr["instance"]["pid"], signal.SIGTERM)

    # Named explicitly: no fallback.
    explicit = run_cli("drill", "--repo", str(repo_dir), "--backup", newer["backup_id"])
    assert newer["backup_id"] in one_error_line(explicit)


# -- 11. leftovers: the server's checkpoint goes once the backup is committed --------------------------


def test_a_backup_removes_its_server_checkpoint_unless_asked_to_keep(run_cli, emulator, tmp_path):
    repo = str(tmp_path / "repo")
    snapshots = emulator.data_dir / "snapshots"

    def checkpoints() -> list[str]:
        return sorted(p.name for p in snapshots.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))

    result = ok(run_cli("backup", "--source", emulator.url, "--repo", repo, "--json"))
    assert checkpoints() == [] and result["checkpoints"]["deleted"] == [result["snapshot_id"]]
    for _ in range(2):
        kept = ok(run_cli("backup", "--source", emulator.url, "--repo", repo, "--keep-checkpoints", "1", "--json"))
    # The newest stays; the older one is another run's and younger than the grace (it may still be read).
    assert kept["snapshot_id"] in checkpoints() and kept["snapshot_id"] in kept["checkpoints"]["kept"]
    assert len(checkpoints()) == 2
    assert ok(run_cli("verify", "--repo", repo, "--read-data", "--json"))["ok"]


def test_a_killed_runs_spool_is_removed_by_the_next_run(run_cli, emulator, tmp_path, cli_env):
    import subprocess
    import sys

    spools = tmp_path / "tmp"
    spools.mkdir()
    env = {**cli_env, "TMPDIR": str(spools)}
    # A stand-in for a killed backup: a process made a spool and died without removing it.
    code = "from qilbee_backup.spool import new_spool; p = new_spool(); (p / 'blob.zst').write_bytes(b'x' * 1000)"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    (left,) = spools.glob("qilbee-spool-*")
    ok(run_cli("backup", "--source", emulator.url, "--repo", str(tmp_path / "repo"), "--json", env=env))
    assert not left.exists() and list(spools.glob("qilbee-spool-*")) == []
