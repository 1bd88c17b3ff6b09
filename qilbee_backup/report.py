"""Reports an operator reads on a bad day: the CLI's plain text (without --json) and the Prefect
artifacts, both drawn from one model of each run's result, so they always show the same figures.

- Sizes read "1.2 GiB (1,288,490,188 bytes)", durations "4 min 12 s", times "2026-11-30 02:00:03 UTC".
- No Python reprs: "yes"/"no" for booleans, "—" for nothing, lists of records as tables (markdown)
  or aligned, indented rows (text).
- A disaster recovery or drill shows RTO and RPO against their targets, its steps with their
  durations and the one that failed ("FAILED at restore: <error>"), and the integrity check as
  graph · nodes · relationships, backup against instance, marked where they differ.

`render_text(result)` (the CLI), `report_markdown(result)` and `recovery_markdown(title, result)`
(markdown artifacts) and `table_rows(result)` / `list_rows(rows)` (table artifacts) take the dicts
the flows return; `artifact_key` and `schedule_text` are the small helpers the flows need around them.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

NONE = "—"
DIFFERS = "✗ differs"
SAME = "✓"

# -- values -------------------------------------------------------------------------------------------

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def size(n: int | float | None) -> str:
    """1288490188 → "1.2 GiB (1,288,490,188 bytes)"; under 1 KiB just the bytes."""
    if n is None:
        return NONE
    n = int(n)
    if abs(n) < 1024:
        return f"{n:,} byte{'' if n == 1 else 's'}"
    value = float(n)
    for unit in _UNITS:
        value /= 1024
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit} ({n:,} bytes)"
    raise AssertionError("unreachable")


def duration(seconds: int | float | None) -> str:
    """3600 → "1 h", 252 → "4 min 12 s", 21780 → "6 h 3 min", 1.284 → "1.3 s", 0.036 → "36 ms".

    Hours up to two days (an RPO target reads "24 h"), days beyond."""
    if seconds is None:
        return NONE
    s = float(seconds)
    if s < 0:
        return "-" + duration(-s)
    if s < 1:
        return f"{round(s * 1000)} ms"
    if s < 10:
        return f"{s:.1f} s"
    total = round(s)
    if total < 60:
        return f"{total} s"
    if total < 3600:
        m, sec = divmod(total, 60)
        return f"{m} min {sec} s" if sec else f"{m} min"
    if total < 48 * 3600:
        h, m = divmod(round(total / 60), 60)
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(round(total / 3600), 24)
    return f"{d} d {h} h" if h else f"{d} d"


def utc(value: datetime | str | None) -> str:
    """An ISO time or a datetime as "2026-11-30 02:00:03 UTC" (a time without a zone is taken as UTC)."""
    if value is None or value == "":
        return NONE
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def yes_no(value: Any) -> str:
    return NONE if value is None else ("yes" if value else "no")


def number(value: Any) -> str:
    return NONE if value is None else f"{value:,}" if isinstance(value, int) else plain(value)


def joined(values: Iterable[Any] | None, empty: str = NONE) -> str:
    items = [plain(v) for v in values or []]
    return ", ".join(items) if items else empty


def plain(value: Any) -> str:
    """Any value as words, never a repr: yes/no, "—", lists joined, records as "key value · key value"."""
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return yes_no(value)
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, dict):
        return " · ".join(f"{label(k)} {value_text(k, v)}" for k, v in value.items()) or NONE
    if isinstance(value, (list, tuple, set)):
        separator = "; " if any(isinstance(v, (dict, list, tuple)) for v in value) else ", "
        return separator.join(plain(v) for v in value) or NONE
    return str(value)


_LABELS = {
    "backup_id": "backup", "archive_id": "archive", "bytes_total": "size", "bytes": "size",
    "bytes_uploaded": "uploaded", "bytes_downloaded": "downloaded", "archive_bytes": "archive size",
    "archive_sha256": "archive SHA-256", "duration_s": "duration", "snapshot_id": "server snapshot",
    "created_at": "taken", "url": "repository", "data_dir": "data directory", "storage_class": "storage class",
    "nodeCount": "nodes", "relationshipCount": "relationships", "checked_files": "files checked",
    "checked_bytes": "bytes checked", "read_data": "data re-read", "replaced_existing": "replaced existing data",
    "restored_from": "restored from", "blobs_sent": "blobs sent", "blobs_removed": "unreferenced blobs removed",
    "blobs_locked": "unreferenced blobs still locked", "sweep_skipped": "blob sweep skipped", "dry_run": "dry run",
    "rto_s": "RTO", "rpo_s": "RPO", "rto_target_s": "RTO target", "rpo_target_s": "RPO target", "ok": "passed",
    "locked_until": "locked until", "backups_checked": "backups checked", "could_not_check": "could not check",
    "torn_down": "torn down", "pid": "process id", "decided_by": "decided by", "asked_at": "asked",
    "decided_at": "decided", "failed_step": "failed step",
}
_BYTES = re.compile(r"(^|_)bytes($|_)")
_PLAIN_INTS = {"pid", "port"}


def label(key: str) -> str:
    return _LABELS.get(key, key.replace("_", " "))


def value_text(key: str, value: Any) -> str:
    """A value as words, by what its key says it is: sizes, durations, times, counts."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return yes_no(value)
    if _BYTES.search(key) and isinstance(value, (int, float)):
        return size(value)
    if key.endswith("_s") and isinstance(value, (int, float)):
        return duration(value)
    if key.endswith("_at") or key == "locked_until":
        return utc(value)
    if key in _PLAIN_INTS:
        return str(value)
    return plain(value)


