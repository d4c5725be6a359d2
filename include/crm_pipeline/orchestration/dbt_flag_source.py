"""A cheaper answer to dbt-common's "which module declared this behaviour flag", for dbt run inside Airflow tasks.

dbt-common 1.x names a behaviour flag's source by walking ``inspect.stack()`` every time an adapter starts, even
when the flag names its source. ``inspect.stack()`` reads the source file of every frame on the stack, and a Cosmos
task's stack is about seventy frames of Airflow, Cosmos, click and dbt in a process that has read none of them:
13 % of each dbt task's CPU on the real scheduler (docs/performance.md, decision 26), to label a log event.

:func:`install` replaces that walk with one over the frames' module names, which gives the same name without
reading a file. It changes nothing else in dbt.
"""

from __future__ import annotations

import sys

FLAGS_MODULE = "dbt_common.behavior_flags"  # imported only by install(): DAG files import this module, not dbt


def flag_source() -> str:
    """The module of the nearest frame outside ``dbt_common.behavior_flags``, as the original finds it."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__")
        if isinstance(name, str) and name != FLAGS_MODULE and name in sys.modules:
            return name
        frame = frame.f_back  # type: ignore[assignment]
    return "Unknown"


def install() -> None:
    """Use :func:`flag_source` from now on in this process (idempotent)."""
    from dbt_common import behavior_flags

    behavior_flags.BehaviorFlagRendered._default_source = staticmethod(flag_source)  # type: ignore[method-assign]
