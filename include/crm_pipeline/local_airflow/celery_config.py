"""The Celery configuration of the local cluster: Airflow's default, plus the modules each worker imports once
at start-up, before it forks its pool (``preload.py``). Named by ``[celery] celery_config_options``."""

from __future__ import annotations

from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

from crm_pipeline.local_airflow.preload import PRELOAD_MODULES

# Celery imports ``imports`` in the worker's main process (its loader's ``init_worker``), so every pool process,
# and every task process a pool process forks, inherits them. Other processes never import them.
CELERY_CONFIG: dict[str, Any] = {**DEFAULT_CELERY_CONFIG, "imports": PRELOAD_MODULES}
