"""stats and diff (qilbee_backup.inspection) on a real repository in a temp directory: every figure
checked against what the repository's files say, computed here independently (blob sizes on disk,
the manifests' JSON), and the reports read in every form."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from qilbee_backup.destinations.file import FileDestination
from qilbee_backup.errors import IntegrityError, NotFound, UsageError
from qilbee_backup.inspection import diff_backups, diff_manifests, repository_stats
from qilbee_backup.manifest import SourceInfo
from qilbee_backup.backup import backup_directory
from qilbee_backup.report import render_text, report_markdown, table_rows
from qilbee_backup.repository import Repository, blob_key
from tests.files import write

UTC = timezone.utc
T0 = datetime(2026, 11, 20, 2, tzinfo=UTC)
PROD = SourceInfo(url="http://10.0.0.5:7474", mode="online", name="prod")
TEST = SourceInfo(url="http://10.0.0.6:7474", mode="offline")  # no name: its series is 10.0.0.6-7474


def stats_of(nodes: dict[str, tuple[int, int]]) -> dict:
    graphs = {g: {"nodeCount": n, "relationshipCount": r} for g, (n, r) in nodes.items()}
    return {"graphs": graphs, "nodeCount": sum(n for n, _ in nodes.values()),
            "relationshipCount": sum(r for _, r in nodes.values())}


@pytest.fixture
def repo_dir(tmp_path) -> Path:
    return tmp_path / "repo"


@pytest.fixture
def repo(repo_dir) -> Repository:
    return Repository(FileDestination(repo_dir))


def take(repo: Repository, root: Path, tmp_path: Path, *, kind="daily", source=PROD, now=T0, stats=None):
    return backup_directory([repo], root, kind=kind, source=source, spool=tmp_path / "spool",
                            stats=stats or {}, now=now)


@pytest.fixture
def three(repo, tmp_path):
    """prod daily on day 0, prod daily on day 1 (one table added, one rewritten, one removed, one
    made private), and a test-server weekly of day 1's data: shared content, three series of two."""
    root = tmp_path / "data"
    for i in range(4):
        write(root / f"{i:06d}.sst", os.urandom(30_000 + i) + b"\0" * 50_000)  # compressible
    write(root / "CURRENT", b"MANIFEST-000009\n")
    write(root / "MANIFEST-000009", b"edits " * 400)
    write(root / "copy" / "same.sst", (root / "000000.sst").read_bytes())  # same content twice in one backup
    a = take(repo, root, tmp_path, stats=stats_of({"social": (50, 70), "ops": (20, 17)}))
    write(root / "000004.sst", os.urandom(12_345))
    write(root / "MANIFEST-000009", b"edits " * 500)
    (root / "000001.sst").unlink()
    os.chmod(root / "CURRENT", 0o600)
    b = take(repo, root, tmp_path, now=T0 + timedelta(days=1), stats=stats_of({"social": (250, 70), "extra": (9, 0)}))
    c = take(repo, root, tmp_path, kind="weekly", source=TEST, now=T0 + timedelta(days=1, hours=1))
    return a, b, c


# -- what the repository's files say, read here without the engine ---------------------------------------


def on_disk(repo_dir: Path) -> tuple[dict[str, int], list[dict]]:
    """(sha -> stored size of every blob file, every manifest's JSON)."""
    blobs = {p.name: p.stat().st_size for p in (repo_dir / "blobs").glob("*/*")}
    manifests = [json.loads(p.read_bytes()) for p in sorted((repo_dir / "backups").glob("*.json"))]
    return blobs, manifests


def expected_figures(manifests: list[dict], blobs: dict[str, int]) -> dict:
    content = {f["sha256"]: f["size"] for m in manifests for f in m["files"]}
    logical = sum(m["bytes_total"] for m in manifests)
    unique = sum(content.values())
    stored = sum(blobs[s] for s in content if s in blobs)
    times = sorted(datetime.fromisoformat(m["created_at"].replace("Z", "+00:00")) for m in manifests)
    return {"backups": len(manifests), "files": sum(len(m["files"]) for m in manifests), "logical_bytes": logical,
            "unique_bytes": unique, "unique_blobs": len(content), "stored_bytes": stored,
            "missing_blobs": sum(1 for s in content if s not in blobs),
            "dedup_ratio": round(logical / unique, 4) if unique else None,
            "compression_ratio": round(sum(content[s] for s in content if s in blobs) / stored, 4) if stored else None,
            "oldest_at": times[0].isoformat() if times else None, "newest_at": times[-1].isoformat() if times else None}


