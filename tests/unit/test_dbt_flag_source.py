"""dbt's behaviour flags name the same source module with the cheaper stack walk as with dbt-common's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dbt.adapters.postgres.impl import POSTGRES_SKIP_AUTOCOMMIT_TRANSACTION_STATEMENTS
from dbt_common import behavior_flags

from crm_pipeline.orchestration import dbt_flag_source

ORIGINAL = behavior_flags.BehaviorFlagRendered._default_source  # nothing installs the cheaper walk at import
FLAG = {"name": "some_flag", "default": False, "description": "a flag declared without a source"}


@pytest.fixture
def original() -> Iterator[None]:
    """dbt-common's own walk during the test, whatever a test before it installed, and the same after it."""
    cls = behavior_flags.BehaviorFlagRendered
    before = cls.__dict__["_default_source"]
    cls._default_source = staticmethod(ORIGINAL)  # type: ignore[method-assign]
    yield
    cls._default_source = before  # type: ignore[method-assign]


def _sources() -> list[str]:
    """The source of each flag, rendered the way an adapter renders its flags at start-up: Postgres' own flag
    and one declared without a source here."""
    flags = [POSTGRES_SKIP_AUTOCOMMIT_TRANSACTION_STATEMENTS, FLAG]
    rendered = behavior_flags.Behavior(flags, {})  # type: ignore[arg-type]
    return [flag._behavior_change_event.flag_source for flag in rendered._flags]


def test_the_cheaper_walk_names_the_same_modules(original: None) -> None:
    assert ORIGINAL is not dbt_flag_source.flag_source, "dbt-common's own walk, to compare with"
    assert behavior_flags.__name__ == dbt_flag_source.FLAGS_MODULE
    before = _sources()
    dbt_flag_source.install()
    assert behavior_flags.BehaviorFlagRendered._default_source is dbt_flag_source.flag_source
    after = _sources()
    assert after == before == [__name__, __name__], "the module that rendered the flags, as dbt-common names it"
