"""Every schema, table and function the pipeline needs, installed in one go by the deploy step.

The pipeline's roles may not change structure (``warehouse/ddl.py``), so ``crm warehouse grants`` installs all of
it, as the warehouse's owner, before granting: the schemas the roles work in, the ``crm_audit`` tables, the audit
log, the PII and publish functions. Each piece is the same idempotent DDL the modules run when the owner uses
them directly (the CLI, the tests); running it here at every deploy is also how a new column reaches a warehouse.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from crm_pipeline.catalogue import Catalogue
from crm_pipeline.warehouse import audit_log, pii, publish, transform_lease
from crm_pipeline.warehouse.ddl import run_ddl, split_script

SIMULATOR_SCHEMA = "crm_simulator"
AUDIT_SCHEMA = "crm_audit"
# dbt's schemas besides the marts: staging and intermediate models, snapshots, and the profile's default schema.
TRANSFORM_SCHEMAS = ("staging", "snapshots", "analytics")
MARTS_SCHEMAS = (publish.PUBLISHED_SCHEMA, publish.BUILD_SCHEMA)


def raw_schemas(catalogue: Catalogue) -> list[str]:
    return sorted({spec.raw_schema for spec in catalogue.streams})


def install_structure(conn: psycopg.Connection, catalogue: Catalogue) -> None:
    """Create what is missing and migrate what changed; safe to run at every deploy."""
    # Imported here: the gate modules bring GX, the Airbyte module Airflow's provider.
    from crm_pipeline.monitoring import freshness, run_audit
    from crm_pipeline.orchestration.airbyte import JOBS_DDL
    from crm_pipeline.quality import quarantine, results

    schemas = [*raw_schemas(catalogue), SIMULATOR_SCHEMA, AUDIT_SCHEMA, *TRANSFORM_SCHEMAS, *MARTS_SCHEMAS]
    run_ddl(conn, [sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)) for schema in schemas])
    run_ddl(conn, audit_log.DDL)  # in full: ensure_audit_log skips it once the log exists, a deploy must not
    pii.ensure_functions(conn)
    transform_lease.ensure_lease(conn)
    quarantine.ensure_quarantine(conn)
    run_ddl(conn, split_script(quarantine.RELEASES_DDL))
    run_ddl(conn, [quarantine.CLEAR_FUNCTION_DDL, f"revoke all on function {quarantine.CLEAR_FUNCTION} from public"])
    results.ensure_results(conn)
    run_audit.ensure_run_audit(conn)  # with the raw gate's verdicts and cutoffs
    run_ddl(conn, split_script(freshness.DDL))
    run_ddl(conn, split_script(JOBS_DDL))
    publish.ensure_publish(conn)
    # Staging models are tables now (docs/decisions.md #27): nothing for the loader to drop before a raw schema
    # change, so the function that did it for the loader goes.
    run_ddl(conn, ["drop function if exists crm_audit.drop_dependent_views(text, text)"])
