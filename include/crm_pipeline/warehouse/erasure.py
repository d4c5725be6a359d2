"""GDPR erasure of one person: every record of them, and every link to them, from raw to the published marts.

A person is found by email (normalised as the models normalise it) or by one CRM id. Their other records follow:
every record that shares a normalised email with one found is the same person, in either CRM, as identity
resolution decides.

Policy:

* records *of* the person are deleted: their contacts and leads in raw, and their rows in the people models and
  ``dim_contacts``. So are records *about* them: their activities (HubSpot engagements, Salesforce tasks) and those
  activities' rows downstream, because an activity's subject and body are personal data.
* links *to* the person from business records are cut and the records kept: a deal or a company keeps its amount
  and stage, and loses the person's id from its ``contacts`` list; ``contact_key`` or ``contact_id`` becomes null in
  opportunities and in the deals snapshot. Removing a deal because one of its contacts asked to be forgotten would
  corrupt revenue figures for everyone else.
* quarantine rows that point at deleted raw rows go with them. The simulator's ground truth for the person goes too.

Every statement on a table runs as the role that owns the table (``SET LOCAL ROLE``; the owner login is a member
of the loader and the transformer, ``roles.py``). A trigger, a row-security policy or a generated column that a
pipeline role put on its own table therefore runs with that role's rights, never the owner login's (issue 28: a
trigger the transformer planted ran ``COPY … TO PROGRAM`` as the superuser). A table owned by a role the erasure
cannot act as is refused, naming it.

Everything happens in one transaction, registered with the transform lease like any replacing write. A running
transform's audit therefore never sees half an erasure. The audit log records the request's run, how the person was
identified (``email`` or ``crm_id``) and the counts per table, never the values. Running the same erasure again
finds nothing and changes nothing.

The source CRMs must erase the person too, or their next sync delivers them again. That is an operational step
(docs/security.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import psycopg
from psycopg import sql

from crm_pipeline.errors import CrmPipelineError
from crm_pipeline.warehouse import audit_log, pii
from crm_pipeline.warehouse.ddl import table_exists
from crm_pipeline.warehouse.erasure_request import ErasureRequestError, checked_request
from crm_pipeline.warehouse.transform_lease import replacing_write

__all__ = ["Erasure", "ErasureOwnerError", "ErasureRequestError", "erase_person"]

# Raw streams whose rows are people: (schema, table, id column, email column).
PERSON_TABLES = (
    ("raw_hubspot", "contacts", "id", "properties_email"),
    ("raw_salesforce", "Contact", "Id", "Email"),
    ("raw_salesforce", "Lead", "Id", "Email"),
)
# Raw streams whose rows are activities with a person: (schema, table, column holding the person's id, is a list).
ACTIVITY_TABLES = (
    ("raw_hubspot", "engagements", "associations_contactIds", True),
    ("raw_salesforce", "Task", "WhoId", False),
)
# Raw business records that list their contacts: the person's id is removed from the list.
CONTACT_LISTS = (("raw_hubspot", "deals", "contacts"), ("raw_hubspot", "companies", "contacts"))
# dbt's tables of people and of activities, staging's included (tables, not views): matching rows are deleted.
PERSON_MODELS = (
    "stg_hubspot__contacts",
    "stg_salesforce__contacts",
    "stg_salesforce__leads",
    "int_people__unioned",
    "int_people__resolved",
    "dim_contacts",
)
ACTIVITY_MODELS = ("stg_hubspot__engagements", "stg_salesforce__tasks", "int_activities__unioned", "fct_activities")
# Columns that identify a person in dbt's tables, and what they hold.
KEY_COLUMNS = ("contact_key",)
ID_COLUMNS = (
    "source_person_id",
    "contact_id",
    "lead_id",
    "who_id",
    "merged_contact_id",
    "surviving_contact_id",
    "hubspot_contact_id",
    "salesforce_contact_id",
    "salesforce_lead_id",
)
EMAIL_COLUMNS = ("email",)
DBT_SCHEMAS = ("staging", "snapshots", "marts_build", "marts")
ERASURE_LOCK_KEY = 0x43524D02  # one erasure at a time


class ErasureOwnerError(CrmPipelineError):
    """A table the erasure must change is owned by a role it cannot act as."""


@contextmanager
def as_table_owner(conn: psycopg.Connection, schema: str, table: str) -> Iterator[None]:
    """Run the statements inside as the role that owns ``schema.table``, so that code its owner attached to it
    (triggers, policies, generated columns) runs with that role's rights and no more. Inside a transaction."""
    row = conn.execute(
        "select pg_get_userbyid(c.relowner), c.relowner = (select oid from pg_roles where rolname = current_user),"
        " pg_has_role(current_user, c.relowner, 'MEMBER')"
        " from pg_class c where c.oid = to_regclass(format('%%I.%%I', %s::text, %s::text))",
        (schema, table),
    ).fetchone()
    if row is None or row[1]:  # gone, or the login's own table
        yield
        return
    owner, _, member = row
    if not member:
        raise ErasureOwnerError(
            f"{schema}.{table} is owned by {owner!r}, a role this login cannot act as: the erasure will not run"
            " its statements on that table with this login's rights"
        )
    conn.execute(sql.SQL("set local role {}").format(sql.Identifier(owner)))
    yield  # on an error the transaction rolls back, and the role with it: a reset would only mask the error
    conn.execute("reset role")


