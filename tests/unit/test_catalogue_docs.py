"""docs/streams.md is what the catalogue generates: changing one without the other fails here."""

from __future__ import annotations

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.catalogue_docs import STREAMS_DOC, render


def test_streams_doc_matches_the_catalogue() -> None:
    assert STREAMS_DOC.read_text() == render(default_catalogue()), "run `crm catalogue-docs` and commit the result"


def test_every_stream_is_documented_with_its_asset() -> None:
    text = render(default_catalogue())
    for spec in default_catalogue().streams:
        assert f"### `{spec.source}.{spec.stream}`" in text
        assert f"`{spec.asset_uri}`" in text
