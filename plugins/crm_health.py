"""Airflow UI plugin: the CRM pipeline health page (freshness, gate verdicts, volumes), live from the warehouse,
under Browse → CRM pipeline health. The page itself: ``crm_pipeline/monitoring/health_app.py``."""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from crm_pipeline.monitoring.health_app import PATH, app

URL_PREFIX = "/crm"


class CrmHealthPlugin(AirflowPlugin):
    name = "crm_health"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": app, "url_prefix": URL_PREFIX, "name": "CRM pipeline health"}
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
