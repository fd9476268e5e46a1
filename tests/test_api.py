"""The HTTP API on the real local stack: rollback targets, retrain validation, busy answers, unknown sources,
and the local host's errors, all JSON."""

from __future__ import annotations

import http.client
import json
import socket
import uuid

import pytest

from local.http_host import make_server, serve_in_background
from shared.run_store import runs_of
from tests.conftest import monthly_csv, months_from, raw_name
from tests.stack_helpers import call, fast_settings, running_stack, wait_for, wait_for_runs, wait_for_step


@pytest.fixture(scope="module")
def stack(tmp_path_factory, fast_spec_path):
    with running_stack(tmp_path_factory.mktemp("api"), fast_settings(fast_spec_path)) as running:
        yield running


def new_source(prefix="Api") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def raw_request(stack, method, path, body=b"", headers=None) -> tuple[int, dict, dict]:
    """One request with http.client (any method, any header): status, headers, JSON body."""
    host, port = stack.base_url.split("//", 1)[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), json.loads(data) if data else None
    finally:
        connection.close()


def test_rollback_only_to_a_version_that_reigned_before_and_not_to_the_champion(stack):
    source_id = new_source("Roll")
    registry = stack.ports.registry
    first = registry.register(source_id, b"model one", {})
    registry.set_champion(source_id, first, None, "first model")
    lost = registry.register(source_id, b"a challenger that lost", {})  # never champion
    third = registry.register(source_id, b"model three", {})
    registry.set_champion(source_id, third, registry.champion(source_id)[1], "better")
    ledger_before = registry.ledger(source_id)

    status, body = call(stack, "POST", f"/api/sources/{source_id}/rollback", {"version": lost})
    assert status == 409 and body["field"] == "version"
    assert f"v{lost}" in body["error"] and "never was champion" in body["error"] and f"v{first}" in body["error"]
    assert body["allowed_versions"] == [first]

    status, body = call(stack, "POST", f"/api/sources/{source_id}/rollback", {"version": third})
    assert status == 409 and "already the champion" in body["error"]
    assert call(stack, "POST", f"/api/sources/{source_id}/rollback", {"version": 99})[0] == 404
    assert registry.ledger(source_id) == ledger_before and registry.champion(source_id)[0] == third
    assert stack.orchestrations.status(f"retrain-{source_id}") is None  # nothing was signalled

    status, body = call(stack, "POST", f"/api/sources/{source_id}/rollback", {"version": first})
    assert status == 202 and body["action"] == "started" and "queued" not in body
    [run] = wait_for_runs(stack, source_id, 1)
    assert run["trigger"] == "rollback" and run["outcome"] == "rolled_back"
    ledger = registry.ledger(source_id)
    assert [entry["version"] for entry in ledger] == [first, third, first] and ledger[-1]["kind"] == "rollback"


