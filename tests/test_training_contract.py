"""One contract, two training backends, on the same real data in Azurite:

- local: `training.pipeline` in worker processes (LocalTrainingBackend);
- azure: the real azure-ai-ml SDK submitting the four-step pipeline job (AzureMLTrainingBackend) to a
  simulated Azure ML that runs the submitted commands (`tests/azure/service_simulators.py`), with
  the Azure ML model registry (real SDK, HTTP-level fake of the model service) behind the register step.
"""

from __future__ import annotations

import io
import os
import time

import pandas as pd
import pytest

from shared.ports import TRAINING_STATES, NotFound
from shared.source_data import ERROR_KEY, STATUS_KEY
from tests.conftest import monthly_csv, months_from, raw_name


@pytest.fixture(params=["local", "azure"])
def world(request, storage, azurite, tmp_path, monkeypatch):
    """(backend, registry) of one world; both store blobs in the same real Azurite."""
    if request.param == "local":
        from shared.blob_registry import BlobModelRegistry
        from shared.local_training import LocalTrainingBackend

        env = {**os.environ, "MULTILINE_STORAGE_CONNECTION_STRING": azurite.connection_string, "MULTILINE_MODE": "local"}
        backend = LocalTrainingBackend(storage, "jobs", concurrency=2, env=env, log_dir=tmp_path)
        yield backend, BlobModelRegistry(storage)
        backend.close()
        return
    from azure.ai.ml import MLClient

    from shared.azure_registry import AzureMLModelRegistry
    from shared.azure_settings import load_azure_settings
    from shared.azure_training import AzureMLTrainingBackend
    from shared.settings import load_settings
    from tests.azure.conftest import AZURE_ENVIRONMENT
    from tests.azure.fake_azure import GROUP, SUBSCRIPTION, WORKSPACE, FakeAzure, FakeCredential
    from tests.azure.service_simulators import SimulatedAzureML
    from tests.azure.test_azure_registry import FakeModelStore

    for key, value in AZURE_ENVIRONMENT.items():
        monkeypatch.setenv(key, value)
    fake = FakeAzure()
    FakeModelStore(fake)
    client = MLClient(
        FakeCredential(), SUBSCRIPTION, GROUP, WORKSPACE, transport=fake.transport(), show_progress=False, enable_telemetry=False
    )
    registry = AzureMLModelRegistry(client, storage, "artifacts", "multiline_artifacts")
    SimulatedAzureML(fake, storage, registry, {"multiline_jobs": "jobs", "multiline_artifacts": "artifacts"})
    yield AzureMLTrainingBackend(client, storage, load_settings(), load_azure_settings()), registry


def wait_for(backend, job_id, timeout=240):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        status = backend.status(job_id)
        seen.append(status["state"])
        assert status["state"] in TRAINING_STATES, status
        if status["state"] in ("succeeded", "failed", "canceled"):
            return status
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {seen[-1]} after {timeout} s")


def upload_months(storage, source_id, station, months):
    names = []
    for (year, month), payload in monthly_csv(station, months).items():
        storage.write("raw", raw_name(source_id, year, month), payload)
        names.append(raw_name(source_id, year, month))
    return names


def job_for(source_id, names, spec, **extra):
    return {"source_id": source_id, "spec": spec.to_dict(), "manifest": {"blobs": names}, **extra}


def train_locally(storage, azurite, spec, log_dir, source_id, station, months) -> int:
    """Upload a station's months as the source's files, train on them with the local backend: the model version."""
    from shared.local_training import LocalTrainingBackend

    env = {**os.environ, "MULTILINE_STORAGE_CONNECTION_STRING": azurite.connection_string, "MULTILINE_MODE": "local"}
    backend = LocalTrainingBackend(storage, "jobs", concurrency=1, env=env, log_dir=log_dir)
    try:
        names = upload_months(storage, source_id, station, months)
        status = wait_for(backend, backend.submit(job_for(source_id, names, spec)))
    finally:
        backend.close()
    assert status["state"] == "succeeded", status
    return status["result"]["model_version"]


def test_a_job_registers_a_model_that_never_saw_its_evaluation_rows(world, storage, fast_spec, source_id):
    from shared.modeling import aggregate_loss, score_rows

    backend, registry = world
    names = upload_months(storage, source_id, "Guanyuan", months_from(2015, 1, 4))
    bad = f"{source_id}/2015/05/01/broken.csv"
    storage.write("raw", bad, b"year,month\n2015,5\n")
    status = wait_for(backend, backend.submit(job_for(source_id, [*names, bad], fast_spec)))
    assert status["state"] == "succeeded", status
    result = status["result"]
    assert result["rejected_blobs"] == result["problem_blobs"] == 1 and "missing column" in result["rejected"][0]["error"]
    # The bad file is kept, marked with the reason, and did not stop the healthy ones.
    marked = storage.info("raw", bad).metadata
    assert marked[STATUS_KEY] == "rejected" and "missing column" in marked[ERROR_KEY]

    record = registry.get(source_id, result["model_version"])
    assert pd.Timestamp(record["train_end"]) <= pd.Timestamp(record["eval_start"]) < pd.Timestamp(record["eval_end"])
    assert record["eval_end"] == "2015-04-30T23:00:00"
    assert 500 < record["eval_rows"] <= 30 * 24
    container, _, name = record["eval_uri"].partition("/")
    stored = pd.read_parquet(io.BytesIO(storage.read(container, name)[0]))
    rows, context = stored.loc[~stored["_context"]], stored.loc[stored["_context"]]
    assert (rows["_timestamp"] > pd.Timestamp(record["eval_start"])).all() and len(rows) == record["eval_rows"]
    # The look-back rows the derived features need are stored too, flagged, and never scored.
    assert len(context.loc[context["_timestamp"] <= pd.Timestamp(record["eval_start"])]) == 25
    assert context.loc[context["_timestamp"] > pd.Timestamp(record["eval_start"]), "PM2.5"].isna().all()
    model = registry.load_model(source_id, result["model_version"])
    losses, _ = score_rows(model, stored, fast_spec)
    rescored = aggregate_loss(losses, fast_spec)
    assert rescored == pytest.approx(record["metrics"]["rmse"], rel=1e-9)
    assert 5 < rescored < 80  # PM2.5 RMSE on real data: a real model, not a constant
    assert registry.profile(source_id, result["model_version"])["rows"] == record["train_rows"]


