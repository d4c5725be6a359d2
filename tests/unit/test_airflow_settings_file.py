"""airflow_settings.yaml (the Astro CLI's file) parses into connections, pools and variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_pipeline.errors import AirflowSettingsError
from crm_pipeline.local_airflow.settings_file import read_settings
from crm_pipeline.paths import AIRFLOW_SETTINGS_FILE


def test_project_file_declares_pools_and_simulator_variables() -> None:
    settings = read_settings(AIRFLOW_SETTINGS_FILE)
    assert {p.name for p in settings.pools} >= {"warehouse", "dbt"}
    assert {v.key for v in settings.variables} >= {"crm_simulator_seed", "crm_simulator_scale"}
    assert all(c.password is None for c in settings.connections), "no passwords in the repo"


def test_astro_format_with_placeholders_and_json_extra(tmp_path: Path) -> None:
    path = tmp_path / "airflow_settings.yaml"
    path.write_text(
        "airflow:\n"
        "  connections:\n"
        "    - conn_id: alerts_webhook\n"
        "      conn_type: http\n"
        "      conn_host: 127.0.0.1\n"
        "      conn_port: 9000\n"
        '      conn_extra: \'{"endpoint": "/hook"}\'\n'
        "    - conn_id:\n"
        "      conn_type:\n"
        "  pools:\n"
        "    - pool_name: airbyte\n"
        "      pool_slot: 2\n"
        "      pool_description: Airbyte jobs\n"
        "  variables:\n"
        "    - variable_name: batch\n"
        "      variable_value: {size: 10}\n"
    )
    settings = read_settings(path)
    (conn,) = settings.connections  # the empty placeholder entry is skipped, as the Astro CLI does
    assert (conn.conn_id, conn.host, conn.port, conn.extra) == (
        "alerts_webhook",
        "127.0.0.1",
        9000,
        {"endpoint": "/hook"},
    )
    assert settings.pools[0].slots == 2
    assert settings.variables[0].value == '{"size": 10}'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("connections: []", "top level must be a mapping with an 'airflow' key"),
        (
            "airflow:\n  pools:\n    - pool_name: p\n      pool_slot: 0\n",
            "pool 'p' needs pool_name and a positive",
        ),
        (
            "airflow:\n  connections:\n    - conn_id: c\n      conn_hots: x\n",
            "connection 'c': unknown keys ['conn_hots']",
        ),
        ("airflow:\n  variables: {a: 1}\n", "airflow.variables must be a list"),
    ],
)
def test_bad_entries_are_named(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "airflow_settings.yaml"
    path.write_text(body)
    with pytest.raises(AirflowSettingsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_settings(path)
