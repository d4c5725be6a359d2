"""Finding Chromium: the configured binary, else PATH, else an error that says how to install Debian's."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_pipeline.browser import CHROMIUM_VARIABLE, find_chromium
from crm_pipeline.errors import BrowserMissingError


def test_a_configured_chromium_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CHROMIUM_VARIABLE, str(tmp_path / "nowhere" / "chromium"))
    with pytest.raises(BrowserMissingError, match=f"{CHROMIUM_VARIABLE}=.*nowhere/chromium: no such file"):
        find_chromium()
    binary = tmp_path / "chromium"
    binary.write_text("")
    monkeypatch.setenv(CHROMIUM_VARIABLE, str(binary))
    assert find_chromium() == binary


def test_without_chromium_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(CHROMIUM_VARIABLE, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrowserMissingError, match="make browser"):
        find_chromium()
