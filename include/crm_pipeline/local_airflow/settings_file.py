"""Read ``airflow_settings.yaml`` (the file the Astro CLI reads) and load it into Airflow's metadata DB.

The Astro CLI pushes this file through Airflow's REST API on ``astro dev start``; without Docker we load
the same entries with Airflow's own models, so one file serves both. Parsing is separate from loading so
that unit tests can check the file without a metadata DB.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crm_pipeline.errors import AirflowSettingsError
from crm_pipeline.paths import AIRFLOW_SETTINGS_FILE

_CONN_FIELDS = {
    "conn_id",
    "conn_type",
    "conn_host",
    "conn_schema",
    "conn_login",
    "conn_password",
    "conn_port",
    "conn_extra",
    "conn_uri",
    "conn_description",
}


@dataclass(frozen=True)
class ConnectionEntry:
    conn_id: str
    conn_type: str | None
    host: str | None = None
    schema: str | None = None
    login: str | None = None
    password: str | None = None
    port: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    uri: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class PoolEntry:
    name: str
    slots: int
    description: str


@dataclass(frozen=True)
class VariableEntry:
    key: str
    value: str


@dataclass(frozen=True)
class AirflowSettings:
    connections: tuple[ConnectionEntry, ...]
    pools: tuple[PoolEntry, ...]
    variables: tuple[VariableEntry, ...]


def _entries(section: Any, what: str, path: Path) -> list[dict[str, Any]]:
    if section is None:
        return []
    if not isinstance(section, list) or not all(isinstance(e, dict) for e in section):
        raise AirflowSettingsError(f"{path.name}: airflow.{what} must be a list of mappings")
    # The Astro scaffold ships placeholder entries with every value empty; they mean "nothing here".
    return [e for e in section if any(v not in (None, "") for v in e.values())]


def read_settings(path: Path = AIRFLOW_SETTINGS_FILE) -> AirflowSettings:
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise AirflowSettingsError(f"{path}: cannot read: {exc}") from None
    root = document.get("airflow") if isinstance(document, dict) else None
    if not isinstance(root, dict):
        raise AirflowSettingsError(f"{path.name}: top level must be a mapping with an 'airflow' key")

    connections = []
    for entry in _entries(root.get("connections"), "connections", path):
        unknown = set(entry) - _CONN_FIELDS
        conn_id = entry.get("conn_id")
        if not conn_id:
            raise AirflowSettingsError(f"{path.name}: a connection has no conn_id")
        if unknown:
            raise AirflowSettingsError(f"{path.name}: connection {conn_id!r}: unknown keys {sorted(unknown)}")
        extra = entry.get("conn_extra") or {}
        if isinstance(extra, str):
            try:
                extra = json.loads(extra)
            except json.JSONDecodeError:
                raise AirflowSettingsError(f"{path.name}: connection {conn_id!r}: conn_extra is not JSON") from None
        port = entry.get("conn_port")
        connections.append(
            ConnectionEntry(
                conn_id=conn_id,
                conn_type=entry.get("conn_type"),
                host=entry.get("conn_host"),
                schema=entry.get("conn_schema"),
                login=entry.get("conn_login"),
                password=entry.get("conn_password"),
                port=int(port) if port not in (None, "") else None,
                extra=extra,
                uri=entry.get("conn_uri"),
                description=entry.get("conn_description"),
            )
        )

    pools = []
    for entry in _entries(root.get("pools"), "pools", path):
        name, slots = entry.get("pool_name"), entry.get("pool_slot")
        if not name or not isinstance(slots, int) or slots < 1:
            raise AirflowSettingsError(f"{path.name}: pool {name!r} needs pool_name and a positive pool_slot")
        pools.append(PoolEntry(name, slots, entry.get("pool_description") or ""))

    variables = []
    for entry in _entries(root.get("variables"), "variables", path):
        key = entry.get("variable_name")
        if not key:
            raise AirflowSettingsError(f"{path.name}: a variable has no variable_name")
        value = entry.get("variable_value")
        variables.append(VariableEntry(key, value if isinstance(value, str) else json.dumps(value)))
    return AirflowSettings(tuple(connections), tuple(pools), tuple(variables))


def env_overridden(conn_id: str) -> bool:
    """Airflow reads ``AIRFLOW_CONN_<ID>`` before the metadata DB; such a connection is not loaded."""
    return f"AIRFLOW_CONN_{conn_id.upper()}" in os.environ


def load_into_airflow(settings: AirflowSettings) -> list[str]:
    """Upsert every entry into the metadata DB; return one line per entry for the caller to print."""
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    report: list[str] = []
    with create_session() as session:
        for pool in settings.pools:
            # Deferred tasks count: the `airbyte` pool caps Airbyte jobs, which wait deferred.
            Pool.create_or_update_pool(pool.name, pool.slots, pool.description, include_deferred=True, session=session)
            report.append(f"pool {pool.name}: {pool.slots} slots")
        existing = {key for (key,) in session.query(Variable.key).all()}
        for var in settings.variables:
            # Defaults only: a value an operator set (an Airbyte connection id, a tuned threshold) is kept.
            if var.key in existing:
                report.append(f"variable {var.key}: kept its current value")
                continue
            Variable.set(var.key, var.value, session=session)
            report.append(f"variable {var.key}")
        for entry in settings.connections:
            if env_overridden(entry.conn_id):
                report.append(f"connection {entry.conn_id}: from AIRFLOW_CONN_{entry.conn_id.upper()} (env wins)")
                continue
            conn = (
                Connection(conn_id=entry.conn_id, uri=entry.uri)
                if entry.uri
                else Connection(
                    conn_id=entry.conn_id,
                    conn_type=entry.conn_type,
                    host=entry.host,
                    schema=entry.schema,
                    login=entry.login,
                    password=entry.password,
                    port=entry.port,
                    extra=entry.extra or None,
                    description=entry.description,
                )
            )
            existing = session.query(Connection).filter(Connection.conn_id == entry.conn_id).one_or_none()
            if existing is not None:
                session.delete(existing)
                session.flush()
            session.add(conn)
            report.append(f"connection {entry.conn_id}")
    return report
