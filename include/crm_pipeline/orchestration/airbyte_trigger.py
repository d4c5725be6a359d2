"""The provider's Airbyte trigger, plus cancelling the job when a person kills the deferred task.

While a sync task is deferred it has no worker process, so the operator's ``on_kill`` cannot run: marking the task
failed, succeeded or clearing it would leave the Airbyte job syncing on its own. Airflow 3.3 calls a trigger's
``on_kill`` on exactly those user actions (not on triggerer restarts or redistribution, where the job must go on),
so that is where the job is cancelled, and where the sync's raw write registration ends
(``orchestration/replacing_writes.py``: a transform would otherwise wait for it until it lapses). Its polling
follows the API as it behaves (``airbyte_jobs.py``): ``queued`` and ``incomplete`` keep waiting, a read that fails
for a passing reason is retried with backoff under the same job id, and each such retry travels in the event, so
the task records it. Kept in its own small module: the triggerer imports it by class path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.airbyte.hooks.airbyte import AirbyteHook
from airflow.providers.airbyte.triggers.airbyte import AirbyteSyncTrigger
from airflow.sdk.exceptions import AirflowException
from airflow.triggers.base import TriggerEvent

from crm_pipeline.orchestration import airbyte_jobs

# The longest wait between two reads after failed ones (the poll interval doubles from there).
MAX_BACKOFF_SECONDS = 300.0


class CancellingAirbyteSyncTrigger(AirbyteSyncTrigger):
    """``AirbyteSyncTrigger`` that cancels its job on user kill, and ends the job's raw write registration
    (``raw_write``: the holder and the streams, when the job replaces raw rows)."""

    read_timeout = airbyte_jobs.READ_TIMEOUT_SECONDS  # one status read's limit; a slower read is retried

    def __init__(
        self,
        *args: Any,
        raw_write: tuple[str, list[str]] | None = None,
        api_events: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.raw_write = raw_write
        self.api_events = list(api_events or [])  # what the API made the task do before it deferred

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{__name__}.{type(self).__name__}", {
            **kwargs,
            "raw_write": self.raw_write,
            "api_events": self.api_events,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll the job until it ends, the wait's end or the execution deadline, as the provider's trigger does,
        but for the states and errors it mishandles (see the module's docstring)."""
        hook, retries, failed_in_a_row = AirbyteHook(airbyte_conn_id=self.conn_id), [], 0
        while True:
            now = time.time()
            if self.execution_deadline is not None and self.execution_deadline <= now:
                yield self._event("timeout", f"Job run {self.job_id} has reached execution timeout.", retries)
                return
            if self.end_time <= now:
                message = f"Job run {self.job_id} has not reached a terminal status within the task's wait (timeout)."
                yield self._event("error", message, retries)
                return
            try:
                # The SDK is synchronous; the read runs in a thread, so the triggerer's event loop stays free.
                status = await asyncio.to_thread(airbyte_jobs.read_status, hook, int(self.job_id), self.read_timeout)
            except airbyte_jobs.TransientReadError as error:
                failed_in_a_row += 1
                if str(error) == "HTTP 401" and failed_in_a_row > 1:  # a new token was refused too
                    yield self._event("error", f"Airbyte refused the credentials: {error}", retries)
                    return
                wait = min(self.poll_interval * 2 ** (failed_in_a_row - 1), MAX_BACKOFF_SECONDS)
                retries.append({"read": "status", "error": str(error), "at": now})
                self.log.warning("reading job %s failed (%s); reading again in %.0f s", self.job_id, error, wait)
                await asyncio.sleep(wait)
                continue
            except Exception as error:  # a 404 or another answer that will not change
                yield self._event("error", str(error), retries)
                return
            failed_in_a_row = 0
            if status == "succeeded":
                yield self._event("success", f"Job run {self.job_id} has completed successfully.", retries)
                return
            if status == "cancelled":
                yield self._event("cancelled", f"Job run {self.job_id} has been cancelled.", retries)
                return
            if status not in airbyte_jobs.WAITING:
                yield self._event("error", f"Job run {self.job_id} has failed (status {status}).", retries)
                return
            await asyncio.sleep(self.poll_interval)

    def _event(self, status: str, message: str, retries: list[dict[str, Any]]) -> TriggerEvent:
        events = [*self.api_events, *retries]
        return TriggerEvent({"status": status, "message": message, "job_id": self.job_id, "api_events": events})

    async def on_kill(self) -> None:
        hook = AirbyteHook(airbyte_conn_id=self.conn_id)
        self.log.info("task killed while deferred: cancelling Airbyte job %s", self.job_id)
        try:
            # The hook is synchronous; keep the triggerer's event loop free while it talks to Airbyte. A job that
            # ended meanwhile answers 409: nothing to cancel.
            try:
                outcome = await asyncio.to_thread(airbyte_jobs.cancel, hook, int(self.job_id))
            except Exception as exc:
                raise AirflowException(f"could not cancel Airbyte job {self.job_id}: {exc}") from exc
            self.log.info("Airbyte job %s: %s", self.job_id, outcome)
        finally:  # a job that already ended, or an unreachable Airbyte, must not leave the registration behind
            if self.raw_write:
                from crm_pipeline.orchestration.replacing_writes import end
                from crm_pipeline.paths import LOADER_CONN_ID

                holder, streams = self.raw_write
                await asyncio.to_thread(end, holder, streams, conn_id=LOADER_CONN_ID)
