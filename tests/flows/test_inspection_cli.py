"""Issue 11 item 3: `stats` and `diff`, the inspection commands an operator expects, through the real
CLI on a repository made by two real backups of the emulator (data added between them). Every
figure is checked against what the repository's files say (blob sizes on disk, the manifests'
JSON), in both output forms; neither command ever creates a flow run; bad input is one line."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import httpx
import pytest

from qilbee_backup.repository import blob_key


def ok(done) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def one_error_line(done, code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stderr[-3000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr and lines and lines[-1].startswith("qilbee-backup: error:"), done.stderr
    if code == 2:
        assert len(lines) == 1 and not done.stdout.strip(), done.stderr + done.stdout
    return lines[-1]


def add_nodes(emulator, count: int, tag: str) -> None:
    with httpx.Client(base_url=emulator.url, timeout=30) as http:
        http.post("/graphs/extra")
        for i in range(count):
            http.post("/graphs/extra/nodes", json={"labels": ["Extra"], "properties": {"tag": tag, "i": i, "pad": "x" * 200}})


def flow_runs() -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.count_flow_runs()


@pytest.fixture
def two_backups(run_cli, emulator, tmp_path):
    """A daily backup, 200 nodes added, a weekly backup: the repository and both backups' results.
    Unencrypted, so the expected figures come from the files read here without the engine (an
    encrypted repository's figures are checked in test_encryption.py)."""
    repo_dir = tmp_path / "repo"
    older = ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", str(repo_dir), "--kind", "daily",
                       "--insecure-no-encryption", "--json"))
    add_nodes(emulator, 200, "newer")
    newer = ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", str(repo_dir), "--kind", "weekly",
                       "--json"))
    return repo_dir, older, newer


# -- what the repository's files say, read here without the engine ---------------------------------------


def blob_files(repo_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (repo_dir / "blobs").glob("*/*")}


def manifests(repo_dir: Path) -> dict[str, dict]:
    found = {}
    for p in (repo_dir / "backups").glob("*.json"):
        m = json.loads(p.read_bytes())
        found[m["backup_id"]] = m
    return found


def expected(chosen: list[dict], blobs: dict[str, int]) -> dict:
    content = {f["sha256"]: f["size"] for m in chosen for f in m["files"]}
    logical, unique = sum(m["bytes_total"] for m in chosen), sum(content.values())
    stored = sum(blobs[s] for s in content)
    times = sorted(m["created_at"] for m in chosen)
    iso = [t.replace("Z", "+00:00") for t in times]
    return {"backups": len(chosen), "files": sum(len(m["files"]) for m in chosen), "logical_bytes": logical,
            "unique_bytes": unique, "unique_blobs": len(content), "stored_bytes": stored, "missing_blobs": 0,
            "dedup_ratio": round(logical / unique, 4), "compression_ratio": round(unique / stored, 4),
            "oldest_at": iso[0], "newest_at": iso[-1]}


FIGURES = ("backups", "files", "logical_bytes", "unique_bytes", "unique_blobs", "stored_bytes", "missing_blobs",
           "dedup_ratio", "compression_ratio", "oldest_at", "newest_at")


# -- stats -----------------------------------------------------------------------------------------------


def test_stats_match_the_repository_files_in_both_forms(run_cli, two_backups, emulator):
    repo_dir, older, newer = two_backups
    leftover = "cd" + "1" * 62  # an interrupted run's blob: stored, named by no manifest
    (repo_dir / blob_key(leftover)).parent.mkdir(parents=True, exist_ok=True)
    (repo_dir / blob_key(leftover)).write_bytes(b"q" * 4321)
    blobs, raw = blob_files(repo_dir), manifests(repo_dir)
    source = f"127.0.0.1-{emulator.port}"

    result = ok(run_cli("stats", "--repo", str(repo_dir), "--json"))
    whole = expected(list(raw.values()), blobs)
    assert {k: result[k] for k in FIGURES} == whole
    assert whole["dedup_ratio"] > 1.3, "the second backup shares most of its files with the first"
    assert [(s["source"], s["kind"]) for s in result["series"]] == [(source, "daily"), (source, "weekly")]
    for s in result["series"]:
        assert {k: s[k] for k in FIGURES} == expected([m for m in raw.values() if m["kind"] == s["kind"]], blobs)
    assert result["repository_blobs"] == {"blobs": len(blobs), "stored_bytes": sum(blobs.values()), "unreferenced_blobs": 1,
                                          "unreferenced_bytes": 4321, "unreferenced_exact": True}
    config = json.loads((repo_dir / "config.json").read_bytes())
    assert (result["encryption"], result["format"], result["repository_version"]) == ("unencrypted", config["format"],
                                                                                     config["version"])
    assert (result["damaged_manifests"], result["damaged"]) == (0, [])

    weekly = ok(run_cli("stats", "--repo", str(repo_dir), "--kind", "weekly", "--source-name", source, "--json"))
    assert {k: weekly[k] for k in FIGURES} == expected([raw[newer["backup_id"]]], blobs)
    assert weekly["selection"] == {"kind": "weekly", "source_name": source}
    assert ok(run_cli("stats", "--repo", str(repo_dir), "--source-name", "elsewhere", "--json"))["backups"] == 0

    text = run_cli("stats", "--repo", str(repo_dir))
    assert text.returncode == 0 and text.stdout.splitlines()[0] == f"Stats of {repo_dir}: 2 backups"
    for name, value in (("logical size", f"({whole['logical_bytes']:,} bytes)"),
                        ("unique content", f"({whole['unique_bytes']:,} bytes) ({whole['unique_blobs']} distinct blobs)"),
                        ("stored size", f"({whole['stored_bytes']:,} bytes)"),
                        ("dedup ratio", f"{whole['dedup_ratio']:.2f}×"),
                        ("compression ratio", f"{whole['compression_ratio']:.2f}×"),
                        ("files", f"{whole['files']}"), ("encryption", "unencrypted"),
                        ("format", "qilbee-backup, repository version 2"),
                        ("unreferenced blobs", "1 blobs, 4.2 KiB (4,321 bytes)")):
        assert re.search(rf"^  {re.escape(name)}\s+.*{re.escape(value)}", text.stdout, re.M), (name, value, text.stdout)
    assert re.search(rf"^\s+{re.escape(source)}\s+weekly\s+1\s+{len(raw[newer['backup_id']]['files'])}\s", text.stdout, re.M)


