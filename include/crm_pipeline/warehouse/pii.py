"""Pseudonymising personal data for the marts analysts read: a keyed HMAC computed in the warehouse.

The catalogue gives each PII column a treatment (``hash`` or ``mask``); dbt's ``pii`` macro applies it through the
two functions installed here:

* ``crm_pii.pseudonymise(text)``: HMAC-SHA256 of the value under the pepper, as 64 hex digits. The same email gives
  the same value in every mart, so analysts still count people and join marts, but nobody can tell whose email it
  is, or test a guess, without the pepper. The surrogate keys derived from emails (``contact_key``, ``owner_key``)
  go through it too: an unkeyed md5 of an email is as good as the email to anyone with a list of addresses.
* ``crm_pii.mask(text)``: the first character and ``***``.

The pepper is the password of the Airflow connection ``crm_pii_pepper`` (an env variable or a secrets backend in a
deployment; Airflow masks it in task logs as soon as a task fetches it). It never travels in dbt's SQL: it is
installed once per warehouse as HMAC's two padded keys in ``crm_private.pii_key``, a table only the owner reads, and
``pseudonymise`` runs as its owner (``SECURITY DEFINER``). PostgreSQL's core ``sha256()`` is all HMAC needs
(RFC 2104), so no extension is required. Only the transformer may execute ``pseudonymise``: an analyst who could
call it could hash guesses and compare.

A stored fingerprint of the pepper tells whether the connection still holds the pepper the warehouse hashes with.
A different one is refused (the marts would mix two keys) unless rotating: ``crm warehouse rotate-pepper``, after
which the next transform rebuilds every model (``orchestration/selection.py``).
"""

# ruff: noqa: S608  (the SQL names only this module's constant schemas; values go as parameters)

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from pathlib import Path
from typing import Literal

import psycopg

from crm_pipeline.paths import LOCAL_DIR
from crm_pipeline.warehouse import audit_log
from crm_pipeline.warehouse.ddl import run_ddl, runs_as_pipeline_role

PEPPER_CONN_ID = "crm_pii_pepper"
PEPPER_VARIABLE = "AIRFLOW_CONN_CRM_PII_PEPPER"  # how the local stack hands it to Airflow
LOCAL_PEPPER = LOCAL_DIR / "roles" / "pii_pepper.secret"
PII_SCHEMA = "crm_pii"  # the functions: usage for the transformer
KEY_SCHEMA = "crm_private"  # the key: the owner's only
PSEUDONYMISE = f"{PII_SCHEMA}.pseudonymise(text)"
MASK = f"{PII_SCHEMA}.mask(text)"
KEY_STATE = f"{PII_SCHEMA}.key_state()"  # the installed key's fingerprint and date, for roles that may not read it
MIN_PEPPER_LENGTH = 16
BLOCK_SIZE = 64  # SHA-256's block, in bytes (RFC 2104's B)
KEY_LOCK_KEY = 0x43524D03

# What a treated value looks like, per treatment: the mart audit expects every non-null value to match.
TREATED_PATTERNS = {"hash": r"^[0-9a-f]{64}$", "mask": r"^.?\*\*\*$"}

_DDL = (
    f"create schema if not exists {KEY_SCHEMA}",
    f"revoke all on schema {KEY_SCHEMA} from public",
    f"""create table if not exists {KEY_SCHEMA}.pii_key (
        singleton boolean primary key default true check (singleton),
        inner_pad bytea not null,
        outer_pad bytea not null,
        fingerprint text not null,
        installed_at timestamptz not null default clock_timestamp()
    )""",
    f"revoke all on {KEY_SCHEMA}.pii_key from public",
    f"create schema if not exists {PII_SCHEMA}",
    f"""create or replace function {PII_SCHEMA}.pseudonymise(value text) returns text
        language plpgsql stable strict parallel safe security definer
        set search_path = pg_catalog, pg_temp
    as $fn$
    declare
        key record;
    begin
        select inner_pad, outer_pad into key from {KEY_SCHEMA}.pii_key;
        if not found then
            raise exception 'no PII key in this warehouse: run `crm warehouse grants` with the {PEPPER_CONN_ID}'
                ' connection set (docs/security.md)';
        end if;
        return encode(sha256(key.outer_pad || sha256(key.inner_pad || convert_to(value, 'UTF8'))), 'hex');
    end
    $fn$""",
    f"""create or replace function {PII_SCHEMA}.mask(value text) returns text
        language sql immutable strict parallel safe
    as $fn$ select left(value, 1) || '***' $fn$""",
    f"""create or replace function {KEY_STATE} returns table (fingerprint text, installed_at timestamptz)
        language sql stable security definer set search_path = pg_catalog, pg_temp
    as $fn$ select fingerprint, installed_at from {KEY_SCHEMA}.pii_key $fn$""",
    f"revoke all on function {PSEUDONYMISE} from public",
    f"revoke all on function {MASK} from public",
    f"revoke all on function {KEY_STATE} from public",
)


class PepperError(RuntimeError):
    """The pepper is missing, too short, or not the one the warehouse hashes with."""


