"""Dropping the views that read a raw table, for the loader that must change the table's columns.

PostgreSQL refuses to drop or retype a column a view uses, so a destination applying such a schema change drops
the dependent views first; dbt recreates them on its next run. Those views are staging models, owned by the
transformer, and only a view's owner may drop it. ``crm_audit.drop_dependent_views`` is ``SECURITY DEFINER``:
it drops them with the warehouse owner's rights (a member of the transformer role, ``warehouse/roles.py``), and
only for a table the caller owns, the rule PostgreSQL itself applies to ``drop column ... cascade``.
"""

from __future__ import annotations

import psycopg

from crm_pipeline.warehouse.ddl import run_ddl

FUNCTION = "crm_audit.drop_dependent_views(text, text)"

DDL: tuple[str, ...] = (
    "create schema if not exists crm_audit",
    """create or replace function crm_audit.drop_dependent_views(table_schema text, table_name text)
        returns text[] language plpgsql security definer set search_path = pg_catalog, pg_temp
    as $fn$
    declare
        target oid := to_regclass(format('%I.%I', table_schema, table_name));
        dropped text[] := '{}';
        view record;
    begin
        if target is null then
            return dropped;
        end if;
        if not pg_has_role(session_user, (select relowner from pg_class where oid = target), 'usage') then
            raise exception '% may not drop the views on %.%: it does not own the table',
                session_user, table_schema, table_name using errcode = 'insufficient_privilege';
        end if;
        for view in
            select distinct vn.nspname, v.relname from pg_depend d
            join pg_rewrite r on r.oid = d.objid
            join pg_class v on v.oid = r.ev_class and v.relkind = 'v'
            join pg_namespace vn on vn.oid = v.relnamespace
            where d.refobjid = target and v.oid <> target
        loop
            execute format('drop view if exists %I.%I cascade', view.nspname, view.relname);
            dropped := dropped || format('%s.%s', view.nspname, view.relname);
        end loop;
        return dropped;
    end
    $fn$""",
    f"revoke all on function {FUNCTION} from public",
)


def ensure_function(conn: psycopg.Connection) -> None:
    run_ddl(conn, DDL)


def drop_dependent_views(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    """Drop (cascade) every view that reads ``schema.table``, which the connected role owns; their names."""
    if conn.execute("select to_regprocedure(%s)", (FUNCTION,)).fetchone() == (None,):
        ensure_function(conn)
    row = conn.execute("select crm_audit.drop_dependent_views(%s, %s)", (schema, table)).fetchone()
    return list(row[0]) if row and row[0] else []