# -- diff ------------------------------------------------------------------------------------------------


def test_diff_names_every_file_and_figure_in_both_forms(run_cli, two_backups):
    repo_dir, older, newer = two_backups
    raw = manifests(repo_dir)
    a, b = raw[older["backup_id"]], raw[newer["backup_id"]]
    before, after = {f["path"]: f for f in a["files"]}, {f["path"]: f for f in b["files"]}
    changed = {p: [w for w, k in (("content", "sha256"), ("size", "size"), ("mode", "mode")) if before[p][k] != after[p][k]]
               for p in before.keys() & after.keys()}
    changed = {p: w for p, w in changed.items() if w}

    result = ok(run_cli("diff", older["backup_id"], "latest", "--repo", str(repo_dir), "--json"))
    assert [f["path"] for f in result["added"]] == sorted(after.keys() - before.keys())
    assert [f["path"] for f in result["removed"]] == sorted(before.keys() - after.keys())
    assert {c["path"]: c["what"] for c in result["changed"]} == changed
    assert result["added"] and changed, "200 nodes added must add and change files"
    assert result["unchanged"] == len(before.keys() & after.keys()) - len(changed)
    assert result["added_bytes"] == sum(after[p]["size"] for p in after.keys() - before.keys())
    assert result["removed_bytes"] == sum(before[p]["size"] for p in before.keys() - after.keys())
    new = {f["sha256"]: f["size"] for f in b["files"] if f["sha256"] not in {g["sha256"] for g in a["files"]}}
    assert (result["new_content_bytes"], result["new_blobs"]) == (sum(new.values()), len(new))

    def change(x, y):
        return {"first": x, "second": y, "delta": None if x is None or y is None else y - x}

    figures = result["figures"]
    assert figures["files"] == change(len(a["files"]), len(b["files"]))
    assert figures["bytes_total"] == change(a["bytes_total"], b["bytes_total"])
    assert figures["nodeCount"] == change(a["stats"]["nodeCount"], b["stats"]["nodeCount"]) and \
        figures["nodeCount"]["delta"] == 200
    assert figures["relationshipCount"] == change(a["stats"]["relationshipCount"], b["stats"]["relationshipCount"])
    graphs_a, graphs_b = a["stats"]["graphs"], b["stats"]["graphs"]
    assert figures["graphs"] == {
        g: {k: change((graphs_a.get(g) or {}).get(k), (graphs_b.get(g) or {}).get(k)) for k in ("nodeCount", "relationshipCount")}
        for g in sorted(set(graphs_a) | set(graphs_b))}
    assert figures["graphs"]["extra"]["nodeCount"]["second"] == 200
    assert (result["first"]["backup_id"], result["second"]["backup_id"]) == (older["backup_id"], newer["backup_id"])

    text = run_cli("diff", older["backup_id"], newer["backup_id"], "--repo", str(repo_dir))
    assert text.returncode == 0, text.stderr
    n_added, n_removed = len(after.keys() - before.keys()), len(before.keys() - after.keys())
    assert text.stdout.splitlines()[0] == (f"Diff {older['backup_id']} → {newer['backup_id']}: {n_added} added, "
                                           f"{n_removed} removed, {len(changed)} changed, {result['unchanged']} unchanged")
    marks = {}
    for line in text.stdout.splitlines():
        m = re.match(r"^    ([+\-M])  (\S+)\s", line)
        if m:
            assert m.group(2) not in marks, f"two lines for {m.group(2)}"
            marks[m.group(2)] = m.group(1)
    assert marks == {**{p: "+" for p in after.keys() - before.keys()}, **{p: "-" for p in before.keys() - after.keys()},
                     **{p: "M" for p in changed}}
    delta = figures["nodeCount"]
    assert re.search(rf"^\s+nodes\s+{delta['first']:,}\s+{delta['second']:,}\s+\+200$", text.stdout, re.M), text.stdout

    same = ok(run_cli("diff", newer["backup_id"], "latest", "--repo", str(repo_dir), "--json"))
    assert (same["added"], same["removed"], same["changed"], same["unchanged"]) == ([], [], [], len(b["files"]))


