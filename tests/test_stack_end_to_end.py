"""The whole job on the real local stack: Azurite, blob relay, Event Grid route, durabletask, training, image."""

import json
import threading
import time
import urllib.error
import urllib.request
import uuid

import pandas as pd
import pytest

from local.devices import log_live_predictions
from local.relay import blob_created_event
from local.stack import LocalStack, StackOptions
from shared.image_context import image_name
from shared.run_store import runs_of
from tests.conftest import monthly_csv, months_from, raw_name


@pytest.fixture(scope="module")
def stack(tmp_path_factory, fast_spec_path):
    options = StackOptions(
        state_dir=tmp_path_factory.mktemp("stack"),
        http_port=0,
        persist_storage=False,
        relay_interval=0.3,
        settings={"MULTILINE_SPEC": fast_spec_path, "MULTILINE_DEBOUNCE_SECONDS": 1.5, "MULTILINE_POLL_SECONDS": 0.3},
    )
    with LocalStack(options) as running:
        yield running


def call(stack, method, path, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(stack.base_url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def upload(stack, source_id, station, months):
    for (year, month), payload in monthly_csv(station, months).items():
        stack.ports.storage.write("raw", raw_name(source_id, year, month), payload)


def wait_for_runs(stack, source_id, count, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = runs_of(stack.ports.storage, "runs", source_id)
        state = stack.orchestrations.status(f"retrain-{source_id}") or {}
        if len(runs) >= count and state.get("runtime_status") == "completed":
            return runs
        time.sleep(0.3)
    raise AssertionError(f"{source_id}: {len(runs)} runs, orchestration {state.get('runtime_status')}, wanted {count}")


def test_uploads_train_register_promote_and_package_then_compare_on_the_next_month(stack):
    sources = {"Aoti-" + uuid.uuid4().hex[:6]: "Aotizhongxin", "Dongsi-" + uuid.uuid4().hex[:6]: "Dongsi"}
    for source_id, station in sources.items():
        upload(stack, source_id, station, months_from(2015, 9, 3))
    registry = stack.ports.registry
    for source_id in sources:
        [first] = wait_for_runs(stack, source_id, 1)
        assert first["outcome"] == "promoted", first
        assert first["trigger"] == "upload" and first["uploads"] == 3  # three uploads, one run
        assert first["manifest"]["blob_count"] == 3
        assert first["drift"]["status"] == "no_reference"
        # Two candidates: the source's own model (v1) and the fleet model trained on both sources.
        comparison = first["comparison"]
        assert first["fleet"]["state"] == "succeeded"
        assert [c["candidate"] for c in comparison["candidates"]] == ["per_source", "fleet"]
        assert all(c["loss"] > 0 for c in comparison["candidates"])
        best = min(comparison["candidates"], key=lambda c: c["loss"])
        assert comparison["challenger_candidate"] == best["candidate"]
        champion_version = registry.champion(source_id)[0]
        champion = registry.get(source_id, champion_version)
        if best["candidate"] == "fleet":  # adopted as the source's own version, the source as its constant input
            assert champion_version == 2 and champion["constant_features"] == {"_source": source_id}
        else:
            assert champion_version == 1 and champion["candidate"] == "per_source"
        assert first["image"]["state"] == "succeeded"
        assert first["image"]["image"] == image_name(source_id, champion_version)
        assert registry.ledger(source_id)[-1]["image"]["image"] == first["image"]["image"]

    source_id, station = next(iter(sources.items()))
    before, _ = registry.champion(source_id)
    # The device scored December live with its champion (the edge server's code) and uploads the log.
    months = monthly_csv(station, [(2015, 11), (2015, 12)])
    assert log_live_predictions(stack.ports, source_id, "2015-12", months[(2015, 12)], months[(2015, 11)])
    upload(stack, source_id, station, [(2015, 12)])
    _, second = wait_for_runs(stack, source_id, 2)
    comparison = second["comparison"]
    assert comparison["champion_version"] == before
    assert comparison["eval_start"].startswith("2015-12-01") and comparison["eval_rows"] >= 200
    champion = registry.get(source_id, before)
    assert pd.Timestamp(champion["train_end"]) <= pd.Timestamp(comparison["eval_start"])  # fair: unseen rows
    assert comparison["champion_loss"] > 0 and comparison["challenger_loss"] > 0
    test = comparison["paired_test"]
    improved = comparison["challenger_loss"] < comparison["champion_loss"] * (1 - stack.ports.settings.promotion_margin)
    assert second["outcome"] == ("promoted" if improved and test["low"] > 0 else "kept"), comparison["reason"]
    assert (registry.champion(source_id)[0] != before) == (second["outcome"] == "promoted")
    assert second["drift"]["status"] in ("stable", "drifted") and second["drift"]["rows"] > 600
    live = comparison["live"]  # the champion's live loss from the logs, cross-checked against re-scoring
    assert live["coverage"] >= 0.99 and live["logged_rows"] == comparison["eval_rows"]
    assert live["live_loss"] == pytest.approx(comparison["champion_loss"], rel=1e-6)
    assert abs(live["difference"]) < 1e-6 * live["rescored_loss"]

    status, fleet = call(stack, "GET", "/api/sources")
    rows = {row["source_id"]: row for row in fleet["sources"]}
    assert status == 200 and set(sources) <= set(rows)
    assert rows[source_id]["challenger_loss"] == pytest.approx(comparison["challenger_loss"])
    assert rows[source_id]["challenger_candidate"] == comparison["challenger_candidate"] in ("per_source", "fleet")
    assert rows[source_id]["decision"] == second["outcome"]
    status, one = call(stack, "GET", f"/api/sources/{source_id}")
    assert status == 200 and one["image"] == image_name(source_id, one["champion_version"])
    status, run = call(stack, "GET", f"/api/runs/retrain-{source_id}")
    assert status == 200 and run["runtime_status"] == "completed" and run["custom_status"]["step"] == "done"


def test_manual_retrain_over_a_date_range(stack):
    source_id = "Huai-" + uuid.uuid4().hex[:6]
    upload(stack, source_id, "Huairou", months_from(2016, 1, 4))
    wait_for_runs(stack, source_id, 1)
    status, answer = call(stack, "POST", f"/api/sources/{source_id}/retrain", {"start": "2016-01-01", "end": "2016-04-01"})
    assert status == 202 and answer["id"] == f"retrain-{source_id}"
    assert answer["statusQueryGetUri"].endswith(f"/api/runs/retrain-{source_id}")
    runs = wait_for_runs(stack, source_id, 2)
    manual = runs[-1]
    assert manual["trigger"] == "manual" and manual["end"] == "2016-04-01T00:00:00"
    assert manual["manifest"]["blob_count"] == 3  # April's file is outside the range
    # Its evaluation window (March) overlaps what the champion trained on: it may not replace it.
    assert manual["outcome"] == "kept" and "unfair" in manual["comparison"]["reason"]

    assert call(stack, "POST", f"/api/sources/{source_id}/retrain", {"start": "yesterday"})[0] == 400
    assert call(stack, "POST", f"/api/sources/{source_id}/retrain", {"start": "2016-03-01", "end": "2016-01-01"})[0] == 400
    assert call(stack, "POST", "/api/sources/..%2Fetc/retrain", {})[0] == 400


def test_a_burst_of_events_for_one_source_starts_exactly_one_run(stack):
    source_id = "Burst-" + uuid.uuid4().hex[:6]
    storage = stack.ports.storage
    stack.relay.stop()  # post the events ourselves, all at once, as a burst of deliveries would
    try:
        upload(stack, source_id, "Dingling", months_from(2015, 1, 4))
        blobs = [storage.info("raw", raw_name(source_id, y, m)) for y, m in months_from(2015, 1, 4)]
        events = [blob_created_event(stack.account_url, "raw", blob) for blob in blobs for _ in range(5)]
        answers = []

        def deliver(event):
            answers.append(call(stack, "POST", "/runtime/webhooks/eventgrid", [event], {"aeg-event-type": "Notification"}))

        threads = [threading.Thread(target=deliver, args=(event,)) for event in events]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        accepted = [item for _, body in answers for item in body["accepted"]]
        ignored = [item["reason"] for _, body in answers for item in body["ignored"]]
        assert len(accepted) == 4 and len(ignored) == 16  # each blob delivered five times: once is acted on
        assert set(ignored) == {"duplicate blob ETag"}
        assert sum(1 for item in accepted if item["action"] == "started") == 1
        runs = wait_for_runs(stack, source_id, 1)
        time.sleep(2)
        assert len(runs_of(storage, "runs", source_id)) == 1
        assert runs[0]["uploads"] == 4
    finally:
        stack.relay = type(stack.relay)(storage, "raw", stack.account_url, stack.relay.webhook_url, 0.3).start()


def test_event_grid_handshake_and_ignored_events(stack):
    status, body = call(
        stack,
        "POST",
        "/runtime/webhooks/eventgrid?functionName=blob_created",
        [{"id": "1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {"validationCode": "abc-123"}}],
        {"aeg-event-type": "SubscriptionValidation"},
    )
    assert status == 200 and body == {"validationResponse": "abc-123"}
    status, body = call(
        stack,
        "POST",
        "/runtime/webhooks/eventgrid",
        [
            {"id": "2", "eventType": "Microsoft.Storage.BlobDeleted", "data": {}},
            {
                "id": "3",
                "eventType": "Microsoft.Storage.BlobCreated",
                "data": {"api": "CreateFile", "url": "http://x/a/raw/S/2016/01/01/a.csv"},
            },
            {
                "id": "4",
                "eventType": "Microsoft.Storage.BlobCreated",
                "data": {"api": "PutBlob", "url": f"{stack.account_url}/models/S/2016/01/01/a.csv"},
            },
            {
                "id": "5",
                "eventType": "Microsoft.Storage.BlobCreated",
                "data": {"api": "PutBlob", "url": f"{stack.account_url}/raw/S/notes.txt"},
            },
        ],
        {"aeg-event-type": "Notification"},
    )
    reasons = [item["reason"] for item in body["ignored"]]
    assert status == 200 and body["accepted"] == [] and len(reasons) == 4
    assert "BlobDeleted" in reasons[0] and "CreateFile" in reasons[1] and "'raw' container" in reasons[2]
    assert "path segments" in reasons[3]


def test_ledger_and_rollback_keep_exactly_one_champion(stack):
    source_id = "Roll-" + uuid.uuid4().hex[:6]
    registry = stack.ports.registry
    upload(stack, source_id, "Guanyuan", months_from(2016, 1, 3))
    runs_so_far = len(wait_for_runs(stack, source_id, 1))
    if len(registry.versions(source_id)) < 2:  # the source's own model won: train one more version
        upload(stack, source_id, "Guanyuan", [(2016, 4)])
        runs_so_far = len(wait_for_runs(stack, source_id, 2))
    first, etag = registry.champion(source_id)
    reigned = {entry["version"] for entry in registry.ledger(source_id)}
    other = max(record["version"] for record in registry.versions(source_id) if record["version"] not in reigned)

    assert call(stack, "POST", f"/api/sources/{source_id}/rollback", {"version": 99})[0] == 404
    assert call(stack, "POST", f"/api/sources/{source_id}/rollback", {"version": "one"})[0] == 400
    # Only an earlier champion is a rollback target: `other` never reigned yet.
    status, answer = call(stack, "POST", f"/api/sources/{source_id}/rollback", {"version": other})
    assert status == 409 and other not in answer["allowed_versions"] and registry.champion(source_id)[0] == first
    registry.set_champion(source_id, other, etag, "an operator's choice, as a promotion would")
    history_before = len(registry.ledger(source_id))

    status, answer = call(stack, "POST", f"/api/sources/{source_id}/rollback", {"version": first})
    assert status == 202 and answer["id"] == f"retrain-{source_id}"
    runs = wait_for_runs(stack, source_id, runs_so_far + 1)
    assert runs[-1]["outcome"] == "rolled_back" and runs[-1]["trigger"] == "rollback"
    assert registry.champion(source_id)[0] == first
    assert runs[-1]["image"]["state"] == "succeeded" and runs[-1]["image"]["image"].endswith(f":{first}")

    status, body = call(stack, "GET", f"/api/sources/{source_id}/ledger")
    ledger = body["ledger"]
    assert status == 200 and len(ledger) == history_before + 1
    previous, latest = ledger[-2], ledger[-1]
    assert (previous["version"], latest["version"]) == (other, first) and latest["kind"] == "rollback"
    assert [entry["to"] for entry in ledger].count(None) == 1  # one reign at a time
    assert previous["to"] == latest["from"] and latest["to"] is None
    assert ledger[-3]["version"] == first and ledger[-3]["image"]["image"].endswith(f":{first}")
    assert latest["image"]["image"].endswith(f":{first}")
