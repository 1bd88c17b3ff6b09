"""Looking into a repository without changing it (restic's `stats` and `diff` as models).

``repository_stats``: what the repository holds — backups, their logical size (what a restore of
each would write), the unique content they share, what that content costs in the store once
compressed, the ratios between those, and the blobs nobody references any more (left for the next
prune's sweep). Cost: one listing of ``blobs/`` and the manifests (``Repository.catalog()`` reads
them in parallel); no blob is downloaded.

``diff_backups``: what changed from one backup to another — files added, removed and changed (by
content, size or mode), how many stayed the same, and the figures before and after (size, files,
the database's node and relationship counts, graph by graph where recorded). Cost: the two
manifests.

Both return plain dicts (the CLI prints them as JSON or as a report: ``report.build_report``).
"""

from __future__ import annotations

from typing import Any, Iterable

from .errors import NotFound
from .manifest import FileEntry, Manifest, check_backup_ref
from .repository import Repository

UNENCRYPTED = "unencrypted"


def encryption_of(config: dict[str, Any] | None) -> str:
    """How a repository's objects are stored, in one phrase for list and stats."""
    scheme = (config or {}).get("encryption")
    if not scheme:
        return UNENCRYPTED
    return f"{scheme.get('cipher')}, keyed blob ids ({scheme.get('ids')}), keys by {scheme.get('kdf')}"


def ratio(numerator: int, denominator: int) -> float | None:
    """numerator / denominator to 4 decimals; None when there is nothing to divide by."""
    return round(numerator / denominator, 4) if denominator else None


# -- stats ---------------------------------------------------------------------------------------------


def figures(manifests: list[Manifest], blob_sizes: dict[str, int]) -> dict[str, Any]:
    """The figures of a set of backups against the stored blob sizes (sha -> bytes in blobs/).

    logical_bytes: the sum of their bytes_total (what a restore of each would write);
    unique_bytes: the uncompressed size of each distinct content once (a blob is keyed by the
    SHA-256 of its content, so the same key is the same content and the same size);
    stored_bytes: the stored (compressed) size of those blobs, as listed; blobs the manifests name
    but the listing lacks are counted in missing_blobs (run verify) and left out of the
    compression ratio on both sides."""
    content: dict[str, int] = {}
    for manifest in manifests:
        for entry in manifest.files:
            content.setdefault(entry.sha256, entry.size)
    present = [sha for sha in content if sha in blob_sizes]
    stored = sum(blob_sizes[sha] for sha in present)
    logical = sum(m.bytes_total for m in manifests)
    unique = sum(content.values())
    times = [m.created_at for m in manifests]
    return {
        "backups": len(manifests),
        "files": sum(len(m.files) for m in manifests),
        "logical_bytes": logical,
        "unique_bytes": unique,
        "unique_blobs": len(content),
        "stored_bytes": stored,
        "missing_blobs": len(content) - len(present),
        "dedup_ratio": ratio(logical, unique),
        "compression_ratio": ratio(sum(content[sha] for sha in present), stored),
        "oldest_at": min(times).isoformat() if times else None,
        "newest_at": max(times).isoformat() if times else None,
    }


def repository_stats(repo: Repository, kind: str | None = None, source_name: str | None = None) -> dict[str, Any]:
    """What the repository holds (the backups of one source and/or kind, when asked), per series too,
    and the whole blobs/ listing with what no readable backup references.

    A damaged manifest is named and counted, never read: the blobs only it references show up as
    unreferenced (``unreferenced_exact`` is then False: the next prune will not sweep them)."""
    try:
        config: dict[str, Any] | None = repo.config()
    except NotFound:
        config = None  # a location holding only archives (written before config.json existed)
    catalog = repo.catalog()  # every readable backup: the selection below, and what references a blob
    by_id = repo.blob_sizes()  # in an encrypted repository a blob's name is a keyed id, not its content's SHA-256
    chosen = [m for m in catalog.backups if (kind is None or m.kind == kind)
              and (source_name is None or m.source.series_name == source_name)]

    series: dict[tuple[str, str], list[Manifest]] = {}
    for manifest in chosen:
        series.setdefault(manifest.series, []).append(manifest)

    referenced = {repo.blob_id(sha): sha for m in catalog.backups for sha in m.blob_shas()}
    blob_sizes = {referenced[blob]: size for blob, size in by_id.items() if blob in referenced}  # by content
    unreferenced = [blob for blob in by_id if blob not in referenced]
    return {
        "url": repo.url,
        "format": config.get("format") if config else None,
        "repository_version": config.get("version") if config else None,
        "repository_created_at": config.get("created_at") if config else None,
        "manifest_versions": sorted({m.format_version for m in chosen}),
        "encryption": encryption_of(config),
        "selection": {"kind": kind, "source_name": source_name},
        **figures(chosen, blob_sizes),
        "damaged_manifests": len(catalog.damaged),
        "damaged": [{"backup_id": d.backup_id, "reason": d.reason} for d in catalog.damaged],
        "series": [{"source": name, "kind": k, **figures(ms, blob_sizes)} for (name, k), ms in sorted(series.items())],
        "repository_blobs": {
            "blobs": len(by_id),
            "stored_bytes": sum(by_id.values()),
            "unreferenced_blobs": len(unreferenced),
            "unreferenced_bytes": sum(by_id[blob] for blob in unreferenced),
            "unreferenced_exact": not catalog.damaged,
        },
    }


