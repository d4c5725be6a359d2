"""An Airbyte-API-compatible server on loopback, for tests and local trials of the Airbyte path.

The Airbyte platform cannot run on this project's machines, so this double stands in for it, following Airbyte's
public API (v1) as ``apache-airflow-providers-airbyte`` and ``airbyte-api`` call it:

* ``POST /v1/applications/token`` (form: ``grant_type=client_credentials``, ``client_id``, ``client_secret``) →
  ``{"access_token", "token_type": "Bearer", "expires_in"}``; every other call needs ``Authorization: Bearer``;
* ``POST /v1/jobs`` (``{"connectionId", "jobType": "sync"}``) → a job response, status ``pending``; while the
  connection already has a job pending, queued or running, 409 ``try-again-later`` (``TemporalClient.kt``'s
  "A sync is already running", mapped by ``SchedulerHandler.kt`` and ``ConfigClientErrorHandler.kt``);
* ``GET /v1/jobs?connectionId=…`` → ``{"data": [job responses], "next": "", "previous": ""}``;
* ``GET /v1/jobs/{jobId}`` → ``{"jobId", "status", "jobType", "startTime", "connectionId", "rowsSynced",
  "bytesSynced", "duration"}``, and ``lastUpdatedAt`` once the job has ended (``JobResponseMapper.kt``);
* ``DELETE /v1/jobs/{jobId}`` → the job, now ``cancelled``; an ended job is left as it is;
* ``GET /v1/connections/{connectionId}`` → the connection as the SDK's ``ConnectionResponse`` model serialises it:
  set up as docs/deploy.md says (active, manual schedule, namespace ``raw_<source>``, no prefix, each stream with
  the catalogue's sync mode, key and cursor), changed by ``connection_changes`` where a test wants a mismatch;
* ``GET /v1/destinations/{destinationId}`` → the connections' Postgres destination (the SDK's
  ``DestinationResponse`` with a ``DestinationPostgres`` configuration) as the server sends it: the configuration
  stored without ``destinationType`` (``DestinationsController.kt``) and its secret masked; changed by
  ``destination_changes``;
* ``GET /v1/health`` → 200, without authentication (``HealthController.kt``).

Errors are Problem JSON bodies (``type``, ``title``, ``status``, ``detail``, ``data``) sent as
``application/json``, as ``api-problems.yaml`` and the server's problem handler make them (all in
airbytehq/airbyte-platform).

A sync job does what Airbyte would: for each stream of the connection it runs the CRM simulator's next sync into
the warehouse, stamping the job id as ``_airbyte_meta.sync_id``, logged in as ``crm_loader``, the login
docs/deploy.md gives the destination (the deploy step must have created the roles). ``mode`` scripts the
platform's misbehaviour: ``ok``, ``pending`` (jobs never start), ``fail`` (jobs fail), ``fail_after_load`` (the
first stream's rows land, then the job fails: each COPY flush commits in the real destination, so a failed job can
leave rows behind), ``hang`` (job reads never answer), ``unauthorized`` (the token endpoint answers 401),
``unknown_status`` (jobs report a status the API does not define), ``queued`` (a job waits ``queued`` until its
read number ``queued_reads``, as when workers are busy, then runs), ``incomplete`` (a job's first reads show
``incomplete``, an attempt that failed and is tried again), ``flaky`` (a job's first read answers 503, its second
hangs past the client's timeout), ``expire_token`` (the first job read finds every issued token revoked: 401),
``ends_on_cancel`` (a cancel arrives as the job ends: the job succeeds and the cancel answers 409
``state-conflict``).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import psycopg

from crm_pipeline.catalogue import StreamSpec
from crm_pipeline.orchestration.airbyte_jobs import WAITING
from crm_pipeline.sources.simulator.sync import run_sync
from crm_pipeline.warehouse.roles import LOADER, ROLES_DIR, role_password
from crm_pipeline.warehouse.url import WarehouseUrl

MODES = (
    "ok",
    "pending",
    "fail",
    "fail_after_load",
    "hang",
    "unauthorized",
    "unknown_status",
    "queued",
    "incomplete",
    "flaky",
    "expire_token",
    "ends_on_cancel",
)
PROBLEMS = "https://reference.airbyte.com/reference/errors#"
DESTINATION_ID = str(uuid.UUID(int=1))
MASKED = "*" * 10  # how the server shows a secret of a configuration it returns
POSTGRES_DEFINITION_ID = "25c5221d-dce2-4163-ade9-739ef790f503"  # destination-postgres' metadata.yaml


@dataclass
class Job:
    job_id: int
    connection_id: str
    status: str = "pending"
    started: float = field(default_factory=time.time)
    finished: float | None = None
    rows: int = 0
    bytes: int = 0
    error: str | None = None
    reads: int = 0  # status reads answered so far (scripted modes act on the first ones)

    def response(self, status: str | None = None) -> dict[str, Any]:
        """The job as ``GET /v1/jobs/{id}`` sends it, built with the SDK's ``JobResponse`` (``JobResponseMapper.kt``:
        no duration while pending, ``lastUpdatedAt`` once ended)."""
        from airbyte_api import models

        elapsed = int((self.finished or time.time()) - self.started)
        shown = status or self.status
        ended = self.finished is not None and shown not in WAITING
        body = models.JobResponse(
            connection_id=self.connection_id,
            job_id=self.job_id,
            job_type=models.JobTypeEnum.SYNC,
            start_time=datetime.fromtimestamp(self.started, UTC).isoformat(),
            status=models.JobStatusEnum.PENDING,  # replaced below: unknown_status mode sends what no enum holds
            duration=None if shown == "pending" else f"PT{elapsed}S",
            rows_synced=self.rows,
            bytes_synced=self.bytes,
            last_updated_at=datetime.fromtimestamp(self.finished, UTC).isoformat() if ended else None,
        ).model_dump(mode="json", by_alias=True)
        return {**body, "status": shown}


def _is_uuid(text: Any) -> bool:
    try:
        uuid.UUID(str(text))
    except ValueError:
        return False
    return True


def problem(status: int, name: str, detail: str) -> dict[str, Any]:
    """An error body as the API sends one (``api-problems.yaml``)."""
    return {"type": PROBLEMS + name, "title": name, "status": status, "detail": detail}


class AirbyteDouble:
    """The server and its state. ``connections`` maps an Airbyte connection id to the streams it syncs."""

    def __init__(
        self,
        warehouse: WarehouseUrl,
        connections: dict[str, list[StreamSpec]],
        *,
        client_id: str,
        client_secret: str,
        seed: int = 7,
        scale: str = "XS",
        first_job_id: int = 1000,
        roles_dir: Path = ROLES_DIR,
    ) -> None:
        self.warehouse = warehouse
        self.connections = connections
        self.client_id, self.client_secret = client_id, client_secret
        self.seed, self.scale = seed, scale
        self.roles_dir = roles_dir
        self.mode = "ok"
        self.queued_reads = 3  # queued mode: the read that finds workers free again (the job then runs)
        self.jobs: dict[int, Job] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path): what the client asked, for tests
        self._tokens: set[str] = set()
        self._expired = False  # expire_token mode: the tokens were revoked once
        # per connection id, what differs from a connection set up as docs/deploy.md says: top-level fields of
        # the response ("prefix", "schedule_type", ...), and "streams": {name: {field: value} or None (unselected)}
        self.connection_changes: dict[str, dict[str, Any]] = {}
        self.destination_changes: dict[str, Any] = {}  # configuration fields, or "destinationType"
        self._next_id = first_job_id
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True  # a "hang" request must not keep the test process alive
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The server URL for the Airflow connection's host (the token URL is relative to it)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> AirbyteDouble:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _destination(self) -> WarehouseUrl:
        """The destination's login: ``crm_loader``, with the password of the checkout (or cluster) whose deploy
        step created the role, read when a job runs, after that deploy."""
        return replace(self.warehouse, user=LOADER.name, password=role_password(LOADER, self.roles_dir))

    # -- jobs --------------------------------------------------------------------------------------------
    def _create_job(self, connection_id: str) -> Job | None:
        """A new job of the connection, or None while it already has one that has not ended (Airbyte's 409)."""
        with self._lock:
            if any(j.connection_id == connection_id and j.status in WAITING for j in self.jobs.values()):
                return None
            job = Job(self._next_id, connection_id)
            self._next_id += 1
            self.jobs[job.job_id] = job
        if self.mode in ("ok", "fail_after_load", "incomplete", "flaky", "expire_token", "ends_on_cancel"):
            self.release(job.job_id, fail_after_load=self.mode == "fail_after_load")
        elif self.mode == "fail":
            threading.Thread(target=self._fail_soon, args=(job,), daemon=True).start()
        return job

    def release(self, job_id: int, *, fail_after_load: bool = False) -> None:
        """Start a job that waits (``pending`` or ``queued`` mode): it runs now."""
        threading.Thread(target=self._run, args=(self.jobs[job_id], fail_after_load), daemon=True).start()

    @staticmethod
    def _fail_soon(job: Job) -> None:
        """The real API fails a job later, seen through status reads, never in the POST's answer."""
        job.status = "running"
        time.sleep(0.3)
        job.status, job.finished, job.error = "failed", time.time(), "source-hubspot: HTTP 429 from HubSpot"

    def connection(self, connection_id: str) -> dict[str, Any]:
        """The connection's ``GET /v1/connections/{id}`` body, built with the SDK's own models."""
        from airbyte_api import models

        from crm_pipeline.orchestration.airbyte_preflight import API_SYNC_MODES

        specs = self.connections[connection_id]
        changes = dict(self.connection_changes.get(connection_id, {}))
        stream_changes = changes.pop("streams", {})
        streams = []
        for spec in specs:
            fields: dict[str, Any] = {
                "name": spec.stream,
                "sync_mode": API_SYNC_MODES[spec.sync_mode],
                "primary_key": [[key] for key in spec.primary_key],
                "cursor_field": [spec.cursor_field] if spec.cursor_field else [],
            }
            if spec.stream in stream_changes and stream_changes[spec.stream] is None:
                continue  # not selected
            fields.update(stream_changes.get(spec.stream) or {})
            streams.append(models.StreamConfiguration(**fields))
        for name, fields in stream_changes.items():
            if fields is not None and name not in {s.stream for s in specs}:
                streams.append(models.StreamConfiguration(**{"name": name, **fields}))
        top: dict[str, Any] = {
            "status": "active",
            "namespace_definition": "custom_format",
            "namespace_format": specs[0].raw_schema,
            "prefix": "",
            **changes,
        }
        schedule = models.ConnectionScheduleResponse(schedule_type=top.pop("schedule_type", "manual"))
        response = models.ConnectionResponse(
            configurations=models.StreamConfigurations(streams=streams),
            connection_id=connection_id,
            created_at=int(time.time()),
            destination_id=DESTINATION_ID,
            name=f"crm {specs[0].source} {specs[0].frequency}",
            schedule=schedule,
            source_id=str(uuid.UUID(int=2)),
            tags=[],
            workspace_id=str(uuid.UUID(int=3)),
            **top,
        )
        return response.model_dump(mode="json", by_alias=True)

    def destination(self) -> dict[str, Any]:
        """The destination's ``GET /v1/destinations/{id}`` body: built with the SDK's models, then as the server
        returns it (stored without ``destinationType``, the password masked)."""
        from airbyte_api import models

        changes = dict(self.destination_changes)
        destination_type = changes.pop("destinationType", "postgres")
        target = self.warehouse
        config = models.DestinationPostgres(
            host=target.host, port=target.port, database=target.database, username=LOADER.name
        ).model_dump(mode="json", by_alias=True)
        config.pop("destinationType")
        config.update(changes)
        config["password"] = MASKED
        response = models.DestinationResponse(
            configuration=models.DestinationPostgres(database="", host="", username=""),
            created_at=int(time.time()),
            definition_id=POSTGRES_DEFINITION_ID,
            destination_id=DESTINATION_ID,
            destination_type=destination_type,
            name="crm warehouse",
            workspace_id=str(uuid.UUID(int=3)),
        ).model_dump(mode="json", by_alias=True)
        return {**response, "configuration": config}

    @staticmethod
    def job_list(jobs: list[Job]) -> dict[str, Any]:
        """``GET /v1/jobs``' body, the SDK's ``JobsResponse``."""
        from airbyte_api import models

        listed = models.JobsResponse(data=[models.JobResponse.model_validate(j.response()) for j in jobs], next="")
        return listed.model_dump(mode="json", by_alias=True)

    def _read(self, job: Job) -> tuple[int, dict[str, Any]]:
        """A status read as the current mode scripts it: (HTTP status, body)."""
        job.reads += 1
        if self.mode == "queued" and job.status == "pending":
            if job.reads >= self.queued_reads:
                self.release(job.job_id)
            return HTTPStatus.OK, job.response("queued")
        if self.mode == "incomplete" and job.reads <= 2:
            return HTTPStatus.OK, job.response("incomplete")
        if self.mode == "flaky" and job.reads == 1:
            return HTTPStatus.SERVICE_UNAVAILABLE, problem(503, "service-unavailable", "Service unavailable")
        if self.mode == "flaky" and job.reads == 2:
            time.sleep(5)  # past the client's read timeout: the client gives up on this read
        return HTTPStatus.OK, job.response("exploded" if self.mode == "unknown_status" else None)

    def _run(self, job: Job, fail_after_load: bool = False) -> None:
        job.status = "running"
        try:
            # Each stream's load commits on its own, as the destination's flushes do: a later failure keeps it.
            with psycopg.connect(self._destination().libpq(), autocommit=True) as conn:
                for n, spec in enumerate(self.connections[job.connection_id]):
                    if job.status == "cancelled":
                        return
                    if fail_after_load and n == 1:
                        raise RuntimeError(f"source-hubspot: HTTP 502 from HubSpot while reading {spec.stream}")
                    result = run_sync(
                        conn,
                        spec,
                        seed=self.seed,
                        scale=self.scale,  # type: ignore[arg-type]
                        sync_id=job.job_id,
                        as_airbyte=True,
                    )
                    job.rows += result.rows
                    job.bytes += result.rows * 512
        except Exception as exc:  # a failed sync is reported through the job, as Airbyte does
            job.status, job.error = "failed", str(exc)
        else:
            if job.status != "cancelled":
                job.status = "succeeded"
        finally:
            job.finished = time.time()

    # -- HTTP --------------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # the base class names it `format`
                return

            def _reply(self, status: int, body: dict[str, Any] | None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
                if token in double._tokens:
                    return True
                self._reply(HTTPStatus.UNAUTHORIZED, problem(401, "unauthorized", "Invalid or expired token"))
                return False

            def _job(self) -> Job | None:
                try:
                    job = double.jobs.get(int(self.path.rsplit("/", 1)[1]))
                except ValueError:
                    job = None
                if job is None:
                    self._reply(HTTPStatus.NOT_FOUND, problem(404, "resource-not-found", "Resource not found"))
                return job

            def do_POST(self) -> None:
                double.requests.append(("POST", self.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                if self.path == "/v1/applications/token":
                    form = {k: v[0] for k, v in parse_qs(body).items()}
                    valid = (form.get("client_id"), form.get("client_secret")) == (
                        double.client_id,
                        double.client_secret,
                    )
                    if double.mode == "unauthorized" or not valid:
                        self._reply(HTTPStatus.UNAUTHORIZED, problem(401, "unauthorized", "Invalid client credentials"))
                        return
                    token = secrets.token_urlsafe(16)
                    double._tokens.add(token)
                    self._reply(HTTPStatus.OK, {"access_token": token, "token_type": "Bearer", "expires_in": 180})
                elif self.path == "/v1/jobs":
                    if not self._authorised():
                        return
                    request = json.loads(body or "{}")
                    connection_id = request.get("connectionId")
                    if not _is_uuid(connection_id):  # the spec's `format: uuid`
                        self._reply(HTTPStatus.BAD_REQUEST, problem(400, "bad-request", "connectionId must be a UUID"))
                        return
                    if request.get("jobType") != "sync" or connection_id not in double.connections:
                        detail = f"unknown connection {connection_id}"
                        self._reply(HTTPStatus.BAD_REQUEST, problem(400, "bad-request", detail))
                        return
                    job = double._create_job(connection_id)
                    if job is None:
                        conflict = problem(409, "try-again-later", "Please try again later.")
                        conflict["data"] = {"message": f"A sync is already running for: {connection_id}"}
                        self._reply(HTTPStatus.CONFLICT, conflict)
                        return
                    self._reply(HTTPStatus.OK, job.response())
                else:
                    self._reply(HTTPStatus.NOT_FOUND, problem(404, "resource-not-found", "Resource not found"))

            def do_GET(self) -> None:
                double.requests.append(("GET", self.path))
                path, _, query = self.path.partition("?")
                if path == "/v1/health":  # no authentication (HealthController.kt)
                    self._reply(HTTPStatus.OK, None)
                    return
                if path.startswith("/v1/connections/"):
                    if self._authorised():
                        connection_id = path.removeprefix("/v1/connections/")
                        if not _is_uuid(connection_id):
                            self._reply(HTTPStatus.BAD_REQUEST, problem(400, "bad-request", "not a UUID"))
                        elif connection_id in double.connections:
                            self._reply(HTTPStatus.OK, double.connection(connection_id))
                        else:
                            self._reply(HTTPStatus.NOT_FOUND, problem(404, "resource-not-found", "Resource not found"))
                    return
                if path.startswith("/v1/destinations/"):
                    if self._authorised():
                        if path.removeprefix("/v1/destinations/") == DESTINATION_ID:
                            self._reply(HTTPStatus.OK, double.destination())
                        else:
                            self._reply(HTTPStatus.NOT_FOUND, problem(404, "resource-not-found", "Resource not found"))
                    return
                if not path.startswith("/v1/jobs"):
                    self._reply(HTTPStatus.NOT_FOUND, problem(404, "resource-not-found", "Resource not found"))
                    return
                if double.mode == "expire_token" and path != "/v1/jobs" and not double._expired:
                    double._expired = True
                    double._tokens.clear()  # revoked: the client must fetch a new token
                if not self._authorised():
                    return
                if path == "/v1/jobs":
                    wanted = parse_qs(query).get("connectionId", [None])[0]
                    listed = [j for j in double.jobs.values() if wanted in (None, j.connection_id)]
                    listed.sort(key=lambda j: j.job_id, reverse=True)
                    self._reply(HTTPStatus.OK, double.job_list(listed))
                    return
                if double.mode == "hang":
                    time.sleep(3600)
                job = self._job()
                if job is not None:
                    self._reply(*double._read(job))

            def do_DELETE(self) -> None:
                double.requests.append(("DELETE", self.path))
                if not self.path.startswith("/v1/jobs/"):
                    self._reply(HTTPStatus.NOT_FOUND, problem(404, "resource-not-found", "Resource not found"))
                    return
                if not self._authorised():
                    return
                job = self._job()
                if job is None:
                    return
                if double.mode == "ends_on_cancel" and job.status in WAITING:
                    job.status, job.finished = "succeeded", time.time()
                    self._reply(HTTPStatus.CONFLICT, problem(409, "state-conflict", "State conflict"))
                    return
                if job.status in WAITING:
                    job.status, job.finished = "cancelled", time.time()
                self._reply(HTTPStatus.OK, job.response())

        return Handler
