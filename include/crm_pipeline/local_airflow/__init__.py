"""Airflow without Docker: the environment, ``airflow_settings.yaml`` and the component processes."""
