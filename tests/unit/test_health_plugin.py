"""The UI plugin mounts the health page without importing it: plugins load in every Airflow process."""

from __future__ import annotations

import subprocess
import sys

from fastapi import FastAPI
from fastapi.testclient import TestClient

from crm_pipeline.paths import PROJECT_DIR

PLUGINS = PROJECT_DIR / "plugins"
PAGE_MODULE = "crm_pipeline.monitoring.health_app"


def test_importing_the_plugin_leaves_the_page_and_the_api_servers_security_unloaded() -> None:
    probe = (
        f"import sys; sys.path.insert(0, {str(PLUGINS)!r}); import crm_health; "
        f"print({PAGE_MODULE!r} in sys.modules, 'airflow.api_fastapi.core_api.security' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split()[-2:] == ["False", "False"]


def test_the_mounted_app_serves_the_real_page_behind_airflows_login() -> None:
    sys.path.insert(0, str(PLUGINS))
    try:
        import crm_health
    finally:
        sys.path.remove(str(PLUGINS))
    from crm_pipeline.monitoring import health_app

    assert crm_health.PATH == health_app.PATH
    root = FastAPI()
    root.mount(crm_health.URL_PREFIX, crm_health.HealthPageApp())
    response = TestClient(root).get(f"{crm_health.URL_PREFIX}{crm_health.PATH}")
    assert response.status_code == 401  # the page's own dependency (Airflow's get_user) answered
    assert response.json() == {"detail": "Not authenticated"}
    assert repr(crm_health.CrmHealthPlugin.fastapi_apps[0]["app"]) == f"{PAGE_MODULE}:app"
