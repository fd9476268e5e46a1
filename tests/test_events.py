"""Events on the real local stack: committed data only, counted reasons, CloudEvents, races, follow-ups, reconcile."""

from __future__ import annotations

import threading
import uuid

import pytest

from local.relay import BlobRelay
from shared.run_store import runs_of
from tests.conftest import monthly_csv, months_from, raw_name
from tests.stack_helpers import call, fast_settings, running_stack, wait_for_runs, wait_for_step

WEBHOOK = "/runtime/webhooks/eventgrid"
NOTIFY = {"aeg-event-type": "Notification", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, fast_spec_path):
    with running_stack(tmp_path_factory.mktemp("events"), fast_settings(fast_spec_path)) as running:
        yield running


def new_source(prefix="Ev") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def grid_event(stack, name, api="PutBlob", length=100, etag=None, event_type="Microsoft.Storage.BlobCreated", container="raw"):
    return {
        "id": str(uuid.uuid4()),
        "eventType": event_type,
        "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
        "eventTime": "2016-01-01T00:00:00Z",
        "dataVersion": "",
        "data": {
            "api": api,
            "eTag": etag or f"0x{uuid.uuid4().hex[:12]}",
            "contentLength": length,
            "url": f"{stack.account_url}/{container}/{name}",
        },
    }


def test_only_committed_data_counts_and_every_ignored_event_is_counted_with_its_reason(stack):
    source_id = new_source()
    before = call(stack, "GET", "/api/events")[1]
    name = f"{source_id}/2016/01/01/part.csv"
    events = [
        grid_event(stack, name, api="CreateFile", length=0),
        grid_event(stack, name, api="PutBlock"),
        grid_event(stack, name, length=0),
        grid_event(stack, f"{source_id}/2016/01", event_type="Microsoft.Storage.DirectoryCreated"),
        grid_event(stack, name, event_type="Microsoft.Storage.BlobDeleted"),
        grid_event(stack, name, container="models"),
        grid_event(stack, f"{source_id}x/../{source_id}/2016/01/01/a.csv"),
        "not an event",
        {"id": "broken", "specversion": "1.0", "data": {}},
        grid_event(stack, name, api="FlushWithClose", length=512),  # the commit of a hierarchical-namespace upload
    ]
    status, body = call(stack, "POST", WEBHOOK, events, NOTIFY)
    assert status == 200
    kinds = [item["kind"] for item in body["ignored"]]
    assert kinds == [
        "not_committed",
        "not_committed",
        "zero_length",
        "directory",
        "other_event_type",
        "other_container",
        "invalid_blob_name",
        "not_an_object",
        "malformed",
    ]
    assert all(item["reason"] for item in body["ignored"])
    [accepted] = body["accepted"]
    assert accepted["source_id"] == source_id and accepted["action"] == "started"
    after = call(stack, "GET", "/api/events")[1]
    assert after["accepted"] == before["accepted"] + 1
    for kind in set(kinds):
        assert after["ignored"].get(kind, 0) - before["ignored"].get(kind, 0) == kinds.count(kind)
    [run] = wait_for_runs(stack, source_id, 1)
    assert run["outcome"] == "no_data"  # the event named a blob that is not there: nothing to train on