def local_pepper(path: Path = LOCAL_PEPPER) -> str:
    """This checkout's pepper, generated once (mode 0600) for the local stack and the tests."""
    if not path.exists():
        from crm_pipeline.warehouse.embedded import write_private

        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        write_private(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


def pii_pepper() -> str:
    """The pepper: the ``crm_pii_pepper`` connection's password, wherever Airflow finds it (a secrets backend, its
    ``AIRFLOW_CONN_CRM_PII_PEPPER`` variable, the metadata DB). In a task Airflow then masks it in the logs, and a
    missing connection fails the task. Outside a task (the CLI, the tests) on a local checkout without one, the
    pepper generated under ``.local/``, which the local Airflow is given too."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        pepper = BaseHook.get_connection(PEPPER_CONN_ID).password
    except AirflowNotFoundException:
        if _in_task():
            raise
        pepper = None
    if not pepper:
        pepper = local_pepper()
    if len(pepper) < MIN_PEPPER_LENGTH:
        raise PepperError(
            f"the {PEPPER_CONN_ID} connection's password is the PII pepper: it needs at least"
            f" {MIN_PEPPER_LENGTH} characters, got {len(pepper)}"
        )
    return pepper


def _in_task() -> bool:
    from airflow.sdk import get_current_context

    try:
        get_current_context()
    except Exception:  # outside a running task Airflow raises (the type differs across versions)
        return False
    return True


def hmac_pads(pepper: str) -> tuple[bytes, bytes]:
    """RFC 2104's inner and outer keys for SHA-256: the pepper (hashed when longer than a block) padded to a
    block and XORed with 0x36 and 0x5c."""
    key = pepper.encode()
    if len(key) > BLOCK_SIZE:
        key = hashlib.sha256(key).digest()
    key = key.ljust(BLOCK_SIZE, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def pseudonymise(pepper: str, value: str) -> str:
    """What ``crm_pii.pseudonymise`` computes, in Python: for tests and for checks against the warehouse."""
    return hmac.new(pepper.encode(), value.encode(), hashlib.sha256).hexdigest()


def fingerprint(pepper: str) -> str:
    """Names the pepper without revealing it: an HMAC of a fixed label under it."""
    return pseudonymise(pepper, "crm pii pepper fingerprint")[:16]


def ensure_functions(conn: psycopg.Connection) -> None:
    run_ddl(conn, _DDL)


Installed = Literal["installed", "unchanged", "rotated"]


def install_key(conn: psycopg.Connection, pepper: str, *, rotate: bool = False) -> Installed:
    """Install the pepper's HMAC keys, once; the same pepper again changes nothing. A different one is refused
    unless ``rotate``: every hashed value in the marts would change under the analysts' feet. A pipeline role (the
    transform) may not install keys: it checks that the installed key is this pepper's (``check_key``)."""
    if runs_as_pipeline_role(conn):
        return check_key(conn, pepper)
    ensure_functions(conn)
    audit_log.ensure_audit_log(conn)
    inner, outer = hmac_pads(pepper)
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (KEY_LOCK_KEY,))
        row = conn.execute(f"select fingerprint, installed_at from {KEY_SCHEMA}.pii_key").fetchone()
        if row is not None and row[0] == fingerprint(pepper):
            return "unchanged"
        if row is not None and not rotate:
            raise _different_pepper(conn, row[1])
        conn.execute(
            f"insert into {KEY_SCHEMA}.pii_key (inner_pad, outer_pad, fingerprint) values (%s, %s, %s)"
            " on conflict (singleton) do update set inner_pad = excluded.inner_pad,"
            " outer_pad = excluded.outer_pad, fingerprint = excluded.fingerprint, installed_at = clock_timestamp()",
            (inner, outer, fingerprint(pepper)),
        )
        outcome: Installed = "installed" if row is None else "rotated"
        audit_log.record_event(conn, "grant", "pii key", details={"key": outcome})
    return outcome


def _different_pepper(conn: psycopg.Connection, installed_at: datetime) -> PepperError:
    return PepperError(
        f"the {PEPPER_CONN_ID} connection holds a different pepper than the one database"
        f" {conn.info.dbname!r} hashes with (installed {installed_at:%Y-%m-%d %H:%M} UTC); to change it on"
        " purpose run `crm warehouse rotate-pepper` (docs/security.md)"
    )


def _key_state(conn: psycopg.Connection) -> tuple[str, datetime] | None:
    if conn.execute("select to_regprocedure(%s)", (KEY_STATE,)).fetchone() == (None,):
        return None
    row = conn.execute(f"select fingerprint, installed_at from {KEY_STATE}").fetchone()
    return (row[0], row[1]) if row else None


def check_key(conn: psycopg.Connection, pepper: str) -> Installed:
    """``unchanged`` when the warehouse hashes with ``pepper``; else why not, as a ``PepperError``."""
    state = _key_state(conn)
    if state is None:
        raise PepperError(
            f"no PII key in database {conn.info.dbname!r}: run the deploy step, `crm warehouse grants`, with the"
            f" {PEPPER_CONN_ID} connection set (docs/security.md)"
        )
    if state[0] != fingerprint(pepper):
        raise _different_pepper(conn, state[1])
    return "unchanged"


def key_installed_at(conn: psycopg.Connection) -> datetime | None:
    """When the current key was installed (a rotation makes the next transform rebuild everything)."""
    state = _key_state(conn)
    return state[1] if state else None
