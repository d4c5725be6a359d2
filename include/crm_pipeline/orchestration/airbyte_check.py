"""``crm airbyte check``: every connection of the catalogue, as the deployment's Airflow sees it, before go-live.

The same checks as each extract run's first task (``plan``), for all connections at once and without a run:
in Airbyte mode a Variable left empty, a Variable that holds no UUID, and any difference between a connection and
the catalogue (``airbyte_preflight.py``). Runs where Airflow's configuration is (the Variables and the
``airbyte_default`` connection are read as Airflow reads them): ``python -m crm_pipeline.orchestration.airbyte_check``
in a deployment's scheduler container, ``crm airbyte check`` on the local stack. Exits 1 when anything is wrong.
"""

from __future__ import annotations

import sys

from crm_pipeline import source_mode
from crm_pipeline.orchestration.airbyte import connection_groups, connection_problems


def check() -> tuple[list[str], list[str]]:
    """(what is fine, what is wrong), a line each."""
    from airflow.models import Variable

    mode = source_mode.source_mode()
    groups = connection_groups()
    fine, wrong, configured = [], [], {}
    for variable, specs in groups.items():
        streams = ", ".join(s.key for s in specs)
        connection_id = (Variable.get(variable, default_var="") or "").strip()
        if connection_id:
            configured[variable] = connection_id
        elif mode == source_mode.AIRBYTE:
            wrong.append(f"{variable} is empty: {streams} cannot sync ({source_mode.MODE_VARIABLE} is 'airbyte')")
        else:
            fine.append(f"{variable}: {streams} from the simulator ({source_mode.MODE_VARIABLE}=simulator)")
    problems = connection_problems(configured, groups)
    wrong += problems
    fine += [
        f"{variable}: Airbyte connection {connection_id} matches the catalogue"
        for variable, connection_id in configured.items()
        if not any(line.startswith(f"{variable} ") for line in problems)
    ]
    return fine, wrong


def main() -> int:
    fine, wrong = check()
    for line in fine:
        print(f"ok    {line}")
    for line in wrong:
        print(f"FAIL  {line}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
