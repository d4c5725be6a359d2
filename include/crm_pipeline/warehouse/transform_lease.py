"""Raw writes that replace rows wait while a transform reads raw: a lease from a transform's cutoff to its publish.

A transform run reads raw twice: dbt builds from it, then the mart audit reconciles the marts with it. Between
the two, raw must not change under the batches the run reads. Appends cannot change them (a new batch is judged
after the cutoff, so neither read sees it), but some writes replace rows:

* a sync of an ``incremental_append_deduped`` stream (Airbyte's dedup keeps one row per key: the judged version
  goes, an unjudged one comes), or of a ``full_refresh_overwrite`` stream (the whole table goes);
* a replay's reset (it empties a raw table) and ``crm quarantine release`` (rows come back into staging).

Landing between the build and the audit, such a write made the reconciliation count other rows than dbt had
read, and the audit refused to publish good marts (decisions #15). Landing just before the cutoff, with its batch
not judged yet, it would make the replaced records vanish from the marts for a run. So a replacing write lasts
until its batch is judged, and it and the transform take turns, on one row:

* the transform **holds** the lease (``hold``) before it fixes its cutoff, then waits until every replacing
  write that started earlier has ended (``wait_for_writes``), and **releases** it after publishing, or when it
  fails (a teardown task);
* a replacing write **registers** each stream (``begin_write``) in the same locked step in which it checks the
  lease: held by a transform → ``TransformReading``, and the caller comes back later (a task reschedules itself,
  freeing its worker slot); otherwise it writes, and its stream's gate ends the registration once the batch is
  judged (``end_write``).
* A run that is writing finishes writing: once one of its streams is registered, its other streams go on even
  under a lease (the transform waits for the run's gates, and they wait for all of the run's syncs).
* First come, first served: a refused writer stays queued (a *waiting* registration, renewed each time it asks,
  lapsing after ``INTENT``); the next transform waits for writers queued before it took the lease and lets them
  write. Without it, transforms back to back (each batch of a backfill starts one) starve dedup syncs.

Neither side can leave the other waiting for ever. The lease expires (``held_until``), and a task breaks a lease
whose run is no longer active. A registration expires (``expires_at``: the sync's and the gate's time limits);
one made on a session for a write on that session (the CLI) names its backend pid and dies with it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import psycopg

from crm_pipeline.catalogue import StreamSpec
from crm_pipeline.warehouse.ddl import run_ddl, split_script

LOG = logging.getLogger(__name__)

# Sync modes whose writes replace rows a transform may have read (the others only append new batches).
REPLACING_MODES = frozenset({"incremental_append_deduped", "full_refresh_overwrite"})
# The longest a transform may hold raw: its run deadline (dags/crm_transform.py); a lease left by a run that
# died without its teardown lapses then at the latest.
TRANSFORM_HOLD = timedelta(hours=2)

DDL = """
create schema if not exists crm_audit;
create table if not exists crm_audit.transform_lease (
    only_row boolean primary key default true check (only_row),
    run_id text,
    held_since timestamptz,
    held_until timestamptz
);
insert into crm_audit.transform_lease (only_row) values (true) on conflict do nothing;
create table if not exists crm_audit.raw_writes (
    holder text not null,
    stream text not null,
    waiting boolean not null default false,
    backend_pid integer,
    started_at timestamptz not null default clock_timestamp(),
    expires_at timestamptz not null,
    primary key (holder, stream)
)
"""

# A registration counts while it has not expired and, when made on a session, that session lives. (The queries
# below are composed from these constants only: no input reaches their text.)
_LIVE = """w.expires_at > now()
  and (w.backend_pid is null or exists (select from pg_stat_activity as a where a.pid = w.backend_pid))"""
# What a holding transform waits for: writes under way, and writers that queued before it took the lease.
LIVE_WRITES = f"""
select w.holder, w.stream from crm_audit.raw_writes as w cross join crm_audit.transform_lease as l
where {_LIVE} and (not w.waiting or w.started_at < l.held_since)
order by w.holder, w.stream
"""  # noqa: S608
# Who may write while a transform holds raw: a writer (a run) already writing, which the transform waits for,
# or one that queued before the transform took the lease (first come, first served).
MAY_GO_ON = f"""
select from crm_audit.raw_writes as w
where w.holder = %(holder)s and {_LIVE}
  and (not w.waiting or (w.stream = any(%(streams)s) and w.started_at < %(held_since)s))
