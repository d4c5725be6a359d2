"""Which dbt nodes a transform run builds: everything downstream of the changed streams' sources, nothing else."""

from __future__ import annotations

from typing import Any

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.orchestration.selection import Selection, downstream
from crm_pipeline.orchestration.transform import node_selected

# A manifest's shape, reduced to what selection reads: two sources, a model each, a mart over both, a test.
MANIFEST: dict[str, Any] = {
    "sources": {
        "source.crm.hubspot.owners": {"schema": "raw_hubspot", "name": "owners", "identifier": "owners"},
        "source.crm.salesforce.Task": {"schema": "raw_salesforce", "name": "Task", "identifier": "Task"},
    },
    "child_map": {
        "source.crm.hubspot.owners": ["model.crm.stg_hubspot__owners"],
        "source.crm.salesforce.Task": ["model.crm.stg_salesforce__task"],
        "model.crm.stg_hubspot__owners": ["model.crm.dim_owners", "test.crm.unique_stg_hubspot__owners_id"],
        "model.crm.stg_salesforce__task": ["model.crm.fct_activities"],
        "model.crm.dim_owners": ["model.crm.fct_activities"],
        "model.crm.fct_activities": [],
    },
}


def test_downstream_of_a_stream_is_its_models_their_tests_and_what_reads_them() -> None:
    owners = default_catalogue().get("hubspot.owners")
    assert downstream(MANIFEST, [owners]) == {
        "model.crm.stg_hubspot__owners",
        "test.crm.unique_stg_hubspot__owners_id",
        "model.crm.dim_owners",
        "model.crm.fct_activities",
    }
    assert downstream(MANIFEST, []) == set()


def test_a_selection_survives_xcom_and_runs_nodes_without_an_id() -> None:
    selection = Selection(False, "changed: hubspot.owners", ("hubspot.owners",), frozenset({"model.crm.dim_owners"}))
    summary = selection.summary()  # what the dbt tasks read from XCom
    assert Selection.from_summary(summary) == selection
    assert node_selected(summary, "model.crm.dim_owners")
    assert not node_selected(summary, "model.crm.stg_salesforce__task")
    assert node_selected(summary, None), "a task Cosmos gave no node id always runs"
    assert node_selected(Selection(True, "param models = all").summary(), "model.crm.anything")
    assert node_selected({}, "model.crm.anything"), "no selection found: build"
