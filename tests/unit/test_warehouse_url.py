"""CRM_WAREHOUSE_URL problems produce one line naming the variable and what failed."""

from __future__ import annotations

import socket

import pytest

from crm_pipeline.errors import WarehouseConfigError
from crm_pipeline.warehouse.url import check_reachable, parse_warehouse_url


def test_parses_every_part() -> None:
    url = parse_warehouse_url("postgresql://loader:s%40cret@db.internal:6543/crm")
    assert (url.host, url.port, url.user, url.password, url.database) == (
        "db.internal",
        6543,
        "loader",
        "s@cret",
        "crm",
    )
    assert url.redacted() == "postgresql://loader:***@db.internal:6543/crm"
    assert url.sqlalchemy("psycopg2").startswith("postgresql+psycopg2://loader:s%40cret@")  # pragma: allowlist secret
    assert parse_warehouse_url("postgres://u@h/d").port == 5432


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("mysql://u@h/d", "CRM_WAREHOUSE_URL must be a postgresql:// URL, got scheme 'mysql'"),
        ("postgresql:///crm", "CRM_WAREHOUSE_URL has no host"),
        ("postgresql://u@h", "CRM_WAREHOUSE_URL must name one database"),
        ("postgresql://u@h:notaport/d", "CRM_WAREHOUSE_URL is malformed"),
        ("just words", "CRM_WAREHOUSE_URL must be a postgresql:// URL"),
    ],
)
def test_malformed_urls_name_the_variable(value: str, message: str) -> None:
    with pytest.raises(WarehouseConfigError) as excinfo:
        parse_warehouse_url(value)
    assert message in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_unreachable_server_is_one_line_and_hides_the_password() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never accepting
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        url = parse_warehouse_url(f"postgresql://u:topsecret@127.0.0.1:{port}/crm")
        with pytest.raises(WarehouseConfigError) as excinfo:
            check_reachable(url, timeout_s=2)
    text = str(excinfo.value)
    assert text.startswith(f"CRM_WAREHOUSE_URL (postgresql://u:***@127.0.0.1:{port}/crm) is unreachable:")
    assert "topsecret" not in text
    assert "\n" not in text
