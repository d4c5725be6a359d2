"""PII treatment on real PostgreSQL and real dbt: the warehouse's keyed hash, its key's life cycle, the CI check
over the marts' column lineage, and the mart audit's expectation that no value looks untreated.

The analyst's side (no published mart holds a raw email, phone or name; the hash function is not theirs to call)
is in ``test_warehouse_roles.py``, where the roles exist.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import scratch_database
from dbt_runs import dbt, sync_all

from crm_pipeline.paths import DBT_PROJECT_DIR
from crm_pipeline.quality.checkpoint import REDACTED
from crm_pipeline.quality.mart_audit import audit_build, failure_message
from crm_pipeline.quality.pii_lineage import compile_and_check
from crm_pipeline.warehouse import audit_log, pii
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration

PEPPER = "a test pepper, long enough"  # pragma: allowlist secret
LONG_PEPPER = "p" * 100  # longer than SHA-256's block: RFC 2104 hashes it first


@pytest.fixture(scope="module")
def built(server: WarehouseUrl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WarehouseUrl, Path]]:
    """The simulated CRMs' first sync at XS, built by dbt into marts_build (the dbt target path is returned: its
    manifest says which mart columns hold PII)."""
    with scratch_database(server, "crm_pii") as warehouse:
        sync_all(warehouse, scale="XS")
        target = tmp_path_factory.mktemp("dbt_pii")
        dbt(warehouse, target, "build")
        yield warehouse, target


@pytest.fixture
def keyless(server: WarehouseUrl) -> Iterator[psycopg.Connection]:
    with scratch_database(server, "crm_pii_key") as warehouse, psycopg.connect(warehouse.libpq()) as conn:
        yield conn


def test_the_warehouse_computes_hmac_sha256_as_python_does(keyless: psycopg.Connection) -> None:
    values = ["ada@bright.io", "Zoë Ñúñez", "", "x" * 1000, "email:ada@bright.io"]
    for pepper in (PEPPER, LONG_PEPPER):
        pii.install_key(keyless, pepper, rotate=True)
        for value in values:
            (hashed,) = keyless.execute("select crm_pii.pseudonymise(%s)", (value,)).fetchone()  # type: ignore[misc]
            assert hashed == pii.pseudonymise(pepper, value), (pepper[:4], value[:20])
    (null, masked) = keyless.execute("select crm_pii.pseudonymise(null), crm_pii.mask('Ada')").fetchone()  # type: ignore[misc]
    assert (null, masked) == (None, "A***")


def test_the_key_is_installed_once_refused_when_different_and_rotated_on_purpose(keyless: psycopg.Connection) -> None:
    pii.ensure_functions(keyless)
    with pytest.raises(psycopg.errors.RaiseException, match="no PII key in this warehouse"):
        keyless.execute("select crm_pii.pseudonymise('a')")
    keyless.rollback()
    assert pii.install_key(keyless, PEPPER) == "installed"
    installed = pii.key_installed_at(keyless)
    assert pii.install_key(keyless, PEPPER) == "unchanged"
    assert pii.key_installed_at(keyless) == installed, "the same pepper again changes nothing"
    with pytest.raises(pii.PepperError, match="crm_pii_pepper connection holds a different pepper") as refused:
        pii.install_key(keyless, LONG_PEPPER)
    assert LONG_PEPPER not in str(refused.value) and PEPPER not in str(refused.value)
    (hashed,) = keyless.execute("select crm_pii.pseudonymise('a')").fetchone()  # type: ignore[misc]
    assert hashed == pii.pseudonymise(PEPPER, "a"), "a refused pepper leaves the key as it was"

    assert pii.install_key(keyless, LONG_PEPPER, rotate=True) == "rotated"
    rotated_at = pii.key_installed_at(keyless)
    assert installed is not None and rotated_at is not None and rotated_at > installed
    (hashed,) = keyless.execute("select crm_pii.pseudonymise('a')").fetchone()  # type: ignore[misc]
    assert hashed == pii.pseudonymise(LONG_PEPPER, "a")
    keys = [e["details"]["key"] for e in audit_log.entries(keyless, "grant") if e["subject"] == "pii key"]
    assert keys == ["installed", "rotated"]
    entries = str(audit_log.entries(keyless))
    assert PEPPER not in entries and LONG_PEPPER not in entries and pii.fingerprint(PEPPER) not in entries


def test_a_short_pepper_is_refused_naming_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    too_short = {"conn_type": "generic", "password": "short"}  # pragma: allowlist secret
    monkeypatch.setenv(pii.PEPPER_VARIABLE, json.dumps(too_short))
    with pytest.raises(pii.PepperError, match=r"crm_pii_pepper connection's password .* at least 16"):
        pii.pii_pepper()
    monkeypatch.setenv(pii.PEPPER_VARIABLE, json.dumps({"conn_type": "generic", "password": PEPPER}))
    assert pii.pii_pepper() == PEPPER


LEAKY_MART = """
select
    people.contact_key,
    people.email as contact_email,
    crm_pii.mask(people.email) as masked_email,
    {{ pii('people.first_name', 'hubspot.contacts.properties_firstname') }} as first_name,
    count(distinct people.phone) over () as phones_known