def test_the_cli_shows_the_ledger_and_asks_for_a_rollback(stack, capsys):
    from local.cli import main

    source_id = new_source("Cli")
    registry = stack.ports.registry
    url = ["--url", stack.base_url]
    assert main(["ledger", source_id, *url]) == 1 and "is not known" in capsys.readouterr().err
    assert main(["status", source_id, "--json", *url]) == 1  # --json: the error as JSON on stdout, for scripts
    assert "no runs" in json.loads(capsys.readouterr().out)["error"]
    first = registry.register(source_id, b"model one", {})
    registry.set_champion(source_id, first, None, "first model")
    second = registry.register(source_id, b"model two", {})
    registry.set_champion(source_id, second, registry.champion(source_id)[1], "better on recent data")
    assert main(["ledger", source_id, *url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["version", "from", "to", "kind"] and "better on recent data" in lines[-1]
    assert [line.split()[0] for line in lines[2:]] == [str(first), str(second)]

    assert main(["rollback", source_id, str(second), *url]) == 1 and "already the champion" in capsys.readouterr().err
    assert main(["rollback", source_id, str(first), *url]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "started"
    wait_for_runs(stack, source_id, 1)
    assert main(["ledger", source_id, "--json", *url]) == 0
    assert [entry["version"] for entry in json.loads(capsys.readouterr().out)["ledger"]] == [first, second, first]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"start": "NaT"}, "start"),
        ({"start": "nan"}, "start"),
        ({"start": ""}, "start"),
        ({"start": "  "}, "start"),
        ({"end": "NaT"}, "end"),
        ({"start": "2016-01-01", "end": "null"}, "end"),
        ({"start": "not a date"}, "start"),
        ({"filters": {"PM10": {"min": 5, "max": 1}}}, "filters.PM10"),
        ({"filters": {"PM10": {"min": 1, "max": float("nan")}}}, "filters.PM10.max"),
        ({"filters": {"PM10": {"min": float("-inf")}}}, "filters.PM10.min"),
        ({"filters": {"TEMP": "abc"}}, "filters.TEMP"),  # a numeric column: no row could ever match
        ({"filters": {"TEMP": [1, "warm"]}}, "filters.TEMP"),
    ],
)
def test_retrain_refuses_a_date_that_is_not_one_and_a_range_that_is_empty(stack, body, field):
    source_id = new_source()
    stack.ports.storage.write("raw", raw_name(source_id, 2016, 1), monthly_csv("Dongsi", [(2016, 1)])[(2016, 1)])
    status, answer = call(stack, "POST", f"/api/sources/{source_id}/retrain", body)
    assert status == 400 and answer["field"] == field, answer
    assert repr(field.split(".")[-1]) in answer["error"] or field in answer["error"]
    assert stack.orchestrations.status(f"retrain-{source_id}") is None


@pytest.mark.parametrize(
    ("body", "field", "value"),
    [
        # The newcomer's curl: answered 202 and ran over 3-6 January (US month-first), not March-June.
        ({"start": "01/03/2015", "end": "01/06/2015"}, "start", "01/03/2015"),
        ({"start": "2015-03-01", "end": "01/06/2015"}, "end", "01/06/2015"),
        # The newcomer's CLI: 16-01-01 ran as 2001-01-16.
        ({"start": "16-01-01", "end": "2017-01-01"}, "start", "16-01-01"),
        ({"start": "2016-01-01 00:00", "end": "2016-02-01"}, "start", "2016-01-01 00:00"),
        ({"start": "20160101"}, "start", "20160101"),
        ({"end": "March 1 2016"}, "end", "March 1 2016"),
        ({"start": "2016-02-30"}, "start", "2016-02-30"),
        ({"start": 20160101}, "start", 20160101),
    ],
)
def test_retrain_takes_only_iso_8601_dates_and_says_the_form_it_expects(stack, body, field, value):
    source_id = new_source("Iso")
    stack.ports.storage.write("raw", raw_name(source_id, 2016, 1), monthly_csv("Dongsi", [(2016, 1)])[(2016, 1)])
    status, answer = call(stack, "POST", f"/api/sources/{source_id}/retrain", body)
    assert status == 400 and answer["field"] == field, answer
    assert f"field {field!r}" in answer["error"] and repr(value) in answer["error"], answer
    assert "ISO 8601" in answer["error"] and "YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS[.ffffff]]" in answer["error"], answer
    assert stack.orchestrations.status(f"retrain-{source_id}") is None


def test_an_iso_datetime_with_a_time_zone_runs_over_that_moment_in_utc(stack):
    source_id = new_source("IsoZone")
    for (year, month), payload in monthly_csv("Dongsi", months_from(2016, 1, 2)).items():
        stack.ports.storage.write("raw", raw_name(source_id, year, month), payload)
    body = {"start": "2016-01-01T08:00+08:00", "end": "2016-02-01T00:00:00Z"}
    status, answer = call(stack, "POST", f"/api/sources/{source_id}/retrain", body)
    assert status == 202, answer

    def manual_run():
        return [run for run in runs_of(stack.ports.storage, "runs", source_id) if run["trigger"] == "manual"]

    [run] = wait_for(manual_run, f"the manual run of {source_id}")
    assert (run["start"], run["end"]) == ("2016-01-01T00:00:00", "2016-02-01T00:00:00"), run


