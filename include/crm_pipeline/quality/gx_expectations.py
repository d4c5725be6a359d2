"""Our own Great Expectations expectations, for where GX's does work a gate throws away.

Importing this module registers them with GX (its registry is keyed by the class name in snake case), which is
what lets a stored validation result that names one render in Data Docs. It imports GX: import it only where GX
runs, never at DAG parse time.
"""

from __future__ import annotations

from typing import Any, ClassVar

import great_expectations.expectations as gxe
from great_expectations.expectations.core.unexpected_rows_expectation import UnexpectedRowsExpectation


class ExpectNoUnexpectedRows(UnexpectedRowsExpectation):
    """GX's ``UnexpectedRowsExpectation`` that counts the query's rows and does not fetch them.

    GX's own computes two metrics from the query: its row count, and its rows (up to 200, shown only in the
    COMPLETE result format, which the gates do not use; psycopg2 receives every row of the query first). The gates
    report the count and quarantine with their own SQL, so the fetch ran each foreign-key and column-type check a
    second time for nothing: at scale M, 0.35 s of hash join for OpportunityHistory's, twice (docs/performance.md).
    """

    metric_dependencies: ClassVar[tuple[str, ...]] = ("unexpected_rows_query.row_count",)

    def _validate(
        self, metrics: dict[str, Any], runtime_configuration: dict[str, Any] | None = None, execution_engine: Any = None
    ) -> dict[str, Any]:
        unexpected_rows = metrics["unexpected_rows_query.row_count"]
        return {"success": unexpected_rows == 0, "result": {"observed_value": unexpected_rows}}


OURS = {cls.__name__: cls for cls in (ExpectNoUnexpectedRows,)}


def expectation_class(name: str) -> type[Any]:
    """The expectation class a rule names: one of ours, or GX's own."""
    return OURS.get(name) or getattr(gxe, name)
