"""The emulator's RocksDB store: records, counters, detach-delete, snapshots and the read-only helpers."""

import os
import re
import threading

import pytest
from rocksdict import Options, Rdict

from qilbee_backup.emulator.store import (
    COLUMN_FAMILIES,
    GraphExists,
    GraphStore,
    InvalidName,
    InvalidSnapshotId,
    NodeNotFound,
    SnapshotNotFound,
    StoreClosed,
    StoreError,
    adjacency_key,
    audit_database,
    content_digest,
    live_size_bytes,
    open_readonly_counts,
)


@pytest.fixture
def store(tmp_path):
    with GraphStore(tmp_path / "data") as opened:
        yield opened


def _triangle(store):
    a = store.create_node("g", ["Person"], {"name": "a"})
    b = store.create_node("g", ["Person", "Admin"], {"name": "b"})
    c = store.create_node("g", ["Company"], {"name": "c"})
    r1 = store.create_relationship("g", a["id"], "KNOWS", b["id"], {"since": 2020})
    r2 = store.create_relationship("g", b["id"], "WORKS_AT", c["id"], {})
    r3 = store.create_relationship("g", a["id"], "SELF", a["id"], {})
    return a, b, c, r1, r2, r3


def test_column_families_are_the_real_servers(store):
    assert sorted(Rdict.list_cf(str(store.data_dir))) == sorted(["default", *COLUMN_FAMILIES])


def test_records_counters_and_lookups(store):
    a, b, c, r1, r2, r3 = _triangle(store)
    assert store.list_graphs() == ["g"]
    assert store.counts() == {
        "graphs": {"g": {"nodeCount": 3, "relationshipCount": 3}},
        "nodeCount": 3,
        "relationshipCount": 3,
    }
    assert store.get_node("g", b["id"]) == {"id": b["id"], "labels": ["Person", "Admin"], "properties": {"name": "b"}}
    assert [n["id"] for n in store.iter_nodes("g", "Person")] == [a["id"], b["id"]]
    assert [n["id"] for n in store.iter_nodes("g")] == [a["id"], b["id"], c["id"]]
    assert {r["id"] for r in store.node_relationships("g", b["id"])} == {r1["id"], r2["id"]}
    assert [r["id"] for r in store.node_relationships("g", a["id"])] == [r1["id"], r3["id"]]  # self-loop once
    with pytest.raises(NodeNotFound):
        store.create_relationship("g", a["id"], "KNOWS", 999, {})
    assert audit_database(store.data_dir).ok


def test_update_node_rewrites_label_index(store):
    node = store.create_node("g", ["Person"], {"name": "a"})
    updated = store.update_node("g", node["id"], ["Robot"], {"name": "r2"})
    assert updated == {"id": node["id"], "labels": ["Robot"], "properties": {"name": "r2"}}
    assert list(store.iter_nodes("g", "Person")) == []
    assert [n["id"] for n in store.iter_nodes("g", "Robot")] == [node["id"]]
    assert store.update_node("g", 12345, ["X"], {}) is None
    assert audit_database(store.data_dir).ok


def test_detach_delete_removes_relationships_and_adjacency(store):
    a, b, c, r1, r2, r3 = _triangle(store)
    assert store.delete_node("g", a["id"]) is True
    assert store.delete_node("g", a["id"]) is False
    assert store.get_relationship("g", r1["id"]) is None and store.get_relationship("g", r3["id"]) is None
    assert [r["id"] for r in store.node_relationships("g", b["id"])] == [r2["id"]]
    assert store.counts()["graphs"]["g"] == {"nodeCount": 2, "relationshipCount": 1}
    report = audit_database(store.data_dir)
    assert report.ok, report.problems
    assert report.counted == report.recorded


def test_graphs_create_delete_and_names(store):
    store.create_graph("empty")
    with pytest.raises(GraphExists):
        store.create_graph("empty")
    _triangle(store)
    store.create_node("other", ["X"], {})
    assert store.delete_graph("g") is True
    assert store.delete_graph("g") is False
    assert store.list_graphs() == ["empty", "other"]
    # Recreating the name starts from nothing: no records of the old graph survive.
    store.create_graph("g")
    assert list(store.iter_nodes("g")) == [] and store.node_relationships("g", 1) == []
    for bad in ("", "a\x00b"):
        with pytest.raises(InvalidName):
            store.create_graph(bad)
    with pytest.raises(InvalidName):
        store.create_node("g", ["bad\x00label"], {})
    assert audit_database(store.data_dir).ok


def test_data_survives_reopen(tmp_path):
    with GraphStore(tmp_path / "d") as store:
        a, *_ = _triangle(store)
        before = store.counts()
    with GraphStore(tmp_path / "d") as store:
        assert store.counts() == before
        assert store.get_node("g", a["id"])["properties"] == {"name": "a"}
        # Ids continue after the last one handed out.
        assert store.create_node("g", [], {})["id"] == 4


