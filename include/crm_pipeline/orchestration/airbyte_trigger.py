"""The provider's Airbyte trigger, plus cancelling the job when a person kills the deferred task.

While a sync task is deferred it has no worker process, so the operator's ``on_kill`` cannot run: marking the task
failed, succeeded or clearing it would leave the Airbyte job syncing on its own. Airflow 3.3 calls a trigger's
``on_kill`` on exactly those user actions (not on triggerer restarts or redistribution, where the job must go on),
so that is where the job is cancelled, and where the sync's raw write registration ends
(``orchestration/replacing_writes.py``: a transform would otherwise wait for it until it lapses). Kept in its own
small module: the triggerer imports it by class path.
"""

from __future__ import annotations

import asyncio
from typing import Any

from airflow.providers.airbyte.hooks.airbyte import AirbyteHook
from airflow.providers.airbyte.triggers.airbyte import AirbyteSyncTrigger


class CancellingAirbyteSyncTrigger(AirbyteSyncTrigger):
    """``AirbyteSyncTrigger`` that cancels its job on user kill, and ends the job's raw write registration
    (``raw_write``: the holder and the streams, when the job replaces raw rows)."""

    def __init__(self, *args: Any, raw_write: tuple[str, list[str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw_write = raw_write

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{__name__}.{type(self).__name__}", {**kwargs, "raw_write": self.raw_write}

    async def on_kill(self) -> None:
        hook = AirbyteHook(airbyte_conn_id=self.conn_id)
        self.log.info("task killed while deferred: cancelling Airbyte job %s", self.job_id)
        try:
            # The hook is synchronous; keep the triggerer's event loop free while it talks to Airbyte.
            await asyncio.to_thread(hook.cancel_job, self.job_id)
        finally:  # a job that already ended, or an unreachable Airbyte, must not leave the registration behind
            if self.raw_write:
                from crm_pipeline.orchestration.replacing_writes import end
                from crm_pipeline.paths import LOADER_CONN_ID

                holder, streams = self.raw_write
                await asyncio.to_thread(end, holder, streams, conn_id=LOADER_CONN_ID)