def test_cloudevents_structured_batched_and_binary_are_read_like_event_grid(stack):
    sources = [new_source("Ce") for _ in range(3)]

    def cloud(source_id):
        name = f"{source_id}/2016/01/01/a%20b.csv"  # percent-encoded in data.url: decoded exactly once
        return {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "type": "Microsoft.Storage.BlobCreated",
            "source": "/subscriptions/local/resourceGroups/local/providers/Microsoft.Storage/storageAccounts/local",
            "subject": f"/blobServices/default/containers/raw/blobs/{name}",
            "time": "2016-01-01T00:00:00Z",
            "data": {"api": "PutBlockList", "eTag": "0x1", "contentLength": 10, "url": f"{stack.account_url}/raw/{name}"},
        }

    structured = cloud(sources[0])
    status, one = call(stack, "POST", WEBHOOK, structured, {"Content-Type": "application/cloudevents+json"})
    status_batch, batch = call(
        stack, "POST", WEBHOOK, [cloud(sources[1])], {"Content-Type": "application/cloudevents-batch+json"}
    )
    binary = cloud(sources[2])
    headers = {f"ce-{key}": str(binary[key]) for key in ("specversion", "id", "type", "source", "subject")}
    status_binary, three = call(stack, "POST", WEBHOOK, binary["data"], {**headers, "Content-Type": "application/json"})
    assert (status, status_batch, status_binary) == (200, 200, 200)
    for source_id, answer in zip(sources, (one, batch, three)):
        [accepted] = answer["accepted"]
        assert accepted["source_id"] == source_id and accepted["blob"] == f"{source_id}/2016/01/01/a b.csv"
    again = call(stack, "POST", WEBHOOK, structured, {"Content-Type": "application/cloudevents+json"})[1]
    assert again["accepted"] == [] and again["ignored"][0]["kind"] == "duplicate_event_id"
    options = call(stack, "OPTIONS", WEBHOOK, headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert options[0] == 200
    for source_id in sources:
        wait_for_runs(stack, source_id, 1)


def test_many_concurrent_events_for_several_sources_start_exactly_one_run_each(stack):
    sources = [new_source("Race") for _ in range(4)]
    events = [grid_event(stack, f"{source_id}/2016/01/{day:02d}/a.csv") for source_id in sources for day in range(1, 9)]
    answers, lock = [], threading.Lock()

    def deliver(event):
        answer = call(stack, "POST", WEBHOOK, [event, event], NOTIFY)  # and each one delivered twice
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=deliver, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    accepted = [item for status, body in answers for item in body["accepted"]]
    assert all(status == 200 for status, _ in answers) and len(accepted) == len(events)
    for source_id in sources:
        actions = [item["action"] for item in accepted if item["source_id"] == source_id]
        assert actions.count("started") == 1 and len(actions) == 8
    for source_id in sources:
        runs = wait_for_runs(stack, source_id, 1)
        assert len(runs) == 1 and runs[0]["uploads"] == 8  # all eight folded into the one run


def test_uploads_during_a_run_lead_to_exactly_one_follow_up_run_that_includes_them(stack):
    source_id = new_source("Follow")
    for (year, month), payload in monthly_csv("Gucheng", months_from(2015, 6, 3)).items():
        stack.ports.storage.write("raw", raw_name(source_id, year, month), payload)
    wait_for_step(stack, source_id, "training")
    late = months_from(2015, 9, 2)
    for (year, month), payload in monthly_csv("Gucheng", late).items():
        stack.ports.storage.write("raw", raw_name(source_id, year, month), payload)
    first, second = wait_for_runs(stack, source_id, 2)
    assert first["manifest"]["blob_count"] == 3
    assert second["trigger"] == "follow-up" and second["manifest"]["blob_count"] == 5
    assert len(runs_of(stack.ports.storage, "runs", source_id)) == 2


def test_a_lost_event_is_recovered_by_the_reconcile_timer(stack):
    source_id = new_source("Lost")
    storage = stack.ports.storage
    relay = stack.relay
    relay.stop()  # Event Grid gave up: no event will ever arrive for this upload
    try:
        rounds = stack.reconciler.rounds
        storage.write("raw", f"{source_id}/2016/01/01/a.csv", b"year,month\n2016,1\n")
        [run] = wait_for_runs(stack, source_id, 1)
        assert run["trigger"] == "reconcile" and stack.reconciler.rounds > rounds
        assert any(item["source_id"] == source_id for item in stack.reconciler.started)
    finally:
        stack.relay = BlobRelay(storage, "raw", stack.account_url, relay.webhook_url, 0.3).start()


def test_an_idle_relay_looks_less_often_and_still_delivers_the_next_upload(storage, source_id):
    import http.server
    import json
    import time

    posted = []

    class Webhook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            posted.extend(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    relay = BlobRelay(storage, "raw", "http://127.0.0.1:1/devstoreaccount1", f"http://127.0.0.1:{server.server_port}/", 0.1)
    relay.start()
    try:
        time.sleep(3.0)
        assert relay.looks <= 8  # 30 at a fixed 0.1 s: the wait doubles to 0.8 s while nothing is new
        storage.write("raw", f"{source_id}/2016/01/01/a.csv", b"year,month\n2016,1\n")
        deadline = time.monotonic() + 2.0
        while not posted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [event["subject"].rsplit("/blobs/", 1)[1] for event in posted] == [f"{source_id}/2016/01/01/a.csv"]
    finally:
        relay.stop()
        server.shutdown()
