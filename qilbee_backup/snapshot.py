"""Taking a consistent copy of a QilbeeDB data directory: online (the server's checkpoint) or offline.

online:  POST /admin/snapshot; the server answers with the checkpoint's path as *it* sees it
         (``/data/snapshots/<id>`` inside its container), which we map to a path readable here.
offline: the guide's file-system backup. Stop the container, copy the data directory, start it
         again (always, even when the copy fails) and wait for /health. The copy hard-links
         RocksDB's immutable SST/blob files and copies the rest, so the server is down for
         seconds, not for the length of the upload.

Once the backup is committed, ``release_checkpoint`` deletes the online checkpoint through the
server's API (``DELETE /admin/snapshots/{id}``): left there, every run's checkpoint would pin
SST files the live database has long compacted away.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath

from . import docker_engine
from .datadir import SNAPSHOTS_DIR, DataDirError, read_graph_names
from .client import (
    QilbeeClient,
    Snapshot,
    SnapshotDeleteNotSupported,
    SnapshotNotFound,
    SnapshotNotSupported,
)
from .errors import QilbeeBackupError, UsageError

log = logging.getLogger(__name__)

# RocksDB never rewrites these once written; everything else (MANIFEST, CURRENT, OPTIONS, WAL) may change.
IMMUTABLE_SUFFIXES = (".sst", ".blob")
LATEST = "latest"  # the guide's pointer to the newest checkpoint, never a checkpoint of its own
# Another run may still be reading a checkpoint it took: spare other runs' checkpoints this young.
CHECKPOINT_GRACE = timedelta(hours=1)


class SnapshotUnreadable(QilbeeBackupError):
    """The server's snapshot path cannot be read from where this flow runs."""


@dataclass
class TakenSnapshot:
    mode: str  # "online" | "offline"
    path: Path  # a directory readable here
    snapshot_id: str
    server_path: str
    size_bytes: int
    stats: dict
    server_version: str | None
    container: str | None = None
    cleanup_paths: list[Path] = field(default_factory=list)

    def cleanup(self) -> None:
        """Remove what this run created for itself (the offline copy); a server checkpoint is the server's."""
        for p in self.cleanup_paths:
            shutil.rmtree(p, ignore_errors=True)


def map_server_path(server_path: str, *, data_path: Path | None = None, mounts: list[dict] | None = None) -> Path:
    """Where the server's snapshot path is readable from here.

    --data-path HOST_DIR names the host directory holding the server's data directory, so
    ``<server data dir>/snapshots/<id>`` maps to ``HOST_DIR/snapshots/<id>``. A container's
    mounts map a container path prefix to its host source. Otherwise the path is used as is
    (the server runs on this host, as the emulator does).
    """
    sp = PurePosixPath(server_path)
    if data_path is not None:
        parts = sp.parts
        if SNAPSHOTS_DIR in parts:
            rel = PurePosixPath(*parts[parts.index(SNAPSHOTS_DIR):])
            return Path(data_path) / rel
        return Path(data_path) / sp.name
    for m in sorted(mounts or [], key=lambda m: len(m.get("Destination", "")), reverse=True):
        dest = PurePosixPath(m.get("Destination", "/nonexistent"))
        if sp == dest or dest in sp.parents:
            return Path(m["Source"]) / sp.relative_to(dest)
    return Path(server_path)


def take_online(client: QilbeeClient, *, data_path: Path | None = None, mounts: list[dict] | None = None) -> TakenSnapshot:
    health = client.health()
    snap = client.create_snapshot()
    stats = snap.stats if snap.stats else _stats_dict(client)
    local = map_server_path(snap.path, data_path=data_path, mounts=mounts)
    if not local.is_dir() or not os.access(local, os.R_OK | os.X_OK):
        raise SnapshotUnreadable(
            f"snapshot {snap.snapshot_id} is at {snap.path} on the server, but {local} is not readable here; "
            "run the backup on the database host or a worker with the data volume mounted, or pass --data-path HOST_DIR"
        )
    return TakenSnapshot(
        mode="online", path=local, snapshot_id=snap.snapshot_id, server_path=snap.path,
        size_bytes=snap.size_bytes or 0, stats=stats, server_version=health.get("version"),
    )


def _stats_dict(client: QilbeeClient, graphs: list[str] | None = None) -> dict:
    s = client.stats(graphs=graphs)
    return {
        "graphs": s.graphs,
        "nodeCount": s.node_count,
        "relationshipCount": s.relationship_count,
        "source": s.source,
    }