def series_name(m: dict) -> str:
    return m["source"].get("name") or "10.0.0.6-7474"


# -- stats -----------------------------------------------------------------------------------------------


def test_stats_of_the_whole_repository_match_its_files(repo, repo_dir, three):
    blobs, manifests = on_disk(repo_dir)
    result = repository_stats(repo)
    figures = {k: result[k] for k in expected_figures([], {})}
    assert figures == expected_figures(manifests, blobs)
    # The figures say what they should: shared content counted once, compressed smaller.
    assert result["backups"] == 3 and result["unique_bytes"] < result["logical_bytes"]
    assert result["dedup_ratio"] > 2 and result["compression_ratio"] > 1 and result["missing_blobs"] == 0
    assert result["stored_bytes"] == sum(blobs.values())  # every blob is referenced
    assert result["repository_blobs"] == {"blobs": len(blobs), "stored_bytes": sum(blobs.values()),
                                          "unreferenced_blobs": 0, "unreferenced_bytes": 0, "unreferenced_exact": True}
    config = json.loads((repo_dir / "config.json").read_bytes())
    assert (result["format"], result["repository_version"], result["repository_created_at"]) == (
        "qilbee-backup", 2, config["created_at"])
    assert result["encryption"] == "unencrypted" and result["manifest_versions"] == [2]
    assert result["damaged_manifests"] == 0 and result["damaged"] == []
    assert result["selection"] == {"kind": None, "source_name": None}


def test_stats_per_series_and_of_a_selection(repo, repo_dir, three):
    blobs, manifests = on_disk(repo_dir)
    result = repository_stats(repo)
    groups: dict[tuple[str, str], list[dict]] = {}
    for m in manifests:
        groups.setdefault((series_name(m), m["kind"]), []).append(m)
    assert [(s["source"], s["kind"]) for s in result["series"]] == sorted(groups) == [
        ("10.0.0.6-7474", "weekly"), ("prod", "daily")]
    for s in result["series"]:
        assert {k: v for k, v in s.items() if k not in ("source", "kind")} == expected_figures(
            groups[(s["source"], s["kind"])], blobs)

    daily = repository_stats(repo, kind="daily")
    assert {k: daily[k] for k in expected_figures([], {})} == expected_figures(groups[("prod", "daily")], blobs)
    assert [s["kind"] for s in daily["series"]] == ["daily"] and daily["selection"] == {"kind": "daily", "source_name": None}
    # The whole listing is reported whatever the selection: blobs only the weekly needs are not "unreferenced".
    assert daily["repository_blobs"]["blobs"] == len(blobs) and daily["repository_blobs"]["unreferenced_blobs"] == 0
    prod = repository_stats(repo, source_name="prod", kind="daily")
    assert prod["backups"] == 2 and repository_stats(repo, source_name="nobody")["backups"] == 0


def test_unreferenced_blobs_are_reported_apart(repo, repo_dir, three, tmp_path):
    leftover = "ab" + "0" * 62  # an interrupted run's blob: stored, named by no manifest
    write(repo_dir / blob_key(leftover), b"z" * 777)
    result = repository_stats(repo)
    blobs, manifests = on_disk(repo_dir)
    assert {k: result[k] for k in expected_figures([], {})} == expected_figures(manifests, blobs)
    assert result["repository_blobs"]["unreferenced_blobs"] == 1 and result["repository_blobs"]["unreferenced_bytes"] == 777
    assert result["repository_blobs"]["stored_bytes"] == result["stored_bytes"] + 777
    assert "1 blobs, 777 bytes (no backup needs them" in render_text(result)


def test_a_damaged_manifest_is_counted_and_named_and_makes_unreferenced_a_guess(repo, repo_dir, three):
    a, b, c = three
    (path,) = (repo_dir / "backups").glob(f"{a.backup_id}.*.json")
    path.write_bytes(path.read_bytes()[:100])
    result = repository_stats(repo)
    blobs = {p.name: p.stat().st_size for p in (repo_dir / "blobs").glob("*/*")}
    readable = [json.loads(p.read_bytes()) for p in (repo_dir / "backups").glob("*.json") if p != path]
    assert {k: result[k] for k in expected_figures([], {})} == expected_figures(readable, blobs)
    assert result["damaged_manifests"] == 1 and result["damaged"][0]["backup_id"] == a.backup_id
    only_a = a.blob_shas() - b.blob_shas() - c.blob_shas()
    assert only_a and result["repository_blobs"]["unreferenced_blobs"] == len(only_a)
    assert result["repository_blobs"]["unreferenced_exact"] is False
    text = render_text(result)
    assert "1 damaged manifest" in text and a.backup_id in text and "prune will not sweep" in text


