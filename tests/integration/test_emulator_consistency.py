"""Snapshots taken while clients write hold only whole changes, and the figures returned with them are exact."""

import random
import threading
import time

import httpx
import pytest

from qilbee_backup.emulator.store import audit_database, open_readonly_counts

pytestmark = pytest.mark.integration

WRITERS = 3
MAX_ROUNDS_PER_WRITER = 400  # bounded load, whatever the machine's speed
MAX_SECONDS = 30.0


def _writer(url: str, graph: str, seed: int, stop: threading.Event, errors: list[str], done: list[int]) -> None:
    rng = random.Random(seed)
    mine: list[int] = []
    rounds = 0
    deadline = time.monotonic() + MAX_SECONDS
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set() and rounds < MAX_ROUNDS_PER_WRITER and time.monotonic() < deadline:
            rounds += 1
            a = client.post(f"/graphs/{graph}/nodes", json={"labels": ["W"], "properties": {"r": rounds}})
            b = client.post(f"/graphs/{graph}/nodes", json={"labels": ["W", "X"], "properties": {}})
            if a.status_code != 201 or b.status_code != 201:
                errors.append(f"node create: {a.status_code} {b.status_code}")
                return
            ids = [a.json()["id"], b.json()["id"]]
            mine.extend(ids)
            targets = [ids[1], rng.choice(mine)]
            for end in targets:
                rel = client.post(
                    f"/graphs/{graph}/relationships",
                    json={"startNode": ids[0], "type": "LINKS", "endNode": end, "properties": {"w": seed}},
                )
                if rel.status_code != 201:
                    errors.append(f"relationship create: {rel.status_code} {rel.text}")
                    return
            if rounds % 7 == 0:
                # Detach-delete: a node, its labels and several relationships leave in one batch.
                victim = mine.pop(rng.randrange(len(mine)))
                if client.delete(f"/graphs/{graph}/nodes/{victim}").status_code != 200:
                    errors.append("node delete failed")
                    return
    done.append(rounds)


def test_snapshots_under_concurrent_writes_hold_only_whole_changes(emulator_factory):
    server = emulator_factory(seed_nodes=300)
    stop = threading.Event()
    errors: list[str] = []
    done: list[int] = []
    # Two writers share a graph (ids and counters contend), one writes a graph of its own.
    graphs = ["social", "social", "scratch"]
    threads = [
        threading.Thread(target=_writer, args=(server.url, graphs[i], i, stop, errors, done), daemon=True)
        for i in range(WRITERS)
    ]
    snapshots = []
    with httpx.Client(base_url=server.url, timeout=30) as admin:
        before = admin.get("/admin/stats").json()["storage"]
        for thread in threads:
            thread.start()
        try:
            for _ in range(2):
                time.sleep(1.0)
                response = admin.post("/admin/snapshot")
                assert response.status_code == 200, response.text
                snapshots.append(response.json())
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
        after = admin.get("/admin/stats").json()["storage"]

    assert not errors, errors
    assert len(done) == WRITERS
    first, second = (s["stats"] for s in snapshots)
    # The writers really were writing around both snapshots.
    assert before["relationshipCount"] < first["relationshipCount"] < second["relationshipCount"] < after["relationshipCount"]
    assert snapshots[0]["snapshot_id"] != snapshots[1]["snapshot_id"]

    for snap in snapshots:
        report = audit_database(snap["path"])
        assert report.ok, report.problems
        assert report.counted == report.recorded == snap["stats"]
        assert open_readonly_counts(snap["path"]) == snap["stats"]
    # The live database, after the writers stopped, is whole too.
    server.stop()
    live = audit_database(server.data_dir)
    assert live.ok, live.problems
    assert live.counted["nodeCount"] == after["nodeCount"]