def test_a_damaged_manifest_is_one_error_line_for_diff_and_named_by_stats(run_cli, two_backups):
    repo_dir, older, newer = two_backups
    (path,) = (repo_dir / "backups").glob(f"{older['backup_id']}.*.json")
    path.write_bytes(path.read_bytes()[:300])
    line = one_error_line(run_cli("diff", older["backup_id"], newer["backup_id"], "--repo", str(repo_dir)), 1)
    assert older["backup_id"] in line and "manifest" in line
    result = ok(run_cli("stats", "--repo", str(repo_dir), "--json"))
    assert result["backups"] == 1 and result["damaged_manifests"] == 1
    assert [d["backup_id"] for d in result["damaged"]] == [older["backup_id"]]
    assert result["repository_blobs"]["unreferenced_exact"] is False
    text = run_cli("stats", "--repo", str(repo_dir))
    assert "and 1 damaged manifest" in text.stdout and older["backup_id"] in text.stdout


# -- read only: never a flow run; bad input ----------------------------------------------------------------


def test_neither_command_creates_a_flow_run(run_cli, two_backups):
    repo_dir, older, newer = two_backups
    before = flow_runs()
    for way in ([], ["--prefect"], ["--no-prefect"]):  # with an API configured (the default here), forced, and not
        for args in (["stats", "--repo", str(repo_dir)], ["diff", older["backup_id"], "latest", "--repo", str(repo_dir)]):
            for form in ([], ["--json"]):
                done = run_cli(*args, *way, *form)
                assert done.returncode == 0, done.stderr
                assert "running without Prefect" not in done.stderr  # nothing to record: nothing said about it
    assert flow_runs() == before


BAD = [
    (["diff", "yesterday", "latest"], 2, "A: 'yesterday' is not a backup id or latest"),
    (["diff", "latest", "20261130T02000Z-0a1b2c"], 2, "B: '20261130T02000Z-0a1b2c' is not a backup id"),
    (["diff", "latest"], 2, "the following arguments are required: B"),
    (["diff", "20261399T020000Z-0a1b2c", "latest"], 2, "not a real date and time"),
    (["diff", "20261101T020000Z-0a1b2c", "latest"], 1, "backup 20261101T020000Z-0a1b2c not found"),
    (["stats", "--kind", "Weekly!"], 2, "--kind: 'Weekly!' is not a series kind"),
    (["stats", "--source-name", "Prod DB"], 2, "--source-name: 'Prod DB' is not a source name"),
    (["stats", "--keep-last", "1"], 2, "unrecognized arguments: --keep-last 1"),
]


def test_bad_input_is_one_line(run_cli, two_backups):
    repo_dir = two_backups[0]
    before = sorted(p.relative_to(repo_dir) for p in repo_dir.rglob("*"))
    for args, code, says in BAD:
        line = one_error_line(run_cli(*args, "--repo", str(repo_dir)), code)
        assert says in line, (args, line)
    assert sorted(p.relative_to(repo_dir) for p in repo_dir.rglob("*")) == before


@pytest.mark.parametrize("args", [["stats"], ["diff", "latest", "latest"]])
def test_a_location_without_a_repository_is_one_line_exit_1_and_stays_empty(run_cli, tmp_path, args):
    line = one_error_line(run_cli(*args, "--repo", str(tmp_path / "nothing")), 1)
    assert "is not a qilbee-backup repository" in line and not (tmp_path / "nothing").exists()
    assert "bad repository URL" in one_error_line(run_cli(*args, "--repo", "ftp://host/x"), 2)


def test_timing_without_a_prefect_api(run_cli, two_backups, cli_env, tmp_path):
    """End to end as a person runs them on a laptop (no PREFECT_API_URL): measured and printed, not asserted."""
    repo_dir, older, newer = two_backups
    env = {k: v for k, v in cli_env.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(tmp_path / "home")}
    timings = []
    for args in (["stats"], ["stats", "--json"], ["diff", older["backup_id"], "latest"],
                 ["diff", older["backup_id"], "latest", "--json"]):
        start = time.monotonic()
        done = run_cli(*args, "--repo", str(repo_dir), env=env)
        timings.append((" ".join(args).replace(older["backup_id"], "A"), time.monotonic() - start))
        assert done.returncode == 0, done.stderr
        assert "temporary server" not in done.stderr
    assert not os.path.exists(tmp_path / "home"), "Prefect was set up for a read-only command"
    print("\ninspection timings (subprocess, no Prefect API, 2-backup repository): "
          + ", ".join(f"{name}: {seconds:.2f} s" for name, seconds in timings))
