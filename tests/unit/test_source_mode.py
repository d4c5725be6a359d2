"""The source mode fails closed: Airbyte unless the environment says simulator, and nothing else is accepted."""

from __future__ import annotations

import pytest

from crm_pipeline.source_mode import AIRBYTE, SIMULATOR, SourceModeError, source_mode


def test_unset_or_empty_means_airbyte() -> None:
    assert source_mode({}) == AIRBYTE
    assert source_mode({"CRM_SOURCE_MODE": "  "}) == AIRBYTE


def test_simulator_is_chosen_explicitly() -> None:
    assert source_mode({"CRM_SOURCE_MODE": "simulator"}) == SIMULATOR
    assert source_mode({"CRM_SOURCE_MODE": " Airbyte "}) == AIRBYTE


def test_anything_else_is_refused_naming_the_variable() -> None:
    with pytest.raises(SourceModeError, match="CRM_SOURCE_MODE must be 'airbyte' or 'simulator', got 'simulated'"):
        source_mode({"CRM_SOURCE_MODE": "simulated"})