def test_second_writer_is_refused_with_one_line(tmp_path):
    with GraphStore(tmp_path / "d"):
        with pytest.raises(StoreError) as caught:
            GraphStore(tmp_path / "d")
    assert "\n" not in str(caught.value) and "LOCK" in str(caught.value)


def test_closed_store_refuses_writes(tmp_path):
    store = GraphStore(tmp_path / "d")
    store.close()
    store.close()  # twice is fine
    with pytest.raises(StoreClosed):
        store.create_graph("g")
    with pytest.raises(StoreClosed):
        store.get_node("g", 1)
    with pytest.raises(StoreClosed):
        store.create_snapshot()


def test_snapshot_is_a_checkpoint_with_matching_stats(store):
    _triangle(store)
    snap = store.create_snapshot()
    assert re.fullmatch(r"\d{8}-\d{6}(-\d+)?", snap["snapshot_id"])
    assert snap["path"] == str(store.data_dir / "snapshots" / snap["snapshot_id"])
    assert snap["size_bytes"] == sum(
        os.path.getsize(os.path.join(snap["path"], f)) for f in os.listdir(snap["path"])
    )
    assert os.readlink(store.data_dir / "snapshots" / "latest") == snap["snapshot_id"]  # relative link
    # Writes after the checkpoint are not in it.
    store.create_node("g", ["Late"], {})
    assert open_readonly_counts(snap["path"]) == snap["stats"]
    assert snap["stats"]["nodeCount"] == 3
    report = audit_database(snap["path"])
    assert report.ok and report.counted == snap["stats"]


def test_snapshots_in_the_same_second_get_unique_ids(store):
    ids = [store.create_snapshot()["snapshot_id"] for _ in range(3)]
    assert len(set(ids)) == 3
    listed = store.list_snapshots()
    assert [s["snapshot_id"] for s in listed] == ids
    assert all(set(s) == {"snapshot_id", "path", "size_bytes", "created_at"} for s in listed)
    assert os.readlink(store.data_dir / "snapshots" / "latest") == ids[-1]


def test_live_size_counts_database_files_not_snapshots(store):
    _triangle(store)
    store.create_snapshot()
    expected = sum(
        entry.stat().st_size
        for entry in os.scandir(store.data_dir)
        if entry.is_file() and entry.name != "LOCK" and not entry.name.startswith("LOG")
    )
    assert live_size_bytes(store.data_dir) == expected
    (store.data_dir / "snapshots" / "junk").write_bytes(b"x" * 100_000)
    stats = store.storage_stats()
    assert stats["storage"]["totalSizeBytes"] == expected
    assert stats["storage"]["nodeCount"] == 3 and stats["graphs"] == {"g": {"nodeCount": 3, "relationshipCount": 3}}


def test_readonly_helpers_do_not_touch_the_directory(store):
    _triangle(store)
    snap = store.create_snapshot()
    listing = {name: os.stat(os.path.join(snap["path"], name)).st_mtime_ns for name in os.listdir(snap["path"])}
    digest = content_digest(snap["path"])
    open_readonly_counts(snap["path"])
    audit_database(snap["path"])
    assert content_digest(snap["path"]) == digest
    after = {name: os.stat(os.path.join(snap["path"], name)).st_mtime_ns for name in os.listdir(snap["path"])}
    assert after == listing


def test_readonly_open_of_a_non_database_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="not a RocksDB database"):
        open_readonly_counts(tmp_path)


def test_audit_finds_half_written_relationships(store):
    a, b, c, r1, r2, r3 = _triangle(store)
    # Simulate a torn write (what one WriteBatch per relationship prevents).
    store._cf["adjacency_in"].delete(adjacency_key("g", b["id"], r1["id"]))
    store._cf["adjacency_out"].put(adjacency_key("g", c["id"], 77), b'{"type":"X","node":1}')
    report = audit_database(store.data_dir)
    assert not report.ok
    assert any("no adjacency_in entry" in p for p in report.problems)
    assert any("relationship 77 has no relationship" in p for p in report.problems)


def _latest(store):
    link = store.data_dir / "snapshots" / "latest"
    return os.readlink(link) if link.is_symlink() else None


def test_delete_snapshot_removes_the_checkpoint_and_moves_latest(store):
    _triangle(store)
    ids = [store.create_snapshot()["snapshot_id"] for _ in range(3)]
    snapshots = store.data_dir / "snapshots"

    store.delete_snapshot(ids[1])  # not the one latest names: latest stays
    assert not (snapshots / ids[1]).exists() and _latest(store) == ids[2]
    store.delete_snapshot(ids[2])  # latest moves to the newest one left
    assert _latest(store) == ids[0]
    assert [s["snapshot_id"] for s in store.list_snapshots()] == [ids[0]]
    store.delete_snapshot(ids[0])  # none left: latest goes
    assert _latest(store) is None and not os.path.lexists(snapshots / "latest")
    assert sorted(os.listdir(snapshots)) == [] and store.list_snapshots() == []
    assert store.counts()["nodeCount"] == 3 and audit_database(store.data_dir).ok


