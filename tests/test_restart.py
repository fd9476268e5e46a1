"""Kill the local stack in the middle of a run and start it again on the same state: nothing is lost."""

from __future__ import annotations

import uuid

from shared.fleet import source_view
from shared.run_store import runs_of
from tests.conftest import monthly_csv, months_from, raw_name
from tests.stack_helpers import ChampionWatch, call, fast_settings, running_stack, wait_for_runs, wait_for_step


def test_a_run_interrupted_by_a_restart_is_reconciled_and_completes(tmp_path, fast_spec_path):
    state = tmp_path / "state"
    source_id = "Restart-" + uuid.uuid4().hex[:6]
    months = months_from(2015, 2, 3)
    # Reconcile only at start-up here: the point is what a fresh process finds in storage.
    settings = fast_settings(fast_spec_path, MULTILINE_RECONCILE_SECONDS=0, MULTILINE_CANDIDATES="per_source")
    with running_stack(state, settings, persist_storage=True) as first:
        for (year, month), payload in monthly_csv("Changping", months).items():
            first.ports.storage.write("raw", raw_name(source_id, year, month), payload)
        wait_for_step(first, source_id, "training")
        # The stack stops with the training process killed and the orchestration forgotten (in-memory engine).
    with running_stack(state, settings, persist_storage=True) as second:
        assert [item["source_id"] for item in second.reconciled] == [source_id]
        with ChampionWatch(second.ports.registry, [source_id]):
            interrupted, run = wait_for_runs(second, source_id, 2)
        # The killed attempt is on record, not silently gone; the reconciled run did the work.
        assert interrupted["outcome"] == "interrupted" and "host stopped" in interrupted["error"]
        assert interrupted["started_at"] < run["started_at"]
        assert run["outcome"] == "promoted" and run["trigger"] == "reconcile"
        assert run["manifest"]["blob_count"] == len(months)  # every upload made before the kill is used
        assert second.ports.registry.champion(source_id)[0] is not None
        assert run["image"]["state"] == "succeeded"
    with running_stack(state, settings, persist_storage=True) as third:
        assert third.reconciled == []  # up to date: a restart with nothing new starts nothing
        assert [item["outcome"] for item in runs_of(third.ports.storage, "runs", source_id)] == ["interrupted", "promoted"]
        # The fresh engine knows no orchestration; the fleet still says the source's last run is done.
        view = source_view(third.ports, third.orchestrations, source_id)
        assert view["orchestration"]["runtime_status"] is None and view["step"] == "done"
        assert view["decision"] == "promoted"


def test_a_retrain_request_interrupted_by_a_restart_is_asked_again(tmp_path, fast_spec_path):
    """Reconcile brings back data newer than the last run; a person's request over a range is not data, so the
    interrupted request itself is submitted again (it used to be recorded as interrupted and then forgotten)."""
    state = tmp_path / "state"
    source_id = "Manual-" + uuid.uuid4().hex[:6]
    settings = fast_settings(fast_spec_path, MULTILINE_RECONCILE_SECONDS=0, MULTILINE_CANDIDATES="per_source")
    with running_stack(state, settings, persist_storage=True) as first:
        for (year, month), payload in monthly_csv("Changping", months_from(2015, 2, 3)).items():
            first.ports.storage.write("raw", raw_name(source_id, year, month), payload)
        status, answer = call(
            first, "POST", f"/api/sources/{source_id}/retrain", {"start": "2015-02-15", "filters": {"TEMP": {"min": -30}}}
        )
        assert status == 202, answer
        wait_for_step(first, source_id, "training")
    with running_stack(state, settings, persist_storage=True) as second:
        # The uploads were never trained on whole (the request took a range and a filter): riding along with
        # the resubmitted request as one more upload, they get the follow-up run they would have had.
        resubmitted, riding = second.reconciled
        assert resubmitted["source_id"] == source_id and resubmitted["resumes"]
        assert riding["source_id"] == source_id and riding["last_run_watermark"] is None
        interrupted, run, follow_up = wait_for_runs(second, source_id, 3)
        assert interrupted["outcome"] == "interrupted" and "reconcile asks for it again" in interrupted["error"]
        assert interrupted["run_id"] == resubmitted["resumes"]
        assert run["trigger"] == "manual" and run["start"].startswith("2015-02-15") and run["filters"] == {"TEMP": {"min": -30}}
        assert run["outcome"] == "promoted", run.get("error")
        assert follow_up["trigger"] == "follow-up" and follow_up["start"] is None and follow_up["filters"] == {}
        assert follow_up["outcome"] in ("promoted", "kept"), follow_up.get("error")
