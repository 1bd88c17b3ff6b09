"""The emulator's storage: a plain RocksDB database laid out like QilbeeDB's.

RocksDB is opened directly on the data directory (as the real server does);
checkpoints go to ``<data dir>/snapshots/<id>``, which RocksDB ignores, and a
deleted one is first moved into ``snapshots/.deleting-*`` (finished on reopen).

Column families (besides ``default``): ``nodes, relationships, label_index,
adjacency_out, adjacency_in, property_index, schema, meta, memory``. Only the
first six that hold graph data and ``meta`` are written; ``property_index``,
``schema`` and ``memory`` exist (as on the real server) and stay empty.

Key encoding (raw bytes, so any RocksDB reader can open the files). ``G`` is
the graph name in UTF-8 followed by one NUL byte; ``u64`` is an unsigned
64-bit big-endian integer (so keys sort by id). Names, labels and relationship
types never contain NUL. Values are compact UTF-8 JSON.

=================  ==============================  =============================================
column family      key                             value
=================  ==============================  =============================================
nodes              G + u64(node id)                {"id", "labels", "properties"}
relationships      G + u64(rel id)                 {"id", "type", "startNode", "endNode", "properties"}
label_index        G + label + NUL + u64(node id)  empty
adjacency_out      G + u64(start) + u64(rel id)    {"type", "node": end node id}
adjacency_in       G + u64(end) + u64(rel id)      {"type", "node": start node id}
meta               ``graphs``                      JSON list of graph names (the real server's key)
meta               ``graph`` + NUL + graph name    {"nodeCount", "relationshipCount",
                                                    "nextNodeId", "nextRelationshipId"}
=================  ==============================  =============================================

Every change that belongs together (a node, its label entries and its graph's
counters; a relationship, both adjacency entries and the counters) is one
WriteBatch, and writes are serialised by one lock that checkpoints also take:
a snapshot never holds half a change, and the figures reported with it are
exactly those in the checkpoint.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import struct
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rocksdict import Checkpoint, Options, Rdict, WriteBatch

from ..datadir import (
    COLUMN_FAMILIES,
    CURRENT_FILE,
    GRAPHS_KEY,
    LATEST_LINK,
    LOCK_FILE,
    SNAPSHOTS_DIR,
    DataDirError,
    is_info_log,
    one_line,
    open_readonly,
)
from ..fsutil import lock_holder

_TRASH_PREFIX = ".deleting-"  # a deleted checkpoint while its files go; never a snapshot name
_COUNTERS_PREFIX = b"graph\x00"
_SNAPSHOT_ID = re.compile(r"^\d{8}-\d{6}(-\d+)?$")
_U64 = struct.Struct(">Q")
_MAX_NAME_BYTES = 1024


StoreError = DataDirError  # one error type for the store and the on-disk reader; the message is one line


class InvalidName(StoreError):
    """A graph name, label or relationship type that cannot be stored."""


class GraphExists(StoreError):
    """``create_graph`` on a name that is already taken."""


class NodeNotFound(StoreError):
    """A relationship names a start or end node that does not exist."""


class StoreClosed(StoreError):
    """The store was closed (the server is shutting down)."""


class InvalidSnapshotId(StoreError):
    """A snapshot id that is not a plain snapshot name (a path, ``latest``, a checkpoint being built)."""


class SnapshotNotFound(StoreError):
    """No finished snapshot has this id."""


# ---------------------------------------------------------------- encoding


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # reused: building one per call is slow


def _dumps(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


@functools.lru_cache(maxsize=4096)
def _adjacency_prefix(rel_type: str) -> bytes:
    return b'{"type":' + _dumps(rel_type) + b',"node":'


def adjacency_value(rel_type: str, other_node: int) -> bytes:
    """``{"type": T, "node": N}`` without a JSON encoder call: seeding writes millions of these."""
    return _adjacency_prefix(rel_type) + str(other_node).encode() + b"}"


def _check_name(kind: str, name: str) -> bytes:
    encoded = name.encode()
    if not encoded or b"\x00" in encoded or len(encoded) > _MAX_NAME_BYTES:
        raise InvalidName(f"invalid {kind} {name!r}: must be 1-{_MAX_NAME_BYTES} bytes without NUL")
    return encoded


def graph_prefix(graph: str) -> bytes:
    return graph.encode() + b"\x00"


def node_key(graph: str, node_id: int) -> bytes:
    return graph_prefix(graph) + _U64.pack(node_id)


relationship_key = node_key  # same shape, different column family


def label_key(graph: str, label: str, node_id: int) -> bytes:
    return graph_prefix(graph) + label.encode() + b"\x00" + _U64.pack(node_id)


def adjacency_key(graph: str, node_id: int, rel_id: int) -> bytes:
    return graph_prefix(graph) + _U64.pack(node_id) + _U64.pack(rel_id)


def counters_key(graph: str) -> bytes:
    return _COUNTERS_PREFIX + graph.encode()


def split_graph_key(key: bytes) -> tuple[str, bytes]:
    """``(graph name, rest of the key)`` for any graph-data key."""
    graph, _, rest = key.partition(b"\x00")
    return graph.decode(), rest


def _graph_range(graph: str) -> tuple[bytes, bytes]:
    # Every key of a graph starts with name+NUL, so it sorts in [name+NUL, name+\x01).
    name = graph.encode()
    return name + b"\x00", name + b"\x01"


@dataclass
class GraphCounters:
    nodeCount: int = 0
    relationshipCount: int = 0
    nextNodeId: int = 1
    nextRelationshipId: int = 1

    def figures(self) -> dict[str, int]:
        return {"nodeCount": self.nodeCount, "relationshipCount": self.relationshipCount}


def counts_document(counters: dict[str, GraphCounters]) -> dict[str, Any]:
    """The figures for a set of graphs, in the shape ``open_readonly_counts`` returns."""
    graphs = {name: counters[name].figures() for name in sorted(counters)}
    return {
        "graphs": graphs,
        "nodeCount": sum(g["nodeCount"] for g in graphs.values()),
        "relationshipCount": sum(g["relationshipCount"] for g in graphs.values()),
    }


def _options(create: bool) -> Options:
    options = Options(raw_mode=True)
    # An existing database is opened as it is: RocksDB adds no file or column family to it.
    options.create_if_missing(create)
    options.create_missing_column_families(create)
    # Flush all column families together, so SST files never split a batch.
    options.set_atomic_flush(True)
    options.set_keep_log_file_num(3)
    return options


# ---------------------------------------------------------------- the store


class GraphStore:
    """QilbeeDB's graph data in RocksDB, opened read-write on ``data_dir``."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        """Open the QilbeeDB database in ``data_dir``, or start one there if it is new or empty.

        Anything else (a file, a missing parent, another program's RocksDB or files, a database
        a running server holds) is a StoreError naming the directory, and nothing is written.
        """
        if not os.fspath(data_dir):
            raise StoreError("no data directory given")
        self.data_dir = Path(os.path.abspath(data_dir))
        new = not _check_data_dir(self.data_dir)
        made = new and _make_directory(self.data_dir)
        try:
            self._db = Rdict(
                str(self.data_dir),
                _options(new),
                column_families={name: _options(new) for name in COLUMN_FAMILIES},
            )
        except Exception as exc:  # rocksdict raises plain Exception
            if new:  # leave the directory as it was: absent, or empty for the next try
                _remove_contents(self.data_dir, remove_directory=made)
            raise StoreError(f"cannot open RocksDB in {self.data_dir}: {one_line(exc)}") from None
        self._cf = {name: self._db.get_column_family(name) for name in COLUMN_FAMILIES}
        self._handle = {name: self._db.get_column_family_handle(name) for name in COLUMN_FAMILIES}
        self._lock = threading.RLock()
        self._closed = False
        self._graphs: list[str] = []
        self._counters: dict[str, GraphCounters] = {}
        self._load_meta()
        self._sweep_trash()

    def _load_meta(self) -> None:
        self._counters = _read_counters(self._db)
        self._graphs = list(self._counters)

    # -- lifecycle

    def close(self) -> None:
        """Flush every column family and the WAL, then close. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for cf in self._cf.values():
                cf.flush()
            self._db.flush()
            self._db.flush_wal(True)
            self._cf.clear()
            self._handle.clear()
            self._db.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _family(self, name: str) -> Rdict:
        if self._closed:
            raise StoreClosed("the database is closed")
        return self._cf[name]

    def _batch(self) -> WriteBatch:
        if self._closed:
            raise StoreClosed("the database is closed")
        return WriteBatch(raw_mode=True)

    def _write(self, batch: WriteBatch) -> None:
        self._db.write(batch)

    def _put_counters(self, batch: WriteBatch, graph: str, counters: GraphCounters) -> None:
        batch.put(counters_key(graph), _dumps(asdict(counters)), self._handle["meta"])

    # -- graphs

    def list_graphs(self) -> list[str]:
        return list(self._graphs)

    def graph_exists(self, graph: str) -> bool:
        return graph in self._counters

    def create_graph(self, graph: str) -> None:
        _check_name("graph name", graph)
        with self._lock:
            if graph in self._counters:
                raise GraphExists(f"Graph '{graph}' already exists")
            batch = self._batch()
            counters = GraphCounters()
            graphs = [*self._graphs, graph]
            batch.put(GRAPHS_KEY, _dumps(graphs), self._handle["meta"])
            self._put_counters(batch, graph, counters)
            self._write(batch)
            self._graphs, self._counters[graph] = graphs, counters

    def ensure_graph(self, graph: str) -> None:
        """Create ``graph`` if missing: the real server creates a graph on first use."""
        if graph not in self._counters:
            with self._lock:
                if graph not in self._counters:
                    self.create_graph(graph)

    def delete_graph(self, graph: str) -> bool:
        """Remove the graph and all its data in one batch; False if it did not exist."""
        with self._lock:
            if graph not in self._counters:
                return False
            batch = self._batch()
            begin, end = _graph_range(graph)
            for name in COLUMN_FAMILIES:
                if name != "meta":
                    batch.delete_range(begin, end, self._handle[name])
            graphs = [g for g in self._graphs if g != graph]
            batch.put(GRAPHS_KEY, _dumps(graphs), self._handle["meta"])
            batch.delete(counters_key(graph), self._handle["meta"])
            self._write(batch)
            self._graphs = graphs
            del self._counters[graph]
            return True

    # -- nodes

    def create_node(self, graph: str, labels: list[str], properties: dict[str, Any]) -> dict[str, Any]:
        for label in labels:
            _check_name("label", label)
        self.ensure_graph(graph)
        with self._lock:
            counters = self._counters[graph]
            node = {"id": counters.nextNodeId, "labels": list(labels), "properties": properties}
            updated = replace(counters, nodeCount=counters.nodeCount + 1, nextNodeId=counters.nextNodeId + 1)
            batch = self._batch()
            self._put_node(batch, graph, node)
            self._put_counters(batch, graph, updated)
            self._write(batch)
            self._counters[graph] = updated
            return node

    def _put_node(self, batch: WriteBatch, graph: str, node: dict[str, Any]) -> None:
        batch.put(node_key(graph, node["id"]), _dumps(node), self._handle["nodes"])
        for label in dict.fromkeys(node["labels"]):
            batch.put(label_key(graph, label, node["id"]), b"", self._handle["label_index"])

    def get_node(self, graph: str, node_id: int) -> dict[str, Any] | None:
        raw = self._family("nodes").get(node_key(graph, node_id))
        return json.loads(raw) if raw is not None else None

    def update_node(
        self, graph: str, node_id: int, labels: list[str], properties: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Replace a node's labels and properties; None if it does not exist."""
        for label in labels:
            _check_name("label", label)
        with self._lock:
            old = self.get_node(graph, node_id)
            if old is None:
                return None
            node = {"id": node_id, "labels": list(labels), "properties": properties}
            batch = self._batch()
            for label in set(old["labels"]) - set(labels):
                batch.delete(label_key(graph, label, node_id), self._handle["label_index"])
            self._put_node(batch, graph, node)
            self._write(batch)
            return node

    def delete_node(self, graph: str, node_id: int) -> bool:
        """Detach-delete: the node, its label entries and every relationship touching it."""
        with self._lock:
            node = self.get_node(graph, node_id)
            if node is None:
                return False
            rels = {rel["id"]: rel for rel in self.node_relationships(graph, node_id)}
            batch = self._batch()
            for rel in rels.values():
                self._delete_relationship(batch, graph, rel)
            for label in set(node["labels"]):
                batch.delete(label_key(graph, label, node_id), self._handle["label_index"])
            batch.delete(node_key(graph, node_id), self._handle["nodes"])
            counters = self._counters[graph]
            updated = replace(counters, nodeCount=counters.nodeCount - 1,
                              relationshipCount=counters.relationshipCount - len(rels))
            self._put_counters(batch, graph, updated)
            self._write(batch)
            self._counters[graph] = updated
            return True

    def iter_nodes(self, graph: str, label: str | None = None) -> Iterator[dict[str, Any]]:
        """Nodes in id order, all of them or those with ``label``."""
        if label is None:
            for _, value in _scan(self._family("nodes"), graph_prefix(graph)):
                yield json.loads(value)
            return
        if not label or "\x00" in label:
            return
        prefix = graph_prefix(graph) + label.encode() + b"\x00"
        nodes = self._family("nodes")
        for key, _ in _scan(self._family("label_index"), prefix):
            raw = nodes.get(graph_prefix(graph) + key[len(prefix) :])
            if raw is not None:
                yield json.loads(raw)

    # -- relationships

    def create_relationship(
        self, graph: str, start: int, rel_type: str, end: int, properties: dict[str, Any]
    ) -> dict[str, Any]:
        _check_name("relationship type", rel_type)
        self.ensure_graph(graph)
        with self._lock:
            for node_id in (start, end):
                if self.get_node(graph, node_id) is None:
                    raise NodeNotFound(f"Node not found: NodeId({node_id})")
            counters = self._counters[graph]
            rel = {
                "id": counters.nextRelationshipId,
                "type": rel_type,
                "startNode": start,
                "endNode": end,
                "properties": properties,
            }
            updated = replace(counters, relationshipCount=counters.relationshipCount + 1,
                              nextRelationshipId=counters.nextRelationshipId + 1)
            batch = self._batch()
            self._put_relationship(batch, graph, rel)
            self._put_counters(batch, graph, updated)
            self._write(batch)
            self._counters[graph] = updated
            return rel

    def _put_relationship(self, batch: WriteBatch, graph: str, rel: dict[str, Any]) -> None:
        rel_id, rel_type = rel["id"], rel["type"]
        batch.put(relationship_key(graph, rel_id), _dumps(rel), self._handle["relationships"])
        batch.put(
            adjacency_key(graph, rel["startNode"], rel_id),
            adjacency_value(rel_type, rel["endNode"]),
            self._handle["adjacency_out"],
        )
        batch.put(
            adjacency_key(graph, rel["endNode"], rel_id),
            adjacency_value(rel_type, rel["startNode"]),
            self._handle["adjacency_in"],
        )

    def _delete_relationship(self, batch: WriteBatch, graph: str, rel: dict[str, Any]) -> None:
        batch.delete(relationship_key(graph, rel["id"]), self._handle["relationships"])
        batch.delete(adjacency_key(graph, rel["startNode"], rel["id"]), self._handle["adjacency_out"])
        batch.delete(adjacency_key(graph, rel["endNode"], rel["id"]), self._handle["adjacency_in"])

    def get_relationship(self, graph: str, rel_id: int) -> dict[str, Any] | None:
        raw = self._family("relationships").get(relationship_key(graph, rel_id))
        return json.loads(raw) if raw is not None else None

    def node_relationships(self, graph: str, node_id: int) -> list[dict[str, Any]]:
        """Outgoing then incoming relationships of a node (a self-loop appears once)."""
        prefix = graph_prefix(graph) + _U64.pack(node_id)
        seen: dict[int, dict[str, Any]] = {}
        for cf in ("adjacency_out", "adjacency_in"):
            for key, _ in _scan(self._family(cf), prefix):
                rel_id = _U64.unpack(key[-8:])[0]
                if rel_id not in seen:
                    rel = self.get_relationship(graph, rel_id)
                    if rel is not None:
                        seen[rel_id] = rel
        return list(seen.values())

    # -- figures, snapshots

    def counts(self) -> dict[str, Any]:
        """``{"graphs": {name: {nodeCount, relationshipCount}}, "nodeCount", "relationshipCount"}``."""
        with self._lock:
            return counts_document(self._counters)

    def storage_stats(self) -> dict[str, Any]:
        """The guide's ``GET /admin/stats`` document."""
        counts = self.counts()
        return {
            "storage": {
                "nodeCount": counts["nodeCount"],
                "relationshipCount": counts["relationshipCount"],
                "totalSizeBytes": live_size_bytes(self.data_dir),
            },
            "graphs": counts["graphs"],
        }

    @property
    def snapshots_dir(self) -> Path:
        return self.data_dir / SNAPSHOTS_DIR

    def create_snapshot(self) -> dict[str, Any]:
        """A RocksDB checkpoint in ``snapshots/<YYYYMMDD-HHMMSS>``, with ``latest`` pointing at it.

        Writers wait while the checkpoint is taken, so ``stats`` describes
        exactly the data in it.
        """
        with self._lock:
            if self._closed:
                raise StoreClosed("the database is closed")
            self.snapshots_dir.mkdir(exist_ok=True)
            now = datetime.now(timezone.utc)
            snapshot_id = self._free_snapshot_id(now.strftime("%Y%m%d-%H%M%S"))
            path = self.snapshots_dir / snapshot_id
            try:
                Checkpoint(self._db).create_checkpoint(str(path))
            except Exception as exc:
                raise StoreError(f"checkpoint {snapshot_id} failed: {one_line(exc)}") from None
            stats = counts_document(self._counters)
            _point_latest(self.snapshots_dir, snapshot_id)
        return {
            "snapshot_id": snapshot_id,
            "path": str(path),
            "size_bytes": tree_size_bytes(path),
            "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "stats": stats,
        }

    def _free_snapshot_id(self, base: str) -> str:
        candidate, n = base, 0
        # ".tmp" is where RocksDB builds a checkpoint before renaming it.
        while (self.snapshots_dir / candidate).exists() or (self.snapshots_dir / f"{candidate}.tmp").exists():
            n += 1
            candidate = f"{base}-{n}"
        return candidate

    def list_snapshots(self) -> list[dict[str, Any]]:
        return list_snapshots(self.data_dir)

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Remove one checkpoint; ``latest`` then points at the newest one left, or goes.

        Under the checkpoint lock the checkpoint is renamed out of the snapshot
        names (so no listing or ``latest`` sees it half-removed, and a checkpoint
        being created is never touched); its files are removed after, unlocked.
        """
        if not _SNAPSHOT_ID.fullmatch(snapshot_id):
            raise InvalidSnapshotId(f"invalid snapshot ID {snapshot_id!r}")
        path = self.snapshots_dir / snapshot_id
        with self._lock:
            if path.is_symlink() or not path.is_dir():
                raise SnapshotNotFound(f"snapshot {snapshot_id} not found")
            remaining = [p.name for p in _snapshot_dirs(self.snapshots_dir) if p.name != snapshot_id]
            _repoint_latest(self.snapshots_dir, snapshot_id, remaining[-1] if remaining else None)
            # A fresh directory to move it into: the name is unique even beside an older half-done deletion.
            trash = Path(tempfile.mkdtemp(prefix=_TRASH_PREFIX, dir=self.snapshots_dir))
            try:
                os.rename(path, trash / snapshot_id)
            except OSError as exc:
                trash.rmdir()
                raise StoreError(f"cannot delete snapshot {snapshot_id}: {one_line(exc)}") from None
        shutil.rmtree(trash, ignore_errors=True)

    def _sweep_trash(self) -> None:
        """Finish the deletions a stopped server left half done."""
        for trash in self.snapshots_dir.glob(f"{_TRASH_PREFIX}*"):
            shutil.rmtree(trash, ignore_errors=True)


def _scan(cf: Rdict, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    for key, value in cf.items(from_key=prefix):
        if not key.startswith(prefix):
            return
        yield key, value


def _point_latest(snapshots_dir: Path, snapshot_id: str) -> None:
    # Build the new link beside the old one and rename over it: readers never see it missing.
    tmp = snapshots_dir / f".{LATEST_LINK}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(snapshot_id, tmp)
    os.replace(tmp, snapshots_dir / LATEST_LINK)


def _repoint_latest(snapshots_dir: Path, deleted: str, newest_left: str | None) -> None:
    """Move ``latest`` off a checkpoint being deleted: to the newest one left, else remove it."""
    link = snapshots_dir / LATEST_LINK
    if not link.is_symlink() or os.readlink(link) != deleted:
        return
    if newest_left is None:
        link.unlink()
    else:
        _point_latest(snapshots_dir, newest_left)


# ---------------------------------------------------------------- the data directory

_IGNORED_ENTRIES = frozenset({"lost+found"})  # what a freshly formatted volume already holds


def _check_data_dir(path: Path) -> bool:
    """True if ``path`` holds a QilbeeDB database to open; False if it is new (its parent exists) or empty.

    Anything else raises StoreError, one line naming the directory and what is wrong. Reads only:
    no file is created, written or locked, so a directory that is refused is left exactly as it was.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise StoreError(f"data directory {path} is a symbolic link to nothing") from None
        if not path.parent.is_dir():
            raise StoreError(f"cannot create data directory {path}: {path.parent} does not exist") from None
        return False
    except OSError as exc:
        raise StoreError(f"cannot use data directory {path}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise StoreError(f"data directory {path} is not a directory")
    try:
        entries = set(os.listdir(path)) - _IGNORED_ENTRIES
    except OSError as exc:
        raise StoreError(f"cannot read data directory {path}: {exc.strerror or exc}") from None
    if not entries:
        return False
    if CURRENT_FILE not in entries:
        raise StoreError(
            f"{path} is not a QilbeeDB data directory: it holds {len(entries)} entries but no RocksDB "
            "database (no CURRENT file); give a new or empty directory"
        )
    holder = lock_holder(path / LOCK_FILE)
    if holder is not None:
        who = f"process {holder}" if holder else "another process"
        raise StoreError(f"{path} is in use: {who} holds its RocksDB LOCK")
    try:
        families = set(Rdict.list_cf(str(path), Options(raw_mode=True)))
    except Exception as exc:  # rocksdict raises plain Exception
        raise StoreError(f"{path} is not a readable RocksDB database: {one_line(exc)}") from None
    missing = [name for name in COLUMN_FAMILIES if name not in families]
    unexpected = sorted(families - {"default", *COLUMN_FAMILIES})
    if missing or unexpected:
        wrong = [f"{label} column families {', '.join(names)}"
                 for label, names in (("missing", missing), ("unexpected", unexpected)) if names]
        raise StoreError(f"{path} is a RocksDB database but not QilbeeDB's: {'; '.join(wrong)}")
    with open_readonly(path) as db:
        try:
            _read_counters(db)
        except StoreError as exc:
            raise StoreError(f"{path} is not a QilbeeDB data directory: {exc}") from None
        if db.get_column_family("meta").get(GRAPHS_KEY) is None and not _is_empty(db):
            raise StoreError(f"{path} is not a QilbeeDB data directory: it holds records but no 'graphs' key in meta")
    return True


def _is_empty(db: Rdict) -> bool:
    return all(
        next(iter(cf.keys()), None) is None
        for cf in (db, *(db.get_column_family(name) for name in COLUMN_FAMILIES))
    )


def _make_directory(path: Path) -> bool:
    """Create a new data directory (not its parents: a mistyped path grows no tree); False if it exists."""
    try:
        path.mkdir()
    except FileExistsError:
        if path.is_dir():
            return False
        raise StoreError(f"data directory {path} is not a directory") from None
    except OSError as exc:
        raise StoreError(f"cannot create data directory {path}: {exc.strerror or exc}") from None
    return True


def _remove_contents(path: Path, remove_directory: bool) -> None:
    """Undo a failed start in a new directory: remove it, or what was written into it."""
    if remove_directory:
        shutil.rmtree(path, ignore_errors=True)
        return
    with contextlib.suppress(OSError), os.scandir(path) as entries:
        for entry in entries:
            if entry.name in _IGNORED_ENTRIES:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


# ---------------------------------------------------------------- files on disk


def live_size_bytes(data_dir: str | os.PathLike[str]) -> int:
    """Bytes of the live database: the files directly in the data directory, minus LOCK and info logs."""
    total = 0
    with os.scandir(data_dir) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and entry.name != LOCK_FILE and not is_info_log(entry.name):
                total += entry.stat(follow_symlinks=False).st_size
    return total


def tree_size_bytes(path: str | os.PathLike[str]) -> int:
    """Sum of the sizes of the regular files under ``path``; files deleted meanwhile count 0."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(os.path.join(root, name))
                total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


def _snapshot_dirs(snapshots_dir: Path) -> list[Path]:
    """The finished checkpoints in ``snapshots_dir``, oldest first (not ``latest``, ``.tmp`` or trash)."""
    if not snapshots_dir.is_dir():
        return []
    found = [
        entry
        for entry in snapshots_dir.iterdir()
        if _SNAPSHOT_ID.fullmatch(entry.name) and not entry.is_symlink() and entry.is_dir()
    ]
    return sorted(found, key=lambda p: _snapshot_sort_key(p.name))


def list_snapshots(data_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Finished snapshots under ``<data_dir>/snapshots``, oldest first."""
    found = []
    for entry in _snapshot_dirs(Path(os.path.abspath(data_dir)) / SNAPSHOTS_DIR):
        size = tree_size_bytes(entry)
        if not entry.is_dir():
            continue  # deleted while we looked
        created = datetime.strptime(entry.name[:15], "%Y%m%d-%H%M%S").replace(tzinfo=timezone.utc)
        found.append(
            {
                "snapshot_id": entry.name,
                "path": str(entry),
                "size_bytes": size,
                "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    return found


def _snapshot_sort_key(name: str) -> tuple[str, int]:
    base, _, suffix = name[:15], name[15:16], name[16:]
    return base, int(suffix) if suffix.isdigit() else 0


# ---------------------------------------------------------------- read-only access


def _read_counters(db: Rdict) -> dict[str, GraphCounters]:
    """Each graph's counters from ``meta``, in the recorded order; StoreError if ``meta`` is not QilbeeDB's."""
    meta = db.get_column_family("meta")
    raw = meta.get(GRAPHS_KEY)
    try:
        names = json.loads(raw) if raw else []
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise StoreError("meta key 'graphs' is not a JSON list of graph names")
    counters = {}
    for name in names:
        raw_counters = meta.get(counters_key(name))
        try:
            counters[name] = GraphCounters(**json.loads(raw_counters)) if raw_counters else GraphCounters()
        except (ValueError, TypeError):
            raise StoreError(f"the meta counters of graph {name!r} are not QilbeeDB's") from None
        if not all(type(value) is int for value in asdict(counters[name]).values()):
            raise StoreError(f"the meta counters of graph {name!r} are not whole numbers")
    return counters


def open_readonly_counts(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The figures a database records for itself (its ``meta`` counters), opened read-only.

    Returns ``{"graphs": {name: {"nodeCount", "relationshipCount"}}, "nodeCount", "relationshipCount"}``,
    the same shape as the ``stats`` of ``POST /admin/snapshot``.
    """
    with open_readonly(path) as db:
        return counts_document(_read_counters(db))


def content_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 over every record of every column family, in key order: equal digests, equal data.

    Independent of how RocksDB laid the records out in files, so a restored
    copy can be compared with its source whatever compaction did.
    """
    with open_readonly(path) as db:
        digest = hashlib.sha256()
        for name in ("default", *sorted(COLUMN_FAMILIES)):
            cf = db if name == "default" else _column_family(db, name)
            if cf is None:
                continue
            digest.update(b"cf\x00" + name.encode() + b"\x00")
            for key, value in cf.items():
                digest.update(_U64.pack(len(key)) + key + _U64.pack(len(value)) + value)
        return digest.hexdigest()


def _column_family(db: Rdict, name: str) -> Rdict | None:
    try:
        return db.get_column_family(name)
    except Exception:  # rocksdict raises plain Exception for a family the database lacks
        return None


@dataclass
class AuditReport:
    """What a full scan of a database found: recorded and counted figures and every inconsistency."""

    recorded: dict[str, Any]
    counted: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def audit_database(path: str | os.PathLike[str], max_problems: int = 50) -> AuditReport:
    """Scan a RocksDB directory read-only and check it holds only whole records.

    Checks: every relationship has both adjacency entries and both end nodes;
    every adjacency entry has its relationship; every label entry has its node
    (and every node's labels their entries); no data for unknown graphs; each
    graph's counters equal the records counted. Streams every column family
    once, with point lookups: memory stays flat however large the database.
    """
    problems: list[str] = []

    def problem(text: str) -> None:
        if len(problems) < max_problems:
            problems.append(text)

    with open_readonly(path) as db:
        counters = _read_counters(db)
        nodes_cf = db.get_column_family("nodes")
        rels_cf = db.get_column_family("relationships")
        label_cf = db.get_column_family("label_index")
        adjacency = {name: db.get_column_family(name) for name in ("adjacency_out", "adjacency_in")}
        node_counts = {name: 0 for name in counters}
        rel_counts = {name: 0 for name in counters}

        for key, value in nodes_cf.items():
            graph, rest = split_graph_key(key)
            if graph not in counters:
                problem(f"node key {key!r} belongs to no known graph")
                continue
            node_counts[graph] += 1
            node = json.loads(value)
            for label in set(node["labels"]):
                if label_cf.get(label_key(graph, label, node["id"])) is None:
                    problem(f"{graph}: node {node['id']} has no label_index entry for {label!r}")

        for key, _ in label_cf.items():
            graph, rest = split_graph_key(key)
            node_id = _U64.unpack(rest[-8:])[0]
            if nodes_cf.get(node_key(graph, node_id)) is None:
                problem(f"{graph}: label_index entry {rest[:-9]!r} points at missing node {node_id}")

        for key, value in rels_cf.items():
            graph, _ = split_graph_key(key)
            if graph not in counters:
                problem(f"relationship key {key!r} belongs to no known graph")
                continue
            rel_counts[graph] += 1
            rel = json.loads(value)
            for cf_name, here, there in (
                ("adjacency_out", rel["startNode"], rel["endNode"]),
                ("adjacency_in", rel["endNode"], rel["startNode"]),
            ):
                raw = adjacency[cf_name].get(adjacency_key(graph, here, rel["id"]))
                if raw is None:
                    problem(f"{graph}: relationship {rel['id']} has no {cf_name} entry")
                elif json.loads(raw) != {"type": rel["type"], "node": there}:
                    problem(f"{graph}: relationship {rel['id']} disagrees with its {cf_name} entry")
            for end in (rel["startNode"], rel["endNode"]):
                if nodes_cf.get(node_key(graph, end)) is None:
                    problem(f"{graph}: relationship {rel['id']} points at missing node {end}")

        for cf_name, end_field in (("adjacency_out", "startNode"), ("adjacency_in", "endNode")):
            for key, _ in adjacency[cf_name].items():
                graph, rest = split_graph_key(key)
                node_id, rel_id = _U64.unpack(rest[:8])[0], _U64.unpack(rest[8:16])[0]
                raw = rels_cf.get(relationship_key(graph, rel_id))
                if raw is None:
                    problem(f"{graph}: {cf_name} entry for relationship {rel_id} has no relationship")
                elif json.loads(raw)[end_field] != node_id:
                    problem(f"{graph}: {cf_name} entry of node {node_id} names relationship {rel_id} of another node")

        counted_counters = {
            name: GraphCounters(node_counts[name], rel_counts[name]) for name in counters
        }
        for name, recorded in counters.items():
            if (recorded.nodeCount, recorded.relationshipCount) != (node_counts[name], rel_counts[name]):
                problem(
                    f"{name}: counters say {recorded.nodeCount} nodes/{recorded.relationshipCount} "
                    f"relationships, found {node_counts[name]}/{rel_counts[name]}"
                )
        return AuditReport(counts_document(counters), counts_document(counted_counters), problems)


# ---------------------------------------------------------------- bulk loading


class BulkLoader:
    """Fast sequential loading for seeding: many records per WriteBatch, counters in each batch.

    Callers guarantee relationship endpoints exist (no per-record lookups).
    Use as a context manager: it holds the store's write lock throughout (its
    counters are private copies until each flush), and leaving it writes the
    last batch.
    """

    def __init__(self, store: GraphStore, batch_records: int = 5000) -> None:
        self._store = store
        self._batch_records = batch_records
        self._batch: WriteBatch | None = None
        self._pending = 0
        self._dirty: dict[str, GraphCounters] = {}

    def _current(self) -> WriteBatch:
        if self._batch is None:
            self._batch = self._store._batch()
        return self._batch

    def _counters(self, graph: str) -> GraphCounters:
        if graph not in self._dirty:
            self._store.ensure_graph(graph)
            current = self._store._counters[graph]
            self._dirty[graph] = replace(current)
        return self._dirty[graph]

    def add_node(self, graph: str, labels: list[str], properties: dict[str, Any]) -> int:
        counters = self._counters(graph)
        node = {"id": counters.nextNodeId, "labels": labels, "properties": properties}
        self._store._put_node(self._current(), graph, node)
        counters.nextNodeId += 1
        counters.nodeCount += 1
        self._tick()
        return node["id"]

    def add_relationship(
        self, graph: str, start: int, rel_type: str, end: int, properties: dict[str, Any]
    ) -> int:
        counters = self._counters(graph)
        rel = {
            "id": counters.nextRelationshipId,
            "type": rel_type,
            "startNode": start,
            "endNode": end,
            "properties": properties,
        }
        self._store._put_relationship(self._current(), graph, rel)
        counters.nextRelationshipId += 1
        counters.relationshipCount += 1
        self._tick()
        return rel["id"]

    def _tick(self) -> None:
        self._pending += 1
        if self._pending >= self._batch_records:
            self.flush()

    def flush(self) -> None:
        if self._batch is None:
            return
        store = self._store
        with store._lock:
            for graph, counters in self._dirty.items():
                store._put_counters(self._batch, graph, counters)
            store._write(self._batch)
            for graph, counters in self._dirty.items():
                store._counters[graph] = replace(counters)
        self._batch, self._pending = None, 0

    def __enter__(self) -> BulkLoader:
        self._store._lock.acquire()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            if exc_type is None:
                self.flush()
        finally:
            self._store._lock.release()
