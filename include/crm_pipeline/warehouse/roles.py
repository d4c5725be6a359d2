"""Least-privilege warehouse roles, created and kept by the project (``crm warehouse grants``, the deploy step).

Four login roles, each allowed what its job needs and nothing else; every task logs in as one of them through its
own Airflow connection (``crm_warehouse_<role>``, ``warehouse/locate.py``):

* ``crm_loader`` writes the raw schemas (one per CRM) and the simulator's state; it registers its replacing writes
  with the transform lease and records Airbyte jobs. It cannot read staging, marts or the audit tables.
* ``crm_transformer`` reads raw; writes staging, snapshots and the marts (dbt); judges batches and publishes (the
  quarantine and gate tables in ``crm_audit``). It cannot write raw.
* ``crm_analyst`` reads the published marts. Nothing else: not raw, not staging, not ``marts_build`` (unaudited),
  not quarantine or audit.
* ``crm_auditor`` reads ``crm_audit``: gate results, quarantine, verdicts, the audit log; it records the freshness
  checks it makes. Nothing else.

None is a superuser, none may create roles, databases or schemas (the loader holds CREATE on the database, which
Airbyte's destination asks for, and an event trigger refuses every object it would create with it:
``loader_guard.py``). Each owns what it builds and nothing more: the loader its raw tables (as Airbyte's
destination user does: a new source column is an ``ALTER TABLE``), the transformer dbt's relations (dbt replaces
and comments them). The schemas, the ``crm_audit`` tables, the audit log and the functions stay with the role that
runs the grants (the ``crm_warehouse`` connection's user, the owner), installed here first
(``warehouse/structure.py``), so no pipeline role can alter them. The owner is made a member of the loader and the
transformer, which lets it manage what they own (the erasure) and nothing the superuser could not anyway.

One step needs the owner's rights in a pipeline role's task, and gets them through a ``SECURITY DEFINER`` function
that does exactly that step: publishing renames the marts schemas (``crm_audit.swap_marts``, ``publish.py``).

Grants on a schema belong to the schema, not to its name. Publishing swaps ``marts_build`` and ``marts`` by renaming
them, so the swap moves the analyst's access along in the same transaction (``crm_audit.grant_published``).

Passwords: ``CRM_ROLE_PASSWORD_<ROLE>`` (e.g. ``CRM_ROLE_PASSWORD_ANALYST``) when set, as a deployment's secrets
backend provides them; otherwise one is generated once and kept under ``.local/roles/`` (mode 0600). They reach
PostgreSQL as SCRAM verifiers computed client-side, never as plain text in a statement.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from crm_pipeline import source_mode
from crm_pipeline.catalogue import Catalogue, default_catalogue
from crm_pipeline.paths import LOCAL_DIR, WAREHOUSE_CONN_ID
from crm_pipeline.warehouse import audit_log, loader_guard, pii, publish
from crm_pipeline.warehouse.ddl import run_ddl
from crm_pipeline.warehouse.structure import (
    AUDIT_SCHEMA,
    SIMULATOR_SCHEMA,
    TRANSFORM_SCHEMAS,
    install_structure,
    raw_schemas,
)
from crm_pipeline.warehouse.url import WarehouseUrl

ROLES_DIR = LOCAL_DIR / "roles"
PASSWORD_VARIABLE = "CRM_ROLE_PASSWORD_{}"  # noqa: S105  # pragma: allowlist secret (a variable's name)
# The crm_audit tables a load writes: its lease registration, the lease row it locks FOR SHARE, the Airbyte jobs.
LOADER_AUDIT_TABLES = ("raw_writes", "transform_lease", "airbyte_jobs")
LOADER_QUARANTINE = f"{AUDIT_SCHEMA}.quarantine"
CLEAR_QUARANTINE_FUNCTION = "crm_audit.clear_quarantine_of_emptied_stream(text)"  # quality/quarantine.py's
# What the transformer's steps write in crm_audit (gates, quarantine and its releases, verdicts and the cutoff, the
# run audit, the lease, publishes), and the sequences of the tables it appends to. It only reads the rest.
TRANSFORMER_AUDIT_WRITES = {
    "batch_verdicts": "insert, update",
    "gate_results": "insert",
    "validation_results": "insert",
    "quarantine": "insert, delete",
    "releases": "insert",
    "publishes": "insert",
    "stream_runs": "insert, update",
    "transform_cutoff": "insert, update",
    "transform_lease": "insert, update",
    "raw_writes": "insert, update, delete",
}
TRANSFORMER_AUDIT_SEQUENCES = ("gate_results_id_seq", "validation_results_id_seq", "publishes_id_seq")
# The monitor's freshness checks: the one table the auditor writes.
AUDITOR_WRITES = f"{AUDIT_SCHEMA}.freshness_checks"
GRANT_LOCK_KEY = 0x43524D01  # one `grants` at a time per database


@dataclass(frozen=True)
class Role:
    key: str
    name: str
    purpose: str

    @property
    def conn_id(self) -> str:
        """The Airflow connection that logs in as this role."""
        return f"{WAREHOUSE_CONN_ID}_{self.key}"


LOADER = Role("loader", "crm_loader", "writes the raw schemas only")
TRANSFORMER = Role(
    "transformer", "crm_transformer", "reads raw; writes staging, snapshots and marts; gates and publishes"
)
ANALYST = Role("analyst", "crm_analyst", "reads the published marts only")
AUDITOR = Role("auditor", "crm_auditor", "reads the audit and quarantine tables only")
ROLES: tuple[Role, ...] = (LOADER, TRANSFORMER, ANALYST, AUDITOR)


def role(key: str) -> Role:
    for candidate in ROLES:
        if candidate.key == key:
            return candidate
    raise ValueError(f"unknown warehouse role {key!r}; known: {', '.join(r.key for r in ROLES)}")


def role_password(r: Role, roles_dir: Path = ROLES_DIR) -> str:
    """``CRM_ROLE_PASSWORD_<ROLE>``, else the one generated for this checkout under ``.local/roles/``."""
    configured = os.environ.get(PASSWORD_VARIABLE.format(r.key.upper()), "").strip()
    if configured:
        return configured
    from crm_pipeline.warehouse.embedded import write_private

    path = roles_dir / f"{r.key}.password"
    if not path.exists():
        roles_dir.mkdir(parents=True, exist_ok=True)
        roles_dir.chmod(0o700)
        write_private(path, secrets.token_urlsafe(24))
    return path.read_text().strip()


def role_url(warehouse: WarehouseUrl, r: Role) -> WarehouseUrl:
    """The warehouse as the role sees it: same server and database, the role's login."""
    from dataclasses import replace

    return replace(warehouse, user=r.name, password=role_password(r))


