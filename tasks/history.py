"""Thin steps that keep runs' outcomes in the repository beside the backups (qilbee_backup.run_records)."""

from __future__ import annotations

from qilbee_backup import drill_history
from tasks.steps import get_logger, step


# No retry: the store already retries a transient fault, and a retried write after a lost answer
# would leave the drill recorded twice.
@step("record-drill")
def record_drill(repo, record: dict) -> tuple[str, list[dict]]:
    """Record the drill; (its id, the source's drills so far, oldest first, for the trend)."""
    record_id = drill_history.record_drill(repo, record)
    get_logger().info("drill recorded in %s as drills/%s.json", repo.url, record_id)
    records, _ = drill_history.drill_history(repo)
    return record_id, [r for r in records if r.get("source") == record.get("source")]
