"""Monitoring on real PostgreSQL and a real `airflow dags test`: the run audit, freshness, alerts, the health page."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from crm_pipeline.browser import browser_page, screenshot_file
from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.monitoring.freshness import check_freshness
from crm_pipeline.monitoring.health_page import render_health_page, write_health_page
from crm_pipeline.monitoring.run_audit import ensure_run_audit, record_stream_runs
from crm_pipeline.paths import LOCAL_DIR
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
STALE = "hubspot.deals"  # hourly: stale after 2 h
NEVER = "salesforce.User"  # daily, never admitted


def _audit(warehouse: WarehouseUrl, now: datetime) -> None:
    """Every stream admitted an interval ago (fresh), except STALE (3 h ago) and NEVER (only a stopped batch)."""
    with psycopg.connect(warehouse.libpq()) as conn:
        ensure_run_audit(conn)
        for n, spec in enumerate(default_catalogue().enabled()):
            if spec.key == NEVER:
                verdict, admitted = "stopped", now - timedelta(minutes=5)
            else:
                verdict = "quarantined" if n % 4 == 0 else "passed"
                admitted = now - (timedelta(hours=3) if spec.key == STALE else spec.interval * 0.9)
            conn.execute(
                "insert into crm_audit.stream_runs (dag_id, run_id, stream, sync_id, source, rows_loaded, verdict,"
                " sync_started_at, admitted_at, duration_seconds) values (%s, 'r1', %s, %s, 'simulator', %s, %s,"
                " %s, %s, 12.5)",
                (f"crm_extract_{spec.cadence}", spec.key, 100 + n, 1000 * (n + 1), verdict, admitted, admitted),
            )


def test_the_run_audit_records_each_batch_once_with_its_verdict(warehouse: WarehouseUrl) -> None:
    started = datetime.now(UTC) - timedelta(seconds=30)
    batches = {
        "hubspot.deals": {"sync_id": 7, "rows": 40, "source": "simulator", "started_at": started.isoformat()},
        "hubspot.engagements": {"sync_id": 7, "source": "airbyte", "started_at": started.isoformat()},
    }
    with psycopg.connect(warehouse.libpq()) as conn:
        ensure_run_audit(conn)
        conn.execute(
            "insert into crm_audit.batch_verdicts (stream, sync_id, verdict, batch_rows, quarantined_rows)"
            " values ('hubspot.deals', 7, 'quarantined', 40, 2)"
        )
        for _ in range(2):  # a retried admit rewrites, never duplicates
            record_stream_runs(conn, dag_id="crm_extract_hourly", run_id="run-1", batches=batches)
        rows = conn.execute(
            "select stream, source, rows_loaded, verdict, quarantined_rows, duration_seconds >= 30"
            " from crm_audit.stream_runs order by stream"
        ).fetchall()
    assert rows == [
        ("hubspot.deals", "simulator", 40, "quarantined", 2, True),
        ("hubspot.engagements", "airbyte", None, "unjudged", None, True),
    ]


def test_a_stream_is_stale_after_twice_its_interval_or_when_never_admitted(warehouse: WarehouseUrl) -> None:
    _audit(warehouse, NOW)
    specs = default_catalogue().enabled()
    with psycopg.connect(warehouse.libpq()) as conn:
        checks = {c.stream: c for c in check_freshness(conn, specs, now=NOW)}
        stored = conn.execute("select count(*), count(*) filter (where stale) from crm_audit.freshness_checks")
        assert stored.fetchone() == (len(specs), 2)
        lenient = {c.stream for c in check_freshness(conn, specs, now=NOW, factor=4, store=False) if c.stale}
    assert {s for s, c in checks.items() if c.stale} == {STALE, NEVER}
    assert checks[STALE].threshold == timedelta(hours=2)
    assert checks[STALE].describe() == f"{STALE}: last admitted 3:00:00 ago, more than 2:00:00"
    assert checks[NEVER].describe() == f"{NEVER}: never admitted (expected every 2 days, 0:00:00)"
    assert lenient == {NEVER}, "crm_freshness_factor 4: three hours is fine for an hourly stream"


def test_the_health_page_shows_freshness_verdicts_and_volumes(warehouse: WarehouseUrl, tmp_path: Path) -> None:
    _audit(warehouse, NOW)
    with psycopg.connect(warehouse.libpq()) as conn:
        page = render_health_page(conn, default_catalogue().enabled(), now=NOW)
    (tmp_path / "health.html").write_text(page)
    for chart in ("freshness per stream", "gate verdicts per stream", "rows loaded per day"):
        assert f'aria-label="{chart}"' in page
    assert f"2 stale: {STALE}, {NEVER}" in page
    streams = len(default_catalogue().enabled())
    admitted = f"<strong>{(streams - 1) / streams:.1%}</strong>"
    assert admitted in page, f"{streams - 1} of {streams} judged batches admitted (NEVER's was stopped)"
    assert page.count("<polyline") == 2, "one volume line per source"
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org", ""), "self-contained"


def test_the_health_page_renders_in_a_browser(warehouse: WarehouseUrl, tmp_path: Path) -> None:
    """Headless Chromium (Debian's) lays the page out with its three charts visible, and the full-page screenshot
    is kept for people to look at: .local/screenshots/health-page.png (docs/images/health-page.png is one)."""
    _audit(warehouse, NOW)
    with psycopg.connect(warehouse.libpq()) as conn:
        html = write_health_page(conn, default_catalogue().enabled(), tmp_path / "health.html", now=NOW)
    shot = LOCAL_DIR / "screenshots" / "health-page.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    with browser_page(width=1280) as page:
        page.goto(html.as_uri())
        for chart in ("freshness per stream", "gate verdicts per stream", "rows loaded per day"):
            box = page.locator(f'svg[aria-label="{chart}"]').bounding_box()
            assert box and box["width"] > 300 and box["height"] > 100, f"{chart} is laid out: {box}"
        bars = page.locator('svg[aria-label="freshness per stream"] rect[fill="#c62828"]').count()
        assert bars == 2, "two stale streams, drawn red"
        assert page.locator("text=2 stale").count() >= 1
    png = screenshot_file(html, shot).read_bytes()  # what `crm report --png` does
    width, height = struct.unpack(">II", png[16:24])  # the PNG's IHDR chunk
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and width == 1280 and height > 900, (width, height)


def test_the_monitor_dag_writes_the_page_and_alerts_on_stale_streams(
    local_airflow, warehouse: WarehouseUrl, alert_receivers, tmp_path: Path
) -> None:
    _audit(warehouse, datetime.now(UTC))
    env = {**alert_receivers.env(), "CRM_REPORT_DIR": str(tmp_path)}
    run = local_airflow.dags_test("crm_monitor", warehouse, env)
    assert run.returncode != 0, "stale streams fail the run"
    states = local_airflow.task_states("crm_monitor", run.run_id)
    assert states == {"check_freshness": "failed", "health_page": "success"}
    assert "2 stale" in (tmp_path / "health.html").read_text()
    ((webhook,), (email,)) = (alert_receivers.webhooks, alert_receivers.emails)
    for text in (str(webhook["text"]), email):
        assert "crm_monitor" in text and "check_freshness" in text
        assert "2 stale CRM streams" in text and STALE in text and NEVER in text
        assert "hubspot.contacts" not in text, "fresh streams are not named"
        assert alert_receivers.WEBHOOK_SECRET not in text
