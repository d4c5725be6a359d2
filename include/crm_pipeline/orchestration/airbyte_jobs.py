"""Airbyte's job API as it behaves, not as the provider's happy path assumes (issue 27; docs/airbyte-api.md).

* A job waits in ``pending``, ``queued`` (the platform queues jobs when workers are busy), ``running`` or
  ``incomplete`` (an attempt failed, the job tries again): all four mean "keep waiting", where the provider treats
  ``queued`` as a failure and leaves the job running.
* Submitting while the connection already has a job answers 409: the task attaches to that job (found through
  ``GET /v1/jobs`` by connection) instead of failing or submitting a second one.
* A status read that fails for a passing reason (5xx, 429, a timeout, a dropped connection, a 401 once: the SDK
  then forgets its cached token and fetches a new one) is retried with backoff under the same job id; a read never
  submits anything, so a hung read cannot lead to a second job.
* A job that already ended is not cancelled (Airbyte would cancel the connection's current job instead), and a
  cancel answered 409 (it ended meanwhile) is recorded, not raised.

Calls go through the provider's hook's SDK session (``hook.airbyte_api``), so the error's HTTP status is at hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WAITING = frozenset({"pending", "queued", "running", "incomplete"})
# Airbyte's final job states (``JobStatus.kt``).
ENDED = frozenset({"succeeded", "failed", "cancelled"})
READ_TIMEOUT_SECONDS = 30.0


class TransientReadError(Exception):
    """A status read failed for a reason that passes: read again later, same job."""


@dataclass(frozen=True)
class Submitted:
    job_id: int
    status: str
    attached: bool  # the connection already had a job (409): this is that job


def submit(hook: Any, connection_id: str) -> Submitted:
    """Start a sync of the connection; on 409 (a job of it is already pending or running), that job."""
    from airbyte_api import api, errors, models

    try:
        created = hook.airbyte_api.jobs.create_job(
            request=models.JobCreateRequest(connection_id=connection_id, job_type=models.JobTypeEnum.SYNC)
        )
    except errors.SDKError as error:
        if error.status_code != 409:
            raise
        listed = hook.airbyte_api.jobs.list_jobs(
            request=api.ListJobsRequest(
                connection_id=connection_id, job_type=models.JobTypeEnum.SYNC, limit=20, order_by="createdAt|DESC"
            )
        )
        jobs = listed.jobs_response.data if listed.jobs_response else []
        running = [job for job in jobs if _value(job.status) in WAITING]
        if not running:  # it ended between the two calls: submit once more, the conflict is gone
            return submit(hook, connection_id)
        job = running[0]
        return Submitted(int(job.job_id), _value(job.status), attached=True)
    job = created.job_response
    return Submitted(int(job.job_id), _value(job.status), attached=False)


def read_status(hook: Any, job_id: int, timeout: float = READ_TIMEOUT_SECONDS) -> str:
    """The job's status (``JobStatusEnum``'s value); ``TransientReadError`` when the read may succeed later."""
    import httpx
    from airbyte_api import api, errors

    try:
        read = hook.airbyte_api.jobs.get_job(request=api.GetJobRequest(job_id=job_id), timeout_ms=int(timeout * 1000))
    except errors.SDKError as error:
        if error.status_code in (401, 408, 429) or error.status_code >= 500:
            raise TransientReadError(f"HTTP {error.status_code}") from error
        raise
    except (httpx.TimeoutException, httpx.TransportError, errors.NoResponseError) as error:
        raise TransientReadError(type(error).__name__) from error
    return _value(read.job_response.status)


def cancel(hook: Any, job_id: int) -> str:
    """Cancel the job, unless it already ended: ``cancelled`` or ``already ended``.

    Airbyte cancels through the connection's workflow, not the job (``SchedulerHandler.submitCancellationToWorker``
    in airbytehq/airbyte-platform), so cancelling an ended job would cancel whatever job of the connection runs
    now; its status is read first. A 409 (``state-conflict``, "Job is not currently running") means it ended.
    """
    from airbyte_api import api, errors

    try:
        if read_status(hook, job_id) in ENDED:
            return "already ended"
    except TransientReadError:
        pass  # cancel anyway: a job left running is the worse outcome
    try:
        hook.airbyte_api.jobs.cancel_job(request=api.CancelJobRequest(job_id=job_id))
    except errors.SDKError as error:
        if error.status_code == 409:
            return "already ended"
        raise
    return "cancelled"


def _value(status: Any) -> str:
    return str(getattr(status, "value", status))
