"""Retention: restic's documented forget policy, checked by properties and by the docs' own examples."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from qilbee_backup.errors import UsageError
from qilbee_backup.retention import Duration, Policy, apply_policy, parse_duration, to_remove

UTC = timezone.utc
BASE = datetime(2024, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)

# Independent bucket keys (tuples, not the module's strings) for the property checks.
BUCKET_OF = {
    "keep_hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "keep_daily": lambda t: (t.year, t.month, t.day),
    "keep_weekly": lambda t: tuple(t.isocalendar())[:2],
    "keep_monthly": lambda t: (t.year, t.month),
    "keep_yearly": lambda t: (t.year,),
}


def backup_id(t: datetime, n: int) -> str:
    return f"{t:%Y%m%dT%H%M%SZ}-{n:06x}"


@st.composite
def backup_times(draw, max_size: int = 40) -> list[tuple[str, datetime]]:
    """Backups spaced on one of several scales, so buckets of every size both collide and differ."""
    step = draw(st.sampled_from([timedelta(minutes=7), timedelta(hours=5), timedelta(days=1), timedelta(days=3), timedelta(days=40)]))
    offsets = draw(st.lists(st.integers(0, 400), min_size=1, max_size=max_size, unique=True))
    times = [BASE + step * k + timedelta(seconds=draw(st.integers(0, 59))) for k in offsets]
    return [(backup_id(t, i), t) for i, t in enumerate(times)]


counts = st.one_of(st.none(), st.integers(0, 6), st.just(-1))
policies = st.builds(
    Policy,
    keep_last=counts,
    keep_hourly=counts,
    keep_daily=counts,
    keep_weekly=counts,
    keep_monthly=counts,
    keep_yearly=counts,
    keep_within=st.one_of(st.none(), st.sampled_from(["36h", "7d", "4w", "3m", "1y", "2y6m"])),
)


def kept_ids(decisions) -> set[str]:
    return {d.backup_id for d in decisions if d.keep}


@settings(max_examples=300, deadline=None)
@given(backups=backup_times(), policy=policies)
def test_newest_is_always_kept_and_every_backup_gets_one_decision(backups, policy):
    decisions = apply_policy(backups, policy, now=FAR_FUTURE)
    newest = max(backups, key=lambda b: b[1])
    assert [d.backup_id for d in decisions] == [b[0] for b in sorted(backups, key=lambda b: b[1], reverse=True)]
    assert decisions[0].backup_id == newest[0] and decisions[0].keep and "newest" in decisions[0].reasons
    for d in decisions:
        assert d.keep == bool(d.reasons)


@settings(max_examples=300, deadline=None)
@given(backups=backup_times(), rule=st.sampled_from(sorted(BUCKET_OF)), n=st.integers(1, 6))
def test_a_count_rule_keeps_the_newest_of_each_of_the_last_n_buckets(backups, rule, n):
    decisions = apply_policy(backups, Policy(**{rule: n}), now=FAR_FUTURE)
    newest_first = sorted(backups, key=lambda b: b[1], reverse=True)
    bucket = BUCKET_OF[rule]
    newest_in_bucket: dict[tuple, str] = {}
    for bid, t in newest_first:
        newest_in_bucket.setdefault(bucket(t), bid)
    last_n_buckets = list(newest_in_bucket)[:n]
    expected = {newest_in_bucket[b] for b in last_n_buckets}
    # restic keeps the oldest backup too when the rule still has count left at the end of the walk.
    if len({bucket(t) for _, t in newest_first[:-1]}) < n:
        expected.add(newest_first[-1][0])
    assert kept_ids(decisions) == expected


@settings(max_examples=200, deadline=None)
@given(backups=backup_times(), n=st.integers(1, 8))
def test_keep_last_keeps_exactly_the_n_newest(backups, n):
    decisions = apply_policy(backups, Policy(keep_last=n), now=FAR_FUTURE)
    newest_first = sorted(backups, key=lambda b: b[1], reverse=True)
    assert kept_ids(decisions) == {bid for bid, _ in newest_first[:n]}


@settings(max_examples=300, deadline=None)
@given(backups=backup_times(), policy=policies)
def test_applying_the_policy_again_to_what_it_kept_removes_nothing_more(backups, policy):
    first = kept_ids(apply_policy(backups, policy, now=FAR_FUTURE))
    survivors = [b for b in backups if b[0] in first]
    second = apply_policy(survivors, policy, now=FAR_FUTURE)
    assert kept_ids(second) == first
    assert to_remove(second) == []


@settings(max_examples=200, deadline=None)
@given(backups=backup_times(), hours=st.integers(1, 24 * 400))
def test_keep_within_keeps_everything_younger_than_the_duration_before_the_newest(backups, hours):
    days, rest = divmod(hours, 24)
    decisions = apply_policy(backups, Policy(keep_within=f"{days}d{rest}h" if days else f"{rest}h"), now=FAR_FUTURE)
    newest = max(t for _, t in backups)
    younger = {bid for bid, t in backups if newest - t < timedelta(hours=hours)}
    assert kept_ids(decisions) == younger


@settings(max_examples=100, deadline=None)
@given(backups=backup_times())
def test_an_empty_policy_keeps_everything(backups):
    decisions = apply_policy(backups, Policy(keep_daily=0, keep_last=None), now=FAR_FUTURE)
    assert kept_ids(decisions) == {b[0] for b in backups}
    assert all(d.reasons[-1] == "policy is empty" for d in decisions)


def sundays(n: int) -> list[tuple[str, datetime]]:
    first = datetime(2019, 9, 1, 11, 0, tzinfo=UTC)
    return [(backup_id(first + timedelta(weeks=i), i), first + timedelta(weeks=i)) for i in range(n)]


def test_restic_docs_example_keep_daily_4_of_twelve_sundays():
    backups = sundays(12)  # 2019-09-01 ... 2019-11-17, one backup each Sunday at 11:00
    decisions = apply_policy(backups, Policy(keep_daily=4), now=datetime(2019, 11, 18, tzinfo=UTC))
    kept = sorted(d.created_at.date().isoformat() for d in decisions if d.keep)
    assert kept == ["2019-10-27", "2019-11-03", "2019-11-10", "2019-11-17"]
    assert len(to_remove(decisions)) == 8
    reasons = {d.created_at.date().isoformat(): d.reasons for d in decisions if d.keep}
    assert reasons["2019-11-10"] == ["daily 2019-11-10"]
    assert reasons["2019-11-17"] == ["newest", "daily 2019-11-17"]


def test_restic_docs_example_daily_weekly_monthly_yearly_rules_combine_by_or():
    # One backup a day at noon from 2022-01-01 to Thursday 2026-11-26.
    day, end = datetime(2022, 1, 1, 12, tzinfo=UTC), datetime(2026, 11, 26, 12, tzinfo=UTC)
    backups = []
    while day <= end:
        backups.append((backup_id(day, len(backups)), day))
        day += timedelta(days=1)
    policy = Policy(keep_daily=7, keep_weekly=5, keep_monthly=12, keep_yearly=3)
    decisions = apply_policy(backups, policy, now=end)
    kept = {d.created_at.date().isoformat() for d in decisions if d.keep}
    daily = {f"2026-11-{d}" for d in range(20, 27)}
    weekly_extra = {"2026-11-15", "2026-11-08", "2026-11-01"}  # Sundays; Nov 22 is already a daily
    monthly_extra = {"2026-10-31", "2026-09-30", "2026-08-31", "2026-07-31", "2026-06-30", "2026-05-31",
                     "2026-04-30", "2026-03-31", "2026-02-28", "2026-01-31", "2025-12-31"}
    yearly_extra = {"2024-12-31"}  # 2026 and 2025 are already kept by the daily and monthly rules
    assert kept == daily | weekly_extra | monthly_extra | yearly_extra
    by_date = {d.created_at.date().isoformat(): d.reasons for d in decisions}
    assert by_date["2025-12-31"] == ["monthly 2025-12", "yearly 2025"]
    assert by_date["2026-11-22"] == ["daily 2026-11-22", "weekly 2026-W47"]


def test_oldest_backup_is_kept_while_a_rule_has_count_left():
    times = [datetime(2026, 11, 25, h, tzinfo=UTC) for h in (1, 2)] + [datetime(2026, 11, 26, 3, tzinfo=UTC)]
    backups = [(backup_id(t, i), t) for i, t in enumerate(times)]
    decisions = apply_policy(backups, Policy(keep_daily=7), now=FAR_FUTURE)
    by_hour = {d.created_at.hour: d for d in decisions}
    assert all(d.keep for d in decisions)
    assert by_hour[1].reasons == ["oldest (daily count left)"]


def test_keep_within_counts_from_the_newest_backup_not_from_now():
    # The job stalled two months ago: "retain for 7 days" must not delete everything.
    last = datetime(2026, 9, 1, 2, tzinfo=UTC)
    backups = [(backup_id(last - timedelta(days=i), i), last - timedelta(days=i)) for i in range(30)]
    decisions = apply_policy(backups, Policy(keep_within="7d"), now=datetime(2026, 11, 26, tzinfo=UTC))
    kept = [d for d in decisions if d.keep]
    assert len(kept) == 7
    assert kept[-1].reasons == ["within 7d"] and kept[-1].created_at == last - timedelta(days=6)


def test_backups_dated_in_the_future_are_kept_and_do_not_move_keep_within():
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    future = now + timedelta(days=400)
    past = [now - timedelta(days=i) for i in range(10)]
    backups = [(backup_id(future, 99), future)] + [(backup_id(t, i), t) for i, t in enumerate(past)]
    decisions = apply_policy(backups, Policy(keep_within="3d"), now=now)
    kept = {d.created_at for d in decisions if d.keep}
    assert kept == {future, now, now - timedelta(days=1), now - timedelta(days=2)}
    assert decisions[0].reasons == ["newest", "in the future"]


def test_unlimited_count_keeps_one_per_bucket_forever():
    times = [datetime(2020 + y, m, 1, tzinfo=UTC) for y in range(3) for m in (1, 6)]
    backups = [(backup_id(t, i), t) for i, t in enumerate(times)]
    decisions = apply_policy(backups, Policy(keep_yearly=-1), now=FAR_FUTURE)
    assert sorted(d.created_at for d in decisions if d.keep) == [
        datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 6, 1, tzinfo=UTC),  # Jan 2020: the oldest, kept too
        datetime(2021, 6, 1, tzinfo=UTC), datetime(2022, 6, 1, tzinfo=UTC),
    ]


def test_manifest_like_objects_are_accepted():
    class Fake:
        def __init__(self, bid, t):
            self.backup_id, self.created_at = bid, t

    t = datetime(2026, 1, 1, tzinfo=UTC)
    decisions = apply_policy([Fake(backup_id(t, 1), t)], Policy(keep_last=1), now=t)
    assert decisions[0].keep and decisions[0].reasons == ["newest", "last 1"]
    assert apply_policy([], Policy(keep_last=1)) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", Duration(days=7)),
        ("4w", Duration(days=28)),
        ("12m", Duration(months=12)),
        ("1y", Duration(years=1)),
        ("36h", Duration(hours=36)),
        ("2y6m", Duration(years=2, months=6)),
        ("1y5m7d2h", Duration(years=1, months=5, days=7, hours=2)),
    ],
)
def test_parse_duration_reads_restics_syntax_plus_weeks(text, expected):
    parsed = parse_duration(text)
    assert (parsed.years, parsed.months, parsed.days, parsed.hours) == (expected.years, expected.months, expected.days, expected.hours)
    assert str(parsed) == text


@pytest.mark.parametrize("text", ["", "7", "d7", "7x", "-7d", "7 d", "0d", "1.5d", "7dd", "seven days"])
def test_parse_duration_rejects_anything_else_with_a_usage_error(text):
    with pytest.raises(UsageError) as caught:
        parse_duration(text)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)


def test_parse_duration_accepts_timedeltas_of_whole_hours():
    assert parse_duration(timedelta(days=2, hours=3)) == Duration(days=2, hours=3)
    with pytest.raises(UsageError):
        parse_duration(timedelta(minutes=30))


def test_month_arithmetic_clamps_to_the_end_of_the_month():
    assert parse_duration("1m").before(datetime(2024, 3, 31, 5, tzinfo=UTC)) == datetime(2024, 2, 29, 5, tzinfo=UTC)
    assert parse_duration("1y").before(datetime(2024, 2, 29, tzinfo=UTC)) == datetime(2023, 2, 28, tzinfo=UTC)
    assert parse_duration("2y6m1d").before(datetime(2026, 11, 26, tzinfo=UTC)) == datetime(2024, 5, 25, tzinfo=UTC)


@pytest.mark.parametrize("bad", [{"keep_daily": -2}, {"keep_last": "3"}, {"keep_weekly": True}, {"keep_within": "soon"}])
def test_policy_rejects_bad_values(bad):
    with pytest.raises(UsageError):
        Policy(**bad)


def test_policy_from_mapping_names_unknown_rules():
    assert Policy.from_mapping({"keep_daily": 7, "keep_within": "4w"}).keep_within == parse_duration("4w")
    with pytest.raises(UsageError, match="keep_fortnightly"):
        Policy.from_mapping({"keep_fortnightly": 2})
