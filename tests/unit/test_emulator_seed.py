"""Seeding: deterministic for N, consistent, realistic, fast, and never twice."""

import time

from qilbee_backup.emulator.seed import SEED_GRAPHS, seed_store, split_nodes
from qilbee_backup.emulator.store import GraphStore, audit_database, content_digest


def _seed(path, n, batch_records=5000):
    with GraphStore(path) as store:
        counts = seed_store(store, n, batch_records=batch_records)
    return counts


def test_same_n_gives_the_same_data(tmp_path):
    first = _seed(tmp_path / "a", 1500)
    # Different batch sizes change how the data is written, not what it is.
    second = _seed(tmp_path / "b", 1500, batch_records=97)
    assert first == second
    assert content_digest(tmp_path / "a") == content_digest(tmp_path / "b")
    other = _seed(tmp_path / "c", 1501)
    assert content_digest(tmp_path / "c") != content_digest(tmp_path / "a")
    assert other["nodeCount"] == 1501


def test_seeded_data_is_whole_and_realistic(tmp_path):
    counts = _seed(tmp_path / "d", 2000)
    assert sorted(counts["graphs"]) == sorted(SEED_GRAPHS)
    assert {g: c["nodeCount"] for g, c in counts["graphs"].items()} == split_nodes(2000)
    assert counts["nodeCount"] == 2000
    assert 1.0 * 2000 < counts["relationshipCount"] < 2.5 * 2000
    report = audit_database(tmp_path / "d")
    assert report.ok, report.problems
    assert report.counted == counts
    with GraphStore(tmp_path / "d") as store:
        labels = {label for graph in SEED_GRAPHS for node in store.iter_nodes(graph) for label in node["labels"]}
        assert labels == {"Person", "Company", "Product", "Category", "Supplier", "Server", "Service", "Incident"}
        types = {rel["type"] for node in store.iter_nodes("social", "Person") for rel in store.node_relationships("social", node["id"])}
        assert {"KNOWS", "WORKS_AT"} <= types


def test_seeding_a_seeded_or_used_store_changes_nothing(tmp_path):
    _seed(tmp_path / "e", 300)
    digest = content_digest(tmp_path / "e")
    with GraphStore(tmp_path / "e") as store:
        assert seed_store(store, 300) is None
        assert seed_store(store, 999) is None
    assert content_digest(tmp_path / "e") == digest
    with GraphStore(tmp_path / "f") as store:
        store.create_graph("mine")
        assert seed_store(store, 100) is None
        assert store.list_graphs() == ["mine"]
        assert seed_store(store, 0) is None


def test_seeding_is_fast(tmp_path):
    began = time.monotonic()
    counts = _seed(tmp_path / "g", 20_000)
    elapsed = time.monotonic() - began
    assert counts["nodeCount"] == 20_000
    # 100,000 nodes take about 5 s on this machine; 20,000 must be well inside a few seconds.
    assert elapsed < 5, elapsed