@dataclass
class Erasure:
    identified_by: Literal["email", "crm_id"]
    records_found: int = 0
    deleted: dict[str, int] = field(default_factory=dict)
    unlinked: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> int:
        return sum(self.deleted.values()) + sum(self.unlinked.values())

    def summary(self) -> dict[str, object]:
        """Counts only: this goes to the audit log and to XCom."""
        return {
            "identified_by": self.identified_by,
            "records_found": self.records_found,
            "rows_deleted": {k: v for k, v in self.deleted.items() if v},
            "links_removed": {k: v for k, v in self.unlinked.items() if v},
            "changed": self.changed,
        }


def _normalised(email_column: str) -> sql.Composed:
    """An email as the models normalise it (``normalize_email``): lower case, trimmed, empty as null."""
    return sql.SQL("nullif(lower(trim({})), '')").format(sql.Identifier(email_column))


def _person_match(id_column: str, email_column: str) -> sql.Composed:
    return sql.SQL("{}::text = any(%(ids)s) or {} = any(%(emails)s)").format(
        sql.Identifier(id_column), _normalised(email_column)
    )


def _find(conn: psycopg.Connection, emails: set[str], ids: set[str]) -> tuple[set[str], set[str]]:
    """The person's normalised emails and source ids, from raw and from the people models (which still hold them
    when raw was already erased by an earlier, interrupted request)."""
    found_emails, found_ids = set(emails), set(ids)
    sources = [*PERSON_TABLES, ("staging", "int_people__unioned", "source_person_id", "email")]
    for _ in range(2):  # an id leads to an email, which leads to the person's records in the other CRM
        for schema, table, id_column, email_column in sources:
            if not table_exists(conn, schema, table):
                continue
            query = sql.SQL("select {}::text, {} from {} where {}").format(
                sql.Identifier(id_column),
                _normalised(email_column),
                sql.Identifier(schema, table),
                _person_match(id_column, email_column),
            )
            with as_table_owner(conn, schema, table):
                rows = conn.execute(query, {"ids": sorted(found_ids), "emails": sorted(found_emails)}).fetchall()
            found_ids |= {r[0] for r in rows if r[0]}
            found_emails |= {r[1] for r in rows if r[1]}
    return found_emails, found_ids


def _keys(conn: psycopg.Connection, emails: set[str], ids: set[str]) -> set[str]:
    keys = set()
    for schema, table in (
        ("staging", "int_people__resolved"),
        ("marts", "dim_contacts"),
        ("marts_build", "dim_contacts"),
    ):
        if not table_exists(conn, schema, table):
            continue
        id_match = sql.SQL("source_person_id = any(%(ids)s)") if table.startswith("int_") else sql.SQL("false")
        with as_table_owner(conn, schema, table):
            rows = conn.execute(
                sql.SQL("select contact_key from {} where email = any(%(emails)s) or {}").format(
                    sql.Identifier(schema, table), id_match
                ),
                {"emails": sorted(emails), "ids": sorted(ids)},
            ).fetchall()
        keys |= {r[0] for r in rows if r[0]}
    return keys


