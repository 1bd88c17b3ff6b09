"""Where the recovery time is heading: the RTO of the last drills of one source (min, median, max,
the latest against its target), and a warning while there is still time to act — the latest above
80% of the target, or rising drill after drill — rather than the day a real recovery misses it.

Drawn three ways from one model: a text table with a sparkline (terminal, logs), the same table in
markdown with a small SVG chart inlined as an image (the Prefect UI renders it), and the plain dict
in the drill's result and `status --json`. No plotting library: the chart is a few SVG rectangles.
"""

from __future__ import annotations

import base64
import statistics
from typing import Any

from .report import NONE, Table, duration, utc

LAST_DRILLS = 10  # the window the trend is read over
NEAR_TARGET = 0.8  # the latest RTO above this share of its target: warn
RISING_RUN = 3  # this many passing drills in a row, each slower than the one before...
RISING_OVER_MEDIAN = 1.1  # ...the latest at least 10% above the window's median (jitter is not a trend)
_SPARKS = "▁▂▃▄▅▆▇█"


def rto_trend(records: list[dict[str, Any]], target_s: float | None, last: int = LAST_DRILLS) -> dict[str, Any]:
    """The trend of one source's drills (records oldest first, as drill_history returns them)
    against target_s: figures over the passing drills of the last `last`, and warnings."""
    window = records[-last:] if last > 0 else []
    rtos = [float(r["rto_s"]) for r in window if r.get("ok") and _number(r.get("rto_s"))]
    latest = rtos[-1] if rtos else None
    median = statistics.median(rtos) if rtos else None
    tail = rtos[-RISING_RUN:]
    rising = (len(tail) == RISING_RUN and all(a < b for a, b in zip(tail, tail[1:]))
              and latest >= RISING_OVER_MEDIAN * median)
    share = round(latest / target_s, 4) if latest is not None and target_s else None
    warnings = []
    if share is not None and NEAR_TARGET < share <= 1:
        warnings.append(f"the last drill's RTO {duration(latest)} is {share:.0%} of its {duration(target_s)} target: "
                        "recovery is nearing its objective")
    if rising:
        warnings.append(f"RTO rising over the last {RISING_RUN} drills ({' → '.join(duration(v) for v in tail)}; "
                        f"median of the last {len(rtos)}: {duration(median)})")
    return {
        "drills": len(window), "passed": len(rtos), "failed": len(window) - len(rtos),
        "rto_min_s": min(rtos) if rtos else None, "rto_median_s": median, "rto_max_s": max(rtos) if rtos else None,
        "rto_latest_s": latest, "rto_target_s": target_s, "latest_share_of_target": share,
        "rising": rising, "warnings": warnings,
        "history": [{"drill": _as_text(r.get("record_id")), "started_at": _as_text(r.get("started_at")),
                     "backup_id": _as_text(r.get("backup_id")), "ok": bool(r.get("ok")),
                     "rto_s": float(r["rto_s"]) if _number(r.get("rto_s")) else None,
                     "failed_step": _as_text(r.get("failed_step"))}
                    for r in window],
    }


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _as_text(value: Any) -> str | None:
    """A record's field as text: records come from the repository, so never trust their types."""
    return None if value is None else str(value)


def summary(trend: dict[str, Any]) -> str:
    """One line: 'RTO over the last 7 drills (6 passed): min 3.1 s · median 3.4 s · max 4.0 s ▁▂▃▅▇✗'."""
    if not trend["drills"]:
        return "no drill recorded yet"
    failed = f", {trend['failed']} failed" if trend["failed"] else ""
    head = f"RTO over the last {trend['drills']} drill{'s' if trend['drills'] != 1 else ''} ({trend['passed']} passed{failed})"
    if not trend["passed"]:
        return f"{head}: none measured {sparkline(trend)}"
    return (f"{head}: min {duration(trend['rto_min_s'])} · median {duration(trend['rto_median_s'])} · "
            f"max {duration(trend['rto_max_s'])}; target {duration(trend['rto_target_s'])} {sparkline(trend)}")


