"""Run gate rules as a Great Expectations 1.x checkpoint and turn the result into a small report.

GX runs the metrics as SQL in PostgreSQL, so a gate never pulls a table into Python memory. The rows to validate
are a query (one sync's batch, one mart); GX sees them as a table: a temporary view over the query, created on each
of GX's connections. A GX *query* asset would work too, but to learn its columns GX runs the whole query and the
driver buffers every row: the gate's memory would grow with the batch (P5m in BENCHMARKS.md). A view's columns come
from the catalog. Temporary views die with their session, so a killed gate leaves nothing behind that could block
the loader's next ``ALTER`` or ``DROP`` of the raw table.

We use GX's core API directly rather than the GX Airflow provider: its 1.0.0 release pins ``structlog<25.5`` and
Airflow 3.3 needs a newer one (docs/decisions.md). What a failed rule does is the caller's decision: the raw gate
quarantines or stops (``raw_gate.py``), the mart audit blocks the publish.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crm_pipeline.quality.rules import Rule
from crm_pipeline.warehouse.url import WarehouseUrl

SAMPLE_SIZE = 5
BATCH_VIEW = "gate_batch"  # session-local (temporary), so one fixed name serves every gate
REDACTED = "<pii redacted>"  # samples of PII columns never reach XCom, logs or the results table


@dataclass(frozen=True)
class RuleOutcome:
    name: str
    rule: str
    column: str | None
    severity: str
    success: bool
    unexpected_count: int | None
    element_count: int | None
    sample: list[Any]
    observed: Any


@dataclass(frozen=True)
class GateReport:
    gate: str
    target: str
    outcomes: tuple[RuleOutcome, ...]
    # GX's own validation result (JSON, PII samples redacted), kept for the Data Docs site; None when not from GX
    validation: dict[str, Any] | None = None

    @property
    def errors(self) -> list[RuleOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "error"]

    @property
    def warnings(self) -> list[RuleOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "warn"]

    @property
    def passed(self) -> bool:
        return not self.errors

    def summary(self) -> dict[str, Any]:
        """What goes to XCom and into alerts: counts and the failing rules with a few sample values (redacted for
        PII columns), never rows."""
        return {
            "gate": self.gate,
            "target": self.target,
            "passed": self.passed,
            "rules": len(self.outcomes),
            "errors": [f"{o.name} ({o.unexpected_count} unexpected, e.g. {o.sample})" for o in self.errors],
            "warnings": [f"{o.name} ({o.unexpected_count} unexpected)" for o in self.warnings],
        }


def _raised(exception_info: Any) -> str | None:
    """The message of an exception GX caught while computing a rule's metrics, if any. GX reports either one
    ``{"raised_exception": ..., "exception_message": ...}`` or such a dict per metric."""
    if not exception_info:
        return None
    infos = [exception_info] if "raised_exception" in exception_info else list(exception_info.values())
    for info in infos:
        if isinstance(info, dict) and info.get("raised_exception"):
            return str(info.get("exception_message") or "unknown error").splitlines()[0][:300]
    return None


def quiet_gx() -> None:
    """No analytics calls home, no INFO chatter in task logs."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


