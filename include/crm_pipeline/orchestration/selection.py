"""What one transform run rebuilds: the dbt nodes downstream of the streams whose data changed since the marts
were last published, and nothing else.

"Changed" is read from the data, not from the asset events that started the run: a stream changed when a batch
of it was judged, or a quarantined batch of it released, after the cutoff of the last run that published and up
to this run's cutoff. The events say the same in the common case; the data also covers a run that failed before
publishing (its streams count again) and events that arrived while a run was going.

Every other node is skipped (``skip_unless_selected``, each Cosmos task's ``pre_execute``), so the run costs what
arrived. One thing skipping cannot leave alone: publishing swaps ``marts_build`` in whole, and the build schema
holds the version before the published one. So each mart table the run does not rebuild is first carried over:
``marts_build.<mart>`` gets the published rows (``truncate`` and ``insert``: views over it stay valid). A mart
whose columns differ between the two schemas (a model changed since) is rebuilt instead.

The DAG param ``models`` set to ``all`` (or ``full_refresh``) rebuilds everything: after a model was changed, and
for a first build.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from crm_pipeline.catalogue import StreamSpec
from crm_pipeline.quality.quarantine import RELEASES_DDL
from crm_pipeline.warehouse.ddl import run_ddl, split_script
from crm_pipeline.warehouse.pii import key_installed_at
from crm_pipeline.warehouse.publish import BUILD_SCHEMA, PUBLISHED_SCHEMA
from crm_pipeline.warehouse.publish import DDL as PUBLISHES_DDL


@dataclass(frozen=True)
class Selection:
    """The nodes a run builds (all of them when ``everything``) and why; JSON-safe through ``summary``."""

    everything: bool
    reason: str
    streams: tuple[str, ...] = ()
    nodes: frozenset[str] = frozenset()
    carried: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {
            "everything": self.everything,
            "reason": self.reason,
            "streams": list(self.streams),
            "nodes": sorted(self.nodes),
            "carried": list(self.carried),
        }

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> Selection:
        return cls(
            everything=bool(summary.get("everything", True)),
            reason=str(summary.get("reason", "")),
            streams=tuple(summary.get("streams", ())),
            nodes=frozenset(summary.get("nodes", ())),
            carried=tuple(summary.get("carried", ())),
        )


def load_manifest(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def last_published_cutoff(conn: psycopg.Connection) -> datetime | None:
    """The cutoff of the last run that published (None: never published, or by hand without a cutoff)."""
    run_ddl(conn, split_script(PUBLISHES_DDL))  # a first run finds no publishes table yet
    row = conn.execute(
        "select judged_before from crm_audit.publishes where judged_before is not null order by id desc limit 1"
    ).fetchone()
    return row[0] if row else None


def changed_streams(conn: psycopg.Connection, since: datetime, until: datetime) -> list[str]:
    """Streams with a batch judged, or a quarantine released, in ``(since, until]``."""
    run_ddl(conn, split_script(RELEASES_DDL))
    rows = conn.execute(
        "select stream from crm_audit.batch_verdicts where judged_at > %s and judged_at <= %s"
        " union select stream from crm_audit.releases where released_at > %s and released_at <= %s order by 1",
        (since, until, since, until),
    ).fetchall()
    return [row[0] for row in rows]


def downstream(manifest: dict[str, Any], specs: Iterable[StreamSpec]) -> set[str]:
    """Unique ids of every node (models, snapshots, tests) downstream of the streams' dbt sources."""
    wanted = {(spec.raw_schema, spec.stream) for spec in specs}
    start = [
        uid
        for uid, source in manifest["sources"].items()
        if (source["schema"], source.get("identifier") or source["name"]) in wanted
    ]
    children: dict[str, list[str]] = manifest["child_map"]
    seen: set[str] = set()
    queue = deque(start)
    while queue:
        for child in children.get(queue.popleft(), []):
            if child not in seen:
                seen.add(child)
                queue.append(child)
    return seen


def _columns(conn: psycopg.Connection, schema: str, table: str) -> list[tuple[str, str]]:
    return conn.execute(
        "select column_name, data_type from information_schema.columns where table_schema = %s and table_name = %s"
        " order by ordinal_position",
        (schema, table),
    ).fetchall()


def carry_over(conn: psycopg.Connection, manifest: dict[str, Any], nodes: set[str]) -> tuple[list[str], set[str]]:
    """Copy each published mart table the run will not rebuild into ``marts_build``. Returns the marts carried
    and the nodes that must be rebuilt after all (never published, or different columns in the two schemas)."""
    carried: list[str] = []
    rebuild: set[str] = set()
    for uid, node in sorted(manifest["nodes"].items()):
        if node["resource_type"] != "model" or node["schema"] != BUILD_SCHEMA or uid in nodes:
            continue
        if node["config"].get("materialized") not in ("table", "incremental"):
            continue  # a view over the build schema follows its tables
        table = node.get("alias") or node["name"]
        published = _columns(conn, PUBLISHED_SCHEMA, table)
        if not published or published != _columns(conn, BUILD_SCHEMA, table):
            rebuild.add(uid)
            continue
        build, live = sql.Identifier(BUILD_SCHEMA, table), sql.Identifier(PUBLISHED_SCHEMA, table)
        conn.execute(sql.SQL("truncate {}").format(build))
        conn.execute(sql.SQL("insert into {} select * from {}").format(build, live))
        carried.append(table)
    return carried, rebuild


def select_nodes(
    conn: psycopg.Connection,
    manifest: dict[str, Any],
    specs: Sequence[StreamSpec],
    *,
    cutoff: datetime,
    models: str,
    full_refresh: bool,
) -> Selection:
    """Decide what this run builds, and carry the other marts over (in one transaction)."""
    if full_refresh or models == "all":
        return Selection(True, "full_refresh" if full_refresh else "param models = all")
    since = last_published_cutoff(conn)
    if since is None:
        return Selection(True, "no publish with a cutoff yet: a first build is a whole build")
    keyed = key_installed_at(conn)
    if keyed is not None and keyed > since:
        # Every hashed value and key derived from PII changes with the key: no mart may keep the old ones.
        return Selection(True, f"the PII key was installed or rotated at {keyed.isoformat()}, after the last publish")
    keys = changed_streams(conn, since, cutoff)
    by_key = {spec.key: spec for spec in specs}
    nodes = downstream(manifest, [by_key[key] for key in keys if key in by_key])
    with conn.transaction():
        carried, rebuild = carry_over(conn, manifest, nodes)
    nodes |= rebuild  # what they read upstream is current: only the build schema lags a publish behind
    reason = f"changed since {since.isoformat()}: {', '.join(keys) or 'nothing'}"
    return Selection(False, reason, tuple(keys), frozenset(nodes), tuple(carried))