def _role_statements(conn: psycopg.Connection, r: Role) -> list[sql.Composable]:
    verifier = conn.pgconn.encrypt_password(role_password(r).encode(), r.name.encode(), b"scram-sha-256")
    name = sql.Identifier(r.name)
    create = sql.SQL("do $$ begin create role {} nologin; exception when duplicate_object then null; end $$").format(
        name
    )
    alter = sql.SQL(
        "alter role {} with login password {} nosuperuser nocreatedb nocreaterole noinherit noreplication nobypassrls"
    ).format(name, sql.Literal(verifier.decode()))
    return [create, alter]


def _schema_grants(schemas: Iterable[str], r: Role, *, write: bool) -> list[sql.Composable]:
    """USAGE (and CREATE when ``write``) on each schema; SELECT (or full DML) on its tables, now and to come."""
    table_privileges = sql.SQL("select, insert, update, delete, truncate" if write else "select")
    statements: list[sql.Composable] = []
    for schema in schemas:
        s, grantee = sql.Identifier(schema), sql.Identifier(r.name)
        statements += [
            sql.SQL("create schema if not exists {}").format(s),
            sql.SQL("grant usage{} on schema {} to {}").format(sql.SQL(", create" if write else ""), s, grantee),
            sql.SQL("grant {} on all tables in schema {} to {}").format(table_privileges, s, grantee),
            sql.SQL("alter default privileges in schema {} grant {} on tables to {}").format(
                s, table_privileges, grantee
            ),
        ]
        if write:
            statements += [
                sql.SQL("grant usage, select, update on all sequences in schema {} to {}").format(s, grantee),
                sql.SQL("alter default privileges in schema {} grant usage, select, update on sequences to {}").format(
                    s, grantee
                ),
            ]
    return statements