# -- the model: one report, two renderings ------------------------------------------------------------


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    empty: str = "none"


@dataclass
class Report:
    title: str
    status: str = ""  # the one line to read first: passed, FAILED at …, what was done
    fields: list[tuple[str, str]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings and what to do about them

    def add(self, name: str, value: str) -> None:
        self.fields.append((name, value))


def _text(report: Report) -> str:
    lines = [head] if (head := ": ".join(part for part in (report.title, report.status) if part)) else []
    width = max((len(name) for name, _ in report.fields), default=0)
    lines += [f"  {name.ljust(width)}  {value}" for name, value in report.fields]
    for table in report.tables:
        lines += ["", f"  {table.title}"]
        if not table.rows:
            lines.append(f"    ({table.empty})")
            continue
        widths = [max(len(c) for c in column) for column in zip(table.columns, *table.rows)]
        for row in [table.columns, *table.rows]:
            lines.append(("    " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths))).rstrip())
    if report.notes:
        lines += [""] + [f"  ! {note}" for note in report.notes]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") or NONE


def _markdown_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * len(columns),
            *["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]]


def _markdown(report: Report) -> str:
    lines = [f"# {report.title}", ""] if report.title else []
    if report.status:
        lines += [f"**{_cell(report.status)}**", ""]
    if report.fields:
        lines += [*_markdown_table(["figure", "value"], [[n, v] for n, v in report.fields]), ""]
    for table in report.tables:
        lines += [f"### {table.title}", ""]
        lines += [*_markdown_table(table.columns, table.rows), ""] if table.rows else [f"_{table.empty}_", ""]
    lines += [f"- **Warning:** {_cell(note)}" for note in report.notes]
    return "\n".join(lines).rstrip() + "\n"


def _rows(report: Report) -> list[dict[str, str]]:
    rows = [{"figure": "report", "value": report.title}] if report.title else []
    rows += [{"figure": "result", "value": report.status}] if report.status else []
    rows += [{"figure": name, "value": value} for name, value in report.fields]
    for table in report.tables:
        if not table.rows:
            rows.append({"figure": table.title, "value": table.empty})
        for row in table.rows:
            rows.append({"figure": f"{table.title}: {row[0]}",
                         "value": " · ".join(f"{c} {v}" for c, v in zip(table.columns[1:], row[1:]))})
    rows += [{"figure": "warning", "value": note} for note in report.notes]
    return rows


# -- what the flows return, as reports -----------------------------------------------------------------


def _records(title: str, items: list[dict] | None, columns: list[tuple[str, str, Callable[[Any], str]]],
             empty: str = "none") -> Table:
    """A table of records: (key, heading, how to write the value) for each column."""
    return Table(title, [heading for _, heading, _ in columns],
                 [[fmt(item.get(key)) for key, _, fmt in columns] for item in items or []], empty)


def _generic_table(title: str, items: list[dict]) -> Table:
    keys: list[str] = []
    for item in items:
        keys += [k for k in item if k not in keys]
    return Table(title, [label(k) for k in keys], [[value_text(k, item.get(k)) for k in keys] for item in items])


def _generic(result: dict, title: str, report: Report | None = None, prefix: str = "") -> Report:
    report = report or Report(title)
    for key, value in result.items():
        name = f"{prefix}{label(key)}"
        if isinstance(value, dict) and value:
            _generic(value, title, report, prefix=f"{name} ")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            report.tables.append(_generic_table(name, value))
        else:
            report.add(name, value_text(key, value))
    return report


def _checkpoints(report: Report, released: dict | None) -> None:
    if not released:
        return
    report.add("server checkpoints deleted", joined(released.get("deleted")))
    if released.get("kept"):
        report.add("server checkpoints kept", joined(released.get("kept")))
    report.notes += [str(w) for w in released.get("warnings") or []]


def _stats(report: Report, stats: dict | None) -> None:
    for key in ("nodeCount", "relationshipCount"):
        if stats and key in stats:
            report.add(label(key), number(stats[key]))


def _snapshot_report(result: dict, title: str | None) -> Report:
    """A backup or a monthly archive: what was taken, where it went, whether each copy verified."""
    is_archive = "archive_id" in result
    ident = result.get("archive_id" if is_archive else "backup_id")
    dests = result.get("destinations") or []
    bad = [d.get("url") for d in dests if not d.get("verified")]
    status = (f"NOT VERIFIED at {joined(bad)}" if bad
              else f"verified in {'every repository' if len(dests) > 1 else 'the repository'}" if dests else "")
    report = Report(f"{title or ('Archive' if is_archive else 'Backup')} {ident} of {plain(result.get('source'))}", status)
    for key in ("kind", "mode", "snapshot_id", "files", "bytes_total", "bytes_uploaded", "archive_bytes",
                "archive_sha256", "duration_s"):
        if key in result:
            report.add(label(key), value_text(key, result[key]))
    _stats(report, result.get("stats"))
    _checkpoints(report, result.get("checkpoints"))
    if is_archive:
        report.tables.append(_records("Repositories", dests, [
            ("url", "repository", plain), ("storage_class", "storage class", plain), ("verified", "verified", yes_no)]))
    else:
        report.tables.append(_records("Repositories", dests, [
            ("url", "repository", plain), ("blobs_sent", "blobs sent", number),
            ("bytes_uploaded", "uploaded", size), ("verified", "verified", yes_no)]))
    if "pruned" in result:
        columns = [("url", "repository", plain), ("removed", "removed", lambda v: joined(v, "nothing"))]
        if is_archive:
            columns.append(("locked", "left locked", lambda v: joined(v, "nothing")))
        report.tables.append(_records("Pruned", result["pruned"], columns,
                                      empty="not pruned (no retention rules, or a copy failed to verify)"))
    return report


def _verify_report(result: dict, title: str | None) -> Report:
    backups = result.get("backups") or []
    damaged = [b for b in backups if b.get("problems")]
    unchecked = [b for b in backups if b.get("unchecked") and not b.get("problems")]
    parts = []
    if damaged:
        parts.append(f"{len(damaged)} of {len(backups)} backup(s) DAMAGED")
    if unchecked:
        parts.append(f"{len(unchecked)} could not be checked")
    status = "; ".join(parts) or (f"every backup intact ({len(backups)} checked)" if backups else "no backups to check")
    report = Report(f"{title or 'Verify'} {plain(result.get('url'))}", status)
    report.add("backups checked", number(len(backups)))
    report.add("data re-read", yes_no(result.get("read_data")) + (" (every blob re-hashed)" if result.get("read_data") else
                                                                   " (sizes checked)"))

    def outcome(b: dict) -> str:
        return "DAMAGED" if b.get("problems") else "could not check" if b.get("unchecked") else "intact"

    report.tables.append(Table("Backups", ["backup", "result", "files checked"],
                               [[plain(b.get("backup_id")), outcome(b), number(b.get("checked_files"))] for b in backups],
                               "no backups"))
    problems = [[plain(b.get("backup_id")), "damaged", p] for b in backups for p in b.get("problems") or []]
    problems += [[plain(b.get("backup_id")), "could not read", p] for b in backups for p in b.get("unchecked") or []]
    if problems:
        report.tables.append(Table("Problems", ["backup", "problem", "where and why"], problems))
    return report


def _prune_report(result: dict, title: str | None) -> Report:
    dry = bool(result.get("dry_run"))
    removed = result.get("removed") or []
    status = (f"kept {len(result.get('kept') or [])}, {'would remove' if dry else 'removed'} {len(removed)}, "
              f"left {len(result.get('locked') or [])} locked")
    report = Report(f"{title or 'Prune'} {plain(result.get('url'))}{' (dry run: nothing changed)' if dry else ''}", status)
    report.add("unreferenced blobs " + ("to remove" if dry else "removed"), number(result.get("blobs_removed")))
    report.add("unreferenced blobs still locked", number(result.get("blobs_locked")))
    rows = [[k["backup_id"], plain(k.get("source")), plain(k.get("kind")), "keep", joined(k.get("reasons"))]
            for k in result.get("kept") or []]
    rows += [[r["backup_id"], plain(r.get("source")), plain(r.get("kind")), "would remove" if dry else "removed", NONE]
             for r in removed]
    rows += [[r["backup_id"], plain(r.get("source")), plain(r.get("kind")), "locked: kept",
              f"until {utc(r.get('locked_until'))}" if r.get("locked_until") else plain(r.get("reason"))]
             for r in result.get("locked") or []]
    rows += [[d["backup_id"], NONE, NONE, "damaged: left alone", plain(d.get("reason"))] for d in result.get("damaged") or []]
    report.tables.append(Table("Decisions", ["backup", "source", "kind", "decision", "why"], rows, "no backups"))
    if result.get("sweep_skipped"):
        report.notes.append("no unreferenced blobs were swept: a damaged manifest may name some of them; "
                            "repair or remove it by hand, then prune again")
    return report


def _restore_report(result: dict, title: str | None) -> Report:
    integrity = result.get("integrity")
    if integrity is None:
        status = "restored; not checked on a running server"
    elif integrity.get("ok"):
        status = "restored and checked on a running server: it matches the backup"
    else:
        status = "FAILED its check: " + joined(integrity.get("differences"))
    what = result.get("restored_from") or "backup"
    report = Report(f"{title or 'Restore'} of {what} {plain(result.get('backup_id'))} into {plain(result.get('data_dir'))}",
                    status)
    for key in ("files", "bytes", "bytes_downloaded", "duration_s", "replaced_existing"):
        if key in result:
            report.add(label(key), value_text(key, result[key]))
    _integrity(report, integrity)
    return report


def _list_report(rows: list, title: str | None) -> Report:
    records = [r for r in rows if isinstance(r, dict)]
    is_archive = any("archive_id" in r for r in records)
    ident = "archive_id" if is_archive else "backup_id"
    noun = "archive" if is_archive else "backup"
    good = [r for r in records if "damaged" not in r]
    damaged = [r for r in records if "damaged" in r]
    status = f"{len(good)}" + (
        f" (and {len(damaged)} damaged manifest{'' if len(damaged) == 1 else 's'}, skipped by every reader)" if damaged else "")
    report = Report(title or ("Archives" if is_archive else "Backups"), status if records else f"no {noun}s")
    columns = [(ident, noun, plain), ("created_at", "taken", utc), ("source", "source", plain), ("kind", "kind", plain),
               ("mode", "mode", plain), ("files", "files", number), ("bytes_total", "size", size)]
    if is_archive:
        columns += [("archive_bytes", "archive size", size), ("storage_class", "storage class", plain)]
    if good:
        report.tables.append(_records(title or ("Archives" if is_archive else "Backups"), good, columns))
    if damaged:
        report.tables.append(_records("Damaged manifests", damaged, [(ident, noun, plain), ("damaged", "why", plain)]))
    others = [plain(r) for r in rows if not isinstance(r, dict)]
    report.notes += others
    return report


# -- inspection: stats and diff ------------------------------------------------------------------------


def _short_size(n: int | float | None) -> str:
    """A size for a narrow table column: "70.5 KiB" (size() with the exact bytes is in the figures)."""
    text = size(n)
    return text.split(" (", 1)[0]


def _times(value: float | None) -> str:
    return NONE if value is None else f"{value:,.2f}×"


def _signed(value: int | None, bytes_: bool = False) -> str:
    if value is None:
        return NONE
    if bytes_:
        return ("+" if value > 0 else "-" if value < 0 else "±") + size(abs(value))
    return f"{value:+,}" if value else "0"


def _mode(value: Any) -> str:
    return f"{value:04o}" if isinstance(value, int) and not isinstance(value, bool) else NONE


def _stats_report(result: dict, title: str | None) -> Report:
    """A repository's stats: the selection's figures, per series, and the whole blobs/ listing."""
    selection = {k: v for k, v in (result.get("selection") or {}).items() if v}
    damaged = result.get("damaged") or []
    n = result.get("backups") or 0
    status = f"{number(n)} backup{'' if n == 1 else 's'}" + (
        f" (and {len(damaged)} damaged manifest{'' if len(damaged) == 1 else 's'}, skipped)" if damaged else "")
    report = Report(f"{title or 'Stats of'} {plain(result.get('url'))}", status)
    if selection:
        report.add("selected", " · ".join(f"{'source' if k == 'source_name' else k} {v}" for k, v in selection.items()))
    report.add("backups", number(result.get("backups")))
    report.add("damaged manifests", number(result.get("damaged_manifests")))
    report.add("files", number(result.get("files")) + " (over every backup)")
    report.add("logical size", size(result.get("logical_bytes")) + " (what a restore of each backup would write)")
    report.add("unique content", size(result.get("unique_bytes")) + f" ({number(result.get('unique_blobs'))} distinct blobs)")
    report.add("stored size", size(result.get("stored_bytes")) + " (those blobs compressed, as listed in blobs/)")
    report.add("dedup ratio", _times(result.get("dedup_ratio")) + " (logical / unique)")
    report.add("compression ratio", _times(result.get("compression_ratio")) + " (unique / stored)")
    report.add("oldest backup", utc(result.get("oldest_at")))
    report.add("newest backup", utc(result.get("newest_at")))
    if result.get("missing_blobs"):
        report.add("missing blobs", number(result["missing_blobs"]))
        report.notes.append(f"{number(result['missing_blobs'])} blob(s) the backups name are not in blobs/: "
                            "run `qilbee-backup verify` to see which backups they damage")
    report.add("encryption", plain(result.get("encryption")))
    version = result.get("repository_version")
    report.add("format", f"{plain(result.get('format'))}, repository version {plain(version)}"
               + (f", created {utc(result['repository_created_at'])}" if result.get("repository_created_at") else "")
               + (f"; manifest format {joined(result.get('manifest_versions'))}" if result.get("manifest_versions") else ""))
    whole = result.get("repository_blobs") or {}
    report.add("all blobs", f"{number(whole.get('blobs'))} blobs, {size(whole.get('stored_bytes'))} stored (the whole repository)")
    report.add("unreferenced blobs", f"{number(whole.get('unreferenced_blobs'))} blobs, {size(whole.get('unreferenced_bytes'))}"
               + (" (no backup needs them: the next prune sweeps them once older than its grace)"
                  if whole.get("unreferenced_blobs") else ""))
    if whole.get("unreferenced_exact") is False:
        report.notes.append("a damaged manifest may reference some of the unreferenced blobs: prune will not sweep "
                            "while it is there; repair or remove it by hand")
    report.tables.append(_records("Series", result.get("series"), [
        ("source", "source", plain), ("kind", "kind", plain), ("backups", "backups", number), ("files", "files", number),
        ("logical_bytes", "logical", _short_size), ("unique_bytes", "unique", _short_size),
        ("stored_bytes", "stored", _short_size), ("dedup_ratio", "dedup", _times),
        ("compression_ratio", "compression", _times), ("oldest_at", "oldest", utc), ("newest_at", "newest", utc)],
        "no backups"))
    if damaged:
        report.tables.append(_records("Damaged manifests", damaged, [("backup_id", "backup", plain), ("reason", "why", plain)]))
    return report


def _diff_report(result: dict, title: str | None) -> Report:
    """What changed from one backup to another: counts first, the figures side by side, one line a file."""
    first, second = result.get("first") or {}, result.get("second") or {}
    added, removed, changed = result.get("added") or [], result.get("removed") or [], result.get("changed") or []
    unchanged = result.get("unchanged") or 0
    status = (f"{len(added)} added, {len(removed)} removed, {len(changed)} changed, {number(unchanged)} unchanged"
              if added or removed or changed else f"no changes ({number(unchanged)} files unchanged)")
    report = Report(f"{title or 'Diff'} {plain(first.get('backup_id'))} → {plain(second.get('backup_id'))}", status)
    report.add("repository", plain(result.get("url")))
    for name, b in (("A", first), ("B", second)):
        report.add(name, f"{plain(b.get('backup_id'))}, taken {utc(b.get('created_at'))} ({plain(b.get('source'))}, "
                         f"{plain(b.get('kind'))})")
    report.add("added", size(result.get("added_bytes")) + f" in {len(added)} file{'' if len(added) == 1 else 's'}")
    report.add("removed", size(result.get("removed_bytes")) + f" in {len(removed)} file{'' if len(removed) == 1 else 's'}")
    report.add("new content", size(result.get("new_content_bytes")) + f" in {number(result.get('new_blobs'))} blobs "
               "(B's content that A did not hold)")

    figs = result.get("figures") or {}

    def row(name: str, fig: dict | None, bytes_: bool = False) -> list[str]:
        fig = fig or {}
        fmt = size if bytes_ else number
        return [name, fmt(fig.get("first")), fmt(fig.get("second")), _signed(fig.get("delta"), bytes_)]

    rows = [row("files", figs.get("files")), row("size", figs.get("bytes_total"), True),
            row("nodes", figs.get("nodeCount")), row("relationships", figs.get("relationshipCount"))]
    for graph, g in (figs.get("graphs") or {}).items():
        rows += [row(f"graph {graph}: nodes", g.get("nodeCount")), row(f"graph {graph}: relationships", g.get("relationshipCount"))]
    report.tables.append(Table("Figures", ["figure", "A", "B", "change"], rows))

    def what(c: dict) -> str:
        parts = [w for w in c.get("what") or [] if w != "mode"]
        if "mode" in (c.get("what") or []):
            parts.append(f"mode {_mode(c.get('mode_first'))} → {_mode(c.get('mode_second'))}")
        return ", ".join(parts)

    files = [["+", plain(e.get("path")), NONE, size(e.get("size")), "added"] for e in added]
    files += [["-", plain(e.get("path")), size(e.get("size")), NONE, "removed"] for e in removed]
    files += [["M", plain(c.get("path")), size(c.get("size_first")), size(c.get("size_second")), what(c)] for c in changed]
    files.sort(key=lambda r: r[1])
    report.tables.append(Table("Files", ["", "path", "size in A", "size in B", "change"], files, "no file changed"))
    return report


# -- disaster recovery and drills ---------------------------------------------------------------------


def figures_table(figures: Any) -> Table | None:
    """The integrity check's figures, graph by graph then the whole database: nodes and relationships
    recorded at backup time against those the instance reports, marked where they differ."""
    if not isinstance(figures, dict):
        return None
    backup, now = figures.get("backup") or {}, figures.get("instance") or {}
    bg, ig = backup.get("graphs") or {}, now.get("graphs") or {}

    def row(name: str, b: dict | None, i: dict | None) -> list[str]:
        if i is None:
            mark = "✗ missing on the instance"
        elif b is None:
            mark = "✗ not in the backup"
        else:
            mark = SAME if all(b.get(k) == i.get(k) for k in ("nodeCount", "relationshipCount")) else DIFFERS
        b, i = b or {}, i or {}
        return [name, number(b.get("nodeCount")), number(i.get("nodeCount")),
                number(b.get("relationshipCount")), number(i.get("relationshipCount")), mark]

    rows = [row(g, bg.get(g), ig.get(g)) for g in sorted(set(bg) | set(ig))]
    rows.append(row("(whole database)", backup, now))
    return Table("Integrity: backup against instance",
                 ["graph", "nodes (backup)", "nodes (instance)", "relationships (backup)", "relationships (instance)", "match"],
                 rows)


def figures_markdown(figures: Any) -> str:
    """figures_table as markdown ("" when the figures were not compared), e.g. for an approval form."""
    table = figures_table(figures)
    return "\n".join(_markdown_table(table.columns, table.rows)) + "\n" if table else ""


def _integrity(report: Report, integrity: dict | None) -> None:
    if not integrity:
        report.add("integrity check", "not run")
        return
    compared = integrity.get("compared") or {}
    differences = integrity.get("differences") or []
    report.add("integrity check", "passed" if integrity.get("ok") else "FAILED: " + joined(differences))
    if "files" in compared:
        checksums = compared.get("checksums")
        report.add("files checked", number(compared["files"]) + (f" ({checksums})" if checksums else ""))
    if "health" in compared:
        report.add("server health", plain(compared["health"]))
    table = figures_table(compared.get("figures"))
    if table:
        report.tables.append(table)
    elif "figures" in compared:
        report.add("figures", plain(compared["figures"]))


def _objective(value: float | None, target: float | None) -> tuple[str, str]:
    """("4 min 12 s of a 1 h target", "met" | "MISSED" | "not reached")."""
    if value is None:
        return NONE, "not reached"
    verdict = "met" if target is None or value <= target else "MISSED"
    return f"{duration(value)} of a {duration(target)} target", verdict


def _failure(result: dict) -> tuple[str | None, str | None]:
    """(failed step, error) of a stopped run, from the flows' failed_step/error (or a "failed" record)."""
    failed = result.get("failed")
    if isinstance(failed, dict):
        return failed.get("step"), failed.get("error")
    if result.get("failed_step") or result.get("error"):
        return result.get("failed_step"), result.get("error")
    if result.get("ok") is False and result.get("integrity") and not result["integrity"].get("ok"):
        return "integrity-check", joined(result["integrity"].get("differences"))
    return None, None


def recovery_report(title: str, result: dict) -> Report:
    """A disaster recovery or a drill, finished or stopped: RTO and RPO against their targets, each step
    with its duration and the one that failed, the integrity check as a table, what became of the
    instance and DNS, the backups passed over."""
    step, error = _failure(result)
    rto, rto_verdict = _objective(result.get("rto_s"), result.get("rto_target_s"))
    rpo, rpo_verdict = _objective(result.get("rpo_s"), result.get("rpo_target_s"))
    if step or error or result.get("ok") is False:
        status = f"FAILED at {step or 'an unnamed step'}: {error or 'no error recorded'}"
    else:
        missed = [what for what, verdict in (("RTO", rto_verdict), ("RPO", rpo_verdict)) if verdict == "MISSED"]
        status = (f"done, but the {' and the '.join(missed)} target MISSED" if missed else "passed") + f" (RTO {rto}, RPO {rpo})"
    report = Report(f"{title} of backup {result['backup_id']}" if result.get("backup_id") else title, status)
    report.add("RTO", f"{rto}: {rto_verdict}" if rto_verdict != "not reached"
               else f"not reached (target {duration(result.get('rto_target_s'))})")
    report.add("RPO", f"{rpo}: {rpo_verdict} (the backup's age when the recovery began)" if rpo_verdict != "not reached"
               else f"not known: no backup restored (target {duration(result.get('rpo_target_s'))})")
    for key in ("source", "kind"):
        if result.get(key) is not None:
            report.add(label(key), plain(result[key]))
    restored = result.get("restore")
    if restored:
        report.add("restored", f"{number(restored.get('files'))} files, {size(restored.get('bytes'))}; "
                               f"downloaded {size(restored.get('bytes_downloaded'))}")
    elif "restore" in result:
        report.add("restored", "nothing")
    _instance(report, result)
    if "integrity" in result:
        _integrity(report, result.get("integrity"))
    steps = result.get("steps") or []
    failed_at = _failed_index(steps, step) if (step or error) else None

    def outcome(i: int, s: dict) -> str:
        if i == failed_at:
            return "FAILED (why: above)" if error else "FAILED"
        if s.get("ok") is False:
            if s.get("name") == "restore" and (failed_at is None or i < failed_at):
                return "failed: backup damaged, the next older one was tried"
            return "FAILED"
        return "ok"

    report.tables.append(Table("Steps", ["step", "duration", "outcome"],
                               [[plain(s.get("name")), duration(s.get("duration_s")), outcome(i, s)]
                                for i, s in enumerate(steps)], "no step ran"))
    if result.get("skipped_backups"):
        report.tables.append(_records("Backups passed over", result["skipped_backups"],
                                      [("backup_id", "backup", plain), ("problems", "why", plain)]))
    if result.get("trend"):  # a drill's: the RTO of the drills kept in the repository
        from .drill_trend import summary, table

        report.add("RTO trend", summary(result["trend"]))
        report.tables.append(table(result["trend"]))
    report.notes += [str(w) for w in result.get("warnings") or []]
    return report


def _failed_index(steps: list[dict], name: str | None) -> int | None:
    """The step the run failed at: the last attempt of the step named, else the last that did not succeed."""
    for i in range(len(steps) - 1, -1, -1):
        if name and steps[i].get("name") == name:
            return i
    for i in range(len(steps) - 1, -1, -1):
        if steps[i].get("ok") is False:
            return i
    return None


def approval_text(a: dict | None) -> str:
    """An approval gate's outcome in one line (DR, restore, failback)."""
    if not a:
        return "not asked"
    return (f"{'approved' if a.get('approved') else 'DECLINED'} by {plain(a.get('decided_by'))} at "
            f"{utc(a.get('decided_at'))}" + (f": {a['note']}" if a.get("note") else ""))


def _instance(report: Report, result: dict) -> None:
    inst = result.get("instance")
    if inst:
        where = plain(inst.get("url"))
        how = [plain(inst.get("provider"))] if inst.get("provider") else []
        how += [f"pid {inst['pid']}"] if inst.get("pid") else []
        how += [f"container {inst['container']}"] if inst.get("container") else []
        report.add("instance", where + (f" ({', '.join(how)})" if how else ""))
        if inst.get("data_dir"):
            report.add("data directory", plain(inst["data_dir"]))
        if "torn_down" in inst:
            report.add("torn down", yes_no(inst["torn_down"]))
        if "running" in inst:
            report.add("still running", yes_no(inst["running"]) + (" (kept as asked, to look at)" if inst["running"] else ""))
    elif "instance" in result:
        report.add("instance", "none started")
    if "approval" in result:
        report.add("approval", approval_text(result.get("approval")))
    if "dns" in result:
        d = result.get("dns")
        report.add("DNS", f"{plain(d.get('record'))} → {joined(_listed(d.get('new')))} (was {joined(_listed(d.get('old')))})"
                   if d else "not switched")


def _listed(value: Any) -> list:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


# -- entry points ----------------------------------------------------------------------------------------


def build_report(result: Any, title: str | None = None) -> Report:
    """The report of any result a flow returns: recognised by its keys, else laid out generically."""
    if isinstance(result, list):
        return _list_report(result, title)
    if not isinstance(result, dict):
        return Report(title or "", plain(result))
    if "dedup_ratio" in result and "repository_blobs" in result:
        return _stats_report(result, title)
    if "changed" in result and "unchanged" in result and "first" in result:
        return _diff_report(result, title)
    if "steps" in result or "rto_s" in result or "failed_step" in result:
        default = "Disaster recovery" if "dns" in result or "approval" in result else "Restore drill"
        return recovery_report(title or default, result)
    if "kept" in result and "removed" in result:
        return _prune_report(result, title)
    if isinstance(result.get("backups"), list) and "url" in result:
        return _verify_report(result, title)
    if "destinations" in result:
        return _snapshot_report(result, title)
    if "restored_from" in result:
        return _restore_report(result, title)
    return _generic(result, title or "")


def render_text(result: Any, title: str | None = None) -> str:
    """Plain text for the CLI without --json: a title line with the verdict, figures, indented tables."""
    return _text(build_report(result, title))


def report_markdown(result: Any, title: str | None = None) -> str:
    """Markdown for a Prefect markdown artifact: the same report as render_text."""
    return _markdown(build_report(result, title))


def recovery_markdown(title: str, result: dict[str, Any]) -> str:
    """The RTO/RPO report of a disaster recovery or drill, finished or failed, for a markdown artifact."""
    return _markdown(recovery_report(title, result))


def table_rows(result: Any) -> list[dict[str, str]]:
    """A result as a two-column table (figure, value) for a Prefect table artifact: the verdict first,
    then the figures, then one row per record of each table, every value in words."""
    return _rows(build_report(result))


def list_rows(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Records (backups, archives, prune decisions) for a Prefect table artifact: readable column
    headings, every row with every column, values in words ("—" where a record has none)."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    return [{label(k): value_text(k, row.get(k)) for k in keys} for row in rows]


# -- names and schedules --------------------------------------------------------------------------------

ARTIFACT_KEY_MAX = 100  # Prefect sets no length; a key is shown in the UI and indexed, so keep it short


def artifact_key(prefix: str, name: str | None = None, max_length: int = ARTIFACT_KEY_MAX) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) for one report of one source:
    artifact_key("backup-summary", "db.example.com:7474") → "backup-summary-db-example-com-7474".

    Any name is safe: accents are dropped, every other character becomes a dash, runs of dashes one.
    A name that had to be cut to fit max_length, or that has nothing left, ends in 8 hex digits of its
    SHA-256, so two long names that share a beginning keep separate keys. Names that differ only in
    punctuation or case share a key ("db_a", "DB.a"): give sources names that differ in letters."""
    def slug(text: str) -> str:
        ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]", "-", ascii_text.lower())).strip("-")

    head = slug(prefix) or "report"
    if name is None:
        return head[:max_length].rstrip("-")
    tail = slug(name)
    key = f"{head}-{tail}" if tail else ""
    if key and len(key) <= max_length:
        return key
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    room = max_length - len(digest) - 1
    return f"{f'{head}-{tail}'[:room].rstrip('-')}-{digest}" if tail else f"{head[:room].rstrip('-')}-{digest}"


_DAYS = ("Sundays", "Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays", "Sundays")


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def schedule_text(cron: str, tz: str = "UTC") -> str:
    """A deployment's cron schedule in words, with its time zone (ours are all UTC):
    "0 2 * * *" → "daily at 02:00 UTC", "0 3 * * 0" → "Sundays at 03:00 UTC",
    "0 4 1 * *" → "on the 1st of each month at 04:00 UTC", "*/15 * * * *" → "every 15 minutes (UTC)".
    Other shapes: "cron 0 */6 * * * (UTC)"."""
    fields = cron.split()
    if len(fields) == 5 and fields[0].startswith("*/") and fields[0][2:].isdigit() and fields[1:] == ["*"] * 4:
        every = int(fields[0][2:])
        return f"every {every} minute{'s' if every != 1 else ''} ({tz})"
    if len(fields) == 5 and fields[0].isdigit() and fields[1].isdigit() and fields[3] == "*":
        at = f"at {int(fields[1]):02d}:{int(fields[0]):02d} {tz}"
        dom, dow = fields[2], fields[4]
        if dom == "*" and dow == "*":
            return f"daily {at}"
        if dom == "*" and dow.isdigit() and int(dow) <= 7:
            return f"{_DAYS[int(dow)]} {at}"
        if dow == "*" and dom.isdigit():
            return f"on the {_ordinal(int(dom))} of each month {at}"
    return f"cron {cron} ({tz})"
