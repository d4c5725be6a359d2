"""The health page inside Airflow's UI: a small FastAPI app the api-server mounts (``plugins/crm_health.py``).

It renders the page from the run audit on each request, so the UI never shows a stale file, and answers only a
signed-in Airflow user (Airflow's own ``get_user`` dependency: the UI's session cookie or a bearer token). The
warehouse is the ``crm_warehouse_auditor`` connection (the audit tables, read-only), read the way the api-server
reads any connection.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

from crm_pipeline.paths import AUDITOR_CONN_ID

PATH = "/health"

app = FastAPI(title="CRM pipeline health", docs_url=None, redoc_url=None, openapi_url=None)


def _warehouse_libpq() -> str:
    from airflow.models.connection import Connection

    from crm_pipeline.warehouse.locate import url_from_connection

    return url_from_connection(Connection.get_connection_from_secrets(AUDITOR_CONN_ID)).libpq()


@app.get(PATH, response_class=HTMLResponse, dependencies=[Depends(get_user)])
def health_page() -> str:
    import psycopg

    from crm_pipeline.catalogue import default_catalogue
    from crm_pipeline.monitoring.health_page import render_health_page

    with psycopg.connect(_warehouse_libpq(), connect_timeout=10) as conn:
        return render_health_page(conn, default_catalogue().enabled(), now=datetime.now(UTC))
