# Deployment image for Astro (or any Airflow 3.3 cluster that runs Astro Runtime images).
#
# The Runtime image's ONBUILD steps run first: they install packages.txt (apt) and requirements.txt (the lock,
# pip) into Airflow's environment and copy this project to /usr/local/airflow. dbt is in that lock: it shares
# Airflow's environment so Cosmos can run it in-process (docs/decisions.md). The python-3.12 variant is chosen
# because dbt-core 1.11 does not run on Python 3.14.
FROM astrocrpublic.azurecr.io/runtime:3.3-2-python-3.12

# CRM_SOURCE_MODE: streams come from Airbyte, and a connection Variable left empty fails its run (source_mode.py).
ENV PYTHONPATH="/usr/local/airflow/include" \
    CRM_SOURCE_MODE="airbyte" \
    DBT_SEND_ANONYMOUS_USAGE_STATS="False" \
    DO_NOT_TRACK="1" \
    GX_ANALYTICS_ENABLED="False" \
    AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY="20" \
    AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD="True"

# Build the dbt manifest into the image: Cosmos renders from it (LoadMode.DBT_MANIFEST), so parsing a DAG never
# runs dbt. `make manifest` runs the same `dbt parse` locally. Parsing needs no warehouse connection.
RUN dbt parse --project-dir dbt_project --profiles-dir dbt_project --quiet
