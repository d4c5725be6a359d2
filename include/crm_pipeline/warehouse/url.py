"""Parse and check warehouse URLs.

A bad ``CRM_WAREHOUSE_URL`` must fail with one line that names the variable and what is wrong, before
anything else runs, so parsing and the reachability probe live here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from urllib.parse import quote, unquote, urlsplit

import psycopg

from crm_pipeline.errors import WarehouseConfigError

MIN_SERVER_VERSION = 150000  # PostgreSQL 15: MERGE, NULLS NOT DISTINCT and security-invoker views
URL_VARIABLE = "CRM_WAREHOUSE_URL"


@dataclass(frozen=True)
class WarehouseUrl:
    """A PostgreSQL location with every part explicit, so every consumer (psycopg, SQLAlchemy, dbt,
    Airflow) gets the same host, port and database."""

    host: str
    port: int
    user: str
    password: str | None = field(repr=False)
    database: str = ""

    def libpq(self) -> str:
        """``postgresql://`` URL for psycopg and libpq."""
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(self.database, safe='')}"

    def sqlalchemy(self, driver: str = "psycopg") -> str:
        return self.libpq().replace("postgresql://", f"postgresql+{driver}://", 1)

    def airflow_conn_uri(self) -> str:
        """URI for ``AIRFLOW_CONN_*`` env vars (Airflow's ``postgres`` conn type)."""
        return self.libpq().replace("postgresql://", "postgres://", 1)

    def redacted(self) -> str:
        """The URL with the password masked, for messages and logs."""
        if not self.password:
            return self.libpq()
        masked = replace(self, password="***")  # noqa: S106 - the mask itself
        return masked.libpq().replace("%2A%2A%2A", "***")

    def with_database(self, database: str) -> WarehouseUrl:
        return replace(self, database=database)


def parse_warehouse_url(url: str, source: str = URL_VARIABLE) -> WarehouseUrl:
    """Parse ``url`` or raise :class:`WarehouseConfigError` naming ``source`` and the defect."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise WarehouseConfigError(f"{source} is malformed: {exc}") from None
    if parts.scheme not in {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"}:
        raise WarehouseConfigError(f"{source} must be a postgresql:// URL, got scheme {parts.scheme or '(none)'!r}")
    if not parts.hostname:
        raise WarehouseConfigError(f"{source} has no host: use postgresql://user@host:port/database")
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise WarehouseConfigError(f"{source} must name one database in its path, got {parts.path!r}")
    return WarehouseUrl(
        host=parts.hostname,
        port=port or 5432,
        user=unquote(parts.username) if parts.username else "postgres",
        password=unquote(parts.password) if parts.password else None,
        database=database,
    )


def check_reachable(url: WarehouseUrl, source: str = URL_VARIABLE, timeout_s: int = 5) -> int:
    """Connect once and return the server version number; raise a one-line error otherwise."""
    try:
        with psycopg.connect(url.libpq(), connect_timeout=timeout_s) as conn:
            version = conn.info.server_version
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WarehouseConfigError(f"{source} ({url.redacted()}) is unreachable: {reason}") from None
    if version < MIN_SERVER_VERSION:
        raise WarehouseConfigError(
            f"{source} ({url.redacted()}) runs PostgreSQL {version // 10000}; this project needs 15 or newer"
        )
    return version
