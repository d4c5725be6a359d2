"""Extract DAGs, one per frequency of the catalogue: sync each stream, gate each batch, admit what passed.

``dags/crm_extract.py`` calls :func:`extract_dag` for every cadence (``crm_extract_hourly``, ``crm_extract_every_6h``,
``crm_extract_daily``); nothing here reads a Variable or opens a socket at parse time.

Scheduling choices (docs/decisions.md #15):

* ``catchup=False``: a sync reads everything changed since its connection's last cursor, so one run after a pause
  covers the whole gap; catching up would queue syncs that find nothing new.
* ``max_active_runs=1``: two syncs of one stream at once would race on its cursor (Airbyte refuses a second job
  for a running connection; the simulator serialises on its state row) and interleave their batches.
* Priority: under contention (the ``warehouse`` and ``airbyte`` pools) hourly streams go first, daily ones last.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable, DeltaDataIntervalTimetable, Param

from crm_pipeline.catalogue import StreamSpec, default_catalogue, parse_frequency
from crm_pipeline.orchestration.airbyte import (
    AIRBYTE_CONN_ID,
    SYNC_TIMEOUT,
    CrmAirbyteSyncOperator,
    airbyte_connections,
    collect_batches,
    plan,
    simulated_streams,
)
from crm_pipeline.orchestration.defaults import DEFAULT_ARGS, START_DATE, dag_alerts
from crm_pipeline.orchestration.tasks import admit, gate_raw, held_back, sync_stream

# Absolute priority weights: what runs first when tasks of several extract DAGs queue for the same pool slots.
PRIORITY = {"hourly": 30, "every_6h": 20}
DEFAULT_PRIORITY = 10
# A run should end before the next one is due; a long interval still gets a deadline a person will act on today.
MAX_DEADLINE = timedelta(hours=2)


TRANSFORM_DAG_ID = "crm_transform"


def extract_dag_id(cadence: str) -> str:
    return f"crm_extract_{cadence}"


def pipeline_dag_ids() -> list[str]:
    """Every extract DAG, then the transform: the order in which ``make demo`` and the tests run them with
    ``airflow dags test``, which runs one DAG and never schedules the asset-triggered one."""
    return [extract_dag_id(cadence) for cadence in default_catalogue().by_cadence()] + [TRANSFORM_DAG_ID]


def _doc(cadence: str, specs: Sequence[StreamSpec], module_doc: str) -> str:
    streams = "\n".join(f"- `{s.key}` ({s.sync_mode}, every {s.frequency}): {s.description}" for s in specs)
    return f"{module_doc}\n\n#### Streams of this DAG ({cadence})\n\n{streams}\n"


def timetable(frequency: str) -> DeltaDataIntervalTimetable | CronDataIntervalTimetable:
    """A run per interval of the frequency, covering it (``data_interval_start`` to ``_end``), not Airflow 3's
    default point-in-time trigger: a run of ``airflow backfill create`` delivers its interval again
    (``orchestration/window.py``), so the interval must have a length."""
    schedule = parse_frequency(frequency)
    if isinstance(schedule, timedelta):
        return DeltaDataIntervalTimetable(schedule)
    return CronDataIntervalTimetable(schedule, timezone="UTC")


def extract_params(keys: Sequence[str]) -> dict[str, Param]:
    """What a person may set when triggering an extract DAG. Each is validated (JSON schema) when the run is
    created, so a bad value is refused with the param named before any task runs; ``plan`` checks them together."""
    # RFC 3339 with a time zone, as a pattern: JSON schema's "format" is only advisory in Airflow's validation.
    moment = {
        "type": ["null", "string"],
        "format": "date-time",
        "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$",
    }
    return {
        "streams": Param(
            [],
            type="array",
            items={"type": "string", "enum": list(keys)},
            uniqueItems=True,
            description="Sync only these streams (all when empty). An Airbyte connection syncs all its streams.",
        ),
        "window_start": Param(
            None, **moment, description="Backfill: deliver again what changed from this moment (with window_end)."
        ),
        "window_end": Param(None, **moment, description="Backfill: ... until this moment (exclusive)."),
        "dry_run": Param(False, type="boolean", description="Log what would sync and how, and stop."),
    }


def extract_dag(cadence: str, specs: Sequence[StreamSpec], module_doc: str) -> DAG:
    """The extract DAG of the streams that share one frequency."""
    keys = [spec.key for spec in specs]
    with DAG(
        dag_id=extract_dag_id(cadence),
        schedule=timetable(specs[0].frequency),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args={
            **DEFAULT_ARGS,
            "priority_weight": PRIORITY.get(cadence, DEFAULT_PRIORITY),
            "weight_rule": "absolute",
        },
        tags=["crm", "extract", cadence, *sorted({s.source for s in specs})],
        doc_md=_doc(cadence, specs, module_doc),
        params=extract_params(keys),
        **dag_alerts(within=min(specs[0].interval, MAX_DEADLINE)),
    ) as dag:
        planned = plan(keys)
        connections, streams = airbyte_connections(keys), simulated_streams(keys)
        planned >> [connections, streams]
        airbyte = CrmAirbyteSyncOperator.partial(
            task_id="airbyte_sync",
            airbyte_conn_id=AIRBYTE_CONN_ID,
            deferrable=True,
            pool="airbyte",
            execution_timeout=SYNC_TIMEOUT,
            timeout=SYNC_TIMEOUT.total_seconds(),
            map_index_template="{{ task.connection_variable }}",
        ).expand_kwargs(connections)
        simulated = sync_stream.override(task_id="simulate_sync").expand(stream_key=streams)
        batches = collect_batches.override(task_id="batches")([airbyte.task_id, simulated.operator.task_id])
        [airbyte, simulated] >> batches
        gates = [gate_raw.override(task_id=f"gate__{s.source}__{s.stream}")(s.key, batches) for s in specs]
        gates >> admit(batches)
        gates >> held_back(batches, keys)
    return dag