def copy_data_dir(src: Path, dst: Path) -> int:
    """Copy a stopped RocksDB directory: hard-link immutable files, copy mutable ones; skip snapshots/.

    Returns the bytes of the files copied. Falls back to a byte copy where a hard link is refused
    (another filesystem).
    """
    total = 0
    for dirpath, dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        if rel == Path("."):
            dirnames[:] = [d for d in dirnames if d != SNAPSHOTS_DIR]
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            s, d = Path(dirpath) / name, dst / rel / name
            if s.is_symlink():
                continue  # a data directory holds no links we trust; restore refuses them too
            total += s.stat().st_size
            if name.endswith(IMMUTABLE_SUFFIXES):
                try:
                    os.link(s, d)
                    continue
                except OSError:
                    pass
            shutil.copy2(s, d)
    return total


def take_offline_docker(
    container_name: str,
    client: QilbeeClient,
    *,
    stop_timeout: int = 30,
    health_timeout: float = 120.0,
    docker_client=None,
    stats_before: dict | None = None,
) -> TakenSnapshot:
    """Stop the container, copy its /data volume, start it again, wait for /health."""
    dc = docker_client or docker_engine.docker_client("offline mode")
    container = docker_engine.container(dc, container_name)
    mounts = container.attrs.get("Mounts") or []
    data = next((m for m in mounts if m.get("Destination") == "/data"), None)
    if data is None:
        raise QilbeeBackupError(f"container {container_name!r} has no volume mounted at /data; nothing to back up offline")
    host_dir = Path(data["Source"])
    if not host_dir.is_dir():
        raise SnapshotUnreadable(f"the /data volume of {container_name!r} is {host_dir} on the host, which is not readable here")

    # Figures before the stop and again after the restart: equal means no write came between, so
    # they describe the copy exactly; else the manifest says they are approximate.
    names = _graph_names(client, host_dir)
    before = stats_before if stats_before is not None else _safe_stats(client, names)
    version = _safe_version(client)
    snapshot_id = "offline-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    # Inside the data directory's snapshots/ so hard links stay on one filesystem.
    dest = host_dir / SNAPSHOTS_DIR / snapshot_id
    was_running = container.status == "running"
    log.info("stopping container %s for an offline copy of %s", container_name, host_dir)
    container.stop(timeout=stop_timeout)
    try:
        size = copy_data_dir(host_dir, dest)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    finally:
        if was_running:
            container.start()
            client.wait_healthy(timeout=health_timeout)
            log.info("container %s is running and healthy again", container_name)
    after = _safe_stats(client, names or _graph_names_in(dest)) if was_running else {}
    stats = dict(before or after)
    if stats:
        stats["exact"] = bool(before) and _figures(before) == _figures(after)
        if not stats["exact"]:
            log.warning("the database changed around the offline copy (or could not be counted before it): "
                        "its recorded figures are approximate")
    return TakenSnapshot(
        mode="offline", path=dest, snapshot_id=snapshot_id, server_path=str(dest), size_bytes=size,
        stats=stats, server_version=version, container=container_name, cleanup_paths=[dest],
    )


def _safe_stats(client: QilbeeClient, graphs: list[str] | None = None) -> dict:
    try:
        return _stats_dict(client, graphs)
    except QilbeeBackupError as e:
        log.warning("could not read the database's figures: %s", e)
        return {}


def _figures(stats: dict) -> tuple:
    return (stats.get("nodeCount"), stats.get("relationshipCount"),
            {g: v.get("nodeCount") for g, v in (stats.get("graphs") or {}).items()})


def _graph_names(client: QilbeeClient, data_dir: Path) -> list[str] | None:
    """Graph names from GET /graphs, else from the data directory's own ``meta`` key (read-only)."""
    try:
        return client.list_graphs()
    except QilbeeBackupError:
        return _graph_names_in(data_dir)


def _graph_names_in(data_dir: Path) -> list[str] | None:
    try:
        return read_graph_names(data_dir)
    except (DataDirError, OSError, ValueError) as e:
        log.warning("could not read the graph names from %s: %s", data_dir, e)
        return None


def _safe_version(client: QilbeeClient) -> str | None:
    try:
        return client.health().get("version")
    except QilbeeBackupError:
        return None