from {{ ref('int_people__resolved') }} as people
"""


def test_the_pii_check_passes_the_project_and_names_every_leak(
    built: tuple[WarehouseUrl, Path], tmp_path: Path
) -> None:
    warehouse, _ = built
    assert compile_and_check(warehouse, tmp_path / "clean") == [], "the project's marts are clean"

    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    (project / "models" / "marts" / "core" / "leaky_contacts.sql").write_text(LEAKY_MART)
    findings = {str(f) for f in compile_and_check(warehouse, tmp_path / "leaky", project, marts={"leaky_contacts"})}
    for source in ("hubspot.contacts.properties_email", "salesforce.Contact.Email", "salesforce.Lead.Email"):
        assert f"leaky_contacts.contact_email: exposes {source} untreated; the catalogue says hash" in findings
        assert f"leaky_contacts.masked_email: exposes {source} only masked; the catalogue says hash" in findings
    assert "leaky_contacts.contact_key: is fed by PII columns but declares no meta pii" in findings
    assert "leaky_contacts.first_name: is fed by PII columns but declares no meta pii" in findings
    assert not any(f.startswith("leaky_contacts.first_name: exposes") for f in findings), "the macro treated it"
    assert not any(f.startswith("leaky_contacts.phones_known") for f in findings), "a count exposes no value"


def test_the_pii_macro_refuses_a_column_the_catalogue_does_not_mark(
    built: tuple[WarehouseUrl, Path], tmp_path: Path
) -> None:
    warehouse, _ = built
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    (project / "models" / "marts" / "core" / "typo.sql").write_text(
        "select {{ pii('people.source_person_id', 'hubspot.contacts.id') }} as id"
        " from {{ ref('int_people__resolved') }} as people"
    )
    with pytest.raises(RuntimeError, match=r"hubspot\.contacts\.id is not a PII column in include/crm_streams\.yml"):
        compile_and_check(warehouse, tmp_path / "typo", project, marts={"typo"})


def test_the_mart_audit_refuses_a_value_that_looks_untreated(built: tuple[WarehouseUrl, Path]) -> None:
    warehouse, target = built
    with psycopg.connect(warehouse.libpq()) as conn:
        (raw_email,) = conn.execute(
            "select email from staging.int_people__resolved where email is not null limit 1"
        ).fetchone()  # type: ignore[misc]
        reports = audit_build(warehouse, run_id="pii test", manifest=target / "manifest.json")
        assert failure_message(reports) is None, "dbt's marts pass the PII rules"
        conn.execute(
            "update marts_build.dim_contacts set email = %s where contact_key in"
            " (select contact_key from marts_build.dim_contacts limit 3)",
            (raw_email,),
        )
        conn.execute("update marts_build.dim_owners set first_name = 'Ada'")
        conn.commit()
    reports = audit_build(warehouse, run_id="pii test", manifest=target / "manifest.json")
    message = failure_message(reports)
    assert message is not None
    assert "marts.dim_contacts:pii_hashed:email (3 unexpected" in message
    assert "marts.dim_owners:pii_masked:first_name" in message
    assert raw_email not in message and "Ada" not in message and REDACTED in message, "samples are redacted"
