"""The RTO trend of a source's drills: figures over the passing drills of the window, a warning while
the RTO nears its target or rises drill after drill (not for jitter), failures shown, and the three
renderings (text with a sparkline, markdown with an inline SVG chart, the dict)."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

from qilbee_backup.drill_trend import chart_markdown, rto_trend, sparkline, svg, text
from qilbee_backup.report import recovery_markdown


def drills(*rtos: float | None) -> list[dict]:
    """Records oldest first; None is a failed drill."""
    return [{"record_id": f"2026112{i}T050000000000Z-00000{i}", "started_at": f"2026-11-2{i}T05:00:00+00:00",
             "backup_id": f"2026112{i}T020000Z-00000{i}", "ok": rto is not None, "rto_s": rto,
             "failed_step": None if rto is not None else "restore"} for i, rto in enumerate(rtos)]


def test_figures_are_over_the_passing_drills_of_the_window():
    trend = rto_trend(drills(500, 100, None, 300, 200), 3600, last=4)  # the oldest (500) is outside the window
    assert (trend["drills"], trend["passed"], trend["failed"]) == (4, 3, 1)
    assert (trend["rto_min_s"], trend["rto_median_s"], trend["rto_max_s"], trend["rto_latest_s"]) == (100, 200, 300, 200)
    assert trend["latest_share_of_target"] == round(200 / 3600, 4)
    assert [d["ok"] for d in trend["history"]] == [True, False, True, True]
    assert trend["warnings"] == [] and not trend["rising"]


def test_the_latest_above_80_percent_of_the_target_warns():
    assert rto_trend(drills(100, 2700), 3600)["warnings"] == []  # 75%
    (warning,) = rto_trend(drills(100, 3060), 3600)["warnings"]  # 85%
    assert "85% of its 1 h target" in warning and "51 min" in warning


def test_over_the_target_is_not_a_trend_warning_but_the_drill_s_own_missed_target():
    trend = rto_trend(drills(4000), 3600)
    assert trend["warnings"] == [] and trend["latest_share_of_target"] > 1


def test_rising_three_drills_in_a_row_warns_but_jitter_does_not():
    trend = rto_trend(drills(60, 61, 60, 70, 80, 95), 3600)
    assert trend["rising"]
    (warning,) = trend["warnings"]
    assert "rising over the last 3 drills (1 min 10 s → 1 min 20 s → 1 min 35 s" in warning
    jitter = rto_trend(drills(60, 61, 60, 60.1, 60.2, 60.3), 3600)  # three rises, each a blink
    assert not jitter["rising"] and jitter["warnings"] == []
    broken = rto_trend(drills(60, 70, None, 80), 3600)  # a failure is not a measurement, the run goes on
    assert broken["rising"]


def test_sparkline_text_and_markdown_show_every_drill():
    trend = rto_trend(drills(100, None, 400), 3600)
    assert sparkline(trend) == "▃✗█"  # 100 of 400: a quarter up the scale
    shown = text(trend)
    assert shown.splitlines()[0] == ("RTO over the last 3 drills (2 passed, 1 failed): min 1 min 40 s · median 4 min 10 s · "
                                     "max 6 min 40 s; target 1 h ▃✗█")
    assert "FAILED at restore" in shown and "20261122T020000Z-000002" in shown and "11%" in shown
    md = recovery_markdown("Restore drill", {"ok": True, "trend": trend, "warnings": trend["warnings"]})
    assert "| started | backup | result | RTO | of target |" in md and "RTO over the last 3 drills" in md
    image = re.search(r"!\[RTO of the last 3 drills\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)",
                      chart_markdown(trend))
    assert image and base64.b64decode(image.group(1)).decode() == svg(trend)


def test_the_chart_draws_a_bar_per_passing_drill_and_the_target_when_it_fits():
    ns = "{http://www.w3.org/2000/svg}"
    near = ET.fromstring(svg(rto_trend(drills(2000, None, 3000), 3600)))
    bars = [r for r in near.iter(f"{ns}rect") if r.find(f"{ns}title") is not None]
    assert [b.find(f"{ns}title").text for b in bars] == ["33 min 20 s", "50 min"]
    assert float(bars[1].get("height")) > float(bars[0].get("height"))
    assert len(list(near.iter(f"{ns}line"))) == 3  # the axis, the target, 80% of it
    assert any(t.text == "✗" for t in near.iter(f"{ns}text"))
    far = ET.fromstring(svg(rto_trend(drills(3, 4), 3600)))  # seconds against an hour: the target is written, not drawn
    assert len(list(far.iter(f"{ns}line"))) == 1
    assert any("(off the scale)" in (t.text or "") for t in far.iter(f"{ns}text"))


def test_no_drill_yet():
    trend = rto_trend([], 3600)
    assert (trend["drills"], trend["rto_median_s"], trend["warnings"]) == (0, None, [])
    assert text(trend).startswith("no drill recorded yet")


def test_records_of_odd_shape_do_not_break_the_trend():
    odd = [{"record_id": 7, "started_at": 12345, "ok": True, "rto_s": "fast"}, {"ok": True, "rto_s": True},
           {"ok": True, "rto_s": 10.0}]
    trend = rto_trend(odd, 3600)
    assert trend["passed"] == 1 and trend["rto_latest_s"] == 10.0
    assert "12345" in text(trend)