def take_snapshot(
    client: QilbeeClient,
    *,
    mode: str = "auto",
    container: str | None = None,
    data_path: Path | None = None,
    docker_client=None,
) -> TakenSnapshot:
    """The run's snapshot in the requested mode; auto = online, offline when the server has no snapshot API."""
    if mode not in ("auto", "online", "offline"):
        raise UsageError(f"unknown mode {mode!r}: use auto, online or offline")
    if mode == "offline":
        if not container:
            raise UsageError("offline mode needs --container NAME (the Docker container running QilbeeDB)")
        return take_offline_docker(container, client, docker_client=docker_client)
    mounts = None
    if container and data_path is None:
        mounts = _container_mounts(container, docker_client)
    try:
        return take_online(client, data_path=data_path, mounts=mounts)
    except SnapshotNotSupported:
        if mode == "auto" and container:
            log.warning("the server has no snapshot API (404); falling back to an offline file-system backup of %s", container)
            return take_offline_docker(container, client, docker_client=docker_client)
        raise


def _container_mounts(container: str, docker_client=None) -> list[dict] | None:
    try:
        dc = docker_client or docker_engine.docker_client("mapping the snapshot path through --container")
        return dc.containers.get(container).attrs.get("Mounts") or []
    except Exception as e:  # the mounts only help map paths; online mode may still work without them
        log.warning("could not read the mounts of container %s: %s", container, e)
        return None


# ---------------------------------------------------------------- releasing the server's checkpoints


@dataclass
class CheckpointRelease:
    """What ``release_checkpoint`` did on the server; its warnings are returned, never raised."""

    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def release_checkpoint(
    client: QilbeeClient, taken: TakenSnapshot, keep_newest: int = 0, *, grace: timedelta = CHECKPOINT_GRACE
) -> CheckpointRelease:
    """Delete the server checkpoint this backup took; call it once the backup is committed everywhere.

    keep_newest=0 deletes this run's checkpoint and leaves every other alone. keep_newest=N keeps the
    newest N checkpoints the server lists (this run's normally among them) and deletes the older ones,
    except other runs' checkpoints younger than ``grace``. Only ids the server lists are deleted, and
    only through its API. Offline mode took no checkpoint (TakenSnapshot.cleanup removes its copy).
    Failures are logged and returned as warnings: the backup is already committed.
    """
    released = CheckpointRelease()
    if taken.mode != "online":
        return released
    if keep_newest < 0:
        raise UsageError(f"keep_newest must be 0 or more, got {keep_newest}")
    if keep_newest == 0:
        doomed = [taken.snapshot_id]
    else:
        try:
            doomed, released.kept = _beyond_newest(client.list_snapshots(), taken.snapshot_id, keep_newest, grace)
        except QilbeeBackupError as e:
            return _warn(released, f"could not list the server's checkpoints, so none was deleted: {e}")
    for snapshot_id in doomed:
        try:
            client.delete_snapshot(snapshot_id)
        except SnapshotNotFound:
            log.info("checkpoint %s is already gone from the server", snapshot_id)
        except SnapshotDeleteNotSupported as e:  # the others would be refused alike
            return _warn(released, f"{e}; this run's checkpoint stays at {taken.server_path} on the server")
        except QilbeeBackupError as e:
            _warn(released, f"could not delete checkpoint {snapshot_id}: {e}")
        else:
            log.info("deleted checkpoint %s from the server", snapshot_id)
            released.deleted.append(snapshot_id)
    return released


def _beyond_newest(
    listed: list[Snapshot], own_id: str, keep_newest: int, grace: timedelta
) -> tuple[list[str], list[str]]:
    """(ids to delete, oldest first; ids kept): all but the newest ``keep_newest``, sparing others' young ones."""
    ordered = sorted((s for s in listed if s.snapshot_id != LATEST), key=_age_order)
    young = datetime.now(timezone.utc) - grace
    doomed, kept = [], []
    for index, snap in enumerate(ordered):
        created = _created(snap)
        spared = snap.snapshot_id != own_id and created is not None and created > young
        newest = index >= len(ordered) - keep_newest
        (kept if newest or spared else doomed).append(snap.snapshot_id)
    return doomed, kept


def _age_order(snap: Snapshot) -> tuple:
    # created_at has one-second steps; ids then order by their numbers (…-2 before …-10).
    chunks = re.findall(r"\d+|\D+", snap.snapshot_id)
    natural = tuple((c.isdigit(), int(c) if c.isdigit() else 0, c) for c in chunks)
    return _created(snap) or datetime.min.replace(tzinfo=timezone.utc), natural


def _created(snap: Snapshot) -> datetime | None:
    try:
        created = datetime.fromisoformat(snap.created_at or "")
    except ValueError:
        return None
    return created if created.tzinfo else created.replace(tzinfo=timezone.utc)


def _warn(released: CheckpointRelease, message: str) -> CheckpointRelease:
    log.warning("%s", message)
    released.warnings.append(message)
    return released
