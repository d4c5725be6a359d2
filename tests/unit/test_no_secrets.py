"""No secret is committed: detect-secrets (every plugin, its default filters) over every file git tracks.

A false positive (a test fixture's password, a dbt unit-test row whose column is named ``*_key``) is marked where
it stands with an inline ``pragma: allowlist secret`` comment, so a reviewer sees each exception in the diff; there
is no baseline file that could silently absorb a real secret.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from detect_secrets import SecretsCollection
from detect_secrets.settings import default_settings

ROOT = Path(__file__).resolve().parents[2]


def _tracked_files() -> list[str]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: nothing is about to be committed")
    return [str(ROOT / name) for name in listed.split("\0") if name and (ROOT / name).is_file()]


def _scan(paths: list[str]) -> list[str]:
    """``path:line: type`` of each potential secret found."""
    with default_settings():
        secrets = SecretsCollection(root=str(ROOT))
        for path in paths:
            secrets.scan_file(path)
    return sorted(f"{name}:{secret.line_number}: {secret.type}" for name, secret in secrets)


def test_no_tracked_file_holds_a_secret() -> None:
    found = _scan(_tracked_files())
    assert not found, "potential secrets (move them to an Airflow connection or the environment, or mark a false"
    " positive with an inline `pragma: allowlist secret` comment):\n" + "\n".join(found)


def test_the_scanner_finds_what_a_careless_commit_would_add(tmp_path: Path) -> None:
    """The check above is only worth something if the scanner, as configured, catches real-looking secrets."""
    planted = tmp_path / "settings.py"
    planted.write_text(
        # The pragmas stay in this file (the tracked one); the planted file gets the strings without them.
        'AWS_KEY = "AKIAZ7QXW3MV5EXAMPLE"\n'  # pragma: allowlist secret
        'WAREHOUSE = "postgresql://loader:Tr0ub4dor3xyz@db.internal:5432/crm"\n'  # pragma: allowlist secret
        'webhook_secret = "xoxb-20251124-f3a9c2d1e7b6a5948372615"\n'  # pragma: allowlist secret
    )
    found = _scan([str(planted)])
    assert {line.split(": ", 1)[1] for line in found} >= {"AWS Access Key", "Basic Auth Credentials"}, found
    assert len(found) >= 3, found