def _pseudonyms(conn: psycopg.Connection, emails: set[str]) -> tuple[set[str], set[str]]:
    """The person's emails and contact keys as the marts hold them: keyed hashes (``warehouse/pii.py``). They find
    the person in the marts even when an interrupted erasure already removed them from staging."""
    if not emails or pii.key_installed_at(conn) is None:
        return set(), set()
    rows = conn.execute(
        "select crm_pii.pseudonymise(e), crm_pii.pseudonymise('email:' || e) from unnest(%s::text[]) as e",
        (sorted(emails),),
    ).fetchall()
    return {r[0] for r in rows}, {r[1] for r in rows}


def _columns(conn: psycopg.Connection, schema: str) -> dict[str, set[str]]:
    rows = conn.execute(
        "select c.table_name, c.column_name from information_schema.columns c join information_schema.tables t"
        " on t.table_schema = c.table_schema and t.table_name = c.table_name"
        " where c.table_schema = %s and t.table_type = 'BASE TABLE'",
        (schema,),
    ).fetchall()
    tables: dict[str, set[str]] = {}
    for table, column in rows:
        tables.setdefault(table, set()).add(column)
    return tables


def _erase_raw(conn: psycopg.Connection, erasure: Erasure, emails: set[str], ids: set[str]) -> list[str]:
    raw_ids: list[str] = []
    params = {"ids": sorted(ids), "emails": sorted(emails)}
    for schema, table, id_column, email_column in PERSON_TABLES:
        if table_exists(conn, schema, table):
            query = sql.SQL("delete from {} where {} returning _airbyte_raw_id::text").format(
                sql.Identifier(schema, table), _person_match(id_column, email_column)
            )
            with as_table_owner(conn, schema, table):
                rows = conn.execute(query, params).fetchall()
            erasure.deleted[f"{schema}.{table}"] = len(rows)
            raw_ids += [r[0] for r in rows]
    for schema, table, column, is_list in ACTIVITY_TABLES:
        if table_exists(conn, schema, table):
            match = (
                sql.SQL("exists (select 1 from jsonb_array_elements({c}) e where e #>> '{{}}' = any(%(ids)s))")
                if is_list
                else sql.SQL("{c} = any(%(ids)s)")
            ).format(c=sql.Identifier(column))
            query = sql.SQL("delete from {} where {} returning _airbyte_raw_id::text").format(
                sql.Identifier(schema, table), match
            )
            with as_table_owner(conn, schema, table):
                rows = conn.execute(query, params).fetchall()
            erasure.deleted[f"{schema}.{table}"] = len(rows)
            raw_ids += [r[0] for r in rows]
    for schema, table, column in CONTACT_LISTS:
        if table_exists(conn, schema, table):
            c = sql.Identifier(column)
            with as_table_owner(conn, schema, table):
                erasure.unlinked[f"{schema}.{table}"] = _unlink_from_list(conn, schema, table, c, params)
    return raw_ids


def _unlink_from_list(
    conn: psycopg.Connection, schema: str, table: str, c: sql.Identifier, params: dict[str, list[str]]
) -> int:
    return conn.execute(
        sql.SQL(
            "update {t} set {c} = (select coalesce(jsonb_agg(e), '[]'::jsonb) from jsonb_array_elements({c}) e"
            " where not e #>> '{{}}' = any(%(ids)s))"
            " where jsonb_typeof({c}) = 'array'"
            " and exists (select 1 from jsonb_array_elements({c}) e where e #>> '{{}}' = any(%(ids)s))"
        ).format(t=sql.Identifier(schema, table), c=c),
        params,
    ).rowcount