def _owned_by(schemas: Iterable[str], r: Role) -> sql.Composable:
    """Hand every table, view and free-standing sequence of ``schemas`` to ``r`` (what it created before the
    roles existed, or what the owner built running the pipeline by hand): it must be able to alter them."""
    return sql.SQL(
        """do $$ declare rel record; begin
        for rel in
            select n.nspname, c.relname, c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where n.nspname = any({}) and c.relkind in ('r', 'p', 'v', 'm', 'S') and c.relowner <> to_regrole({})
              and not exists (select from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid
                              and d.deptype in ('a', 'i'))
        loop
            execute format('alter %s %I.%I owner to %I',
                case rel.relkind when 'v' then 'view' when 'm' then 'materialized view'
                                 when 'S' then 'sequence' else 'table' end,
                rel.nspname, rel.relname, {});
        end loop;
    end $$"""
    ).format(sql.Literal(list(schemas)), sql.Literal(r.name), sql.Literal(r.name))


def _audit_grants_for_transformer() -> list[sql.Composable]:
    """The transformer reads ``crm_audit`` (the audit log aside) and writes exactly the tables its steps write,
    each with only the statements they run: no TRUNCATE, no table it does not write, nothing on tables added later,
    and USAGE (``nextval``) but not UPDATE (``setval``) on the sequences of the tables it appends to. Revokes first,
    so a warehouse granted by an earlier deploy loses what it no longer needs (issue 28)."""
    audit, transformer = sql.Identifier(AUDIT_SCHEMA), sql.Identifier(TRANSFORMER.name)
    statements: list[sql.Composable] = [
        sql.SQL("revoke all on all tables in schema {} from {}").format(audit, transformer),
        sql.SQL("revoke all on all sequences in schema {} from {}").format(audit, transformer),
        sql.SQL("alter default privileges in schema {} revoke all on tables from {}").format(audit, transformer),
        sql.SQL("alter default privileges in schema {} revoke all on sequences from {}").format(audit, transformer),
        sql.SQL("revoke create on schema {} from {}").format(audit, transformer),
        sql.SQL("grant usage on schema {} to {}").format(audit, transformer),
        sql.SQL("grant select on all tables in schema {} to {}").format(audit, transformer),
        sql.SQL("revoke all on crm_audit.audit_log from {}").format(transformer),
    ]
    for table, privileges in TRANSFORMER_AUDIT_WRITES.items():
        statements.append(
            sql.SQL("grant {} on {} to {}").format(
                sql.SQL(privileges), sql.Identifier(AUDIT_SCHEMA, table), transformer
            )
        )
    statements += [
        sql.SQL("grant usage on sequence {} to {}").format(sql.Identifier(AUDIT_SCHEMA, sequence), transformer)
        for sequence in TRANSFORMER_AUDIT_SEQUENCES
    ]
    return statements