def test_delete_snapshot_refuses_what_is_not_a_snapshot_name(store):
    snap = store.create_snapshot()
    (store.data_dir / "snapshots" / "20240101-000000.tmp").mkdir()  # a checkpoint being built
    for bad in ["..", "../..", "latest", f"{snap['snapshot_id']}/..", "20240101-000000.tmp",
                f"{snap['snapshot_id']}\n", "", "/etc"]:
        with pytest.raises(InvalidSnapshotId):
            store.delete_snapshot(bad)
    os.symlink(store.data_dir, store.data_dir / "snapshots" / "20240202-000000")  # a link is no checkpoint
    for unknown in ["20240202-000000", "20990101-000000"]:
        with pytest.raises(SnapshotNotFound):
            store.delete_snapshot(unknown)
    assert (store.data_dir / "CURRENT").is_file() and os.path.isdir(snap["path"])
    assert [s["snapshot_id"] for s in store.list_snapshots()] == [snap["snapshot_id"]]


def test_delete_snapshot_waits_for_a_checkpoint_in_progress(store):
    snap = store.create_snapshot()
    deleted = threading.Event()
    with store._lock:  # what create_snapshot holds while RocksDB writes a checkpoint
        worker = threading.Thread(target=lambda: (store.delete_snapshot(snap["snapshot_id"]), deleted.set()))
        worker.start()
        assert not deleted.wait(0.3)
        assert os.path.isdir(snap["path"]) and _latest(store) == snap["snapshot_id"]
    worker.join(10)
    assert deleted.is_set() and not os.path.exists(snap["path"])


def test_a_deletion_cut_short_is_finished_when_the_store_opens(tmp_path):
    with GraphStore(tmp_path / "d") as store:
        snap = store.create_snapshot()
    trash = tmp_path / "d" / "snapshots" / ".deleting-abc"
    trash.mkdir()
    os.rename(snap["path"], trash / snap["snapshot_id"])
    with GraphStore(tmp_path / "d") as store:
        assert not trash.exists() and store.list_snapshots() == []


def _tree(path):
    """Names and bytes of everything under ``path``."""
    found = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            found[os.path.relpath(full, path)] = open(full, "rb").read() if os.path.isfile(full) else None
    return found


def test_a_new_an_empty_and_an_emptied_database_open(tmp_path):
    with GraphStore(tmp_path / "new"):  # missing, parent present: created
        pass
    (tmp_path / "volume" / "lost+found").mkdir(parents=True)  # a freshly formatted volume counts as empty
    with GraphStore(tmp_path / "volume"):
        pass
    with GraphStore(tmp_path / "new") as store:  # no graph ever made: no 'graphs' key, and that is fine
        assert store.list_graphs() == []


def _rocksdb(path, families, records=()):
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    db = Rdict(str(path), options, column_families={name: Options(raw_mode=True) for name in families})
    for family, key, value in records:
        db.get_column_family(family)[key] = value
    db.close()


@pytest.mark.parametrize("make, says", [
    (lambda p: _rocksdb(p, ("users",)), "missing column families nodes"),
    (lambda p: _rocksdb(p, COLUMN_FAMILIES, [("meta", b"graphs", b'["g"]'), ("meta", b"graph\x00g", b'{"nodeCount": "3"}')]),
     "not whole numbers"),
    (lambda p: (p.mkdir(), (p / "notes.txt").write_text("mine")), "no CURRENT file"),
], ids=["other-rocksdb", "bad-counters", "plain-files"])
def test_a_directory_that_is_not_qilbeedb_is_refused_untouched(tmp_path, make, says):
    make(tmp_path / "d")
    before = _tree(tmp_path)
    with pytest.raises(StoreError, match=says) as caught:
        GraphStore(tmp_path / "d")
    assert str(tmp_path / "d") in str(caught.value) and "\n" not in str(caught.value)
    assert _tree(tmp_path) == before


def test_a_missing_parent_is_not_created(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        GraphStore(tmp_path / "no" / "d")
    with pytest.raises(StoreError, match="no data directory"):
        GraphStore("")
    assert os.listdir(tmp_path) == []


def test_a_failed_start_in_a_new_directory_leaves_it_as_it_was(tmp_path, monkeypatch):
    import qilbee_backup.emulator.store as store_module

    def failing_open(path, *args, **kwargs):
        open(os.path.join(path, "LOG"), "w").close()  # what RocksDB writes before it fails
        raise Exception("IO error: No space left on device")

    monkeypatch.setattr(store_module, "Rdict", failing_open)
    (tmp_path / "empty" / "lost+found").mkdir(parents=True)
    for name in ("new", "empty"):
        with pytest.raises(StoreError, match="No space left"):
            GraphStore(tmp_path / name)
    assert sorted(os.listdir(tmp_path)) == ["empty"] and os.listdir(tmp_path / "empty") == ["lost+found"]