"""
INTENT = timedelta(minutes=1)  # how long a refused writer keeps its place in the queue without coming back


class TransformReading(Exception):
    """A transform run holds raw: a replacing write must come back after it publishes (or fails)."""

    def __init__(self, run_id: str, held_until: datetime) -> None:
        super().__init__(f"transform run {run_id} reads raw until it publishes (at the latest {held_until:%H:%M} UTC)")
        self.run_id = run_id
        self.held_until = held_until


def replaces_rows(specs: Collection[StreamSpec]) -> bool:
    """Whether a sync of these streams (one Airbyte job, or one simulated stream) can replace rows."""
    return any(spec.sync_mode in REPLACING_MODES for spec in specs)


def ensure_lease(conn: psycopg.Connection) -> None:
    run_ddl(conn, split_script(DDL))


def begin_write(
    conn: psycopg.Connection, holder: str, streams: Collection[str], *, expires_in: timedelta, on_session: bool
) -> None:
    """Register a replacing write of ``streams`` by ``holder`` (a DAG run, a CLI command), unless a transform
    holds raw: then raise ``TransformReading``, after queueing the writer (a waiting registration that keeps its
    place for ``INTENT`` and is renewed each time it asks), so the next transform lets it go first.
    ``on_session``: the write happens on this connection, so the registration dies with it."""
    ensure_lease(conn)
    refused: TransformReading | None = None
    with conn.transaction():
        # A shared row lock, taken whether the lease is held or not (a condition in the query would skip the
        # lock when it does not match): writers register side by side, and ``hold`` (an update) waits for them
        # to commit, so a write either is seen by the transform's wait or sees the transform's lease.
        run_id, held_since, held_until, held = conn.execute(
            "select run_id, held_since, held_until, held_until > now() from crm_audit.transform_lease for share"
        ).fetchone()  # type: ignore[misc]
        if run_id is not None and held:
            ask = {"holder": holder, "streams": list(streams), "held_since": held_since}
            if conn.execute(MAY_GO_ON, ask).fetchone() is None:
                refused = TransformReading(run_id, held_until)
        for stream in streams:
            conn.execute(
                "insert into crm_audit.raw_writes as w (holder, stream, waiting, backend_pid, expires_at)"
                " values (%(holder)s, %(stream)s, %(waiting)s, case when %(session)s then pg_backend_pid() end,"
                " now() + %(expires)s)"
                " on conflict (holder, stream) do update set waiting = excluded.waiting,"
                " backend_pid = excluded.backend_pid, expires_at = excluded.expires_at,"
                # a waiting writer keeps its place; one that starts writing starts now
                " started_at = case when excluded.waiting and w.waiting then w.started_at else clock_timestamp() end",
                {
                    "holder": holder,
                    "stream": stream,
                    "waiting": refused is not None,
                    "session": on_session,
                    "expires": INTENT if refused is not None else expires_in,
                },
            )
    if refused is not None:
        raise refused


def end_write(conn: psycopg.Connection, holder: str, streams: Collection[str] | None = None) -> None:
    """End a writer's registration of ``streams`` (all of them by default)."""
    ensure_lease(conn)
    with conn.transaction():
        if streams is None:
            conn.execute("delete from crm_audit.raw_writes where holder = %s", (holder,))
        else:
            conn.execute(
                "delete from crm_audit.raw_writes where holder = %s and stream = any(%s)", (holder, list(streams))
            )


@contextmanager
def replacing_write(
    conn: psycopg.Connection,
    holder: str,
    streams: Collection[str],
    *,
    expires_in: timedelta,
    wait: timedelta | None = None,
    poll: float = 2.0,
) -> Iterator[None]:
    """Register, write on ``conn`` (inside the block), end the registration. ``wait``: when a transform holds
    raw, wait up to that long for it (a person at the CLI) instead of raising ``TransformReading`` at once."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        # Its registration and the block's own transaction would be a savepoint in the caller's, which the
        # cleanup below rolls back: the write would report success and vanish.
        raise ValueError(f"{holder}: needs a connection with no transaction open (commit or roll back first)")
    deadline = time.monotonic() + wait.total_seconds() if wait else None
    while True:
        try:
            begin_write(conn, holder, streams, expires_in=expires_in, on_session=True)
            break
        except TransformReading as reading:
            if deadline is None or time.monotonic() > deadline:
                raise
            LOG.info("waiting: %s", reading)
            time.sleep(poll)
    try:
        yield
    finally:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()  # the block failed inside a transaction it did not close
        end_write(conn, holder)


def hold(conn: psycopg.Connection, run_id: str, *, hold_for: timedelta = TRANSFORM_HOLD) -> None:
    """Take the lease for a transform run (one runs at a time: a newer run simply takes it over)."""
    ensure_lease(conn)
    with conn.transaction():
        conn.execute(
            "update crm_audit.transform_lease set run_id = %s, held_until = now() + %s,"
            " held_since = case when run_id is distinct from %s then clock_timestamp() else held_since end",
            (run_id, hold_for, run_id),
        )


def live_writes(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """The replacing writes registered and still live: (holder, stream)."""
    ensure_lease(conn)
    rows = conn.execute(LIVE_WRITES).fetchall()
    conn.commit()
    return [(holder, stream) for holder, stream in rows]


def wait_for_writes(conn: psycopg.Connection, *, timeout: timedelta, poll: float = 2.0) -> None:
    """Wait until every replacing write that registered before ``hold`` has ended (its batch judged);
    ``TimeoutError`` names them."""
    deadline = time.monotonic() + timeout.total_seconds()
    logged = 0.0
    while writes := live_writes(conn):
        if time.monotonic() > deadline:
            raise TimeoutError(f"replacing raw writes still running after {timeout}: {_describe(writes)}")
        if time.monotonic() - logged > 30:
            LOG.info("waiting for replacing raw writes to land: %s", _describe(writes))
            logged = time.monotonic()
        time.sleep(poll)


def release(conn: psycopg.Connection, run_id: str) -> bool:
    """Give the lease back, if ``run_id`` still holds it; whether it did."""
    ensure_lease(conn)
    with conn.transaction():
        released = conn.execute(
            "update crm_audit.transform_lease set run_id = null, held_since = null, held_until = null"
            " where run_id = %s",
            (run_id,),
        ).rowcount
    return bool(released)


def _describe(writes: list[tuple[str, str]]) -> str:
    return "; ".join(f"{stream} ({holder})" for holder, stream in writes)