def run_checkpoint(url: WarehouseUrl, gate: str, query: str, rules: Sequence[Rule]) -> GateReport:
    """Validate the rows ``query`` selects against ``rules`` with an ephemeral GX context.

    Two passes, so the common case pays for counts only: the first counts every rule's unexpected rows and fetches
    no sample values (GX's sample query of a uniqueness rule repeats its whole window over the batch), the second
    runs only the rules that failed with unexpected rows, to fetch a few of their values for the report."""
    quiet_gx()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # task logs, not terminals
    source = context.data_sources.add_postgres(name="warehouse", connection_string=url.sqlalchemy("psycopg2"))
    engines = (source.get_engine(), source.get_execution_engine().engine)  # GX tests on one, validates on the other
    for engine in engines:
        _with_batch_view(engine, query)
    by_name = {rule.name: rule for rule in rules}
    try:
        validation = _validate(context, source, gate, rules, sample_size=0)
        failed = [by_name[_rule_of(item)] for item in validation.get("results", []) if _has_unexpected_rows(item)]
        if failed:
            sampled = _validate(context, source, f"{gate}__samples", failed, sample_size=SAMPLE_SIZE)
            with_samples = {_rule_of(item): item for item in sampled.get("results", [])}
            validation["results"] = [with_samples.get(_rule_of(item), item) for item in validation["results"]]
    finally:
        for engine in engines:
            engine.dispose()  # closes the sessions, and their temporary views with them, before the loader's next sync
    validation = _redacted(validation, by_name)
    outcomes = []
    for item in validation.get("results", []):
        rule = by_name[_rule_of(item)]
        details = item.get("result") or {}
        error = _raised(item.get("exception_info"))
        outcomes.append(
            RuleOutcome(
                name=rule.name,
                rule=rule.rule,
                column=rule.column,
                severity=rule.severity,
                # A rule that could not run (a column gone, a type changed) has failed: it proved nothing.
                success=bool(item.get("success")) and error is None,
                unexpected_count=details.get("unexpected_count"),
                element_count=details.get("element_count"),
                sample=list(details.get("partial_unexpected_list") or [])[:SAMPLE_SIZE],
                observed=f"could not run: {error}" if error is not None else details.get("observed_value"),
            )
        )
    return GateReport(gate=gate, target=query, outcomes=tuple(outcomes), validation=validation)


def _rule_of(item: dict[str, Any]) -> str:
    return str(item["expectation_config"]["meta"]["rule"])


def _has_unexpected_rows(item: dict[str, Any]) -> bool:
    """A column rule that failed on values, so that it has samples to show (not one that could not run)."""
    details = item.get("result") or {}
    return not item.get("success") and bool(details.get("unexpected_count")) and "partial_unexpected_list" in details


def _validate(context: Any, source: Any, gate: str, rules: Sequence[Rule], *, sample_size: int) -> dict[str, Any]:
    """GX's validation result of ``rules`` over the batch view, as JSON, with up to ``sample_size`` failing values
    per column rule."""
    result = _checkpoint(context, source, gate, rules, sample_size).run()
    (run_result,) = result.run_results.values()
    return dict(run_result.to_json_dict())


def _checkpoint(context: Any, source: Any, gate: str, rules: Sequence[Rule], sample_size: int) -> Any:
    """A checkpoint of one suite (the rules) over the batch view."""
    import great_expectations as gx

    from crm_pipeline.quality.gx_expectations import expectation_class

    asset = source.add_table_asset(name=gate, table_name=BATCH_VIEW)
    batch = asset.add_batch_definition_whole_table("batch")
    suite = context.suites.add(gx.ExpectationSuite(name=gate))
    for rule in rules:
        suite.add_expectation(expectation_class(rule.expectation)(**rule.kwargs, meta={"rule": rule.name}))
    validation = context.validation_definitions.add(gx.ValidationDefinition(name=gate, data=batch, suite=suite))
    return context.checkpoints.add(
        gx.Checkpoint(
            name=gate,
            validation_definitions=[validation],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": sample_size},
        )
    )


def _with_batch_view(engine: Any, query: str) -> None:
    """Give every connection of one of GX's engines the temporary view ``BATCH_VIEW`` over ``query``.

    Pooled connections that exist already are discarded first, so none lacks the view. If GX ever built a second
    engine, its rules would fail loudly on a missing relation (and fail the gate), never validate other rows."""
    import sqlalchemy

    statement = f"create temporary view {BATCH_VIEW} as {query}"

    def create_view(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(statement)
        dbapi_connection.commit()

    engine.dispose()
    sqlalchemy.event.listen(engine, "connect", create_view)


def _redacted(validation: dict[str, Any], rules: dict[str, Rule]) -> dict[str, Any]:
    """GX's result with the failing values of PII columns replaced, as in our own results table."""
    for item in validation.get("results", []):
        rule = rules.get(((item.get("expectation_config") or {}).get("meta") or {}).get("rule", ""))
        details = item.get("result") or {}
        if rule is not None and rule.pii and details:
            details["partial_unexpected_list"] = [REDACTED] * len(details.get("partial_unexpected_list") or [])
            for key in ("partial_unexpected_counts", "partial_unexpected_index_list", "unexpected_list"):
                details.pop(key, None)
    return validation
