"""Deterministic demo data: three graphs with a realistic mix of labels, relationships and properties.

``seed_store(store, n)`` writes about ``n`` nodes (half in ``social``, 30 % in
``catalog``, 20 % in ``ops``) and about 1.5 relationships per node, straight
into the store in large batches. The same ``n`` always gives the same data
(``random.Random(n)``, no clock). It seeds only an empty database.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from .store import BulkLoader, GraphStore

SEED_GRAPHS = ("social", "catalog", "ops")
# --seed-nodes at most: 300,000 nodes take 9 s, 49 MB on disk and 250 MB of memory (every id is
# kept while seeding), so ten million is minutes and under 2 GB. Beyond that is a typo, not a
# demo; benchmarks/make_database.py builds larger databases with BulkLoader directly.
MAX_SEED_NODES = 10_000_000

_FIRST = ["Ada", "Alan", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Edsger",
          "Radia", "Tim", "Sophie", "Guido", "Katherine", "John", "Hedy", "Niklaus", "Shafi", "Leslie"]
_LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie", "Allen",
         "Dijkstra", "Perlman", "Berners-Lee", "Wilson", "van Rossum", "Johnson", "Backus", "Lamarr", "Wirth"]
_CITIES = ["Lisbon", "Berlin", "Nairobi", "Osaka", "Toronto", "Austin", "Sydney", "Recife", "Oslo", "Pune"]
_INDUSTRIES = ["software", "logistics", "healthcare", "energy", "retail", "finance", "media"]
_CATEGORIES = ["Books", "Garden", "Kitchen", "Outdoors", "Toys", "Electronics", "Music", "Office", "Sports"]
_COUNTRIES = ["PT", "DE", "KE", "JP", "CA", "US", "AU", "BR", "NO", "IN"]
_ADJECTIVES = ["Compact", "Classic", "Rugged", "Smart", "Eco", "Deluxe", "Portable", "Silent", "Modular"]
_NOUNS = ["Kettle", "Lamp", "Backpack", "Speaker", "Chair", "Notebook", "Drill", "Tent", "Blender", "Router"]
_REGIONS = ["eu-west", "eu-central", "us-east", "us-west", "ap-south", "sa-east"]
_SERVICES = ["auth", "billing", "search", "checkout", "inventory", "notifications", "gateway", "reports"]
_SEVERITIES = ["SEV1", "SEV2", "SEV3", "SEV4"]
_EPOCH = 1_600_000_000  # fixed base for generated timestamps (seconds)


def split_nodes(total: int) -> dict[str, int]:
    social, catalog = total // 2, (total * 3) // 10
    return {"social": social, "catalog": catalog, "ops": total - social - catalog}


def _pick_earlier(rng: random.Random, ids: list[int]) -> int | None:
    return ids[rng.randrange(len(ids))] if ids else None


def _iso(seconds: int) -> str:
    # Hand-formatted from a fixed epoch offset: no clock, no time zone, fully deterministic.
    days, rest = divmod(seconds - _EPOCH, 86400)
    return f"2020-09-13+{days}d{rest // 3600:02d}:{rest % 3600 // 60:02d}"


def _social(load: BulkLoader, rng: random.Random, count: int) -> None:
    people: list[int] = []
    companies: list[int] = []
    for i in range(count):
        if i % 10 == 0:
            cid = load.add_node("social", ["Company"], {
                "name": f"{rng.choice(_LAST)} {rng.choice(['Labs', 'Systems', 'Works', 'Group'])} {i}",
                "industry": rng.choice(_INDUSTRIES),
                "founded": rng.randint(1950, 2023),
                "employees": rng.randint(5, 50_000),
            })
            companies.append(cid)
            continue
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        pid = load.add_node("social", ["Person"], {
            "name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower().replace(' ', '')}{i}@example.org",
            "age": rng.randint(18, 90),
            "city": rng.choice(_CITIES),
            "active": rng.random() < 0.85,
        })
        for _ in range(rng.choice((0, 1, 1, 2))):
            friend = _pick_earlier(rng, people)
            if friend is not None:
                load.add_relationship("social", pid, "KNOWS", friend, {"since": rng.randint(1990, 2024)})
        if companies and rng.random() < 0.6:
            load.add_relationship("social", pid, "WORKS_AT", _pick_earlier(rng, companies), {
                "role": rng.choice(["engineer", "manager", "analyst", "designer", "operator"]),
                "startYear": rng.randint(2000, 2024),
            })
        people.append(pid)


def _catalog(load: BulkLoader, rng: random.Random, count: int) -> None:
    categories: list[int] = []
    suppliers: list[int] = []
    products: list[int] = []
    for i in range(count):
        if i % 20 == 0:
            categories.append(load.add_node("catalog", ["Category"], {
                "name": f"{rng.choice(_CATEGORIES)}-{i}", "featured": rng.random() < 0.2,
            }))
        elif i % 20 == 1:
            suppliers.append(load.add_node("catalog", ["Supplier"], {
                "name": f"{rng.choice(_LAST)} Trading {i}", "country": rng.choice(_COUNTRIES),
                "rating": round(rng.uniform(1, 5), 1),
            }))
        else:
            pid = load.add_node("catalog", ["Product"], {
                "sku": f"SKU-{i:07d}",
                "name": f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}",
                "price": round(rng.uniform(2, 900), 2),
                "stock": rng.randint(0, 5000),
                "tags": rng.sample(["new", "sale", "eco", "bestseller", "limited"], k=rng.randint(0, 2)),
            })
            if categories:
                load.add_relationship("catalog", pid, "IN_CATEGORY", _pick_earlier(rng, categories), {})
            if suppliers:
                load.add_relationship("catalog", pid, "SUPPLIED_BY", _pick_earlier(rng, suppliers), {
                    "leadTimeDays": rng.randint(1, 60),
                })
            if products and rng.random() < 0.3:
                load.add_relationship("catalog", pid, "SIMILAR_TO", _pick_earlier(rng, products), {
                    "score": round(rng.random(), 3),
                })
            products.append(pid)


def _ops(load: BulkLoader, rng: random.Random, count: int) -> None:
    servers: list[int] = []
    services: list[int] = []
    for i in range(count):
        kind = i % 10
        if kind < 4:
            servers.append(load.add_node("ops", ["Server"], {
                "hostname": f"{rng.choice(_REGIONS)}-node-{i:06d}",
                "region": rng.choice(_REGIONS),
                "cpus": rng.choice((2, 4, 8, 16, 32)),
                "memoryGb": rng.choice((4, 8, 16, 64, 128)),
                "status": rng.choice(["up", "up", "up", "draining", "down"]),
            }))
        elif kind < 8:
            sid = load.add_node("ops", ["Service"], {
                "name": f"{rng.choice(_SERVICES)}-{i}",
                "version": f"{rng.randint(1, 5)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
                "tier": rng.choice(["critical", "standard", "batch"]),
            })
            if servers:
                load.add_relationship("ops", sid, "RUNS_ON", _pick_earlier(rng, servers), {})
            if services and rng.random() < 0.7:
                load.add_relationship("ops", sid, "DEPENDS_ON", _pick_earlier(rng, services), {
                    "protocol": rng.choice(["http", "grpc", "amqp"]),
                })
            services.append(sid)
        else:
            opened = _EPOCH + rng.randint(0, 4 * 365 * 86400)
            iid = load.add_node("ops", ["Incident"], {
                "title": f"{rng.choice(['Latency', 'Errors', 'Outage', 'Disk full'])} #{i}",
                "severity": rng.choice(_SEVERITIES),
                "openedAt": _iso(opened),
                "resolved": rng.random() < 0.8,
            })
            if services:
                load.add_relationship("ops", iid, "AFFECTS", _pick_earlier(rng, services), {})


_BUILDERS: dict[str, Callable[[BulkLoader, random.Random, int], None]] = {
    "social": _social,
    "catalog": _catalog,
    "ops": _ops,
}


def seed_store(store: GraphStore, nodes: int, batch_records: int = 5000) -> dict[str, Any] | None:
    """Fill an empty store with about ``nodes`` nodes; None (and no change) if it already has graphs."""
    if nodes <= 0 or store.list_graphs():
        return None
    rng = random.Random(nodes)
    with BulkLoader(store, batch_records=batch_records) as load:
        for graph, count in split_nodes(nodes).items():
            store.ensure_graph(graph)
            _BUILDERS[graph](load, rng, count)
    return store.counts()
