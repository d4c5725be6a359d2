"""``make cluster-up``: Airflow's distributed engine on one machine, CeleryExecutor with two Celery workers.

The same components as ``make up`` (api-server, scheduler, dag-processor, triggerer), but the scheduler hands
task instances to Celery through a Redis broker (``broker.py``), and ``airflow celery worker`` processes run them:
the way a deployment scales out (docs/deploy.md). Each worker is a real, separate process tree that can be
killed on its own, which the fault-injection tests do.

Choices, each for a reason:

* the result backend is the metadata database, named explicitly (the provider derives the same from
  ``sql_alchemy_conn`` when unset): task states survive a broker restart;
* the queue is per checkout (``broker.queue_name``), so clusters sharing a Redis never take each other's tasks;
* workers do not serve logs (``--skip-serve-logs``): all components share this machine's ``AIRFLOW_HOME/logs``,
  where the api-server reads them, and two log servers would contend for one port;
* each worker has its own Celery hostname (``worker1@<host>``...), so Celery (and Flower) tell them apart.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from crm_pipeline.local_airflow.broker import Broker, queue_name, resolve_broker
from crm_pipeline.local_airflow.processes import COMPONENTS, ProcessSet
from crm_pipeline.paths import LOCAL_DIR

WORKERS = 2
# Task slots per worker. 2 x 4 = 8, Airflow's parallelism here: the pools (warehouse 4, dbt 4), not the workers, are
# what caps the tasks, as in a deployment (docs/deploy.md, "Scaling workers").
WORKER_CONCURRENCY = 4
SETTINGS_FILE = "cluster.conf"  # JSON, in the run directory while the cluster runs (not *.json: those are pid files)
# A task the broker has not seen acknowledged after this long is handed to another worker, and the first copy
# terminated. Above every task's execution_timeout (the Airbyte sync's, 2 h, is the longest), with room.
VISIBILITY_TIMEOUT_S = 6 * 3600


def worker_name(number: int) -> str:
    return f"celery-worker-{number}"


@dataclass(frozen=True)
class ClusterSettings:
    broker: str
    queue: str
    workers: int = WORKERS
    concurrency: int = WORKER_CONCURRENCY

    def environment(self, metadata_sqlalchemy: str) -> dict[str, str]:
        """What every component, and every ``crm airflow`` command, needs while the cluster runs."""
        return {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": self.broker,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata_sqlalchemy,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.concurrency),
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT_S),
            # Airflow's default Celery configuration, plus the modules a worker preloads for its tasks (preload.py).
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "crm_pipeline.local_airflow.celery_config.CELERY_CONFIG",
        }


def settings_path(run_dir: Path) -> Path:
    return run_dir / SETTINGS_FILE


def read_settings(run_dir: Path) -> ClusterSettings | None:
    """The running cluster's settings, or None when ``make up``'s LocalExecutor (or nothing) runs."""
    try:
        return ClusterSettings(**json.loads(settings_path(run_dir).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_settings(run_dir: Path, settings: ClusterSettings) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    settings_path(run_dir).write_text(json.dumps(settings.__dict__))


def prepare_broker(processes: ProcessSet, workers: int = WORKERS) -> tuple[Broker, ClusterSettings]:
    """Find or start the broker, and record the cluster's settings before any component starts."""
    broker = resolve_broker(processes, LOCAL_DIR / "redis")
    settings = ClusterSettings(broker=broker.url, queue=queue_name(LOCAL_DIR), workers=workers)
    write_settings(processes.run_dir, settings)
    return broker, settings


def component_argv(name: str, airflow: str, settings: ClusterSettings | None, api_port: int) -> list[str]:
    """The command line of one component (``settings``: the cluster's, None for ``make up``). The cluster's
    components run under ``supervise.py``, which starts one again when it exits on its own (the scheduler does
    when its database restarts), as a deployment's process supervisor would."""
    if name == "api-server":
        argv = [airflow, name, "--port", str(api_port), "--host", "127.0.0.1"]
    elif name.startswith("celery-worker-"):
        if settings is None:
            raise ValueError(f"{name}: a Celery worker needs the cluster's settings")
        number = name.rsplit("-", 1)[1]
        argv = [
            airflow, "celery", "worker",
            "--queues", settings.queue,
            "--concurrency", str(settings.concurrency),
            "--celery-hostname", f"worker{number}@%h",
            "--skip-serve-logs",
        ]  # fmt: skip
    elif name in ("scheduler", "triggerer"):
        # Every component shares this machine's log folder, which the api-server reads; their log servers would
        # only serve the same files on all interfaces (Airflow binds them to every address).
        argv = [airflow, name, "--skip-serve-logs"]
    else:
        argv = [airflow, name]
    return argv if settings is None else [sys.executable, "-m", "crm_pipeline.local_airflow.supervise", "--", *argv]


def cluster_components(settings: ClusterSettings) -> list[str]:
    return [*COMPONENTS, *(worker_name(n) for n in range(1, settings.workers + 1))]


def forget(run_dir: Path) -> None:
    settings_path(run_dir).unlink(missing_ok=True)
