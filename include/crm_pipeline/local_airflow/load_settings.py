"""``python -m crm_pipeline.local_airflow.load_settings``: load airflow_settings.yaml into the metadata DB.

A module of its own because it must run in a process whose environment already points Airflow at the
metadata DB (Airflow reads its configuration at import).
"""

from __future__ import annotations

from crm_pipeline.local_airflow.settings_file import load_into_airflow, read_settings


def main() -> None:
    for line in load_into_airflow(read_settings()):
        print(f"  loaded {line}")


if __name__ == "__main__":
    main()
