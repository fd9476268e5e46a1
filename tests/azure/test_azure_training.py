"""The Azure ML training backend: real azure-ai-ml requests against hand-written REST responses."""

from __future__ import annotations

import json

import pytest

from shared import codec
from shared.azure_training import AzureMLTrainingBackend, training_state
from shared.ports import NotFound
from tests.azure.fake_azure import ARM, WORKSPACE_PATH, arm_error

JOB_ID = "A-20261203T120000000000"


def _resource(call):
    path = "/" + call.path
    return {"id": path, "name": path.rstrip("/").split("/")[-1], "type": "x", "properties": {}}


def _echo(call):
    document = call.json()
    document.update(id="/" + call.path, name=call.path.split("/")[-1])
    return 201, document


def _job(status: str) -> tuple:
    return 200, {
        "id": f"{WORKSPACE_PATH}/jobs/{JOB_ID}",
        "name": JOB_ID,
        "properties": {"jobType": "Pipeline", "status": status, "jobs": {}, "inputs": {}, "outputs": {}, "settings": {}},
    }


@pytest.fixture
def backend(fake, ml_client, storage, azure_env):
    settings, azure = azure_env
    compute = {
        "id": f"{WORKSPACE_PATH}/computes/cpu-cluster",
        "name": "cpu-cluster",
        "properties": {"computeType": "AmlCompute", "properties": {}},
    }
    fake.on("GET", r"/workspaces/[^/]+\?", lambda call: (200, _resource(call)))
    fake.on("GET", r"/computes/cpu-cluster\?", (200, compute))
    fake.on("PUT", r"/components/", _echo)
    fake.on("PUT", r"/jobs/", _echo)
    fake.on("GET", rf"/jobs/{JOB_ID}\?", arm_error(404, "UserError", "not found"))
    return AzureMLTrainingBackend(ml_client, storage, settings, azure)


def _job_document():
    return {
        "job_id": JOB_ID,
        "source_id": "A",
        "instance_id": "retrain-A",
        "manifest": {"uri": "runs/A/m.json", "blobs": ["A/2016/01/01/a.csv"]},
    }


def test_submit_creates_a_pipeline_of_four_command_steps(fake, backend, storage):
    assert backend.submit(_job_document()) == JOB_ID

    assert codec.loads(storage.read("jobs", f"{JOB_ID}/job.json")[0])["source_id"] == "A"
    components = [call.json()["properties"]["componentSpec"] for call in fake.matching("PUT", "/components/")]
    assert [spec["command"].split()[3] for spec in components] == ["filter", "preprocess", "train", "register"]
    assert all(spec["command"].startswith("python -m training.steps ") for spec in components)
    assert {spec["environment"].rsplit("/", 3)[-3] for spec in components} == {"multiline-training"}
    assert all(spec["code"].endswith("/codes/multiline-training/versions/1") for spec in components)

    (put_job,) = fake.matching("PUT", f"/jobs/{JOB_ID}?")
    assert put_job.url.startswith(f"{ARM}{WORKSPACE_PATH}/jobs/{JOB_ID}?api-version=")
    job = put_job.json()["properties"]
    assert job["jobType"] == "Pipeline" and job["experimentName"] == "multiline"
    assert job["computeId"].endswith("/computes/cpu-cluster")
    assert job["inputs"]["job"] == {
        "uri": f"azureml://datastores/multiline_jobs/paths/{JOB_ID}/job.json",
        "jobInputType": "uri_file",
    }
    assert set(job["jobs"]) == {"multiline_filter", "multiline_preprocess", "multiline_train", "multiline_register"}
    register = job["jobs"]["multiline_register"]
    assert register["inputs"]["model"]["value"] == "${{parent.jobs.multiline_train.outputs.model}}"
    assert register["inputs"]["rows"]["value"] == "${{parent.jobs.multiline_filter.outputs.rows}}"
    variables = job["jobs"]["multiline_filter"]["environment_variables"]
    assert variables["MULTILINE_MODE"] == "azure" and variables["AZURE_CLIENT_ID"] == "22222222-2222-2222-2222-222222222222"
    assert variables["MULTILINE_STORAGE_ACCOUNT_URL"] == "https://stmultiline.blob.core.windows.net"
    assert job["tags"] == {"source_id": "A", "instance_id": "retrain-A"}
    # Every step runs as the training identity attached to the cluster: not Azure ML's default, and not
    # the Function App's identity (which holds roles the steps must not have).
    expected_identity = {"identity_type": "Managed", "client_id": "22222222-2222-2222-2222-222222222222"}
    assert all(step["identity"] == expected_identity for step in job["jobs"].values())
    # ...and so does the pipeline job itself (REST casing: identityType, clientId).
    assert job["identity"] == {"identityType": "Managed", "clientId": "22222222-2222-2222-2222-222222222222"}


