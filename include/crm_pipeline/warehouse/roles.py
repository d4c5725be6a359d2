"""Least-privilege warehouse roles, created and kept by the project (``crm warehouse grants``).

Four login roles, each allowed what its job needs and nothing else:

* ``crm_loader`` writes the raw schemas (one per CRM) and the simulator's state; it registers its replacing writes
  with the transform lease. It cannot read staging, marts or the audit tables.
* ``crm_transformer`` reads raw; writes staging, snapshots and the marts; judges batches and publishes (the
  quarantine and gate tables in ``crm_audit``). It cannot write raw.
* ``crm_analyst`` reads the published marts. Nothing else: not raw, not staging, not ``marts_build`` (unaudited),
  not quarantine or audit.
* ``crm_auditor`` reads ``crm_audit``: gate results, quarantine, verdicts, the audit log. Nothing else.

None is a superuser, none may create roles or databases, none owns anything: the objects stay owned by the role
that runs the grants (the ``crm_warehouse`` connection's user), so no pipeline role can drop or alter them.
The audit log is written through ``crm_audit.record_event`` only (``warehouse/audit_log.py``).

Grants on a schema belong to the schema, not to its name. Publishing swaps ``marts_build`` and ``marts`` by renaming
them, so ``publish_marts`` moves the analyst's access along in the same transaction (``grant_published``).

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

from crm_pipeline.catalogue import Catalogue, default_catalogue
from crm_pipeline.paths import LOCAL_DIR, WAREHOUSE_CONN_ID
from crm_pipeline.warehouse import audit_log, pii, transform_lease
from crm_pipeline.warehouse.ddl import run_ddl
from crm_pipeline.warehouse.publish import BUILD_SCHEMA, PUBLISHED_SCHEMA
from crm_pipeline.warehouse.url import WarehouseUrl

ROLES_DIR = LOCAL_DIR / "roles"
PASSWORD_VARIABLE = "CRM_ROLE_PASSWORD_{}"  # noqa: S105  # pragma: allowlist secret (a variable's name)
SIMULATOR_SCHEMA = "crm_simulator"
AUDIT_SCHEMA = "crm_audit"
# dbt's schemas besides the marts: staging and intermediate models, snapshots, and the profile's default schema.
# The two marts schemas are left to dbt and the publish to create; ``grant_published`` covers them.
TRANSFORM_SCHEMAS = ("staging", "snapshots", "analytics")
# The crm_audit tables a load writes: its lease registration, the lease row it locks FOR SHARE, the Airbyte jobs.
LOADER_AUDIT_TABLES = ("raw_writes", "transform_lease", "airbyte_jobs")
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


def raw_schemas(catalogue: Catalogue) -> list[str]:
    return sorted({spec.raw_schema for spec in catalogue.streams})


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


def grant_statements(conn: psycopg.Connection, catalogue: Catalogue) -> list[sql.Composable]:
    """Every statement of ``apply_grants``, in order; each one idempotent."""
    raw = [*raw_schemas(catalogue), SIMULATOR_SCHEMA]
    audit, transformer = sql.Identifier(AUDIT_SCHEMA), sql.Identifier(TRANSFORMER.name)
    statements: list[sql.Composable] = []
    for r in ROLES:
        statements += _role_statements(conn, r)
    # Nobody but the owner creates objects in the database or in public.
    statements += [
        sql.SQL("revoke create on database {} from public").format(sql.Identifier(conn.info.dbname)),
        sql.SQL("revoke create on schema public from public"),
    ]
    statements += _schema_grants(raw, LOADER, write=True)
    statements += [sql.SQL("grant usage on schema {} to {}").format(audit, sql.Identifier(LOADER.name))]
    statements += [
        sql.SQL(
            "do $$ begin if to_regclass({}) is not null then"
            " execute 'grant select, insert, update, delete on ' || {} || ' to ' || {}; end if; end $$"
        ).format(
            sql.Literal(f"{AUDIT_SCHEMA}.{table}"),
            sql.Literal(f"{AUDIT_SCHEMA}.{table}"),
            sql.Literal(LOADER.name),
        )
        for table in LOADER_AUDIT_TABLES
    ]
    statements += _schema_grants(raw_schemas(catalogue), TRANSFORMER, write=False)
    statements += _schema_grants(TRANSFORM_SCHEMAS, TRANSFORMER, write=True)
    statements += _schema_grants([AUDIT_SCHEMA], TRANSFORMER, write=True)
    # The schema grant gave the transformer CREATE in crm_audit; it writes its tables, it does not add tables.
    statements += [sql.SQL("revoke create on schema {} from {}").format(audit, sql.Identifier(TRANSFORMER.name))]
    statements += _schema_grants([AUDIT_SCHEMA], AUDITOR, write=False)
    # The audit log: read by the auditor, appended to through the function only, changed by nobody.
    statements += [
        sql.SQL("revoke all on crm_audit.audit_log from {}").format(
            sql.SQL(", ").join(sql.Identifier(r.name) for r in (LOADER, TRANSFORMER, ANALYST))
        ),
        sql.SQL("grant select on crm_audit.audit_log to {}").format(sql.Identifier(AUDITOR.name)),
        sql.SQL("grant execute on function {} to {}").format(
            sql.SQL(audit_log.RECORD_FUNCTION),
            sql.SQL(", ").join(sql.Identifier(r.name) for r in (LOADER, TRANSFORMER)),
        ),
    ]
    # dbt applies the PII treatments as the transformer; nobody else may hash guesses (warehouse/pii.py).
    statements += [
        sql.SQL("grant usage on schema {} to {}").format(sql.Identifier(pii.PII_SCHEMA), transformer),
        sql.SQL("grant execute on function {}, {} to {}").format(
            sql.SQL(pii.PSEUDONYMISE), sql.SQL(pii.MASK), transformer
        ),
    ]
    return statements


def grant_published(conn: psycopg.Connection) -> None:
    """Point the analyst's access at the schema now named ``marts`` and away from ``marts_build``; keep the
    transformer's on both.

    Called inside the publish transaction, right after the swap: analysts gain the new marts and lose the retired
    ones in the same commit. Does nothing when the roles were never created (a warehouse without grants)."""
    present = conn.execute("select 1 from pg_roles where rolname = %s", (ANALYST.name,)).fetchone()
    if present is None:
        return
    analyst, transformer = sql.Identifier(ANALYST.name), sql.Identifier(TRANSFORMER.name)
    rows = conn.execute(
        "select nspname from pg_namespace where nspname = any(%s)", ([PUBLISHED_SCHEMA, BUILD_SCHEMA],)
    ).fetchall()
    for (name,) in rows:
        schema = sql.Identifier(name)
        conn.execute(sql.SQL("grant usage, create on schema {} to {}").format(schema, transformer))
        conn.execute(
            sql.SQL("grant select, insert, update, delete, truncate on all tables in schema {} to {}").format(
                schema, transformer
            )
        )
        if name == PUBLISHED_SCHEMA:
            conn.execute(sql.SQL("grant usage on schema {} to {}").format(schema, analyst))
            conn.execute(sql.SQL("grant select on all tables in schema {} to {}").format(schema, analyst))
        else:
            conn.execute(sql.SQL("revoke all on schema {} from {}").format(schema, analyst))
            conn.execute(sql.SQL("revoke all on all tables in schema {} from {}").format(schema, analyst))


def apply_grants(
    conn: psycopg.Connection, catalogue: Catalogue | None = None, *, pepper: str | None = None
) -> list[str]:
    """Create the roles, install the PII key (``pepper``, else the ``crm_pii_pepper`` connection's) and (re)apply
    every grant: idempotent, safe to run at every deploy. Returns the roles."""
    catalogue = catalogue or default_catalogue()
    audit_log.ensure_audit_log(conn)
    pii.install_key(conn, pepper or pii.pii_pepper())
    transform_lease.ensure_lease(conn)  # the loader's grants on the lease tables need them to exist
    run_ddl(conn, grant_statements(conn, catalogue))
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (GRANT_LOCK_KEY,))
        grant_published(conn)
        audit_log.record_event(
            conn,
            "grant",
            "warehouse roles",
            details={"roles": {r.name: r.purpose for r in ROLES}, "database": conn.info.dbname},
        )
    return [r.name for r in ROLES]


def apply_grants_if_allowed(conn: psycopg.Connection) -> str | None:
    """``apply_grants`` for the local tooling (``crm init``, ``make demo``): None when done, else why not. A
    configured warehouse whose user may not create roles still runs the demo; an admin runs the grants."""
    try:
        apply_grants(conn)
    except psycopg.errors.InsufficientPrivilege as refused:
        conn.rollback()
        return (
            f"warehouse roles not created: {conn.info.user!r} may not ({str(refused).splitlines()[0]});"
            " run `crm warehouse grants` as a role with CREATEROLE that owns the pipeline's schemas"
        )
    return None
