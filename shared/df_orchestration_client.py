"""Start-or-signal the per-source orchestration on Durable Functions 1.x (the Azure engine).

The Durable Functions client is async (it talks to the extension's webhooks over aiohttp on the
worker's event loop), while the host-neutral Api, EventHandler and reconcile are synchronous. The
function app runs those in a worker thread (`asyncio.to_thread`) and this facade hands each client
call back to the event loop, so the sync code gets the same `signal` / `status` as on durabletask.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict

from orchestrations.retrain import ORCHESTRATOR_NAME, UPLOAD_EVENT, instance_id_for
from shared.orchestration_client import new_request
from shared.settings import Settings

ACTIVE = ("Running", "Pending", "ContinuedAsNew", "Suspended")
CALL_TIMEOUT_SECONDS = 60.0


def snake(name: str) -> str:
    """`ContinuedAsNew` -> `continued_as_new`: the same status names as the durabletask client reports."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _runtime_status(status) -> str | None:
    runtime = getattr(status, "runtime_status", None)
    return getattr(runtime, "value", runtime)


class DurableFunctionsOrchestrations:
    def __init__(self, settings: Settings, client=None, loop: asyncio.AbstractEventLoop | None = None):
        self.settings = settings
        self.client = client
        self.loop = loop

    def bind(self, client, loop: asyncio.AbstractEventLoop) -> DurableFunctionsOrchestrations:
        """Use this invocation's client: every invocation gets one, all talking to the same task hub."""
        self.client = client
        self.loop = loop
        return self

    async def signal_async(self, source_id: str, signal: dict) -> dict:
        """Start the source's orchestration, or raise the signal to the one already waiting or running."""
        instance_id = instance_id_for(source_id)
        last_error: Exception | None = None
        for _ in range(5):
            status = await self.client.get_status(instance_id)
            if status and _runtime_status(status) in ACTIVE:
                try:
                    await self.client.raise_event(instance_id, UPLOAD_EVENT, signal)
                    return {"instance_id": instance_id, "action": "signaled"}
                except Exception as exc:  # it ended in between (404/410): start it again
                    last_error = exc
                    continue
            try:
                payload = asdict(new_request(self.settings, source_id, signal))
                await self.client.start_new(ORCHESTRATOR_NAME, instance_id, payload)
                return {"instance_id": instance_id, "action": "started"}
            except Exception as exc:  # someone started it in between: signal that one
                last_error = exc
        raise RuntimeError(f"could not start or signal the orchestration of source {source_id}: {last_error}")

    async def status_async(self, instance_id: str) -> dict | None:
        status = await self.client.get_status(instance_id)
        if not status or _runtime_status(status) is None:
            return None
        return {
            "instance_id": status.instance_id,
            "runtime_status": snake(_runtime_status(status)),
            "created_at": status.created_time.isoformat() if status.created_time else None,
            "last_updated_at": status.last_updated_time.isoformat() if status.last_updated_time else None,
            "custom_status": status.custom_status,
            "output": status.output,
            "failure": status.output if _runtime_status(status) == "Failed" else None,
        }

    def _call(self, coroutine):
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is self.loop:
            coroutine.close()
            raise RuntimeError("the synchronous facade runs in a worker thread: use asyncio.to_thread")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(CALL_TIMEOUT_SECONDS)

    def signal(self, source_id: str, signal: dict) -> dict:
        return self._call(self.signal_async(source_id, signal))

    def status(self, instance_id: str) -> dict | None:
        return self._call(self.status_async(instance_id))