def test_a_min_equal_to_max_is_still_a_range(stack):
    source_id = new_source()
    status, answer = call(stack, "POST", f"/api/sources/{source_id}/retrain", {"filters": {"PM10": {"min": 3, "max": 3}}})
    assert status == 404 and "field" not in answer  # past validation: only the source is unknown
    values = {"filters": {"TEMP": [1, 2.5], "wd": "ZZZ"}}  # numbers for a numeric column; any category
    status, answer = call(stack, "POST", f"/api/sources/{source_id}/retrain", values)
    assert status == 404 and "field" not in answer


def test_requests_to_a_busy_orchestration_say_they_are_queued_and_replaced_by_a_later_one(stack):
    source_id = new_source("Busy")
    for (year, month), payload in monthly_csv("Dongsi", months_from(2016, 1, 2)).items():
        stack.ports.storage.write("raw", raw_name(source_id, year, month), payload)
    status, first = call(stack, "POST", f"/api/sources/{source_id}/retrain", {"start": "2016-01-01"})
    assert status == 202 and first["action"] == "started" and "queued" not in first
    answers = [call(stack, "POST", f"/api/sources/{source_id}/retrain", {"start": day}) for day in ("2016-01-15", "2016-02-01")]
    for status, answer in answers:
        assert status == 202 and answer["action"] == "signaled", answer
        assert "after the current run" in answer["queued"] and "replaces this one" in answer["queued"]
    runs = wait_for_runs(stack, source_id, 2)
    manual = [run for run in runs if run["trigger"] == "manual"]
    # Only the last one ran after the first (uploads the relay delivered meanwhile may add a follow-up run).
    assert len(manual) == 2 and manual[-1]["start"].startswith("2016-02-01")


def test_a_request_during_a_run_an_upload_started_runs_after_it(stack):
    """The run began after the debounce, whose wait for signals stayed open: the request lands there, and must
    still be the follow-up run (it was once dropped, the orchestration ending as if nothing had been asked)."""
    source_id = new_source("Queued")
    for (year, month), payload in monthly_csv("Dongsi", months_from(2016, 1, 2)).items():
        stack.ports.storage.write("raw", raw_name(source_id, year, month), payload)
    wait_for_step(stack, source_id, "training")
    status, answer = call(stack, "POST", f"/api/sources/{source_id}/retrain", {"start": "2016-01-15", "filters": {"wd": "N"}})
    assert status == 202 and answer["action"] == "signaled", answer
    # A third run may follow: an upload event the relay delivered during the first run rides along with the
    # request, and the request's range run leaves it a follow-up over the whole history.
    first, second = wait_for_runs(stack, source_id, 2)[:2]
    # Started by the upload's event or, on a busy machine, by the reconcile timer first: both wait out the debounce.
    assert first["trigger"] in ("upload", "reconcile") and second["trigger"] == "manual"
    assert second["start"].startswith("2016-01-15") and second["filters"] == {"wd": "N"}


def test_an_unknown_source_is_404_and_a_known_one_is_not(stack):
    source_id = new_source("Nobody")
    status, answer = call(stack, "GET", f"/api/sources/{source_id}")
    assert status == 404 and source_id in answer["error"] and "no runs" in answer["error"]
    assert call(stack, "POST", f"/api/sources/{source_id}/retrain", {})[0] == 404
    stack.ports.registry.register(source_id, b"a model", {})
    status, answer = call(stack, "GET", f"/api/sources/{source_id}")
    assert status == 200 and answer["source_id"] == source_id
    data_only = new_source("Data")
    stack.ports.storage.write("raw", raw_name(data_only, 2016, 1), b"year,month\n2016,1\n")
    assert call(stack, "GET", f"/api/sources/{data_only}")[0] == 200


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/api/sources/X", "GET"),
        ("PUT", "/api/sources/X/retrain", "POST"),
        ("GET", "/api/sources/X/rollback", "POST"),
        ("PATCH", "/api/sources", "GET"),
        ("DELETE", "/api/runs/retrain-X", "GET"),
        ("GET", "/runtime/webhooks/eventgrid", "POST, OPTIONS"),
        ("POST", "/", "GET"),
    ],
)
def test_a_method_a_route_does_not_take_is_405_with_allow_in_json(stack, method, path, allow):
    status, headers, body = raw_request(stack, method, path)
    assert status == 405 and headers["Allow"] == allow and headers["Content-Type"] == "application/json"
    assert method in body["error"] and path in body["error"]


