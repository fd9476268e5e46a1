"""function_app.py's functions called as the Functions host calls them: real azure.functions objects,
the real Durable Functions client talking to a fake of the extension's webhooks."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from datetime import datetime, timezone

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.timer import TimerRequest

import activities
from shared.adapters import Ports
from shared.blob_registry import BlobModelRegistry
from shared.functions_host import run_activity
from shared.settings import DEFAULT_SPEC, load_settings
from shared.spec import load_spec
from tests.azure.fake_azure import MemoryStorage
from tests.azure.fake_durable_extension import SYSTEM_KEY, FakeDurableExtension

BLOB = "A/2016/01/01/a.csv"


@pytest.fixture(scope="module")
def function_app():
    import function_app

    return function_app


@pytest.fixture(scope="module")
def functions(function_app):
    # get_functions() indexes the app once (a second call would see every function twice).
    return {function.get_function_name(): function for function in function_app.app.get_functions()}


@pytest.fixture(scope="module")
def loop():
    # One loop for the module: the DF client keeps one aiohttp session for the worker's event loop.
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def extension():
    extension = FakeDurableExtension()
    yield extension
    extension.close()


@pytest.fixture
def storage(function_app, monkeypatch):
    monkeypatch.setenv("MULTILINE_MODE", "local")
    storage = MemoryStorage()
    settings = load_settings()
    ports = Ports(settings, load_spec(DEFAULT_SPEC), storage, BlobModelRegistry(storage, "models"), None, None)
    monkeypatch.setattr(function_app.host, "_ports", ports)
    monkeypatch.setattr(function_app.host, "_api", None)
    monkeypatch.setattr(function_app.host, "_orchestrations", None)
    return storage


def call(loop, functions, name, extension, **arguments):
    return loop.run_until_complete(functions[name].get_user_function()(client=extension.binding(), **arguments))


def event_grid_event(container: str = "raw", blob: str = BLOB, event_id: str = "e1") -> dict:
    return {
        "id": event_id,
        "topic": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/stmultiline",
        "subject": f"/blobServices/default/containers/{container}/blobs/{blob}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2026-12-03T12:00:00Z",
        "dataVersion": "",
        "metadataVersion": "1",
        "data": {
            "api": "PutBlob",
            "eTag": f"0x8D-{event_id}",
            "contentType": "text/csv",
            "contentLength": 2048,
            "blobType": "BlockBlob",
            "url": f"https://stmultiline.blob.core.windows.net/{container}/{blob}",
        },
    }


def decoded(document: dict):
    """What the Python worker hands the function for one delivered event."""
    return EventGridEventInConverter.decode(meta.Datum(json.dumps(document), "json"), trigger_metadata={})


def http_request(method: str, path: str, body: bytes = b"", **route_params) -> func.HttpRequest:
    # As the worker builds it: the query string is in the URL and, parsed, in params.
    return func.HttpRequest(
        method=method,
        url=f"https://func-multiline.azurewebsites.net{path}?code=k",
        headers={},
        params={"code": "k"},
        route_params=route_params,
        body=body,
    )


def test_the_app_lists_every_trigger(functions):
    triggers = {name: function.get_trigger().get_binding_name() for name, function in functions.items()}
    assert triggers["retrain_source"] == "orchestrationTrigger"
    assert triggers["blob_created"] == "eventGridTrigger"
    assert triggers["reconcile_sources"] == "timerTrigger"
    assert {activity.__name__ for activity in activities.ALL} == {
        name for name, kind in triggers.items() if kind == "activityTrigger"
    }
    routes = {
        (
            function.get_trigger().route,
            tuple(getattr(method, "value", method) for method in function.get_trigger().methods),
        ): function.get_trigger().auth_level
        for function in functions.values()
        if function.get_trigger().get_binding_name() == "httpTrigger"
    }
    assert set(routes) == {
        ("sources/{source}/retrain", ("POST",)),
        ("sources", ("GET",)),
        ("sources/{source}", ("GET",)),
        ("sources/{source}/rollback", ("POST",)),
        ("sources/{source}/ledger", ("GET",)),
        ("runs/{instance}", ("GET",)),
        ("fleet", ("GET",)),
        ("events", ("GET",)),
    }
    assert {str(level) for level in routes.values()} == {str(func.AuthLevel.FUNCTION)}
    assert functions["reconcile_sources"].get_trigger().schedule == "%MULTILINE_RECONCILE_SCHEDULE%"


def test_blob_created_in_event_grid_schema_starts_the_source_orchestration(loop, functions, extension, storage):
    call(loop, functions, "blob_created", extension, event=decoded(event_grid_event()))
    started = extension.instances["retrain-A"]
    assert started["name"] == "retrain_source"
    assert started["input"]["source_id"] == "A" and started["input"]["uploads"] == 1 and started["input"]["trigger"] == "upload"


def test_blob_created_as_cloud_event_signals_the_running_orchestration(loop, functions, extension, storage):
    extension.instances["retrain-A"] = {
        "name": "retrain_source",
        "runtimeStatus": "Running",
        "input": {},
        "events": [],
        "customStatus": None,
    }
    cloud_event = {
        "specversion": "1.0",
        "id": "c1",
        "source": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/stmultiline",
        "type": "Microsoft.Storage.BlobCreated",
        "subject": f"/blobServices/default/containers/raw/blobs/{BLOB}",
        "time": "2026-12-03T12:00:00Z",
        "data": event_grid_event(event_id="c1")["data"],
    }
    event = decoded(cloud_event)
    assert isinstance(event, func.CloudEvent)
    call(loop, functions, "blob_created", extension, event=event)
    assert extension.instances["retrain-A"]["events"] == [("upload", {"blob": BLOB, "etag": "0x8D-c1", "event_id": "c1"})]


def test_blobs_outside_the_raw_container_are_ignored(loop, functions, extension, storage):
    call(loop, functions, "blob_created", extension, event=decoded(event_grid_event(container="models", event_id="e9")))
    assert extension.instances == {}


def test_retrain_answers_202_with_the_apps_own_status_url_and_no_system_key(loop, functions, extension, storage):
    body = json.dumps({"start": "2016-01-01", "end": "2016-02-01"}).encode()
    unknown = call(loop, functions, "retrain", extension, req=http_request("POST", "/api/sources/A/retrain", body, source="A"))
    assert unknown.status_code == 404 and extension.instances == {}  # no data, no models: nothing to retrain
    storage.write("raw", "A/2016/01/01/a.csv", b"year,month\n")
    response = call(loop, functions, "retrain", extension, req=http_request("POST", "/api/sources/A/retrain", body, source="A"))
    assert response.status_code == 202
    answer = json.loads(response.get_body())
    assert answer["id"] == "retrain-A" and answer["action"] == "started"
    # The app's own run route (function key), never the extension's URLs: their system key can terminate or
    # purge any source's instance.
    assert answer["statusQueryGetUri"] == "https://func-multiline.azurewebsites.net/api/runs/retrain-A"
    assert response.headers["Location"] == answer["statusQueryGetUri"]
    assert SYSTEM_KEY not in response.get_body().decode() and SYSTEM_KEY not in str(dict(response.headers))
    started = extension.instances["retrain-A"]["input"]
    assert started["manual"] is True and started["start"] == "2016-01-01T00:00:00"

    again = call(loop, functions, "retrain", extension, req=http_request("POST", "/api/sources/A/retrain", body, source="A"))
    queued = json.loads(again.get_body())
    assert again.status_code == 202 and queued["action"] == "signaled" and "after the current run" in queued["queued"]
    assert SYSTEM_KEY not in again.get_body().decode()
    status = call(loop, functions, "get_run", extension, req=http_request("GET", "/api/runs/retrain-A", instance="retrain-A"))
    assert status.status_code == 200 and json.loads(status.get_body())["instance_id"] == "retrain-A"


def test_retrain_rejects_a_bad_request(loop, functions, extension, storage):
    body = json.dumps({"start": "2016-02-01", "end": "2016-01-01"}).encode()
    response = call(loop, functions, "retrain", extension, req=http_request("POST", "/api/sources/A/retrain", body, source="A"))
    assert response.status_code == 400 and "start" in json.loads(response.get_body())["error"]
    assert extension.instances == {}


def test_run_status_reads_the_orchestration(loop, functions, extension, storage):
    extension.instances["retrain-A"] = {
        "name": "retrain_source",
        "runtimeStatus": "ContinuedAsNew",
        "input": {},
        "events": [],
        "customStatus": {"step": "training"},
    }
    response = call(loop, functions, "get_run", extension, req=http_request("GET", "/api/runs/retrain-A", instance="retrain-A"))
    assert response.status_code == 200
    status = json.loads(response.get_body())
    assert status["runtime_status"] == "continued_as_new" and status["custom_status"] == {"step": "training"}

    missing = call(loop, functions, "get_run", extension, req=http_request("GET", "/api/runs/retrain-B", instance="retrain-B"))
    assert missing.status_code == 404


def test_sources_lists_the_fleet(loop, functions, extension, storage):
    storage.write("raw", BLOB, b"csv")
    response = call(loop, functions, "list_sources", extension, req=http_request("GET", "/api/sources"))
    assert response.status_code == 200
    assert [row["source_id"] for row in json.loads(response.get_body())["sources"]] == ["A"]
    one = call(loop, functions, "get_source", extension, req=http_request("GET", "/api/sources/A", source="A"))
    assert json.loads(one.get_body())["orchestration"]["instance_id"] == "retrain-A"


def test_fleet_page_lists_the_sources_in_an_html_table(loop, functions, extension, storage):
    storage.write("raw", BLOB, b"csv")
    storage.write("raw", "Dongsi/2016/01/01/d.csv", b"csv")
    response = call(loop, functions, "fleet_page", extension, req=http_request("GET", "/api/fleet"))
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_body().decode()
    assert page.startswith("<!doctype html>") and "<h1>Multiline fleet</h1>" in page
    table = page[page.index("<table>") : page.index("</table>")]
    rows = table.split("<tr>")[1:]
    assert "<th>source</th>" in rows[0]
    assert [row.split("</td>")[0].removeprefix("<td>") for row in rows[1:]] == ["A", "Dongsi"]
    # The link to the JSON works under /api with the same function key the page was opened with.
    assert "<a href='/api/sources?code=k'>" in page

    keyless = func.HttpRequest(method="GET", url="https://func-multiline.azurewebsites.net/api/fleet", headers={}, body=b"")
    page = call(loop, functions, "fleet_page", extension, req=keyless).get_body().decode()
    assert "<a href='/api/sources'>" in page


def test_event_counters_report_this_worker_after_blob_created(loop, functions, extension, storage, caplog):
    caplog.set_level(logging.INFO, logger="multiline.functions")
    call(loop, functions, "blob_created", extension, event=decoded(event_grid_event(event_id="e1")))
    call(loop, functions, "blob_created", extension, event=decoded(event_grid_event(container="models", event_id="e2")))
    call(loop, functions, "blob_created", extension, event=decoded(event_grid_event(event_id="e1")))  # redelivery
    response = call(loop, functions, "event_counters", extension, req=http_request("GET", "/api/events"))
    assert response.status_code == 200 and response.mimetype == "application/json"
    counters = json.loads(response.get_body())
    assert counters["accepted"] == 1 and counters["signal_failures"] == 0 and counters["validations"] == 0
    assert counters["ignored_total"] == 2
    assert counters["ignored"] == {"other_container": 1, "duplicate_event_id": 1}  # a redelivery is not a new upload
    # Honest about what they are: one worker process's counters since its handler was built.
    assert counters["scope"] == "worker" and "this worker process" in counters["note"]
    assert counters["worker"]["pid"] == os.getpid() and counters["worker"]["host"] == socket.gethostname()
    assert datetime.fromisoformat(counters["counted_since"]) <= datetime.now(timezone.utc)
    assert extension.instances["retrain-A"]["input"]["source_id"] == "A"
    # Every worker logs each event with flat counts: Application Insights sums them across workers.
    records = [record for record in caplog.records if hasattr(record, "multiline_event_accepted")]
    assert [(r.multiline_event_id, r.multiline_event_accepted, r.multiline_event_ignored) for r in records] == [
        ("e1", 1, 0),
        ("e2", 0, 1),
        ("e1", 0, 1),
    ]


def test_timer_reconciles_sources_with_newer_data(loop, functions, extension, storage):
    storage.write("raw", BLOB, b"csv")
    timer = TimerRequest(past_due=False)
    call(loop, functions, "reconcile_sources", extension, timer=timer)
    assert extension.instances["retrain-A"]["input"]["trigger"] == "reconcile"


def test_activities_unwrap_the_adapter_envelope():
    seen = []

    def resolve_data(payload):
        seen.append(payload)
        return {"ok": True}

    envelope = {"multiline_activity": 1, "instance_id": "retrain-A", "input": {"source_id": "A"}}
    assert run_activity(resolve_data, envelope) == {"ok": True}
    assert run_activity(resolve_data, {"source_id": "B"}) == {"ok": True}
    assert seen == [{"source_id": "A"}, {"source_id": "B"}]