def _erase_models(conn: psycopg.Connection, erasure: Erasure, emails: set[str], ids: set[str], keys: set[str]) -> None:
    values = {"keys": sorted(keys), "ids": sorted(ids), "emails": sorted(emails)}
    for schema in DBT_SCHEMAS:
        for table, columns in sorted(_columns(conn, schema).items()):
            matches = [sql.SQL("{} = any(%(keys)s)").format(sql.Identifier(c)) for c in KEY_COLUMNS if c in columns]
            matches += [
                sql.SQL("{}::text = any(%(ids)s)").format(sql.Identifier(c)) for c in ID_COLUMNS if c in columns
            ]
            matches += [
                sql.SQL("lower({}) = any(%(emails)s)").format(sql.Identifier(c)) for c in EMAIL_COLUMNS if c in columns
            ]
            if not matches:
                continue
            with as_table_owner(conn, schema, table):
                _erase_model(conn, erasure, schema, table, columns, matches, values)


def _erase_model(
    conn: psycopg.Connection,
    erasure: Erasure,
    schema: str,
    table: str,
    columns: set[str],
    matches: list[sql.Composed],
    values: dict[str, list[str]],
) -> None:
    """Delete the person's rows from a table of people or activities; cut the links to them from any other."""
    target = sql.Identifier(schema, table)
    if table in PERSON_MODELS or table in ACTIVITY_MODELS:
        erasure.deleted[f"{schema}.{table}"] = conn.execute(
            sql.SQL("delete from {} where {}").format(target, sql.SQL(" or ").join(matches)), values
        ).rowcount
        return
    unlinked = 0
    for column in [c for c in (*KEY_COLUMNS, *ID_COLUMNS) if c in columns]:
        values_key = "keys" if column in KEY_COLUMNS else "ids"
        unlinked += conn.execute(
            sql.SQL("update {t} set {c} = null where {c}::text = any(%({v})s)").format(
                t=target, c=sql.Identifier(column), v=sql.SQL(values_key)
            ),
            values,
        ).rowcount
    erasure.unlinked[f"{schema}.{table}"] = unlinked


def erase_person(
    conn: psycopg.Connection,
    *,
    email: str | None = None,
    crm_id: str | None = None,
    run_id: str | None = None,
    wait: timedelta = timedelta(minutes=20),
) -> Erasure:
    """Erase the person with this ``email`` or this ``crm_id`` (exactly one); record it; return the counts."""
    email, crm_id = checked_request(email, crm_id)
    erasure = Erasure("email" if email else "crm_id")
    audit_log.ensure_audit_log(conn)
    tables = [t[:2] for t in (*PERSON_TABLES, *ACTIVITY_TABLES, *CONTACT_LISTS)]
    streams = [f"{schema.removeprefix('raw_')}.{table}" for schema, table in tables]  # the stream keys it rewrites
    holder = f"erasure {run_id or 'manual'}"
    with replacing_write(conn, holder, streams, expires_in=timedelta(minutes=30), wait=wait), conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (ERASURE_LOCK_KEY,))
        emails, ids = _find(conn, {email} if email else set(), {crm_id} if crm_id else set())
        hashed_emails, hashed_keys = _pseudonyms(conn, emails)
        keys = _keys(conn, emails | hashed_emails, ids) | hashed_keys
        erasure.records_found = len(ids)
        raw_ids = _erase_raw(conn, erasure, emails, ids)
        if table_exists(conn, "crm_audit", "quarantine"):
            with as_table_owner(conn, "crm_audit", "quarantine"):
                erasure.deleted["crm_audit.quarantine"] = conn.execute(
                    "delete from crm_audit.quarantine where raw_id::text = any(%s)", (raw_ids,)
                ).rowcount
        if table_exists(conn, "crm_simulator", "identity"):
            with as_table_owner(conn, "crm_simulator", "identity"):
                erasure.deleted["crm_simulator.identity"] = conn.execute(
                    "delete from crm_simulator.identity where source_id = any(%s)", (sorted(ids),)
                ).rowcount
        _erase_models(conn, erasure, emails | hashed_emails, ids, keys)
        audit_log.record_event(conn, "erasure", "person", run_id=run_id, details=erasure.summary())
    return erasure
