"""What function_app.py's triggers call: Azure Functions objects in, the host-neutral domain out.

One `FunctionsHost` per worker process holds the ports, the HTTP `Api` and its `EventHandler` (whose
memory of event ids dedupes Event Grid's at-least-once deliveries). Blocking domain code runs in a
worker thread; the Durable Functions client calls go back to the worker's event loop.

That memory is per process: on Azure Functions every instance (and every worker process on it) has its
own, so `GET /api/events` reports the counters of the process that answered, says so, and says which
process it was. Fleet-wide totals are in Application Insights (each handled event is logged with its
counts as custom dimensions; docs/AZURE.md has the query).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from datetime import datetime, timezone
from urllib.parse import parse_qs, quote, urlparse

import azure.functions as func

from orchestrations.df_adapter import unwrap_activity_input
from shared.api import Api, Response
from shared.df_orchestration_client import DurableFunctionsOrchestrations
from shared.reconcile import reconcile
from shared.telemetry import activity_span

log = logging.getLogger("multiline.functions")

EVENT_COUNTER_SCOPE = (
    "counters of this worker process since counted_since, not of the whole app: Azure Functions may run "
    "several instances and restarts them; sum the event log records in Application Insights for totals"
)


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


def _absolute_status_url(accepted: Response, request_url: str) -> Response:
    """A 202 as the check-status pattern has it (Location and statusQueryGetUri), pointing at this app's own
    `GET /api/runs/{id}` on the host the caller used.

    Not `create_check_status_response`: its URLs carry the Durable extension's system key, which lets anyone
    holding it terminate or purge any instance of the task hub (every source's), and a function key must not
    be enough to get it. The run route needs the caller's function key, like every route of the API.
    """
    origin = "{0.scheme}://{0.netloc}".format(urlparse(request_url))
    status_url = origin + accepted.headers["Location"]
    return Response(202, {**accepted.body, "statusQueryGetUri": status_url}, {**accepted.headers, "Location": status_url})


class FunctionsHost:
    def __init__(self, ports=None):
        self._ports = ports
        self._api: Api | None = None
        self._orchestrations: DurableFunctionsOrchestrations | None = None
        self._counting_since: datetime | None = None

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
            self._counting_since = datetime.now(timezone.utc)
        return self._api

    async def _ready_api(self, client) -> Api:
        await asyncio.to_thread(lambda: self.ports)  # building the adapters may block: not on the loop
        return self._api_for(self._bound(client))

    async def http(self, req: func.HttpRequest, client) -> func.HttpResponse:
        await asyncio.to_thread(lambda: self.ports)  # building the adapters may block: not on the loop
        orchestrations = self._bound(client)
        api = self._api_for(orchestrations)
        path = urlparse(req.url).path
        response = await asyncio.to_thread(api.handle, req.method, path, dict(req.headers), req.get_body())
        if response.status == 202 and isinstance(response.body, dict) and response.body.get("id"):
            response = _absolute_status_url(response, req.url)
        data, content_type = response.encoded()
        return func.HttpResponse(data, status_code=response.status, headers={**response.headers, "Content-Type": content_type})

    async def fleet_page(self, req: func.HttpRequest, client) -> func.HttpResponse:
        """The local host's `GET /` page; its link to the JSON carries the caller's function key, if any."""
        api = await self._ready_api(client)
        key = _function_key(req)
        href = "/api/sources" + (f"?code={quote(key, safe='')}" if key else "")
        response = await asyncio.to_thread(api.fleet_page, href)
        data, content_type = response.encoded()
        return func.HttpResponse(data, status_code=response.status, mimetype=content_type.split(";")[0], charset="utf-8")

    async def event_counters(self, client) -> func.HttpResponse:
        """The event handler's counters, labelled as what they are: this worker process's since it started."""
        api = await self._ready_api(client)
        body = {
            "scope": "worker",
            "note": EVENT_COUNTER_SCOPE,
            "worker": {"host": socket.gethostname(), "pid": os.getpid()},
            "counted_since": self._counting_since.isoformat() if self._counting_since else None,
            **api.events.stats.snapshot(),
        }
        return func.HttpResponse(json.dumps(body, indent=1), status_code=200, mimetype="application/json")

    async def event(self, event, client) -> dict:
        api = await self._ready_api(client)
        outcome = await asyncio.to_thread(api.events.handle, [event_to_dict(event)])
        result = outcome.to_dict()
        ignored_kinds = sorted({item.get("kind") or "unknown" for item in result["ignored"]})
        log.info(
            "event %s: %s",
            event.id,
            result,
            # Flat custom dimensions in Application Insights: the fleet-wide event counts (docs/AZURE.md).
            extra={
                "multiline_event_id": str(event.id),
                "multiline_event_accepted": len(result["accepted"]),
                "multiline_event_ignored": len(result["ignored"]),
                "multiline_event_ignored_kinds": ",".join(ignored_kinds),
            },
        )
        return result

    async def reconcile(self, client) -> list[dict]:
        await asyncio.to_thread(lambda: self.ports)
        orchestrations = self._bound(client)
        started = await asyncio.to_thread(reconcile, self.ports, orchestrations)
        for item in started:
            log.info("reconcile: source %s -> %s", item["source_id"], item.get("action") or item.get("error"))
        return started


def _function_key(req: func.HttpRequest) -> str | None:
    """The `code` query parameter the caller authenticated with (the header form cannot be put in a link)."""
    key = req.params.get("code")
    if key:
        return key
    values = parse_qs(urlparse(req.url).query).get("code")
    return values[0] if values else None
