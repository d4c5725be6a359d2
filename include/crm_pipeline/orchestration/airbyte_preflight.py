"""Before any job: read each Airbyte connection and compare it with the catalogue (issue 27).

A connection set up differently from the catalogue breaks later and less clearly: another namespace or a stream
prefix writes tables the gates never read (a missing-table failure), another sync mode, primary key or cursor
silently changes what a raw table holds, a stream selected in Airbyte but not declared here lands without a gate,
and an Airbyte-side schedule starts jobs Airflow does not know about. ``problems`` returns one line per mismatch,
naming the Variable, the connection, the stream and the field; the extract run's first task fails on any.
"""

from __future__ import annotations

from typing import Any

from crm_pipeline.catalogue import StreamSpec

# The catalogue's sync modes as the API spells them (``ConnectionSyncModeEnum``).
API_SYNC_MODES = {
    "incremental_append_deduped": "incremental_deduped_history",
    "incremental_append": "incremental_append",
    "full_refresh_overwrite": "full_refresh_overwrite",
}


def problems(hook: Any, variable: str, connection_id: str, specs: list[StreamSpec]) -> list[str]:
    """What differs between the connection Airbyte has and the streams the catalogue gives it."""
    from airbyte_api import api

    read = hook.airbyte_api.connections.get_connection(request=api.GetConnectionRequest(connection_id=connection_id))
    return compare(read.connection_response, variable, connection_id, specs)


def compare(connection: Any, variable: str, connection_id: str, specs: list[StreamSpec]) -> list[str]:
    """``problems`` on a connection already read (the SDK's ``ConnectionResponse``)."""
    where = f"{variable} (Airbyte connection {connection_id})"
    found: list[str] = []

    def differs(what: str, have: Any, want: Any) -> None:
        if have != want:
            found.append(f"{where}: {what} is {have!r}, the catalogue needs {want!r}")

    differs("status", _value(connection.status), "active")
    differs("schedule type", _value(connection.schedule.schedule_type), "manual")  # Airflow alone starts jobs
    differs("namespace definition", _value(connection.namespace_definition), "custom_format")
    differs("namespace format", connection.namespace_format, specs[0].raw_schema)
    differs("stream prefix", connection.prefix or "", "")
    configured = {stream.name: stream for stream in (connection.configurations.streams or [])}
    for spec in specs:
        stream = configured.pop(spec.stream, None)
        if stream is None:
            found.append(f"{where}: stream {spec.key} is not selected in the connection")
            continue
        differs(f"stream {spec.key}: sync mode", _value(stream.sync_mode), API_SYNC_MODES[spec.sync_mode])
        if spec.sync_mode == "incremental_append_deduped":
            differs(f"stream {spec.key}: primary key", stream.primary_key or [], [[key] for key in spec.primary_key])
        if spec.cursor_field and stream.cursor_field:  # empty: the source's own cursor, which the catalogue names
            differs(f"stream {spec.key}: cursor field", stream.cursor_field, [spec.cursor_field])
    for name in sorted(configured):
        found.append(f"{where}: stream {name!r} is selected in the connection but not declared in the catalogue")
    return found


def _value(value: Any) -> Any:
    return getattr(value, "value", value)