def test_a_missing_blob_is_counted_and_left_out_of_the_compression_ratio(repo, repo_dir, three):
    a, b, c = three
    gone = max(a.blob_shas() - b.blob_shas(), key=lambda s: next(f.size for f in a.files if f.sha256 == s))
    (repo_dir / blob_key(gone)).unlink()
    blobs, manifests = on_disk(repo_dir)
    result = repository_stats(repo)
    assert {k: result[k] for k in expected_figures([], {})} == expected_figures(manifests, blobs)
    assert result["missing_blobs"] == 1 and "run `qilbee-backup verify`" in render_text(result)


def test_an_empty_repository_has_zero_figures_and_no_ratios(repo):
    repo.init()
    result = repository_stats(repo)
    assert (result["backups"], result["logical_bytes"], result["stored_bytes"], result["dedup_ratio"],
            result["compression_ratio"], result["oldest_at"], result["series"]) == (0, 0, 0, None, None, None, [])
    assert "no backups" in render_text(result)


class Counting(FileDestination):
    """A real directory store that counts what is read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.lists: list[str] = []
        self.reads: list[str] = []

    def list(self, prefix: str = ""):
        self.lists.append(prefix)
        return super().list(prefix)

    def open_read(self, key: str):  # every read of a directory store goes through here
        self.reads.append(key)
        return super().open_read(key)


def test_stats_list_blobs_once_and_read_no_blob(repo_dir, three):
    dest = Counting(repo_dir)
    repository_stats(Repository(dest))
    assert dest.lists.count("blobs/") == 1 and dest.lists.count("backups/") == 1
    assert [k for k in dest.reads if k.startswith("blobs/")] == []
    assert sorted(k for k in dest.reads if k.startswith("backups/")) == sorted(
        f"backups/{p.name}" for p in (repo_dir / "backups").iterdir())

    dest = Counting(repo_dir)
    diff_backups(Repository(dest), three[0].backup_id, three[1].backup_id)
    assert [k for k in dest.reads if not k.startswith("backups/")] == [] and len(dest.reads) == 2


# -- diff ------------------------------------------------------------------------------------------------


def test_diff_names_every_added_removed_and_changed_file(repo, repo_dir, three):
    a, b, _ = three
    result = diff_backups(repo, a.backup_id, b.backup_id)
    raw = {m["backup_id"]: m for m in on_disk(repo_dir)[1]}
    before = {f["path"]: f for f in raw[a.backup_id]["files"]}
    after = {f["path"]: f for f in raw[b.backup_id]["files"]}
    assert [f["path"] for f in result["added"]] == sorted(after.keys() - before.keys()) == ["000004.sst"]
    assert [f["path"] for f in result["removed"]] == sorted(before.keys() - after.keys()) == ["000001.sst"]
    assert {c["path"]: c["what"] for c in result["changed"]} == {"CURRENT": ["mode"], "MANIFEST-000009": ["content", "size"]}
    both = before.keys() & after.keys()
    assert result["unchanged"] == sum(1 for p in both if before[p] == after[p] or
                                      all(before[p][k] == after[p][k] for k in ("sha256", "size", "mode")))
    assert result["added_bytes"] == after["000004.sst"]["size"] and result["removed_bytes"] == before["000001.sst"]["size"]
    new = {f["sha256"]: f["size"] for f in after.values()}
    new = {s: n for s, n in new.items() if s not in {f["sha256"] for f in before.values()}}
    assert (result["new_content_bytes"], result["new_blobs"]) == (sum(new.values()), len(new))
    current = next(c for c in result["changed"] if c["path"] == "CURRENT")
    assert (current["mode_first"], current["mode_second"]) == (0o644, 0o600)

    figures = result["figures"]
    assert figures["files"] == {"first": len(before), "second": len(after), "delta": len(after) - len(before)}
    assert figures["bytes_total"] == {"first": raw[a.backup_id]["bytes_total"], "second": raw[b.backup_id]["bytes_total"],
                                      "delta": raw[b.backup_id]["bytes_total"] - raw[a.backup_id]["bytes_total"]}
    assert figures["nodeCount"] == {"first": 70, "second": 259, "delta": 189}
    assert figures["relationshipCount"] == {"first": 87, "second": 70, "delta": -17}
    assert figures["graphs"] == {
        "extra": {"nodeCount": {"first": None, "second": 9, "delta": None},
                  "relationshipCount": {"first": None, "second": 0, "delta": None}},
        "ops": {"nodeCount": {"first": 20, "second": None, "delta": None},
                "relationshipCount": {"first": 17, "second": None, "delta": None}},
        "social": {"nodeCount": {"first": 50, "second": 250, "delta": 200},
                   "relationshipCount": {"first": 70, "second": 70, "delta": 0}}}
    assert result["first"]["backup_id"] == a.backup_id and result["second"]["backup_id"] == b.backup_id


def test_diff_text_has_one_line_per_changed_file(repo, three):
    a, b, _ = three
    result = diff_backups(repo, a.backup_id, b.backup_id)
    text = render_text(result)
    assert text.splitlines()[0] == f"Diff {a.backup_id} → {b.backup_id}: 1 added, 1 removed, 2 changed, " \
                                   f"{result['unchanged']} unchanged"
    lines = {line.split()[1]: line.split()[0] for line in text.splitlines() if re.match(r"\s+[+\-M]\s{2}\S", line)}
    assert lines == {"000004.sst": "+", "000001.sst": "-", "CURRENT": "M", "MANIFEST-000009": "M"}
    assert "mode 0644 → 0600" in text and "content, size" in text
    assert re.search(r"graph social: nodes\s+50\s+250\s+\+200", text)
    assert re.search(r"relationships\s+87\s+70\s+-17", text)


def test_diff_of_a_backup_with_itself_and_with_latest(repo, three):
    a, b, c = three
    same = diff_backups(repo, b.backup_id, b.backup_id)
    assert (same["added"], same["removed"], same["changed"], same["unchanged"]) == ([], [], [], len(b.files))
    assert render_text(same).splitlines()[0].endswith(f"no changes ({len(b.files)} files unchanged)")
    assert diff_backups(repo, "latest", "latest")["first"]["backup_id"] == c.backup_id
    # A test server's weekly of the same data: no file differs, only the figures recorded (none).
    weekly = diff_backups(repo, b.backup_id, "latest")
    assert weekly["changed"] == [] and weekly["figures"]["nodeCount"] == {"first": 259, "second": None, "delta": None}


def test_diff_refuses_what_it_cannot_compare(repo, repo_dir, three):
    a, b, _ = three
    with pytest.raises(UsageError, match="malformed backup id"):
        diff_backups(repo, "yesterday", b.backup_id)
    with pytest.raises(NotFound, match="not found"):
        diff_backups(repo, "20261101T000000Z-abcdef", b.backup_id)
    (path,) = (repo_dir / "backups").glob(f"{a.backup_id}.*.json")
    path.write_bytes(path.read_bytes().replace(b'"kind": "daily"', b'"kind": "dai1y"'))
    with pytest.raises(IntegrityError, match="does not match the digest") as err:
        diff_backups(repo, a.backup_id, b.backup_id)
    assert a.backup_id in str(err.value) and "\n" not in str(err.value)


def test_diff_reads_graph_figures_recorded_as_a_list(repo, three):
    a, b, _ = three
    old = a.model_copy(update={"stats": {"graphs": [{"name": "g", "nodeCount": 3, "relationshipCount": 2}]}})
    new = b.model_copy(update={"stats": {"graphs": [{"name": "g", "nodeCount": 5, "relationshipCount": 2}]}})
    assert diff_manifests(old, new)["figures"]["graphs"]["g"]["nodeCount"] == {"first": 3, "second": 5, "delta": 2}


# -- the reports -----------------------------------------------------------------------------------------

REPR = re.compile(r"\{'|\['|\[\{|\bNone\b|\bTrue\b|\bFalse\b|\bnull\b|\btrue\b|\bfalse\b")


def test_stats_and_diff_read_without_a_repr_in_every_form(repo, three):
    a, b, _ = three
    for result in (repository_stats(repo), repository_stats(repo, kind="weekly"), diff_backups(repo, a.backup_id, b.backup_id)):
        rows = table_rows(result)
        assert all(isinstance(v, str) for row in rows for v in row.values())
        for text in (render_text(result), report_markdown(result), "\n".join(r["value"] for r in rows)):
            assert not REPR.findall(text), text
    text = render_text(repository_stats(repo))
    assert text.splitlines()[0].endswith(": 3 backups")
    for name in ("logical size", "unique content", "stored size", "dedup ratio", "compression ratio", "oldest backup",
                 "newest backup", "encryption          unencrypted", "repository version 2", "unreferenced blobs"):
        assert name in text, name
