"""What function_app.py's triggers call: Azure Functions objects in, the host-neutral domain out.

One `FunctionsHost` per worker process holds the ports, the HTTP `Api` and its `EventHandler` (whose
memory of event ids dedupes Event Grid's at-least-once deliveries). Blocking domain code runs in a
worker thread; the Durable Functions client calls go back to the worker's event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import urlparse

import azure.functions as func

from orchestrations.df_adapter import unwrap_activity_input
from shared.api import Api
from shared.df_orchestration_client import DurableFunctionsOrchestrations
from shared.reconcile import reconcile
from shared.telemetry import activity_span

log = logging.getLogger("multiline.functions")


def _time(moment) -> str | None:
    return moment.isoformat() if moment else None


def event_to_dict(event) -> dict:
    """An Event Grid trigger argument (Event Grid schema or CloudEvents) back as the JSON it arrived as."""
    if isinstance(event, func.CloudEvent):
        return {
            "specversion": event.specversion or "1.0",
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time": _time(event.time),
            "data": event.get_json(),
        }
    return {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": _time(event.event_time),
        "dataVersion": event.data_version or "",
        "data": event.get_json(),
    }


def run_activity(function, envelope):
    """One activity invocation: unwrap the adapter's envelope, trace it with source and instance ids."""
    payload, instance_id = unwrap_activity_input(envelope)
    with activity_span(function.__name__, payload, instance_id):
        return function(payload)


class FunctionsHost:
    def __init__(self, ports=None):
        self._ports = ports
        self._api: Api | None = None
        self._orchestrations: DurableFunctionsOrchestrations | None = None

    @property
    def ports(self):
        if self._ports is None:
            from shared.adapters import get_ports

            self._ports = get_ports()
        return self._ports

    def _bound(self, client) -> DurableFunctionsOrchestrations:
        if self._orchestrations is None:
            self._orchestrations = DurableFunctionsOrchestrations(self.ports.settings)
        return self._orchestrations.bind(client, asyncio.get_running_loop())

    def _api_for(self, orchestrations) -> Api:
        if self._api is None:
            self._api = Api(self.ports, orchestrations)
        return self._api

    async def http(self, req: func.HttpRequest, client) -> func.HttpResponse:
        await asyncio.to_thread(lambda: self.ports)  # building the adapters may block: not on the loop
        orchestrations = self._bound(client)
        api = self._api_for(orchestrations)
        path = urlparse(req.url).path
        response = await asyncio.to_thread(api.handle, req.method, path, dict(req.headers), req.get_body())
        if response.status == 202 and isinstance(response.body, dict) and response.body.get("id"):
            # The Durable Functions answer: status, event, terminate and purge URLs with the system key.
            check = client.create_check_status_response(req, response.body["id"])
            body = {**json.loads(check.get_body()), "action": response.body.get("action")}
            return func.HttpResponse(json.dumps(body), status_code=202, headers=dict(check.headers))
        data, content_type = response.encoded()
        return func.HttpResponse(data, status_code=response.status, headers={**response.headers, "Content-Type": content_type})

    async def event(self, event, client) -> dict:
        await asyncio.to_thread(lambda: self.ports)
        api = self._api_for(self._bound(client))
        outcome = await asyncio.to_thread(api.events.handle, [event_to_dict(event)])
        log.info("event %s: %s", event.id, outcome.to_dict())
        return outcome.to_dict()

    async def reconcile(self, client) -> list[dict]:
        await asyncio.to_thread(lambda: self.ports)
        orchestrations = self._bound(client)
        started = await asyncio.to_thread(reconcile, self.ports, orchestrations)
        for item in started:
            log.info("reconcile: source %s -> %s", item["source_id"], item.get("action") or item.get("error"))
        return started
