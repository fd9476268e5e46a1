"""The retrain orchestrator through the Durable Functions 1.x replay engine, against durabletask's decisions."""

from __future__ import annotations

import json

import pytest

from orchestrations.df_adapter import durable_functions_orchestrator
from orchestrations.retrain import UPLOAD_EVENT, retrain_source
from tests.azure import scenarios
from tests.azure.df_replay import DurableFunctionsReplayHost

ORCHESTRATOR = durable_functions_orchestrator(retrain_source)


def run_on_durable_functions(story: scenarios.Story, payload: dict, **options):
    return DurableFunctionsReplayHost(ORCHESTRATOR, story.activities()).run(payload, **options)


def decisions(record: dict) -> dict:
    return {key: record.get(key) for key in scenarios.DECISION_KEYS}


def test_happy_path_promotes_and_builds_the_image():
    story = scenarios.happy_story()
    replay = run_on_durable_functions(story, scenarios.request())

    assert replay.names() == [
        "resolve_data",
        "check_drift",
        "submit_training",
        "get_training_status",
        "get_training_status",
        "get_training_status",
        "compare_champion",
        "promote",
        "build_image",
        "get_build_status",
        "record_run",
        "pending_uploads",
    ]
    record = replay.payload_of("record_run")
    assert decisions(record) == {"outcome": "promoted", "champion_version": 2, "error": None}
    promote = replay.payload_of("promote")
    assert (promote["source_id"], promote["version"], promote["expected_etag"]) == ("A", 2, '"0x1"')
    assert promote["reason"] == story.comparison["reason"]
    assert replay.output["outcome"] == "promoted"
    # Every activity is told which instance called it (telemetry), and steps are retried as on durabletask.
    assert {call.instance_id for call in replay.calls} == {"retrain-A"}
    assert replay.calls[0].retry == {
        "firstRetryIntervalInMilliseconds": 2000,
        "maxNumberOfAttempts": 3,
        "backoffCoefficient": 2.0,
    }
    # Custom status: the current step, always small.
    assert replay.custom_statuses[-1]["step"] == "done"
    assert max(len(json.dumps(status)) for status in replay.custom_statuses) < 2048
    # Timestamps come from the DF context (aware UTC), normalised by the orchestrator.
    assert record["started_at"].endswith("+00:00") and record["instance_id"] == "retrain-A"


def test_failed_training_records_the_failure_and_touches_no_champion():
    replay = run_on_durable_functions(scenarios.failed_training_story(), scenarios.request())
    assert "compare_champion" not in replay.names() and "promote" not in replay.names()
    record = replay.payload_of("record_run")
    assert decisions(record) == {
        "outcome": "training_failed",
        "champion_version": None,
        "error": "Failed: step train exited with code 1",
    }


def test_losing_challenger_keeps_the_champion_and_rebuilds_nothing_new():
    replay = run_on_durable_functions(scenarios.losing_challenger_story(), scenarios.request())
    assert "promote" not in replay.names()
    assert {key: replay.payload_of("build_image")[key] for key in ("source_id", "version")} == {"source_id": "A", "version": 1}
    assert decisions(replay.payload_of("record_run")) == {"outcome": "kept", "champion_version": 1, "error": None}


def test_upload_during_debounce_is_absorbed_by_identity_of_the_winner():
    replay = run_on_durable_functions(
        scenarios.happy_story(), scenarios.request(uploads=1), raised=[(UPLOAD_EVENT, {"blob": "A/2026/12/03/b.csv"})]
    )
    assert replay.payload_of("record_run")["uploads"] == 2
    assert replay.output["outcome"] == "promoted"


def test_manual_request_skips_the_debounce_and_follow_up_continues_as_new():
    story = scenarios.happy_story()
    activities = story.activities()
    activities["pending_uploads"] = lambda payload: {"pending": 2, "examples": ["A/x.csv"]}
    host = DurableFunctionsReplayHost(ORCHESTRATOR, activities)
    replay = host.run(scenarios.request(manual=True, trigger="manual", start="2016-01-01T00:00:00"))
    assert replay.payload_of("resolve_data")["start"] == "2016-01-01T00:00:00"
    assert replay.continued_with["trigger"] == "follow-up" and replay.output is None


def test_a_step_that_keeps_failing_is_retried_then_recorded_as_failed():
    story = scenarios.happy_story()
    activities = story.activities()

    def broken(payload):
        raise ConnectionError("storage unavailable")

    activities["check_drift"] = broken
    replay = DurableFunctionsReplayHost(ORCHESTRATOR, activities).run(scenarios.request())
    assert replay.names().count("check_drift") == 3
    record = replay.payload_of("record_run")
    assert record["outcome"] == "failed" and record["error"].startswith("step check_drift failed: storage unavailable")


@pytest.mark.parametrize(
    "make_story",
    [scenarios.happy_story, scenarios.failed_training_story, scenarios.losing_challenger_story],
    ids=["happy", "failed-training", "challenger-loses"],
)
def test_same_decisions_as_on_durabletask(make_story):
    on_functions = run_on_durable_functions(make_story(), scenarios.request())
    durabletask_story = make_story()
    state = scenarios.run_on_durabletask(durabletask_story, scenarios.request())
    assert state is not None and state.runtime_status.name == "COMPLETED", state
    durabletask_names = [name for name, _ in durabletask_story.calls]
    assert on_functions.names() == durabletask_names
    durabletask_record = [payload for name, payload in durabletask_story.calls if name == "record_run"][-1]
    assert decisions(on_functions.payload_of("record_run")) == decisions(durabletask_record)
    durabletask_output = json.loads(state.serialized_output)
    assert decisions(on_functions.output) == decisions(durabletask_output)
    assert on_functions.output["source_id"] == durabletask_output["source_id"] == "A"