def test_too_little_data_fails_with_the_reason_and_registers_nothing(world, storage, fast_spec, source_id):
    backend, registry = world
    names = upload_months(storage, source_id, "Huairou", [(2015, 1)])
    status = wait_for(backend, backend.submit(job_for(source_id, names, fast_spec)))
    assert status["state"] == "failed"
    assert status["error_kind"] == "not_enough_data" and "training rows before the evaluation window" in status["error"]
    assert registry.versions(source_id) == []


def test_filters_choose_the_training_rows_and_the_evaluation_keeps_every_recent_row(world, storage, fast_spec, source_id):
    """Scored on the filtered window, a model trained on a slice (low PM2.5, say) beats any champion there
    and would be shipped for every row: the window stays whole, so champion and challenger meet all of it."""
    from shared.dataset import TIMESTAMP, read_table

    backend, registry = world
    names = upload_months(storage, source_id, "Huairou", months_from(2015, 1, 3))
    status = wait_for(backend, backend.submit(job_for(source_id, names, fast_spec, filters={"PM2.5": {"max": 50}})))
    assert status["state"] == "succeeded", status
    record = registry.get(source_id, status["result"]["model_version"])
    container, _, name = record["eval_uri"].partition("/")
    stored = pd.read_parquet(io.BytesIO(storage.read(container, name)[0]))
    evaluation = stored.loc[~stored["_context"]]
    assert evaluation["PM2.5"].max() > 50 and "_passes_filters" not in stored.columns
    rows = pd.concat(read_table(storage.read("raw", blob)[0], blob, fast_spec) for blob in names)
    before = rows.loc[rows["PM2.5"].notna() & (rows[TIMESTAMP] <= pd.Timestamp(record["eval_start"]))]
    assert record["train_rows"] == int((before["PM2.5"] <= 50).sum()) < len(before)
    assert len(evaluation) == record["eval_rows"]


def test_a_job_whose_filters_leave_no_row_fails_naming_them(world, storage, fast_spec, source_id):
    backend, registry = world
    names = upload_months(storage, source_id, "Huairou", months_from(2015, 1, 2))
    job = job_for(source_id, names, fast_spec, start="2015-01-15", filters={"wd": "ZZZ"})
    status = wait_for(backend, backend.submit(job))
    assert status["state"] == "failed" and status["error_kind"] == "not_enough_data"
    assert "row(s) from 2015-01-15 to the last, none passes the filters {'wd': 'ZZZ'}" in status["error"], status
    assert registry.versions(source_id) == []


def test_a_job_whose_every_file_is_rejected_fails_naming_why(world, storage, fast_spec, source_id):
    backend, registry = world
    bad = [f"{source_id}/2015/0{month}/01/broken.csv" for month in (1, 2)]
    for name in bad:
        storage.write("raw", name, b"year,month\n2015,5\n")
    status = wait_for(backend, backend.submit(job_for(source_id, bad, fast_spec)))
    assert status["state"] == "failed" and status["error_kind"] == "not_enough_data"
    assert "no valid rows" in status["error"] and "2 file(s) rejected, e.g. " in status["error"]
    assert "broken.csv" in status["error"] and "missing column(s)" in status["error"]
    assert registry.versions(source_id) == []


def test_a_retried_submit_of_the_same_job_trains_once(world, storage, fast_spec, source_id):
    backend, registry = world
    names = upload_months(storage, source_id, "Dongsi", months_from(2015, 1, 3))
    job = job_for(source_id, names, fast_spec, job_id=f"{source_id}-run-1")
    assert backend.submit(job) == backend.submit(job) == f"{source_id}-run-1"
    assert wait_for(backend, f"{source_id}-run-1")["state"] == "succeeded"
    time.sleep(1.0)  # a second copy, had one started, would register soon after the first
    assert [record["version"] for record in registry.versions(source_id)] == [1]


def test_a_canceled_job_stays_canceled_and_registers_nothing(world, storage, fast_spec, source_id):
    backend, registry = world
    names = upload_months(storage, source_id, "Dingling", months_from(2015, 1, 3))
    job_id = backend.submit(job_for(source_id, names, fast_spec))
    backend.cancel(job_id)
    assert wait_for(backend, job_id)["state"] == "canceled"
    time.sleep(2.0)
    assert backend.status(job_id)["state"] == "canceled"
    assert registry.versions(source_id) == []


def test_an_unknown_job_is_not_found(world):
    backend, _ = world
    with pytest.raises(NotFound):
        backend.status("no-such-job")