# -- diff ----------------------------------------------------------------------------------------------

FIGURES = ("nodeCount", "relationshipCount")


def _graphs(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-graph figures as recorded: {name: {nodeCount, relationshipCount}} (a list of named
    records is read too); {} when none were."""
    graphs = stats.get("graphs") if isinstance(stats, dict) else None
    if isinstance(graphs, dict):
        return {str(name): g for name, g in graphs.items() if isinstance(g, dict)}
    if isinstance(graphs, list):
        return {str(g["name"]): g for g in graphs if isinstance(g, dict) and "name" in g}
    return {}


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def change(first: int | None, second: int | None) -> dict[str, int | None]:
    """A figure before and after, and the change (None where either is unknown)."""
    return {"first": first, "second": second,
            "delta": second - first if first is not None and second is not None else None}


def _summary(m: Manifest) -> dict[str, Any]:
    return {"backup_id": m.backup_id, "created_at": m.created_at.isoformat(), "source": m.source.series_name,
            "kind": m.kind, "files": len(m.files), "bytes_total": m.bytes_total}


def _entry(e: FileEntry) -> dict[str, Any]:
    return {"path": e.path, "size": e.size, "mode": e.mode, "sha256": e.sha256}


def _changed(a: FileEntry, b: FileEntry) -> dict[str, Any] | None:
    what = [name for name, differs in (("content", a.sha256 != b.sha256), ("size", a.size != b.size),
                                       ("mode", a.mode != b.mode)) if differs]
    if not what:
        return None
    return {"path": a.path, "what": what, "size_first": a.size, "size_second": b.size, "mode_first": a.mode,
            "mode_second": b.mode, "sha256_first": a.sha256, "sha256_second": b.sha256}


def diff_manifests(first: Manifest, second: Manifest) -> dict[str, Any]:
    """What changed from the first backup to the second (restic's `diff`: first to second)."""
    before = {e.path: e for e in first.files}
    after = {e.path: e for e in second.files}
    added = [_entry(after[p]) for p in sorted(after.keys() - before.keys())]
    removed = [_entry(before[p]) for p in sorted(before.keys() - after.keys())]
    changed = [c for p in sorted(before.keys() & after.keys()) if (c := _changed(before[p], after[p])) is not None]
    new_content = {e.sha256: e.size for e in second.files}
    for sha in first.blob_shas():
        new_content.pop(sha, None)

    stats_a, stats_b = first.stats or {}, second.stats or {}
    graphs_a, graphs_b = _graphs(stats_a), _graphs(stats_b)
    graphs = {name: {k: change(_number((graphs_a.get(name) or {}).get(k)), _number((graphs_b.get(name) or {}).get(k)))
                     for k in FIGURES}
              for name in sorted(graphs_a.keys() | graphs_b.keys())}
    return {
        "first": _summary(first),
        "second": _summary(second),
        "added": added,
        "removed": removed,
        "changed": changed,
        "unchanged": len(before.keys() & after.keys()) - len(changed),
        "added_bytes": sum(e["size"] for e in added),
        "removed_bytes": sum(e["size"] for e in removed),
        # Content the second holds that the first did not (uncompressed): what a backup of the
        # second taken after the first had to store anew.
        "new_content_bytes": sum(new_content.values()),
        "new_blobs": len(new_content),
        "figures": {
            "files": change(len(first.files), len(second.files)),
            "bytes_total": change(first.bytes_total, second.bytes_total),
            **{k: change(_number(stats_a.get(k)), _number(stats_b.get(k))) for k in FIGURES},
            "graphs": graphs,
        },
    }


def _resolve(repo: Repository, refs: Iterable[str]) -> list[Manifest]:
    """Each backup named ('latest' or an id); 'latest' is resolved from one catalog for all."""
    refs = [check_backup_ref(r) for r in refs]
    latest = repo.load("latest") if "latest" in refs else None
    loaded: dict[str, Manifest] = {}
    for ref in refs:
        if ref not in loaded:
            loaded[ref] = latest if ref == "latest" else repo.load(ref)
    return [loaded[r] for r in refs]


def diff_backups(repo: Repository, first: str, second: str) -> dict[str, Any]:
    """What changed from backup `first` to backup `second` (ids, or 'latest') in the repository.
    NotFound for a backup that is not there; IntegrityError naming a damaged manifest."""
    a, b = _resolve(repo, (first, second))
    return {"url": repo.url, **diff_manifests(a, b)}
