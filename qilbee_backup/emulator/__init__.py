"""A faithful QilbeeDB stand-in: the real server's HTTP routes and RocksDB layout, plus the
operations guide's admin routes (snapshots as RocksDB checkpoints, stats, graph list).

Run it with ``python -m qilbee_backup.emulator --data-dir DIR`` (options in ``cli``).
Read a data directory or snapshot without a server through ``open_readonly_counts``,
``audit_database`` and ``content_digest``.
"""

from .store import AuditReport, GraphStore, audit_database, content_digest, open_readonly_counts

__all__ = ["AuditReport", "GraphStore", "audit_database", "content_digest", "open_readonly_counts"]
