"""Before any job: read each Airbyte connection and compare it with the catalogue (issue 27).

A connection set up differently from the catalogue breaks later and less clearly: another namespace or a stream
prefix writes tables the gates never read (a missing-table failure), another sync mode, primary key or cursor
silently changes what a raw table holds, a stream selected in Airbyte but not declared here lands without a gate,
and an Airbyte-side schedule starts jobs Airflow does not know about. The connection's destination must be a
Postgres destination writing final (typed) tables into the warehouse's database: with "Disable Final Tables"
(``disable_type_dedupe``) it writes only JSON blobs into ``airbyte_internal``, and none of the raw tables the gates
read. ``problems`` returns one line per mismatch, naming the Variable, the connection (or destination), the stream
and the field; the extract run's first task fails on any.
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


def problems(
    hook: Any, variable: str, connection_id: str, specs: list[StreamSpec], database: str | None = None
) -> list[str]:
    """What differs between the connection Airbyte has (and its destination) and the streams the catalogue gives
    it; ``database`` is the warehouse's, as the loader's Airflow connection names it."""
    from airbyte_api import api

    read = hook.airbyte_api.connections.get_connection(request=api.GetConnectionRequest(connection_id=connection_id))
    connection = read.connection_response
    found = compare(connection, variable, connection_id, specs)
    destination = destination_body(hook, connection.destination_id)
    return found + compare_destination(destination, f"{variable} (Airbyte connection {connection_id})", database)


def destination_body(hook: Any, destination_id: str) -> dict[str, Any]:
    """``GET /v1/destinations/{id}`` as the JSON the server sent.

    The platform strips ``destinationType`` from a configuration when it stores it (``DestinationsController.kt``,
    ``removeDestinationType``) and returns it as stored (``DestinationReadMapper.kt``), while the SDK needs that
    field to choose the configuration's model, so the SDK refuses such a body (airbyte-api-python-sdk issue 114).
    The body is read as sent, from the SDK's answer or from its validation error."""
    from airbyte_api import api, errors

    request = api.GetDestinationRequest(destination_id=destination_id)
    try:
        response = hook.airbyte_api.destinations.get_destination(request=request).raw_response
    except errors.ResponseValidationError as exc:
        response = exc.raw_response
    return dict(response.json())


def compare_destination(body: dict[str, Any], where: str, database: str | None) -> list[str]:
    """The destination settings the raw layer relies on (docs/raw-contract.md), one line per difference."""
    config = body.get("configuration") or {}
    named = f"{where}: destination {body.get('destinationId')}"
    if body.get("destinationType") != "postgres":
        return [f"{named} is {body.get('destinationType')!r}, the raw layer needs 'postgres'"]
    found = []
    if config.get("disable_type_dedupe"):
        found.append(f"{named}: disable_type_dedupe is true (raw JSON only), the raw layer needs final tables")
    if database is not None and config.get("database") != database:
        found.append(f"{named}: database is {config.get('database')!r}, the warehouse is {database!r}")
    return found


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
