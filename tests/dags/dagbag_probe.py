"""Load every DAG file in a clean interpreter with network, subprocesses and dbt trapped; print JSON.

Run by test_dag_integrity.py as ``python dagbag_probe.py``. Every trapped call is recorded (and refused), so
an import that swallowed the refusal is still caught.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

# Airflow itself and its dependencies are imported before the traps are armed: the traps are for the DAG files.
# (croniter runs `file` through platform.architecture() at its own import.)
started = time.perf_counter()
import croniter  # noqa: E402, F401
from airflow.dag_processing.dagbag import DagBag  # noqa: E402

import_airflow_s = time.perf_counter() - started
calls: list[str] = []


def _trap(what: str):
    def refuse(*args: object, **kwargs: object) -> None:
        calls.append(f"{what}: {args[1:2] or args[:1]}")
        raise OSError(f"{what} is not allowed while parsing DAGs")

    return refuse


def _trap_lookup(owner: type, name: str) -> None:
    """Variables and Connections at parse time: in this context Variable.get may fall back to its default without
    opening a socket, so the lookups themselves are trapped."""
    setattr(owner, name, staticmethod(_trap(f"{owner.__name__}.{name}")))


from airflow.models import Variable as ModelVariable  # noqa: E402
from airflow.sdk import BaseHook, Connection, Variable  # noqa: E402

for owner, name in ((Variable, "get"), (ModelVariable, "get"), (Connection, "get"), (BaseHook, "get_connection")):
    _trap_lookup(owner, name)
socket.socket.connect = _trap("socket.connect")  # type: ignore[method-assign]
socket.socket.connect_ex = _trap("socket.connect_ex")  # type: ignore[method-assign]
socket.create_connection = _trap("socket.create_connection")  # type: ignore[assignment]
subprocess.Popen.__init__ = _trap("subprocess")  # type: ignore[method-assign]

started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
parse_s = time.perf_counter() - started

heavy = ("dbt.cli", "great_expectations", "pandas", "psycopg")
print(
    json.dumps(
        {
            "import_errors": {k: str(v)[-2000:] for k, v in bag.import_errors.items()},
            "dags": {
                dag_id: {
                    "doc_md": bool(dag.doc_md),
                    "tags": sorted(dag.tags),
                    "schedule": str(dag.schedule),
                    "asset_schedule": sorted(a.uri for a in getattr(dag.schedule, "objects", ())),
                    "catchup": dag.catchup,
                    "max_active_runs": dag.max_active_runs,
                    "recovery_alerts": len(dag.on_success_callback or []),
                    "deadlines": [
                        {"interval": d.interval.total_seconds(), "callback": d.callback.path}
                        for d in (dag.deadline if isinstance(dag.deadline, list) else [dag.deadline])
                        if d is not None
                    ],
                    "tasks": [
                        {
                            "task_id": t.task_id,
                            "owner": t.owner,
                            "retries": t.retries,
                            "retry_backoff": float(t.retry_exponential_backoff or 0),
                            "max_retry_delay": t.max_retry_delay.total_seconds() if t.max_retry_delay else None,
                            "failure_alerts": len(t.on_failure_callback or []),
                            "execution_timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                            "upstream": sorted(t.upstream_task_ids),
                            "mapped": t.is_mapped,
                            "pool": t.pool,
                            "trigger_rule": getattr(t.trigger_rule, "value", t.trigger_rule),
                            "teardown": t.is_teardown,
                            "priority_weight": t.priority_weight,
                            "outlets": sorted(getattr(o, "uri", None) or getattr(o, "name", "") for o in t.outlets),
                            "pre_execute": getattr(getattr(t, "_pre_execute_hook", None), "__qualname__", None),
                            "operator": type(t).__name__,
                            "cache_dir": str(t.cache_dir) if getattr(t, "cache_dir", None) else None,
                        }
                        for t in dag.tasks
                    ],
                }
                for dag_id, dag in bag.dags.items()
            },
            "trapped_calls": calls,
            "heavy_modules_imported": sorted(
                m
                for m in sys.modules
                if m.split(".")[0] in {h.split(".")[0] for h in heavy}
                and any(m == h or m.startswith(h + ".") for h in heavy)
            ),
            "seconds": {"import_airflow": import_airflow_s, "parse": parse_s},
        }
    )
)
