"""Column names as destination-postgres makes them: examples from its own unit test (``PostgresNamingUtilsTest.kt``)
and, for the hashed long names, values computed with Java's ``String.hashCode`` itself."""

from __future__ import annotations

import pytest

from crm_pipeline.sources.contract import destination_column_name


@pytest.mark.parametrize(
    ("name", "column"),
    [
        ("my_table", "my_table"),
        ("MixedCase", "MixedCase"),
        ("my-table", "my_table"),
        ("my table", "my_table"),
        ("user!email", "user_email"),
        ("123table", "_123table"),
        ("99-red-balloons", "_99_red_balloons"),
        ("café", "cafe"),
        ("北京", "__"),
        ("my---table", "my___table"),
        ("User Id", "User_Id"),
        ("a" * 63, "a" * 63),
        ("a" * 100, "a" * 54 + "_23643840"),  # hashCode -323643840: the sign falls off with the first digit
        ("x" * 64, "x" * 54 + "_22607616"),
        ("é" + "b" * 70, "e" + "b" * 53 + "_82255771"),
    ],
)
def test_the_destination_names_a_column_as_its_naming_utils_do(name: str, column: str) -> None:
    assert destination_column_name(name) == column
    assert len(column) <= 63