def sparkline(trend: dict[str, Any]) -> str:
    """One character per drill, oldest first: a bar as tall as its RTO (against the slowest), ✗ a failure."""
    top = trend["rto_max_s"] or 0
    marks = []
    for drill in trend["history"]:
        if not drill["ok"] or drill["rto_s"] is None:
            marks.append("✗")
        else:
            level = int(drill["rto_s"] / top * (len(_SPARKS) - 1) + 0.5) if top > 0 else 0
            marks.append(_SPARKS[level])
    return "".join(marks)


def table(trend: dict[str, Any]) -> Table:
    """The drills of the window, newest first: when, which backup, the outcome, the RTO and its share of the target."""
    target = trend["rto_target_s"]
    rows = []
    for drill in reversed(trend["history"]):
        rto = drill["rto_s"] if drill["ok"] else None
        rows.append([utc(drill["started_at"]), drill["backup_id"] or NONE,
                     "passed" if drill["ok"] else f"FAILED at {drill['failed_step'] or 'an unnamed step'}",
                     duration(rto), _share(rto / target) if rto is not None and target else NONE])
    return Table(f"Restore drills (the last {trend['drills']})", ["started", "backup", "result", "RTO", "of target"], rows,
                 "no drill recorded yet")


def _share(share: float) -> str:
    return "<1%" if share < 0.005 else f"{share:.0%}"


def svg(trend: dict[str, Any], width: int = 360, height: int = 120) -> str:
    """A bar per drill (red cross: failed), the target and its 80% as lines when they fit the scale
    (a target far above every RTO is written, not drawn: the bars would vanish under it)."""
    history, target = trend["history"], trend["rto_target_s"]
    top = max([d["rto_s"] for d in history if d["ok"] and d["rto_s"] is not None] or [0.0])
    draw_target = bool(target) and target <= 1.5 * max(top, 1e-9)
    scale_top = max(top, target if draw_target else 0) * 1.1 or 1.0
    pad, base = 4, height - 16
    slot = (width - 2 * pad) / max(len(history), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             'font-family="sans-serif" font-size="10">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<line x1="{pad}" y1="{base}" x2="{width - pad}" y2="{base}" stroke="#888"/>']
    for i, drill in enumerate(history):
        x = pad + i * slot + slot * 0.15
        if drill["ok"] and drill["rto_s"] is not None:
            h = max(1.0, drill["rto_s"] / scale_top * (base - pad))
            fill = "#d9822b" if target and drill["rto_s"] > NEAR_TARGET * target else "#2b7bd9"
            parts.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" fill="{fill}">'
                         f'<title>{duration(drill["rto_s"])}</title></rect>')
        else:
            parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{base - 4}" fill="#c0392b" text-anchor="middle">✗</text>')
    if draw_target:
        for share, colour, dash in ((1.0, "#c0392b", ""), (NEAR_TARGET, "#d9822b", ' stroke-dasharray="4 3"')):
            y = base - target * share / scale_top * (base - pad)
            parts.append(f'<line x1="{pad}" y1="{y:.1f}" x2="{width - pad}" y2="{y:.1f}" stroke="{colour}"{dash}/>')
    label = f"RTO, last {len(history)} drills · target {duration(target)}" + ("" if draw_target or not target else " (off the scale)")
    parts.append(f'<text x="{pad}" y="{height - 3}" fill="#333">{label}</text></svg>')
    return "".join(parts)


def chart_markdown(trend: dict[str, Any]) -> str:
    """The chart for a markdown artifact (an inline SVG image), under the report's trend table; "" without drills."""
    if not trend["history"]:
        return ""
    image = base64.b64encode(svg(trend).encode()).decode()
    return f"![RTO of the last {trend['drills']} drills](data:image/svg+xml;base64,{image})\n"


def text(trend: dict[str, Any]) -> str:
    """The trend as aligned text: the summary line, the table, the warnings."""
    from .report import Report, _text  # the one text writer of every report

    return _text(Report("", summary(trend), tables=[table(trend)], notes=list(trend["warnings"])))
