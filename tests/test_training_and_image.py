"""The training steps in real worker processes, and the edge image built and smoke-tested from the result."""

import io
import os
import time

import pandas as pd
import pytest

from shared.blob_registry import BlobModelRegistry
from shared.image_context import build_context
from shared.local_image_builder import LocalImageBuilder
from shared.local_training import LocalTrainingBackend
from shared.modeling import aggregate_loss, score_rows
from shared.source_data import ERROR_KEY, STATUS_KEY
from tests.conftest import monthly_csv, months_from, raw_name


def wait_for(backend, job_id, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = backend.status(job_id)
        if status["state"] in ("succeeded", "failed", "canceled"):
            return status
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {status['state']} after {timeout} s")


@pytest.fixture
def backend(storage, azurite, tmp_path):
    env = {**os.environ, "MULTILINE_STORAGE_CONNECTION_STRING": azurite.connection_string, "MULTILINE_MODE": "local"}
    backend = LocalTrainingBackend(storage, "jobs", concurrency=2, env=env, log_dir=tmp_path)
    yield backend
    backend.close()


def upload_months(storage, source_id, station, months):
    names = []
    for (year, month), payload in monthly_csv(station, months).items():
        storage.write("raw", raw_name(source_id, year, month), payload)
        names.append(raw_name(source_id, year, month))
    return names


def job_for(source_id, names, spec, **extra):
    return {"source_id": source_id, "spec": spec.to_dict(), "manifest": {"blobs": names}, **extra}


def test_training_job_registers_a_model_that_never_saw_its_evaluation_rows(storage, backend, fast_spec, source_id):
    names = upload_months(storage, source_id, "Guanyuan", months_from(2015, 1, 4))
    bad = f"{source_id}/2015/05/01/broken.csv"
    storage.write("raw", bad, b"year,month\n2015,5\n")
    job_id = backend.submit(job_for(source_id, [*names, bad], fast_spec))
    status = wait_for(backend, job_id)
    assert status["state"] == "succeeded", status
    result = status["result"]
    assert result["rejected_blobs"] == 1 and "missing column" in result["rejected"][0]["error"]
    # The bad file is kept, marked with the reason, and did not stop the healthy ones.
    marked = storage.info("raw", bad).metadata
    assert marked[STATUS_KEY] == "rejected" and "missing column" in marked[ERROR_KEY]

    registry = BlobModelRegistry(storage)
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


def test_too_little_data_fails_with_the_reason(storage, backend, fast_spec, source_id):
    names = upload_months(storage, source_id, "Huairou", [(2015, 1)])
    status = wait_for(backend, backend.submit(job_for(source_id, names, fast_spec)))
    assert status["state"] == "failed"
    assert status["error_kind"] == "not_enough_data" and "training rows before the evaluation window" in status["error"]


def test_concurrency_limit_queues_jobs_and_cancel_stops_one(storage, backend, fast_spec, source_id):
    names = upload_months(storage, source_id, "Dongsi", months_from(2015, 1, 3))
    jobs = [backend.submit(job_for(source_id, names, fast_spec)) for _ in range(3)]
    time.sleep(1.0)
    states = [backend.status(job)["state"] for job in jobs]
    assert states.count("queued") >= 1, states  # at most two run at once
    backend.cancel(jobs[2])
    assert wait_for(backend, jobs[2])["state"] == "canceled"
    assert [wait_for(backend, job)["state"] for job in jobs[:2]] == ["succeeded", "succeeded"]


def test_image_context_is_reproducible_and_its_smoke_test_checks_the_loss(storage, backend, fast_spec, source_id):
    names = upload_months(storage, source_id, "Gucheng", months_from(2015, 6, 3))
    status = wait_for(backend, backend.submit(job_for(source_id, names, fast_spec)))
    version = status["result"]["model_version"]
    registry = BlobModelRegistry(storage)
    record = registry.get(source_id, version)
    model_bytes = registry.model_bytes(source_id, version)
    first, digest = build_context(source_id, version, model_bytes, record, fast_spec, None)
    again, digest_again = build_context(source_id, version, model_bytes, record, fast_spec, None)
    assert first == again and digest == digest_again and digest.startswith("sha256:")

    builder = LocalImageBuilder(storage, registry, fast_spec, "images")
    build = builder.status(builder.start_build(source_id, version, None))
    assert build["state"] == "succeeded", build
    assert build["image"] == f"edge-{source_id}:{version}"
    assert build["smoke_test"]["loss"] == pytest.approx(record["metrics"]["rmse"], rel=1e-6)
    assert builder.image_for(source_id, version)["digest"].startswith("sha256:")

    # A registry whose recorded loss disagrees with what the image computes must fail the build.
    storage.write(
        "models",
        f"{source_id}/versions/{version:06d}/version.json",
        storage.read("models", f"{source_id}/versions/{version:06d}/version.json")[0].replace(
            str(record["metrics"]["rmse"]).encode(), b"1.0"
        ),
    )
    storage.write("images", f"{source_id}/{version:06d}/image.json", b"{}")
    failed = builder.status(builder.start_build(source_id, version, None))
    assert failed["state"] == "failed" and "smoke test failed" in failed["error"]
