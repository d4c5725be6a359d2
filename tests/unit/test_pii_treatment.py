"""The catalogue's PII treatments and what they drive, without a database: the HMAC the warehouse computes (its
formula, checked against Python's hmac; the SQL itself is checked in tests/integration/test_pii.py), dbt's source
meta, and the mart audit's rules."""

from __future__ import annotations

import copy
import hashlib

import pytest
import yaml

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.dbt_sources import render
from crm_pipeline.orchestration.selection import load_manifest
from crm_pipeline.paths import dbt_manifest_path
from crm_pipeline.quality.marts import mart_gates, pii_columns
from crm_pipeline.warehouse.pii import TREATED_PATTERNS, hmac_pads, pseudonymise


@pytest.mark.parametrize("pepper", ["sixteen-chars-ok", "k" * 64, "a much longer pepper " * 5, "pfeffer-ü-😀-x"])
def test_the_stored_pads_give_rfc_2104_hmac(pepper: str) -> None:
    inner, outer = hmac_pads(pepper)
    for message in (b"", b"ada@bright.io", "Zoë".encode()):
        by_pads = hashlib.sha256(outer + hashlib.sha256(inner + message).digest()).hexdigest()
        assert by_pads == pseudonymise(pepper, message.decode())


def test_the_catalogue_treatment_reaches_dbt_sources_meta() -> None:
    sources = yaml.safe_load(render(default_catalogue(), "hubspot"))["sources"][0]
    contacts = next(t for t in sources["tables"] if t["name"] == "contacts")
    meta = {c["name"]: c["config"]["meta"]["pii"] for c in contacts["columns"] if "config" in c}
    assert meta == dict(default_catalogue().get("hubspot.contacts").pii_columns)
    assert meta["properties_email"] == "hash" and meta["properties_phone"] == "mask"


def test_every_mart_pii_column_gets_a_rule_that_its_values_look_treated() -> None:
    manifest = load_manifest(dbt_manifest_path())
    rules = {rule.name: rule for gate in mart_gates(manifest) for rule in gate.rules}
    declared = pii_columns(manifest)
    assert declared["dim_contacts"]["email"] == "hash" and declared["dim_owners"]["first_name"] == "mask"
    for mart, columns in declared.items():
        for column, treatment in columns.items():
            rule = rules[f"marts.{mart}:pii_{treatment}ed:{column}"]
            assert rule.kwargs == {"column": column, "regex": TREATED_PATTERNS[treatment]}
            assert rule.pii, "a failing sample may be the raw value: it is redacted"
            assert rule.severity == "error"


def test_a_mart_meta_pii_that_is_not_a_treatment_is_refused_by_name() -> None:
    manifest = copy.deepcopy(load_manifest(dbt_manifest_path()))
    node = manifest["nodes"]["model.crm.dim_owners"]
    node["columns"]["email"]["config"]["meta"]["pii"] = True
    with pytest.raises(ValueError, match=r"dbt meta pii of dim_owners\.email is True; a mart column is hash or mask"):
        mart_gates(manifest)
