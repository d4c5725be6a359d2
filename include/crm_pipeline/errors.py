"""Exception classes. Each carries the context a person needs to act: file, stream, column, variable."""

from __future__ import annotations


class CrmPipelineError(Exception):
    """Base class for errors this project raises on purpose."""


class WarehouseConfigError(CrmPipelineError):
    """``CRM_WAREHOUSE_URL`` (or the Airflow connection) is malformed or the server is unreachable."""


class EmbeddedWarehouseError(CrmPipelineError):
    """The embedded PostgreSQL could not be initialised, started or stopped."""


class CatalogueError(CrmPipelineError):
    """The stream catalogue is invalid; the message names the file, the stream and the field."""


class AirflowSettingsError(CrmPipelineError):
    """``airflow_settings.yaml`` is malformed; the message names the entry."""


class BrowserMissingError(CrmPipelineError):
    """No Chromium to render pages with; the message says how to install Debian's."""


class BrokerError(CrmPipelineError):
    """The Celery broker of the local cluster cannot be found or started."""
