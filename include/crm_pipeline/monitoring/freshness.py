"""Is each stream fresh? Its newest admitted batch against the frequency its catalogue entry declares.

A stream is stale when nothing of it was admitted (passed or quarantined by its gate) for ``factor`` times its
interval (2 by default, the Variable ``crm_freshness_factor``): one missed run is tolerated, two are not. A stream
never admitted is stale too. Every check is stored in ``crm_audit.freshness_checks`` for the health page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from crm_pipeline.catalogue import StreamSpec
from crm_pipeline.monitoring.run_audit import ensure_run_audit
from crm_pipeline.warehouse.ddl import run_ddl, split_script

DEFAULT_FACTOR = 2.0

DDL = """
create table if not exists crm_audit.freshness_checks (
    checked_at timestamptz not null,
    stream text not null,
    last_admitted_at timestamptz,
    lag_seconds double precision,
    threshold_seconds double precision not null,
    stale boolean not null,
    primary key (checked_at, stream)
)
"""


@dataclass(frozen=True)
class Freshness:
    stream: str
    last_admitted_at: datetime | None
    lag: timedelta | None
    threshold: timedelta

    @property
    def stale(self) -> bool:
        return self.lag is None or self.lag > self.threshold

    def describe(self) -> str:
        if self.last_admitted_at is None:
            return f"{self.stream}: never admitted (expected every {self.threshold})"
        return f"{self.stream}: last admitted {self.lag} ago, more than {self.threshold}"


def check_freshness(
    conn: psycopg.Connection,
    specs: Sequence[StreamSpec],
    *,
    now: datetime,
    factor: float = DEFAULT_FACTOR,
    store: bool = True,
) -> list[Freshness]:
    """Every stream's freshness at ``now``; stored unless ``store`` is false; nothing is raised."""
    if factor <= 0:
        raise ValueError(f"crm_freshness_factor must be positive, got {factor}")
    ensure_run_audit(conn)
    run_ddl(conn, split_script(DDL))
    last = dict(
        conn.execute(
            "select stream, max(admitted_at) from crm_audit.stream_runs"
            " where verdict in ('passed', 'quarantined') and stream = any(%s) group by stream",
            ([spec.key for spec in specs],),
        ).fetchall()
    )
    checks = [
        Freshness(
            stream=spec.key,
            last_admitted_at=last.get(spec.key),
            lag=now - last[spec.key] if spec.key in last else None,
            threshold=spec.interval * factor,
        )
        for spec in specs
    ]
    if not store:
        return checks
    with conn.transaction():
        for check in checks:
            conn.execute(
                "insert into crm_audit.freshness_checks (checked_at, stream, last_admitted_at, lag_seconds,"
                " threshold_seconds, stale) values (%s, %s, %s, %s, %s, %s) on conflict do nothing",
                (
                    now,
                    check.stream,
                    check.last_admitted_at,
                    check.lag.total_seconds() if check.lag is not None else None,
                    check.threshold.total_seconds(),
                    check.stale,
                ),
            )
    return checks
