"""Airflow UI plugin: the CRM pipeline health page (freshness, gate verdicts, volumes), live from the warehouse,
under Browse → CRM pipeline health. The page itself: ``crm_pipeline/monitoring/health_app.py``.

Airflow loads plugins in every process that touches lineage, the DAG processor and each task included, but only
the api-server serves the page. So the plugin mounts a small ASGI app that imports the page (FastAPI and the
api-server's security module, about half a second) on its first request, not at import.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/crm"
PATH = "/health"  # the page's route in health_app; a unit test keeps the two equal

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class HealthPageApp:
    """The health page's FastAPI app, imported when the api-server first routes a request (or lifespan) to it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from crm_pipeline.monitoring.health_app import app

        await app(scope, receive, send)

    def __repr__(self) -> str:  # what Airflow's plugins endpoint shows for the app
        return "crm_pipeline.monitoring.health_app:app"


class CrmHealthPlugin(AirflowPlugin):
    name = "crm_health"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": HealthPageApp(), "url_prefix": URL_PREFIX, "name": "CRM pipeline health"}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "CRM pipeline health",
            "href": f"{URL_PREFIX}{PATH}",
            "destination": "nav",
            "category": "Browse",
            "url_route": "crm-health",
        }
    ]
