"""The pipeline health page: one self-contained HTML file with SVG charts, from the audit tables.

Three charts, the ones a data team looks at each morning: freshness per stream (lag against its threshold), the
raw gates' verdicts per stream, and rows loaded per day and source. No JavaScript and nothing fetched from the
network, so the file opens anywhere (``make report`` writes it; the Airflow UI links it as a DAG doc).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from html import escape
from pathlib import Path

import psycopg

from crm_pipeline.catalogue import StreamSpec
from crm_pipeline.monitoring.freshness import Freshness, check_freshness
from crm_pipeline.monitoring.run_audit import ensure_run_audit

VERDICT_COLOURS = {"passed": "#2e7d32", "quarantined": "#f9a825", "stopped": "#c62828", "unjudged": "#6d4c41"}
SOURCE_COLOURS = {"hubspot": "#ff7a59", "salesforce": "#00a1e0"}
DAYS = 30
_ROW = 22  # px per bar
_LABEL = 230  # px for the stream names
_WIDTH = 560  # px for the bars


def _freshness_chart(checks: Sequence[Freshness]) -> str:
    """A bar per stream: its lag as a share of its threshold (the red line); full and red when stale."""
    height = _ROW * len(checks) + 30
    parts = [f'<svg role="img" aria-label="freshness per stream" width="{_LABEL + _WIDTH + 170}" height="{height}">']
    line_x = _LABEL + _WIDTH * 0.8
    for i, check in enumerate(checks):
        y = 10 + i * _ROW
        share = 1.25 if check.lag is None else check.lag / check.threshold
        width = _WIDTH * 0.8 * min(share, 1.25)
        colour = "#c62828" if check.stale else "#2e7d32"
        lag = "never admitted" if check.lag is None else f"{_short(check.lag)} / {_short(check.threshold)}"
        parts += [
            f'<text x="{_LABEL - 8}" y="{y + 14}" text-anchor="end">{escape(check.stream)}</text>',
            f'<rect x="{_LABEL}" y="{y}" width="{width:.1f}" height="{_ROW - 6}" fill="{colour}"/>',
            f'<text x="{_LABEL + width + 6:.1f}" y="{y + 14}">{escape(lag)}</text>',
        ]
    parts.append(f'<line x1="{line_x}" x2="{line_x}" y1="4" y2="{height - 20}" stroke="#c62828" stroke-dasharray="4"/>')
    parts.append(f'<text x="{line_x}" y="{height - 6}" text-anchor="middle">stale threshold</text></svg>')
    return "".join(parts)


def _verdict_chart(counts: dict[str, dict[str, int]], streams: Sequence[str]) -> str:
    """A stacked bar per stream: its batches of the last days by verdict."""
    height = _ROW * len(streams) + 40
    most = max((sum(c.values()) for c in counts.values()), default=1) or 1
    parts = [f'<svg role="img" aria-label="gate verdicts per stream" width="{_LABEL + _WIDTH + 80}" height="{height}">']
    for i, stream in enumerate(streams):
        y = 10 + i * _ROW
        x = float(_LABEL)
        parts.append(f'<text x="{_LABEL - 8}" y="{y + 14}" text-anchor="end">{escape(stream)}</text>')
        for verdict, colour in VERDICT_COLOURS.items():
            n = counts.get(stream, {}).get(verdict, 0)
            if n:
                width = _WIDTH * n / most
                parts.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{_ROW - 6}" fill="{colour}">'
                    f"<title>{escape(stream)}: {n} {verdict}</title></rect>"
                )
                x += width
        total = sum(counts.get(stream, {}).values())
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 14}">{total}</text>')
    legend_y = height - 10
    for j, (verdict, colour) in enumerate(VERDICT_COLOURS.items()):
        parts.append(f'<rect x="{_LABEL + j * 120}" y="{legend_y - 10}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{_LABEL + j * 120 + 14}" y="{legend_y}">{verdict}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _volume_chart(volumes: dict[str, dict[date, int]], days: Sequence[date]) -> str:
    """A line per source: rows loaded per day."""
    width, height, left, bottom = _LABEL + _WIDTH, 260, 70, 30
    top = max((n for series in volumes.values() for n in series.values()), default=0) or 1
    step = (width - left - 20) / max(len(days) - 1, 1)
    parts = [f'<svg role="img" aria-label="rows loaded per day" width="{width + 120}" height="{height}">']
    parts.append(f'<line x1="{left}" x2="{width}" y1="{height - bottom}" y2="{height - bottom}" stroke="#999"/>')
    parts.append(f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end">0</text>')
    parts.append(f'<text x="{left - 6}" y="16" text-anchor="end">{top:,}</text>')
    for k in (0, len(days) - 1):
        x = left + k * step
        parts.append(f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle">{days[k].isoformat()}</text>')
    for j, (source, series) in enumerate(sorted(volumes.items())):
        points = " ".join(
            f"{left + k * step:.1f},{height - bottom - (height - bottom - 16) * series.get(day, 0) / top:.1f}"
            for k, day in enumerate(days)
        )
        colour = SOURCE_COLOURS.get(source, "#555")
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        parts.append(f'<text x="{width + 10}" y="{30 + j * 18}" fill="{colour}">{escape(source)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _short(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} d" if hours >= 48 else f"{hours:.1f} h"


def render_health_page(conn: psycopg.Connection, specs: Sequence[StreamSpec], *, now: datetime) -> str:
    ensure_run_audit(conn)
    checks = check_freshness(conn, specs, now=now, store=False)
    since = now - timedelta(days=DAYS)
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for stream, verdict, n in conn.execute(
        "select stream, verdict, count(*) from crm_audit.stream_runs where admitted_at >= %s group by 1, 2", (since,)
    ):
        counts[stream][verdict] = n
    volumes: dict[str, dict[date, int]] = defaultdict(dict)
    for source, day, rows in conn.execute(
        "select split_part(stream, '.', 1), (admitted_at at time zone 'UTC')::date, sum(rows_loaded)"
        " from crm_audit.stream_runs where admitted_at >= %s group by 1, 2",
        (since,),
    ):
        volumes[source][day] = int(rows or 0)
    days = [(since + timedelta(days=k + 1)).date() for k in range(DAYS)]
    judged = sum(counts[s].get(v, 0) for s in counts for v in ("passed", "quarantined", "stopped"))
    admitted = sum(counts[s].get(v, 0) for s in counts for v in ("passed", "quarantined"))
    rate = f"{admitted / judged:.1%}" if judged else "no batch judged yet"
    stale = [c for c in checks if c.stale]
    latest = conn.execute(
        "select distinct on (stream) stream, dag_id, admitted_at, rows_loaded, verdict, duration_seconds"
        " from crm_audit.stream_runs order by stream, admitted_at desc"
    ).fetchall()
    rows = "".join(
        f"<tr><td>{escape(s)}</td><td>{escape(d)}</td><td>{a:%Y-%m-%d %H:%M} UTC</td><td>{n or 0:,}</td>"
        f"<td>{escape(v)}</td><td>{(secs or 0):.0f} s</td></tr>"
        for s, d, a, n, v, secs in latest
    )
    status = (
        f'<p class="bad">{len(stale)} stale: {escape(", ".join(c.stream for c in stale))}</p>'
        if stale
        else '<p class="good">every stream is fresh</p>'
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CRM pipeline health</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; }}
svg text {{ font: 12px system-ui, sans-serif; }}
.good {{ color: #2e7d32; font-weight: bold; }} .bad {{ color: #c62828; font-weight: bold; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: left; }}
</style></head><body>
<h1>CRM pipeline health</h1>
<p>As of {now:%Y-%m-%d %H:%M} UTC, from <code>crm_audit.stream_runs</code> (the last {DAYS} days).</p>
<h2>Freshness per stream</h2>{status}
{_freshness_chart(checks)}
<h2>Raw gate verdicts per stream</h2>
<p>Batches admitted (passed or quarantined) of those judged: <strong>{rate}</strong></p>
{_verdict_chart(counts, [spec.key for spec in specs])}
<h2>Rows loaded per day</h2>
{_volume_chart(volumes, days)}
<h2>Latest run per stream</h2>
<table><tr><th>stream</th><th>DAG</th><th>admitted</th><th>rows</th><th>verdict</th><th>sync to admission</th></tr>
{rows}</table>
</body></html>
"""


def write_health_page(conn: psycopg.Connection, specs: Sequence[StreamSpec], path: Path, *, now: datetime) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_health_page(conn, specs, now=now))
    return path
