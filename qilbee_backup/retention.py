"""Which backups of one series to keep: restic's documented ``forget`` policy, as pure functions.

Rules (each one off when None or 0; -1 means "unlimited", as in restic):

- ``keep_last N``: the N newest backups.
- ``keep_hourly/daily/weekly/monthly/yearly N``: walking newest to oldest, the newest backup of each
  of the last N calendar buckets that hold a backup. Buckets are UTC: hour ``YYYY-MM-DD HH``, day
  ``YYYY-MM-DD``, ISO week ``YYYY-Www``, month ``YYYY-MM``, year ``YYYY``.
  As restic documents (0.17 docs), when a rule still has count left after the walk reaches the oldest
  backup, the oldest backup is kept too: it stretches the history as far back as there is.
- ``keep_within D``: every backup younger than D, measured back from the NEWEST backup's time,
  not from now (restic's choice): a backup job that stalls for weeks must not make the next
  prune delete everything for being "old".
- The newest backup is always kept, and an empty policy keeps everything. Backups dated after
  ``now`` (a wrong clock somewhere) are kept and do not move keep_within's reference (restic too).

Where we differ from restic: durations also take weeks (``4w`` = 28 days: the operations guide says
"retain for 4 weeks"), and month arithmetic clamps to the month's last day (31 March minus one month
is 28/29 February; Go normalises to 3 March) — the clamp keeps a little more, never less.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Sequence

from .errors import UsageError

_DURATION_PART = re.compile(r"(\d+)([ywmdh])")
_DURATION_WHOLE = re.compile(r"(?:\d+[ywmdh])+")


@dataclass(frozen=True)
class Duration:
    """A calendar duration (restic's syntax plus weeks): years and months are calendar units."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0
    text: str = ""

    def before(self, t: datetime) -> datetime:
        """The instant this duration before t (calendar arithmetic for years and months)."""
        total_months = t.year * 12 + (t.month - 1) - (self.years * 12 + self.months)
        year, month = divmod(total_months, 12)
        month += 1
        if year < 1:
            return datetime.min.replace(tzinfo=t.tzinfo)
        day = min(t.day, _days_in_month(year, month))
        shifted = t.replace(year=year, month=month, day=day)
        try:
            return shifted - timedelta(days=self.days, hours=self.hours)
        except OverflowError:
            return datetime.min.replace(tzinfo=t.tzinfo)

    def __str__(self) -> str:
        return self.text or _format(self)


def parse_duration(text: str | Duration | timedelta) -> Duration:
    """'7d', '4w', '12m', '1y', '36h', '2y6m' -> Duration. Raises UsageError for anything else."""
    if isinstance(text, Duration):
        return text
    if isinstance(text, timedelta):
        if text <= timedelta(0):
            raise UsageError(f"duration {text} must be positive")
        hours, rest = divmod(int(text.total_seconds()), 3600)
        if rest:
            raise UsageError(f"duration {text} must be a whole number of hours")
        days, hours = divmod(hours, 24)
        return Duration(days=days, hours=hours)
    if not isinstance(text, str):
        raise UsageError(f"duration {text!r} is not text like 7d, 4w, 12m, 1y, 36h")
    cleaned = text.strip().lower()
    if not _DURATION_WHOLE.fullmatch(cleaned):
        raise UsageError(f"bad duration {text!r}: use numbers with units y, m, w, d, h (e.g. 7d, 4w, 12m, 1y, 2y6m)")
    amounts = {"y": 0, "m": 0, "w": 0, "d": 0, "h": 0}
    for number, unit in _DURATION_PART.findall(cleaned):
        amounts[unit] += int(number)
    duration = Duration(
        years=amounts["y"], months=amounts["m"], days=amounts["d"] + 7 * amounts["w"], hours=amounts["h"], text=cleaned
    )
    if not any((duration.years, duration.months, duration.days, duration.hours)):
        raise UsageError(f"bad duration {text!r}: it must be longer than zero")
    return duration


def _format(d: Duration) -> str:
    parts = [(d.years, "y"), (d.months, "m"), (d.days, "d"), (d.hours, "h")]
    return "".join(f"{n}{u}" for n, u in parts if n) or "0h"


def _days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (datetime(year, month + 1, 1) - datetime(year, month, 1)).days


@dataclass
class Policy:
    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    keep_within: Duration | timedelta | str | None = None

    def __post_init__(self) -> None:
        for name in _COUNT_RULES:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < -1:
                raise UsageError(f"{name.replace('_', '-')} must be a whole number >= 0 (or -1 for unlimited), got {value!r}")
        if self.keep_within is not None:
            self.keep_within = parse_duration(self.keep_within)

    @classmethod
    def from_mapping(cls, rules: dict[str, Any] | None) -> "Policy":
        """From a flow or CLI parameter dict; unknown keys are a UsageError."""
        rules = dict(rules or {})
        unknown = sorted(set(rules) - set(_COUNT_RULES) - {"keep_within"})
        if unknown:
            raise UsageError(f"unknown retention rule(s): {', '.join(unknown)}")
        return cls(**rules)

    def is_empty(self) -> bool:
        return self.keep_within is None and not any(getattr(self, name) for name in _COUNT_RULES)


@dataclass(frozen=True)
class Decision:
    backup_id: str
    keep: bool
    reasons: list[str] = field(default_factory=list)
    created_at: datetime | None = None


def _bucket_hour(t: datetime, nr: int) -> str:
    return t.strftime("%Y-%m-%d %H")


def _bucket_day(t: datetime, nr: int) -> str:
    return t.strftime("%Y-%m-%d")


def _bucket_week(t: datetime, nr: int) -> str:
    year, week, _ = t.isocalendar()
    return f"{year:04d}-W{week:02d}"


def _bucket_month(t: datetime, nr: int) -> str:
    return t.strftime("%Y-%m")


def _bucket_year(t: datetime, nr: int) -> str:
    return t.strftime("%Y")


def _bucket_each(t: datetime, nr: int) -> str:
    return str(nr)  # keep_last: every backup is its own bucket


# rule name -> (bucket of a time, word used in reasons)
_COUNT_RULES: dict[str, tuple[Callable[[datetime, int], str], str]] = {
    "keep_last": (_bucket_each, "last"),
    "keep_hourly": (_bucket_hour, "hourly"),
    "keep_daily": (_bucket_day, "daily"),
    "keep_weekly": (_bucket_week, "weekly"),
    "keep_monthly": (_bucket_month, "monthly"),
    "keep_yearly": (_bucket_year, "yearly"),
}


def _id_and_time(item: Any) -> tuple[str, datetime]:
    if isinstance(item, tuple):
        backup_id, created_at = item
    else:  # a Manifest, or anything with backup_id and created_at
        backup_id, created_at = item.backup_id, item.created_at
    if created_at.tzinfo is None:
        raise UsageError(f"backup {backup_id} has a time without a timezone")
    return backup_id, created_at.astimezone(timezone.utc)


def apply_policy(backups: Iterable[Any], policy: Policy, now: datetime | None = None) -> list[Decision]:
    """Decide keep/remove for each backup of ONE series; newest first.

    ``backups``: Manifests or (backup_id, created_at) pairs. ``now`` (default: the clock) only
    matters for backups dated in the future (a host with a wrong clock): as in restic, they are
    kept and ignored by keep_within, whose reference is the newest backup that is not in the future.
    """
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    items = sorted((_id_and_time(b) for b in backups), key=lambda it: (it[1], it[0]), reverse=True)
    if not items:
        return []
    if policy.is_empty():
        return [Decision(bid, True, (["newest"] if i == 0 else []) + ["policy is empty"], t) for i, (bid, t) in enumerate(items)]

    reasons: list[list[str]] = [[] for _ in items]
    reasons[0].append("newest")

    for i, (_, t) in enumerate(items):
        if t > now:
            reasons[i].append("in the future")

    present = [t for _, t in items if t <= now]
    if policy.keep_within is not None and present:
        cutoff = policy.keep_within.before(present[0])
        for i, (_, t) in enumerate(items):
            if cutoff < t <= now:
                reasons[i].append(f"within {policy.keep_within}")

    for name, (bucket_of, word) in _COUNT_RULES.items():
        count = getattr(policy, name) or 0
        if count == 0:
            continue
        last_bucket: str | None = None
        for nr, (_, t) in enumerate(items):
            if count == 0:
                break
            bucket = bucket_of(t, nr)
            is_oldest = nr == len(items) - 1
            if bucket != last_bucket:
                reasons[nr].append(f"last {getattr(policy, name)}" if word == "last" else f"{word} {bucket}")
            elif is_oldest:
                reasons[nr].append(f"oldest ({word} count left)")
            else:
                continue
            last_bucket = bucket
            if count > 0:
                count -= 1

    return [Decision(bid, bool(r), r, t) for (bid, t), r in zip(items, reasons)]


def to_remove(decisions: Sequence[Decision]) -> list[str]:
    """The ids a prune would delete."""
    return [d.backup_id for d in decisions if not d.keep]
