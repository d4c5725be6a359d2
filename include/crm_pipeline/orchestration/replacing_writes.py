"""The task side of the transform lease (``warehouse/transform_lease.py``): a sync whose write replaces raw rows
registers its streams for its run, or, while a transform reads raw, reschedules itself; each stream's gate ends
the registration once it judged the batch, and ``admit`` ends whatever a crashed gate left.

Rescheduling, not waiting in the task: a waiting sync would keep its worker slot, and with every slot taken by
waiting syncs the transform that holds the lease could never finish. ``AirflowRescheduleException`` puts the task
in ``up_for_reschedule`` (no retry is used up) and frees the slot.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from airflow.sdk import get_current_context
from airflow.sdk.exceptions import AirflowRescheduleException

from crm_pipeline.catalogue import StreamSpec
from crm_pipeline.warehouse.transform_lease import TransformReading, begin_write, end_write, release, replaces_rows

LOG = logging.getLogger(__name__)
RESCHEDULE_AFTER = timedelta(seconds=15)
# How long a registration counts if nothing ends it (the run died): a sync's and its gate's time limits.
WRITE_HOLD = timedelta(hours=1)
ACTIVE = ["queued", "running"]


def writer_id(context: Any) -> str:
    """The DAG run, as the holder: its sync registers a stream, its gate (or ``admit``) ends it."""
    return f"{context['dag'].dag_id}/{context['run_id']}"


def register(
    conn: psycopg.Connection,
    specs: Collection[StreamSpec],
    context: Any,
    *,
    expires_in: timedelta = WRITE_HOLD,
    always: bool = False,
) -> str | None:
    """Register the replacing write of ``specs`` by this task's run (``context``) before it starts; the
    holder, or None when the streams only append (nothing to register; ``always``: register anyway, for a write
    that deletes, like a reset). Reschedules the task while a transform run holds raw. A lease whose run is no
    longer queued or running (its teardown never ran: the run was marked failed by hand, the scheduler died) is
    broken, once."""
    from crm_pipeline.orchestration.extract import TRANSFORM_DAG_ID  # here: extract imports the Airbyte operator

    specs = [spec for spec in specs if always or replaces_rows([spec])]
    if not specs:
        return None
    holder = writer_id(context)
    streams = [spec.key for spec in specs]
    for attempt in (1, 2):
        try:
            begin_write(conn, holder, streams, expires_in=expires_in, on_session=False)
            return holder
        except TransformReading as reading:
            active = context["ti"].get_dr_count(dag_id=TRANSFORM_DAG_ID, run_ids=[reading.run_id], states=ACTIVE)
            if active or attempt == 2:
                LOG.info("%s; %s syncs again in %s", reading, ", ".join(streams), RESCHEDULE_AFTER)
                raise AirflowRescheduleException(datetime.now(UTC) + RESCHEDULE_AFTER) from None
            LOG.warning("transform run %s holds raw but is no longer running: breaking its lease", reading.run_id)
            release(conn, reading.run_id)
    raise AssertionError("unreachable")  # pragma: no cover


def end(holder: str | None, streams: Collection[str] | None = None, *, conn_id: str) -> None:
    """End a registration (of ``streams``, or all of the holder's), on a connection of its own (the task's role,
    ``conn_id``): the writer's may be broken. Never raises: a failing task's own error is what it must report, and
    the registration lapses."""
    if holder is None:
        return
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

    try:
        with connect(task_warehouse_url(conn_id)) as conn:
            end_write(conn, holder, streams)
    except (psycopg.Error, OSError):
        LOG.warning("could not end the raw write registration of %s; it lapses", holder, exc_info=True)


def end_for_run(streams: Collection[str] | None = None) -> None:
    """End the current run's registration (of ``streams``, or all): a gate that judged its batch, ``admit``."""
    from crm_pipeline.paths import TRANSFORMER_CONN_ID

    end(writer_id(get_current_context()), streams, conn_id=TRANSFORMER_CONN_ID)
