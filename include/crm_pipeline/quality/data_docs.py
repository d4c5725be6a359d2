"""GX Data Docs for the gates, built on demand from the validation results the warehouse keeps.

Gate tasks run GX with ephemeral contexts (parallel tasks cannot share a file context's config safely), and store
each validation result in ``crm_audit.validation_results``. This module loads the recent ones into a fresh file
context under ``.local/gx`` and renders GX's own static site from them: the warehouse stays the record, the site is
a view of it that can be rebuilt at any time (``crm gx-docs``; ``make demo`` builds it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg

from crm_pipeline.paths import LOCAL_DIR
from crm_pipeline.quality.checkpoint import quiet_gx

GX_DIR = LOCAL_DIR / "gx"
RECENT_RUNS = 10  # the site shows the validations of this many latest runs


def build_data_docs(conn: psycopg.Connection, project_dir: Path = GX_DIR) -> Path | None:
    """Render the site from the last runs' validation results; its index.html, or None when there is nothing yet."""
    rows = conn.execute(
        "select gate, run_id, checked_at, result from crm_audit.validation_results"
        " where coalesce(run_id, '') in (select coalesce(run_id, '') from crm_audit.validation_results"
        "  group by 1 order by max(checked_at) desc limit %s) order by id",
        (RECENT_RUNS,),
    ).fetchall()
    if not rows:
        return None
    quiet_gx()
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResult
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    import crm_pipeline.quality.gx_expectations  # noqa: F401  (registers ours, so results naming them render)

    shutil.rmtree(project_dir, ignore_errors=True)  # a view of the warehouse: rebuilt whole every time
    project_dir.mkdir(parents=True)
    context = gx.get_context(mode="file", project_root_dir=project_dir)
    for gate, run_id, checked_at, result in rows:
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=gate),
            run_id=RunIdentifier(run_name=run_id or "manual", run_time=checked_at),
            batch_identifier=gate,
        )
        context.validation_results_store.set(key, ExpectationSuiteValidationResult(**result))
    sites = context.build_data_docs()
    return Path(str(next(iter(sites.values()))).removeprefix("file://"))
