"""CRM ELT on Airflow: Airbyte-shaped raw loads, dbt through Cosmos, Great Expectations gates.

DAG files under ``dags/`` stay thin; every piece of logic they wire together lives in this package.
"""
