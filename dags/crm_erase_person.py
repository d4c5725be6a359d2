"""
### CRM erasure: forget one person (GDPR right to erasure)

A maintenance DAG, run by hand with **either** `email` **or** `crm_id` (a HubSpot or Salesforce record id), and
`confirm` set to `erase`. **erase** finds every record of the person in both CRMs and removes them in one
transaction. That covers raw, staging, snapshots, both marts schemas and quarantine, and the activities with the
person go too. Deals and companies keep their figures and lose the link to the person.

The audit log records the erasure: who, when, the run, and counts per table, never the erased values. A second run
finds nothing and changes nothing. Erase the person in the source CRMs too, or their next sync brings them back.
This run's conf keeps the request's email or id, as the record of who asked. See docs/security.md.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag

from crm_pipeline.orchestration.defaults import DEFAULT_ARGS, START_DATE, dag_alerts
from crm_pipeline.orchestration.erasure import erase
from crm_pipeline.warehouse.erasure_request import CRM_ID, EMAIL


@dag(
    dag_id="crm_erase_person",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,  # a retry is safe: an erasure is idempotent
    **dag_alerts(within=timedelta(hours=1), recovery=False),
    tags=["crm", "maintenance", "gdpr"],
    doc_md=__doc__,
    params={
        "email": Param(None, type=["null", "string"], pattern=EMAIL.pattern, description="The person's email."),
        "crm_id": Param(
            None, type=["null", "string"], pattern=CRM_ID.pattern, description="Or: one of the person's CRM ids."
        ),
        "confirm": Param(type="string", enum=["erase"], description="Type `erase`: this cannot be undone."),
    },
)
def crm_erase_person() -> None:
    erase()


crm_erase_person()
