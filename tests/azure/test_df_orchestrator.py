"""The retrain orchestrator through the Durable Functions 1.x replay engine, against durabletask's decisions."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import azure.durable_functions as df
import pytest
from durabletask.task import RetryPolicy

from orchestrations.df_adapter import DurableRetryOptions, durable_functions_orchestrator
from orchestrations.retrain import UPLOAD_EVENT, retrain_source
from tests.azure import scenarios
from tests.azure.df_replay import CALL_ACTIVITY_WITH_RETRY, EXECUTION_STARTED, ORCHESTRATOR_STARTED, DurableFunctionsReplayHost

ORCHESTRATOR = durable_functions_orchestrator(retrain_source)
START = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


def run_on_durable_functions(story: scenarios.Story, payload: dict, **options):
    return DurableFunctionsReplayHost(ORCHESTRATOR, story.activities()).run(payload, **options)


def decisions(record: dict) -> dict:
    return {key: record.get(key) for key in scenarios.DECISION_KEYS}


def test_happy_path_promotes_and_builds_the_image():
    story = scenarios.happy_story()
    replay = run_on_durable_functions(story, scenarios.request())

    assert replay.names() == [
        "record_run",  # the run's start (active.json), so a killed host's attempt is not lost
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
    assert replay.payload_of("record_run", 0)["outcome"] == "running"
    promote = replay.payload_of("promote")
    assert (promote["source_id"], promote["version"], promote["expected_etag"]) == ("A", 2, '"0x1"')
    assert promote["reason"] == story.comparison["reason"]
    assert replay.output["outcome"] == "promoted"
    # The output names the champion's edge image: what a deployment pipeline (retrain.yml) waits for.
    assert replay.output["image"] == {"state": "succeeded", "image": "edge-a:2", "digest": "sha256:ab", "error": None}
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
        "champion_version": 1,  # the champion the run found, and left alone
        "error": "Failed: step train exited with code 1",
    }


def test_losing_challenger_keeps_the_champion_and_rebuilds_nothing_new():
    replay = run_on_durable_functions(scenarios.losing_challenger_story(), scenarios.request())
    assert "promote" not in replay.names()
    assert {key: replay.payload_of("build_image")[key] for key in ("source_id", "version")} == {"source_id": "A", "version": 1}
    assert decisions(replay.payload_of("record_run")) == {"outcome": "kept", "champion_version": 1, "error": None}


def test_upload_during_debounce_is_absorbed_by_identity_of_the_winner():
    replay = run_on_durable_functions(
        scenarios.happy_story(),
        scenarios.request(uploads=1, debounce_seconds=30.0),
        start=START,
        raised=[(UPLOAD_EVENT, {"blob": "A/2026/12/03/b.csv"})],
    )
    assert replay.payload_of("record_run")["uploads"] == 2
    assert replay.output["outcome"] == "promoted"
    # The debounce timer the upload beat is canceled (the extension would otherwise hold the instance Running
    # until it fires, and drop the events raised meanwhile); nothing else is left open.
    assert replay.canceled_timers == [START + timedelta(seconds=30)] and replay.open_timers == []


def test_manual_request_skips_the_debounce_and_follow_up_continues_as_new():
    story = scenarios.happy_story()
    activities = story.activities()
    activities["pending_uploads"] = lambda payload: {"pending": 2, "examples": ["A/x.csv"]}
    host = DurableFunctionsReplayHost(ORCHESTRATOR, activities)
    replay = host.run(scenarios.request(manual=True, trigger="manual", start="2016-01-01T00:00:00"))
    assert replay.payload_of("resolve_data")["start"] == "2016-01-01T00:00:00"
    assert replay.continued_with["trigger"] == "follow-up" and replay.output is None


def test_a_request_raised_during_a_run_the_debounce_started_is_the_follow_up():
    """The debounce's wait for signals lost to its timer and stays open through the run: a retrain request raised
    while training completes that wait, and the follow-up generation must carry it (it used to be dropped)."""
    manual = {"manual": True, "start": "2016-01-15T00:00:00", "end": None, "filters": {"wd": "N"}}
    replay = run_on_durable_functions(
        scenarios.happy_story(),
        scenarios.request(uploads=1, debounce_seconds=30.0),
        start=START,
        raised=[(UPLOAD_EVENT, manual, "get_training_status")],
    )
    assert replay.payload_of("record_run")["outcome"] == "promoted" and replay.output is None
    follow_up = replay.continued_with
    assert follow_up["trigger"] == "manual" and follow_up["manual"] is True
    assert follow_up["start"] == "2016-01-15T00:00:00" and follow_up["filters"] == {"wd": "N"}


def test_an_upload_folded_into_a_retrain_over_a_range_still_gets_its_follow_up():
    """The upload may lie outside the range the manual request asked for: the run over that range does not
    cover it, so a follow-up over the whole history does (it once waited for the next upload)."""
    manual = {"manual": True, "start": "2014-01-01T00:00:00", "end": "2015-01-01T00:00:00", "filters": {}}
    replay = run_on_durable_functions(
        scenarios.happy_story(),
        scenarios.request(uploads=1, debounce_seconds=30.0),
        start=START,
        raised=[(UPLOAD_EVENT, manual)],
    )
    assert replay.payload_of("resolve_data")["start"] == "2014-01-01T00:00:00"
    follow_up = replay.continued_with
    assert follow_up["trigger"] == "follow-up" and follow_up["uploads"] == 1 and follow_up["start"] is None


def test_the_last_queued_request_wins_whole():
    from orchestrations.retrain import RetrainRequest

    queued = RetrainRequest(source_id="A").absorb({"rollback_to": 2})
    retrain = queued.absorb({"manual": True, "start": "2015-01-01T00:00:00", "end": None, "filters": {"wd": "N"}})
    assert (retrain.trigger, retrain.rollback_to, retrain.start, retrain.filters) == (
        "manual",
        None,
        "2015-01-01T00:00:00",
        {"wd": "N"},
    )
    rollback = retrain.absorb({"rollback_to": 3})
    assert (rollback.trigger, rollback.rollback_to, rollback.start, rollback.filters) == ("rollback", 3, None, {})


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


# The JSON fields the extension's RetryOptionsConverter reads (Azure/azure-functions-durable-extension,
# src/WebJobs.Extensions.DurableTask/RetryOptionsConverter.cs; docs/AZURE.md has the details).
EXTENSION_RETRY_FIELDS = {
    "firstRetryIntervalInMilliseconds",
    "maxNumberOfAttempts",
    "backoffCoefficient",
    "maxRetryIntervalInMilliseconds",
    "retryTimeoutInMilliseconds",
}


def first_episode_actions(policy: RetryPolicy) -> str:
    """The raw JSON the Python worker hands the extension after the first episode of an orchestrator
    that calls one activity with `policy`."""

    def orchestrator(ctx, payload):
        result = yield ctx.call_activity("resolve_data", input=payload, retry_policy=policy)
        return result

    stamp = "2026-12-03T12:00:00.000000Z"
    history = [
        {"EventType": ORCHESTRATOR_STARTED, "EventId": -1, "IsPlayed": False, "Timestamp": stamp},
        {
            "EventType": EXECUTION_STARTED,
            "EventId": -1,
            "IsPlayed": False,
            "Timestamp": stamp,
            "Name": "retrain_source",
            "Input": json.dumps({"source_id": "A"}),
            "Version": "",
        },
    ]
    context = {
        "history": history,
        "instanceId": "retrain-A",
        "isReplaying": False,
        "parentInstanceId": None,
        "input": json.dumps({"source_id": "A"}),
        "upperSchemaVersion": 0,
    }
    return df.Orchestrator.create(durable_functions_orchestrator(orchestrator))(json.dumps(context))


def test_retry_options_reach_the_extension_under_its_field_names():
    policy = RetryPolicy(
        first_retry_interval=timedelta(seconds=2),
        max_number_of_attempts=5,
        backoff_coefficient=1.5,
        max_retry_interval=timedelta(minutes=1),
    )
    state = json.loads(first_episode_actions(policy))
    (action,) = [action for group in state["actions"] for action in group]
    assert action["actionType"] == CALL_ACTIVITY_WITH_RETRY and action["functionName"] == "resolve_data"
    assert action["retryOptions"] == {
        "firstRetryIntervalInMilliseconds": 2000,
        "maxNumberOfAttempts": 5,
        "backoffCoefficient": 1.5,
        "maxRetryIntervalInMilliseconds": 60000,
    }
    assert set(action["retryOptions"]) <= EXTENSION_RETRY_FIELDS
    # The extension reads the millisecond fields as Int32: integers in the JSON text, never 2000.0.
    assert '"firstRetryIntervalInMilliseconds": 2000,' in first_episode_actions(policy)


def test_the_orchestrator_step_retry_serializes_without_a_maximum_interval():
    from orchestrations.retrain import STEP_RETRY

    state = json.loads(first_episode_actions(STEP_RETRY))
    (action,) = [action for group in state["actions"] for action in group]
    assert action["retryOptions"] == {
        "firstRetryIntervalInMilliseconds": 2000,
        "maxNumberOfAttempts": 3,
        "backoffCoefficient": 2.0,
    }


@pytest.mark.parametrize(
    "options",
    [
        {"retry_timeout": timedelta(minutes=5)},  # the Python 1.x SDK would wait forever for a retry timer
        {"max_retry_interval": timedelta(0)},  # a zero delay ends the extension's retries the same way
        {"max_retry_interval": timedelta(days=30)},  # beyond Int32 milliseconds
    ],
    ids=["retry-timeout", "zero-max-interval", "max-interval-overflow"],
)
def test_retry_policies_the_extension_cannot_honour_are_refused(options):
    policy = RetryPolicy(first_retry_interval=timedelta(seconds=1), max_number_of_attempts=3, **options)
    with pytest.raises(ValueError, match="retry"):
        DurableRetryOptions(policy)
    # Through the worker: the orchestration fails before it schedules anything.
    with pytest.raises(Exception, match="OutOfProcData") as failure:
        first_episode_actions(policy)
    state = json.loads(str(failure.value).split("$OutOfProcData$:", 1)[1])
    assert state["actions"] == [] and "retry" in state["error"]