def test_every_error_of_the_local_host_is_json(stack):
    status, headers, body = raw_request(stack, "FROB", "/api/sources/X")  # no handler for the method at all
    assert status == 405 and headers["Content-Type"] == "application/json" and "FROB" in body["error"]
    assert "GET" in headers["Allow"]

    too_large = {"Content-Length": str(11 * 1024 * 1024), "Content-Type": "application/json"}
    status, headers, body = raw_request(stack, "POST", "/api/sources/X/retrain", b"{}", too_large)
    assert status == 413 and headers["Content-Type"] == "application/json" and "over the limit" in body["error"]

    status, headers, body = raw_request(stack, "POST", "/api/sources/X/retrain", b"{}", {"Content-Length": "two"})
    assert status == 400 and "Content-Length" in body["error"]

    status, headers, body = raw_request(stack, "GET", "/api/nothing")
    assert status == 404 and "no route" in body["error"]

    host, port = stack.base_url.split("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:  # a header line the server refuses
        sock.sendall(b"GET /api/sources HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, data = reply.partition(b"\r\n\r\n")
    assert b" 431 " in head.split(b"\r\n")[0] and b"application/json" in head
    assert "error" in json.loads(data)


def test_head_answers_the_status_without_a_body(stack):
    status, headers, body = raw_request(stack, "HEAD", "/api/sources")
    assert status == 405 and headers["Allow"] == "GET" and body is None


def test_the_local_host_takes_a_burst_of_connections_before_it_accepts_any(stack):
    # Event Grid and the relay deliver in bursts; a listen backlog of 5 (the stdlib's) reset the rest.
    server = make_server(stack.api, 0)  # listening, not yet accepting
    port = server.server_address[1]
    sockets, serving = [], None
    try:
        for _ in range(64):
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=2))  # times out when refused
        serving = serve_in_background(server)
        for sock in sockets:  # the subscription handshake's OPTIONS: the cheapest route there is
            sock.settimeout(60)
            sock.sendall(
                b"OPTIONS /runtime/webhooks/eventgrid HTTP/1.1\r\nHost: local\r\n"
                b"WebHook-Request-Origin: eventgrid.azure.net\r\nConnection: close\r\n\r\n"
            )
        replies = [sock.makefile("rb").readline() for sock in sockets]
        assert all(b" 200 " in line for line in replies), replies
    finally:
        for sock in sockets:
            sock.close()
        if serving is not None:  # shutdown() waits for a serve_forever that has started
            server.shutdown()
        server.server_close()


def test_the_cli_says_a_refused_retrain_on_stderr(stack, capsys):
    from local.cli import main

    source_id = new_source()
    refused = ["retrain", source_id, "--start", "2016-02-01", "--end", "2016-01-01", "--url", stack.base_url]
    assert main(refused) == 1
    out, err = capsys.readouterr()
    assert out == "" and "is not after" in json.loads(err)["error"]
    # The newcomer's `--start 16-01-01` once ran from 2001-01-16: the CLI posts it, the API refuses it.
    assert main(["retrain", source_id, "--start", "16-01-01", "--end", "2017-01-01", "--url", stack.base_url]) == 1
    out, err = capsys.readouterr()
    answer = json.loads(err)
    assert out == "" and answer["field"] == "start" and "found '16-01-01'" in answer["error"], answer
    assert "YYYY-MM-DD" in answer["error"] and stack.orchestrations.status(f"retrain-{source_id}") is None
