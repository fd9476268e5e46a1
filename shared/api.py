"""The HTTP API, neutral of any host: the local server and function_app.py both call `Api.handle`."""

from __future__ import annotations

import html
import json
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import datetime

from shared import codec
from shared.blob_layout import BlobPathError, validate_source_id
from shared.dataset import ISO_MOMENT_FORMS, parse_iso_time
from shared.events import EventHandler
from shared.fleet import COLUMNS, cell, fleet_view, known_sources, source_view
from shared.ports import NotFound
from shared.run_store import latest_run

log = logging.getLogger("multiline.api")

WEBHOOK_PATH = "/runtime/webhooks/eventgrid"
RETRAIN_FIELDS = {"start", "end", "filters"}
CLOUDEVENT_HEADERS = ("id", "type", "source", "subject", "specversion", "time")
QUEUED = "runs after the current run; a later retrain or rollback request for this source replaces this one"
SOURCE_ROUTES = {None: ("GET",), "/retrain": ("POST",), "/rollback": ("POST",), "/ledger": ("GET",)}


class RetrainRequestError(ValueError):
    """A manual retrain body that cannot be used; `field` names the offending field."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


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


ROUTE_METHODS = {
    WEBHOOK_PATH: ("POST", "OPTIONS"),
    "/": ("GET",),
    "/api/events": ("GET",),
    "/api/sources": ("GET",),
}


def not_allowed(method: str, path: str, allowed) -> Response:
    """A known route asked with a method it does not take: 405 and the methods it does take."""
    return Response(
        405, {"error": f"method {method} is not allowed on {path}; use {', '.join(allowed)}"}, {"Allow": ", ".join(allowed)}
    )


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
        if path == "/api/events" and method == "GET":  # what the event handler accepted and ignored, and why
            return Response(200, self.events.stats.snapshot())
        if path == "/api/sources" and method == "GET":
            return Response(200, {"sources": fleet_view(self.ports, self.orchestrations)})
        match = re.fullmatch(r"/api/sources/([^/]+)(/retrain|/rollback|/ledger)?", path)
        if match:
            source_id = match.group(1)
            try:
                validate_source_id(source_id, self.ports.settings.source_id_pattern, self.ports.settings.source_id_max_length)
            except BlobPathError as exc:
                return error(400, str(exc))
            if match.group(2) == "/retrain" and method == "POST":
                return self.retrain(source_id, body)
            if match.group(2) == "/rollback" and method == "POST":
                return self.rollback(source_id, body)
            if match.group(2) == "/ledger" and method == "GET":
                if not self._known(source_id):
                    return self._unknown(source_id)
                return Response(200, {"source_id": source_id, "ledger": self.ports.registry.ledger(source_id)})
            if not match.group(2) and method == "GET":
                return self.source(source_id)
            return not_allowed(method, path, SOURCE_ROUTES[match.group(2)])
        match = re.fullmatch(r"/api/runs/([^/]+)", path)
        if match and method == "GET":
            status = self.orchestrations.status(match.group(1))
            if status is None:
                return error(404, f"no orchestration instance {match.group(1)!r}")
            return Response(200, status)
        allowed = ROUTE_METHODS.get(path) or (("GET",) if match else None)
        if allowed:
            return not_allowed(method, path, allowed)
        return error(404, f"no route {method} {path}")

    def _known(self, source_id: str) -> bool:
        """A source with data in the raw container or models (what retrain needs); a source with only runs too."""
        if source_id in known_sources(self.ports):
            return True
        return latest_run(self.ports.storage, self.ports.settings.containers.runs, source_id) is not None

    def _unknown(self, source_id: str) -> Response:
        raw = self.ports.settings.containers.raw
        return error(404, f"source {source_id!r} is not known: no data under {raw}/{source_id}/, no runs and no models")

    def source(self, source_id: str) -> Response:
        if not self._known(source_id):
            return self._unknown(source_id)
        return Response(200, source_view(self.ports, self.orchestrations, source_id))

    def rollback(self, source_id: str, body: bytes) -> Response:
        """Re-point the champion to an earlier version; the source's orchestration does it, then rebuilds the image."""
        try:
            request = json.loads(body or b"{}")
        except json.JSONDecodeError as exc:
            return error(400, f"body is not JSON: {exc}")
        version = request.get("version") if isinstance(request, dict) else None
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            return error(400, 'body must be {"version": <model version number>}', field="version")
        registry = self.ports.registry
        try:
            registry.get(source_id, version)
        except NotFound:
            if not registry.versions(source_id):
                return error(404, f"source {source_id!r} has no models at all: unknown source (see GET /api/sources)")
            return error(404, f"source {source_id!r} has no model version {version}")
        champion, _ = registry.champion(source_id)
        if version == champion:
            return error(409, f"v{version} is already the champion of {source_id!r}: nothing to roll back", field="version")
        reigned = sorted({entry.get("version") for entry in registry.ledger(source_id)} - {champion, None})
        if version not in reigned:
            allowed = ", ".join(f"v{item}" for item in reigned) or "none"
            return error(
                409,
                f"v{version} of {source_id!r} never was champion (a challenger that lost is no rollback target); "
                f"versions that reigned before and may be rolled back to: {allowed}",
                field="version",
                allowed_versions=reigned,
            )
        return self._accepted(self.orchestrations.signal(source_id, {"rollback_to": version, "trigger": "rollback"}))

    def _accepted(self, started: dict) -> Response:
        instance_id = started["instance_id"]
        status_url = f"{self.base_url}/api/runs/{instance_id}"
        body = {"id": instance_id, "action": started["action"], "statusQueryGetUri": status_url}
        if started["action"] == "signaled":  # the orchestration is busy: the request waits, and coalesces
            body["queued"] = QUEUED
        return Response(202, body, {"Location": status_url})

    def retrain(self, source_id: str, body: bytes) -> Response:
        try:
            request = json.loads(body or b"{}")
        except json.JSONDecodeError as exc:
            return error(400, f"body is not JSON: {exc}")
        if not isinstance(request, dict):
            return error(400, "body must be a JSON object with start, end and optional filters")
        try:
            start, end, filters = self._retrain_fields(request)
        except RetrainRequestError as exc:
            return error(400, str(exc), field=exc.field)
        if source_id not in known_sources(self.ports):
            raw = self.ports.settings.containers.raw
            return error(404, f"source {source_id!r} has no data under {raw}/{source_id}/ and no models: nothing to retrain")
        signal = {
            "manual": True,
            "trigger": "manual",
            "start": start.isoformat() if start else None,
            "end": end.isoformat() if end else None,
            "filters": filters,
        }
        return self._accepted(self.orchestrations.signal(source_id, signal))

    def _retrain_fields(self, request: dict) -> tuple[datetime | None, datetime | None, dict]:
        """start, end (naive UTC) and filters of a manual retrain; RetrainRequestError names the bad field."""
        unknown = sorted(set(request) - RETRAIN_FIELDS)
        if unknown:
            raise RetrainRequestError(unknown[0], f"field {unknown[0]!r} is not known; a retrain takes {sorted(RETRAIN_FIELDS)}")
        moments, aware = {}, {}
        for name in ("start", "end"):
            value = request.get(name)
            if value is None:
                moments[name] = None
                continue
            if not isinstance(value, str):
                raise RetrainRequestError(
                    name,
                    f"field {name!r} must be an ISO 8601 date or datetime string ({ISO_MOMENT_FORMS}) or absent, got {value!r}",
                )
            try:
                moments[name], aware[name] = parse_iso_time(value)
            except ValueError as exc:
                raise RetrainRequestError(name, f"field {name!r}: {exc}") from exc
        start, end = moments["start"], moments["end"]
        if len(set(aware.values())) > 1:
            raise RetrainRequestError(
                "end", "fields 'start' and 'end' mix a datetime with a time zone and one without; give both in the same form"
            )
        if start and end and start >= end:
            raise RetrainRequestError("end", f"field 'end' {request['end']} is not after field 'start' {request['start']}")
        limit = self.ports.settings.max_range_days
        if start and end and (end - start).days > limit:
            raise RetrainRequestError(
                "end",
                f"fields 'start'..'end' span {(end - start).days} days; at most {limit} are allowed (MULTILINE_MAX_RANGE_DAYS)",
            )
        filters = request.get("filters") or {}
        if not isinstance(filters, dict):
            raise RetrainRequestError("filters", "field 'filters' must be an object {column: value | [values] | {min, max}}")
        filters = dict(filters)
        known = set(self.ports.spec.required_columns)
        for column, condition in filters.items():
            where = f"filters.{column}"
            if column not in known:
                raise RetrainRequestError(where, f"field {where!r}: column {column!r} is not in the model spec ({sorted(known)})")
            if isinstance(condition, dict):
                if column in self.ports.spec.categorical_features:
                    raise RetrainRequestError(
                        where,
                        f"field {where!r}: {column!r} is categorical; a range (min/max) needs a numeric column, "
                        "give a value or a list of values",
                    )
                bounds = set(condition) - {"min", "max"}
                if bounds or not condition:
                    raise RetrainRequestError(
                        where, f"field {where!r}: a range takes 'min' and/or 'max', got {sorted(condition)}"
                    )
                for bound, value in condition.items():
                    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                        raise RetrainRequestError(
                            f"{where}.{bound}", f"field '{where}.{bound}' must be a finite number, got {value!r}"
                        )
                if "min" in condition and "max" in condition and condition["min"] > condition["max"]:
                    raise RetrainRequestError(
                        where,
                        f"field {where!r}: 'min' {condition['min']} is greater than 'max' {condition['max']}: no row would match",
                    )
            elif isinstance(condition, list):
                if not condition or any(isinstance(item, (dict, list)) for item in condition):
                    raise RetrainRequestError(where, f"field {where!r}: a list of values must be non-empty and flat")
            elif condition is None:
                raise RetrainRequestError(where, f"field {where!r}: give a value, a list of values or {{min, max}}")
            values = condition if isinstance(condition, list) else [condition]
            if column in self.ports.spec.categorical_features:
                # Categories are read as text: wd=1 in a file is the category "1", which the number 1 would
                # never equal (the CLI's --filter wd=1 sends a number).
                for value in values:
                    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                        raise RetrainRequestError(
                            where, f"field {where!r}: {column!r} is categorical; a value must be text or a number, got {value!r}"
                        )
                as_text = [value if isinstance(value, str) else str(value) for value in values]
                filters[column] = as_text if isinstance(condition, list) else as_text[0]
            elif not isinstance(condition, dict):  # every other spec column is a number (timestamp parts too)
                for value in values:
                    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                        raise RetrainRequestError(
                            where, f"field {where!r}: {column!r} is numeric; a value must be a finite number, got {value!r}"
                        )
        return start, end, filters

    def event_grid(self, headers: dict, body: bytes) -> Response:
        try:
            payload = json.loads(body or b"[]")
        except json.JSONDecodeError as exc:
            return error(400, f"event body is not JSON: {exc}")
        if "ce-type" in headers and isinstance(payload, dict) and "specversion" not in payload:
            # CloudEvents binary mode: the attributes travel as ce-* headers, the body is the data.
            attributes = {name: headers[f"ce-{name}"] for name in CLOUDEVENT_HEADERS if f"ce-{name}" in headers}
            payload = {**attributes, "data": payload}
        events = payload if isinstance(payload, list) else [payload]
        outcome = self.events.handle(events)
        if outcome.validation_code is not None:
            return Response(200, {"validationResponse": outcome.validation_code})
        if headers.get("aeg-event-type") == "SubscriptionValidation":  # a handshake with nothing to answer
            return error(400, "subscription validation without a usable validationCode", ignored=outcome.ignored)
        return Response(200, outcome.to_dict())

    def fleet_page(self, sources_href: str = "/api/sources") -> Response:
        """The fleet as an HTML table; `sources_href` is the link to the JSON (a Functions host adds its key)."""
        rows = fleet_view(self.ports, self.orchestrations)
        head = "".join(f"<th>{html.escape(title)}</th>" for title, _ in COLUMNS)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell(row.get(key)))}</td>" for _, key in COLUMNS) + "</tr>" for row in rows
        )
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>Multiline fleet</title>"
            "<style>body{font-family:sans-serif}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}</style>"
            f"</head><body><h1>Multiline fleet</h1><table><tr>{head}</tr>{body}</table>"
            f"<p>JSON: <a href='{html.escape(sources_href, quote=True)}'>/api/sources</a></p></body></html>"
        )
        return Response(200, page)