def test_submit_is_idempotent_when_the_job_exists(fake, backend):
    fake.on("GET", rf"/jobs/{JOB_ID}\?", _job("Running"))
    assert backend.submit(_job_document()) == JOB_ID
    assert fake.matching("PUT", "/jobs/") == []


@pytest.mark.parametrize(
    "aml_status, state",
    [
        ("NotStarted", "queued"),
        ("Starting", "queued"),
        ("Provisioning", "queued"),
        ("Preparing", "queued"),
        ("Queued", "queued"),
        ("Running", "running"),
        ("Finalizing", "running"),
        ("Canceled", "canceled"),
        ("CancelRequested", "canceled"),
    ],
)
def test_status_maps_azure_ml_states(fake, backend, aml_status, state):
    fake.on("GET", rf"/jobs/{JOB_ID}\?", _job(aml_status))
    status = backend.status(JOB_ID)
    assert status["state"] == state and status["aml_status"] == aml_status


def test_completed_job_reports_the_registered_version(fake, backend, storage):
    fake.on("GET", rf"/jobs/{JOB_ID}\?", _job("Completed"))
    storage.write("jobs", f"{JOB_ID}/result.json", codec.to_bytes({"model_version": 7, "eval_uri": "artifacts/A/e.parquet"}))
    status = backend.status(JOB_ID)
    assert status["state"] == "succeeded" and status["result"]["model_version"] == 7


def test_completed_job_without_a_result_is_a_failure(fake, backend):
    fake.on("GET", rf"/jobs/{JOB_ID}\?", _job("Completed"))
    assert backend.status(JOB_ID)["state"] == "failed"


def test_failed_job_carries_the_reason_its_step_wrote(fake, backend, storage):
    fake.on("GET", rf"/jobs/{JOB_ID}\?", _job("Failed"))
    storage.write(
        "jobs",
        f"{JOB_ID}/status.json",
        codec.to_bytes({"state": "failed", "error": "source A: 3 rows", "error_kind": "not_enough_data"}),
    )
    status = backend.status(JOB_ID)
    assert status == {**status, "state": "failed", "error": "source A: 3 rows", "error_kind": "not_enough_data"}


def test_not_responding_job_is_failed(fake, backend):
    fake.on("GET", rf"/jobs/{JOB_ID}\?", _job("NotResponding"))
    status = backend.status(JOB_ID)
    assert status["state"] == "failed" and "NotResponding" in status["error"]


def test_unknown_job_is_not_found(backend):
    with pytest.raises(NotFound):
        backend.status(JOB_ID)


def test_throttling_is_retried_after_the_time_azure_asks_for(fake, backend):
    fake.on(
        "GET", rf"/jobs/{JOB_ID}\?", [arm_error(429, "TooManyRequests", "slow down") + ({"Retry-After": "0"},), _job("Running")]
    )
    assert backend.status(JOB_ID)["state"] == "running"
    assert len(fake.matching("GET", f"/jobs/{JOB_ID}?")) == 2


def test_cancel_posts_to_the_job(fake, backend, storage):
    fake.on("POST", rf"/jobs/{JOB_ID}/cancel\?", (202, b"", {"Content-Type": "text/plain"}))
    fake.on("GET", rf"/jobs/{JOB_ID}\?", _job("CancelRequested"))
    backend.cancel(JOB_ID)
    assert fake.matching("POST", f"/jobs/{JOB_ID}/cancel")
    assert json.loads(storage.read("jobs", f"{JOB_ID}/status.json")[0])["state"] == "canceled"


def test_unmapped_states_wait_for_the_deadline():
    assert training_state("Paused") == "running" and training_state(None) == "running"