def grant_statements(conn: psycopg.Connection, catalogue: Catalogue) -> list[sql.Composable]:
    """Every statement of ``apply_grants``, in order; each one idempotent. The structure must be installed."""
    raw = [*raw_schemas(catalogue), SIMULATOR_SCHEMA]
    built = [*TRANSFORM_SCHEMAS, publish.BUILD_SCHEMA]  # the published marts: read-only to it (settle_marts)
    audit = sql.Identifier(AUDIT_SCHEMA)
    loader, transformer, auditor = (sql.Identifier(r.name) for r in (LOADER, TRANSFORMER, AUDITOR))
    statements: list[sql.Composable] = []
    for r in ROLES:
        statements += _role_statements(conn, r)
    # Nobody but the owner creates objects in the database or in public. The loader holds CREATE on the database
    # for Airbyte's `create schema if not exists`, while an event trigger refuses what it would create with it.
    statements += [
        sql.SQL("revoke create on database {} from public").format(sql.Identifier(conn.info.dbname)),
        sql.SQL("revoke create on schema public from public"),
        loader_guard.database_create(conn, LOADER.name),
    ]
    # The owner manages what the loader and the transformer own (see the module's docstring).
    statements += [sql.SQL("grant {}, {} to current_user").format(loader, transformer)]
    statements += _schema_grants(raw, LOADER, write=True)
    statements += [_owned_by(raw, LOADER)]
    statements += [sql.SQL("grant usage on schema {} to {}").format(audit, loader)]
    statements += [
        sql.SQL("grant select, insert, update, delete on {} to {}").format(sql.Identifier(AUDIT_SCHEMA, table), loader)
        for table in LOADER_AUDIT_TABLES
    ]
    # Emptying a raw table for a replay clears that stream's quarantine through one audited function; the loader
    # itself may not touch quarantine (it could let rows past the gate).
    statements += [
        sql.SQL("revoke all on {} from {}").format(sql.SQL(LOADER_QUARANTINE), loader),
        sql.SQL("grant execute on function {} to {}").format(sql.SQL(CLEAR_QUARANTINE_FUNCTION), loader),
    ]
    statements += _schema_grants(raw_schemas(catalogue), TRANSFORMER, write=False)
    # The transformer reads the raw tables the loader creates from now on, too.
    statements += [
        sql.SQL("alter default privileges for role {} in schema {} grant select on tables to {}").format(
            loader, sql.Identifier(schema), transformer
        )
        for schema in raw_schemas(catalogue)
    ]
    statements += _schema_grants(built, TRANSFORMER, write=True)
    statements += [_owned_by(built, TRANSFORMER), sql.SQL("select {}").format(sql.SQL(publish.SETTLE_FUNCTION))]
    statements += _audit_grants_for_transformer()
    statements += _schema_grants([AUDIT_SCHEMA], AUDITOR, write=False)
    statements += [sql.SQL("grant insert on {} to {}").format(sql.SQL(AUDITOR_WRITES), auditor)]
    # The audit log: read by the auditor, appended to through the function only, changed by nobody.
    statements += [
        sql.SQL("revoke all on crm_audit.audit_log from {}").format(
            sql.SQL(", ").join(sql.Identifier(r.name) for r in (LOADER, TRANSFORMER, ANALYST))
        ),
        sql.SQL("grant select on crm_audit.audit_log to {}").format(auditor),
        sql.SQL("grant execute on function {} to {}, {}").format(
            sql.SQL(audit_log.RECORD_FUNCTION), loader, transformer
        ),
    ]
    # The step that needs the owner's rights, as one function (see the module's docstring).
    statements += [sql.SQL("grant execute on function {} to {}").format(sql.SQL(publish.SWAP_FUNCTION), transformer)]
    # dbt applies the PII treatments as the transformer; nobody else may hash guesses (warehouse/pii.py).
    statements += [
        sql.SQL("grant usage on schema {} to {}").format(sql.Identifier(pii.PII_SCHEMA), transformer),
        sql.SQL("grant execute on function {}, {}, {} to {}").format(
            sql.SQL(pii.PSEUDONYMISE), sql.SQL(pii.MASK), sql.SQL(pii.KEY_STATE), transformer
        ),
    ]
    return statements


def grant_published(conn: psycopg.Connection) -> None:
    """Point the analyst's access at the schema now named ``marts`` and away from ``marts_build``
    (``crm_audit.grant_published``, which the publish's swap also runs)."""
    conn.execute(f"select {publish.GRANT_FUNCTION}")


def apply_grants(
    conn: psycopg.Connection,
    catalogue: Catalogue | None = None,
    *,
    pepper: str | None = None,
    mode: source_mode.Mode | None = None,
) -> list[str]:
    """The deploy step: install the pipeline's structure, create the roles, install the PII key (``pepper``, else
    the ``crm_pii_pepper`` connection's), record the source mode (``mode``, else ``CRM_SOURCE_MODE``'s) and
    (re)apply every grant: idempotent, safe to run at every deploy. Returns the roles."""
    mode = mode or source_mode.source_mode()
    catalogue = catalogue or default_catalogue()
    install_structure(conn, catalogue)
    loader_guard.install(conn, LOADER.name)
    pii.install_key(conn, pepper or pii.pii_pepper())
    run_ddl(conn, grant_statements(conn, catalogue))
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (GRANT_LOCK_KEY,))
        grant_published(conn)
        source_mode.record(conn, mode)
        audit_log.record_event(
            conn,
            "grant",
            "warehouse roles",
            details={"roles": {r.name: r.purpose for r in ROLES}, "database": conn.info.dbname, "source_mode": mode},
        )
    return [r.name for r in ROLES]


def apply_grants_if_allowed(conn: psycopg.Connection, mode: source_mode.Mode | None = None) -> str | None:
    """``apply_grants`` for the local tooling (``crm init``, ``make demo``): None when done, else why not. A
    configured warehouse whose user may not create roles still runs the demo; an admin runs the grants."""
    try:
        apply_grants(conn, mode=mode)
    except psycopg.errors.InsufficientPrivilege as refused:
        conn.rollback()
        return (
            f"warehouse roles not created: {conn.info.user!r} may not ({str(refused).splitlines()[0]});"
            " run `crm warehouse grants` as a role with CREATEROLE that owns the pipeline's schemas"
        )
    return None
