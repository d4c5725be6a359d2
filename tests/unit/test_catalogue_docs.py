"""docs/streams.md is what the catalogue generates: changing one without the other fails here."""

from __future__ import annotations

from datetime import timedelta

import yaml

from crm_pipeline import dbt_sources
from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.catalogue_docs import STREAMS_DOC, render


def test_streams_doc_matches_the_catalogue() -> None:
    assert STREAMS_DOC.read_text() == render(default_catalogue()), "run `crm catalogue-docs` and commit the result"


def test_every_stream_is_documented_with_its_asset() -> None:
    text = render(default_catalogue())
    for spec in default_catalogue().streams:
        assert f"### `{spec.source}.{spec.stream}`" in text
        assert f"`{spec.asset_uri}`" in text


def test_dbt_sources_match_the_catalogue() -> None:
    catalogue = default_catalogue()
    for source in {s.source for s in catalogue.streams}:
        path = dbt_sources.path_for(source)
        assert path.read_text() == dbt_sources.render(catalogue, source), "run `crm catalogue-docs` and commit"
    assert dbt_sources.CONTRACT_MACRO.read_text() == dbt_sources.render_contract(catalogue), "crm catalogue-docs"


def test_freshness_follows_each_streams_frequency() -> None:
    sources = yaml.safe_load(dbt_sources.render(default_catalogue(), "hubspot"))["sources"][0]
    tables = {t["name"]: t for t in sources["tables"]}
    assert tables["deals"]["config"]["freshness"]["warn_after"] == {"count": 2, "period": "hour"}  # hourly
    assert tables["contacts"]["config"]["freshness"]["error_after"] == {"count": 24, "period": "hour"}  # every 6 h
    assert tables["companies"]["config"]["freshness"]["warn_after"] == {"count": 2, "period": "day"}  # daily
    assert {"name": "properties_email", "data_type": "varchar", "config": {"meta": {"pii": "hash"}}} in tables[
        "contacts"
    ]["columns"]
    assert {"name": "updatedAt", "data_type": "timestamp with time zone"} in tables["contacts"]["columns"]


def test_a_cron_frequency_uses_its_longest_gap() -> None:
    spec = default_catalogue().get("hubspot.deals").model_copy(update={"frequency": "0 9 * * 1-5"})
    assert dbt_sources.interval(spec) == timedelta(days=3), "Friday 09:00 to Monday 09:00"
