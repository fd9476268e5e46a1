"""The HTTP API, neutral of any host: the local server and function_app.py both call `Api.handle`."""

from __future__ import annotations

import html
import json
import logging
import re
from dataclasses import dataclass, field

from shared import codec
from shared.blob_layout import BlobPathError, validate_source_id
from shared.dataset import parse_time
from shared.events import EventHandler
from shared.fleet import COLUMNS, cell, fleet_view, source_view

log = logging.getLogger("multiline.api")

WEBHOOK_PATH = "/runtime/webhooks/eventgrid"


@dataclass
class Response:
    status: int
    body: object = None
    headers: dict = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, str):
            return self.body.encode(), self.headers.get("Content-Type", "text/html; charset=utf-8")
        return codec.dumps(self.body, indent=1).encode(), "application/json"


def error(status: int, message: str, **extra) -> Response:
    return Response(status, {"error": message, **extra})


class Api:
    def __init__(self, ports, orchestrations, base_url: str = ""):
        self.ports = ports
        self.orchestrations = orchestrations
        self.events = EventHandler(ports.settings, orchestrations)
        self.base_url = base_url

    def handle(self, method: str, path: str, headers: dict, body: bytes) -> Response:
        headers = {key.lower(): value for key, value in headers.items()}
        try:
            return self._route(method.upper(), path.split("?", 1)[0].rstrip("/") or "/", headers, body)
        except Exception as exc:  # the caller gets a reason, the log gets the trace
            log.exception("%s %s failed", method, path)
            return error(500, f"{type(exc).__name__}: {exc}")

    def _route(self, method: str, path: str, headers: dict, body: bytes) -> Response:
        if path == WEBHOOK_PATH:
            if method == "OPTIONS":  # CloudEvents webhook validation
                origin = headers.get("webhook-request-origin", "*")
                return Response(200, "", {"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"})
            if method == "POST":
                return self.event_grid(headers, body)
        if path == "/" and method == "GET":
            return self.fleet_page()
        if path == "/api/sources" and method == "GET":
            return Response(200, {"sources": fleet_view(self.ports, self.orchestrations)})
        match = re.fullmatch(r"/api/sources/([^/]+)(/retrain)?", path)
        if match:
            source_id = match.group(1)
            try:
                validate_source_id(source_id, self.ports.settings.source_id_pattern, self.ports.settings.source_id_max_length)
            except BlobPathError as exc:
                return error(400, str(exc))
            if match.group(2) and method == "POST":
                return self.retrain(source_id, body)
            if not match.group(2) and method == "GET":
                return Response(200, source_view(self.ports, self.orchestrations, source_id))
        match = re.fullmatch(r"/api/runs/([^/]+)", path)
        if match and method == "GET":
            status = self.orchestrations.status(match.group(1))
            if status is None:
                return error(404, f"no orchestration instance {match.group(1)!r}")
            return Response(200, status)
        return error(404, f"no route {method} {path}")

    def retrain(self, source_id: str, body: bytes) -> Response:
        try:
            request = json.loads(body or b"{}")
        except json.JSONDecodeError as exc:
            return error(400, f"body is not JSON: {exc}")
        if not isinstance(request, dict):
            return error(400, "body must be a JSON object with start, end and optional filters")
        try:
            start, end = parse_time(request.get("start")), parse_time(request.get("end"))
        except ValueError as exc:
            return error(400, str(exc))
        if start and end and start >= end:
            return error(400, f"start {request['start']} is not before end {request['end']}")
        filters = request.get("filters") or {}
        if not isinstance(filters, dict):
            return error(400, "filters must be an object {column: value | [values] | {min, max}}")
        signal = {
            "manual": True,
            "trigger": "manual",
            "start": start.isoformat() if start else None,
            "end": end.isoformat() if end else None,
            "filters": filters,
        }
        started = self.orchestrations.signal(source_id, signal)
        instance_id = started["instance_id"]
        status_url = f"{self.base_url}/api/runs/{instance_id}"
        return Response(
            202,
            {"id": instance_id, "action": started["action"], "statusQueryGetUri": status_url},
            {"Location": status_url},
        )

    def event_grid(self, headers: dict, body: bytes) -> Response:
        try:
            payload = json.loads(body or b"[]")
        except json.JSONDecodeError as exc:
            return error(400, f"event body is not JSON: {exc}")
        events = payload if isinstance(payload, list) else [payload]
        outcome = self.events.handle(events)
        if outcome.validation_code is not None or headers.get("aeg-event-type") == "SubscriptionValidation":
            return Response(200, {"validationResponse": outcome.validation_code})
        return Response(200, outcome.to_dict())

    def fleet_page(self) -> Response:
        rows = fleet_view(self.ports, self.orchestrations)
        head = "".join(f"<th>{html.escape(title)}</th>" for title, _ in COLUMNS)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell(row.get(key)))}</td>" for _, key in COLUMNS) + "</tr>" for row in rows
        )
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>Multiline fleet</title>"
            "<style>body{font-family:sans-serif}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}</style>"
            f"</head><body><h1>Multiline fleet</h1><table><tr>{head}</tr>{body}</table>"
            "<p>JSON: <a href='/api/sources'>/api/sources</a></p></body></html>"
        )
        return Response(200, page)
