"""The Dockerfile reader the image replay relies on."""

from __future__ import annotations

import pytest

from crm_pipeline.image_replay import parse_dockerfile, parse_env
from crm_pipeline.paths import PROJECT_DIR


def test_continuations_and_comments() -> None:
    steps = parse_dockerfile('# c\nFROM img:1\n\nENV A=1 \\\n    B="two words"\nRUN echo a && \\\n  echo b\n')
    assert [(s.keyword, s.line) for s in steps] == [("FROM", 2), ("ENV", 4), ("RUN", 6)]
    assert parse_env(steps[1].argument) == {"A": "1", "B": "two words"}
    assert steps[2].argument == "echo a &&  echo b"


def test_env_needs_key_value_form() -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_env("A 1")


def test_project_dockerfile_is_astro_runtime_and_bakes_the_manifest() -> None:
    steps = parse_dockerfile((PROJECT_DIR / "Dockerfile").read_text())
    assert steps[0].keyword == "FROM"
    assert steps[0].argument.startswith("astrocrpublic.azurecr.io/runtime:3.3-")
    assert any(s.keyword == "RUN" and s.argument.startswith("dbt parse") for s in steps)
