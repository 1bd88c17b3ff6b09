#!/usr/bin/env python3
"""Make (or grow) a deterministic QilbeeDB data directory of a given size, for the benchmarks.

    make_database.py DIR --size-mib 1024          # a fresh database of about 1 GiB on disk
    make_database.py DIR --grow-percent 5         # add 5% more data to an existing one

The content is the emulator's layout (real RocksDB files, QilbeeDB's column families): one graph
of people with profiles and articles with a few KiB of text drawn from a fixed vocabulary
(compressible about as much as real prose), and relationships between them. Growth appends:
new records get new ids and link to other new records, so RocksDB's compactions rewrite few
old files. (Growth that links new records to old ones all over the key space makes RocksDB
rewrite much of the database on compaction; no file-level or chunk-level backup can avoid
sending those rewritten files again: see the benchmark notes.) The same arguments give the
same records; RocksDB's own file layout may differ by timing of background work.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qilbee_backup.emulator.store import BulkLoader, GraphStore  # noqa: E402


def sst_bytes(data_dir: Path) -> int:
    """Bytes in SST files: the data as stored (the write-ahead log holds it uncompressed until a flush)."""
    return sum(p.stat().st_size for p in data_dir.glob("*.sst"))

WORDS = (
    "graph node edge vertex query index backup restore snapshot replica shard cluster latency "
    "throughput durable consistent storage column family compaction level table block cache "
    "bloom filter write ahead log memtable flush checkpoint recovery disaster region bucket "
    "object archive retention policy daily weekly monthly schedule worker pool deployment flow "
    "task artifact event automation alert operator engineer customer order product invoice "
    "payment shipment warehouse inventory supplier account session token user profile friend"
).split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def grow(data_dir: Path, target_bytes: int, seed: int) -> dict:
    """Add records until the live database reaches target_bytes; returns the store's counts."""
    store = GraphStore(data_dir)
    try:
        start_nodes = store.counts()["nodeCount"]
        rng = random.Random(seed * 1_000_003 + start_nodes)  # deterministic per (seed, starting size)
        batch = 2000
        while True:
            with BulkLoader(store, batch_records=batch) as load:
                people = [
                    load.add_node("social", ["Person"], {"name": f"person-{start_nodes + i}", "age": rng.randint(18, 90),
                                                         "bio": _text(rng, 40)})
                    for i in range(batch // 4)
                ]
                for _ in range(batch // 2):
                    art = load.add_node("social", ["Article"], {"title": _text(rng, 6), "body": _text(rng, 450),
                                                                "views": rng.randint(0, 10**6)})
                    load.add_relationship("social", rng.choice(people), "WROTE", art, {})
                for p in people:
                    other = rng.choice(people)
                    load.add_relationship("social", p, "KNOWS", other, {"since": rng.randint(2000, 2026)})
            start_nodes = store.counts()["nodeCount"]
            if sst_bytes(data_dir) >= target_bytes:
                break
        return store.counts()
    finally:
        store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--size-mib", type=int, help="make the database about this size on disk")
    ap.add_argument("--grow-percent", type=float, help="grow an existing database by this much")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    now = sst_bytes(args.data_dir)
    if args.size_mib:
        target = args.size_mib * 1024 * 1024
    elif args.grow_percent:
        target = int(now * (1 + args.grow_percent / 100))
    else:
        ap.error("give --size-mib or --grow-percent")
    t0 = time.monotonic()
    # Compaction on close can shrink the files below the target: grow again until they stay above it.
    while True:
        counts = grow(args.data_dir, target, args.seed)
        if sst_bytes(args.data_dir) >= target:
            break
    size = sst_bytes(args.data_dir)
    print(f"{args.data_dir}: {size / 2**20:.0f} MiB, {counts['nodeCount']} nodes, "
          f"{counts['relationshipCount']} relationships ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
