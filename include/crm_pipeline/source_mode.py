"""Where the streams come from: Airbyte (a deployment's default) or the local CRM simulator (demo and tests).

Fails closed. One setting, ``CRM_SOURCE_MODE``, decides per deployment; unset means Airbyte, so a forgotten
connection Variable fails its extract run naming the Variable, rather than loading contract-valid synthetic rows
into the marts. In simulator mode a connection whose Variable holds an Airbyte connection id still syncs through
Airbyte (one connection tried against a real Airbyte); in Airbyte mode no stream is simulated.

``crm warehouse grants`` records the mode in the warehouse itself (``ALTER DATABASE … SET crm.source_mode``,
which only the database's owner may change and every session reads), and the simulator refuses to write into a
warehouse recorded for Airbyte, whatever a process's environment says.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

from crm_pipeline.errors import CrmPipelineError

if TYPE_CHECKING:  # DAG files import this module; parsing imports no database driver
    import psycopg

MODE_VARIABLE = "CRM_SOURCE_MODE"
SETTING = "crm.source_mode"
AIRBYTE: Literal["airbyte"] = "airbyte"
SIMULATOR: Literal["simulator"] = "simulator"
Mode = Literal["airbyte", "simulator"]


class SourceModeError(CrmPipelineError):
    """The mode is not one of the two, or the simulator was asked to write into an Airbyte warehouse."""


def source_mode(environ: dict[str, str] | os._Environ[str] = os.environ) -> Mode:
    """The deployment's mode: ``CRM_SOURCE_MODE``, Airbyte when unset."""
    text = environ.get(MODE_VARIABLE, "").strip().lower() or AIRBYTE
    if text == AIRBYTE:
        return AIRBYTE
    if text == SIMULATOR:
        return SIMULATOR
    raise SourceModeError(f"{MODE_VARIABLE} must be {AIRBYTE!r} or {SIMULATOR!r}, got {text!r}")


def record(conn: psycopg.Connection, mode: Mode) -> None:
    """Mark the warehouse for ``mode`` (the grants step, as the database's owner); sessions opened from now on
    read it."""
    from psycopg import sql

    conn.execute(
        sql.SQL("alter database {} set {} = {}").format(
            sql.Identifier(conn.info.dbname), sql.SQL(SETTING), sql.Literal(mode)
        )
    )


def recorded(conn: psycopg.Connection) -> str | None:
    """The mode the warehouse was marked for, or None where grants never recorded one."""
    row = conn.execute("select current_setting(%s, true)", (SETTING,)).fetchone()
    return (row[0] or None) if row else None


def refuse_simulated_writes(conn: psycopg.Connection) -> None:
    """Stop the simulator before it writes into a warehouse marked for Airbyte."""
    if recorded(conn) == AIRBYTE:
        raise SourceModeError(
            f"the simulator does not write into warehouse {conn.info.dbname!r}: `crm warehouse grants` marked it for"
            f" Airbyte ({SETTING} = 'airbyte'). Sync it through Airbyte, or run the grants again with"
            f" {MODE_VARIABLE}=simulator if it is a development warehouse"
        )
