"""One contract, two image builders, on a model really trained on the shipped data:

- local: LocalImageBuilder (build context + the image's own self-test run with the edge server's code);
- azure: AcrImageBuilder, the real azure-mgmt-containerregistry and azure-storage-blob SDKs uploading the
  context and scheduling a Docker build on a simulated ACR Tasks that unpacks the upload and walks its
  Dockerfile (`tests/azure/service_simulators.py`).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
import uuid

import pytest

from shared.blob_registry import BlobModelRegistry
from shared.ports import BUILD_STATES
from tests.conftest import months_from
from tests.test_training_contract import train_locally


@pytest.fixture(scope="module")
def trained(storage, azurite, fast_spec, tmp_path_factory):
    """A source with one model trained for real by the local backend: (source id, version, registry)."""
    source_id = f"img-{uuid.uuid4().hex[:8]}"
    log_dir = tmp_path_factory.mktemp("jobs")
    version = train_locally(storage, azurite, fast_spec, log_dir, source_id, "Gucheng", months_from(2015, 6, 3))
    return source_id, version, BlobModelRegistry(storage)


@pytest.fixture(params=["local", "azure"])
def builder(request, storage, trained, fast_spec, monkeypatch):
    registry = trained[2]
    if request.param == "local":
        from shared.local_image_builder import LocalImageBuilder

        return LocalImageBuilder(storage, registry, fast_spec, "images")
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

    from shared.acr_builder import ACR_TASKS_API_VERSION, AcrImageBuilder
    from shared.azure_settings import load_azure_settings
    from shared.settings import load_settings
    from tests.azure.conftest import AZURE_ENVIRONMENT
    from tests.azure.fake_azure import SUBSCRIPTION, FakeAzure, FakeCredential
    from tests.azure.service_simulators import SimulatedAcrTasks

    for key, value in AZURE_ENVIRONMENT.items():
        monkeypatch.setenv(key, value)
    fake = FakeAzure()
    SimulatedAcrTasks(fake)
    client = ContainerRegistryManagementClient(
        FakeCredential(), SUBSCRIPTION, api_version=ACR_TASKS_API_VERSION, transport=fake.transport()
    )
    return AcrImageBuilder(
        client, storage, registry, fast_spec, load_settings(), load_azure_settings(), upload_transport=fake.transport()
    )


def build(builder, source_id, version, timeout=180):
    build_id = builder.start_build(source_id, version, None)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = builder.status(build_id)
        assert status["state"] in BUILD_STATES, status
        if status["state"] in ("succeeded", "failed", "canceled"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"build {build_id} still {status['state']} after {timeout} s")


def context_files(storage, record) -> dict[str, bytes]:
    container, _, name = record["context_uri"].partition("/")
    with tarfile.open(fileobj=io.BytesIO(storage.read(container, name)[0]), mode="r:gz") as archive:
        return {member.name: archive.extractfile(member).read() for member in archive.getmembers() if member.isfile()}


def test_the_image_carries_the_registered_model_passes_its_self_test_and_rebuilds_the_same(builder, storage, trained):
    source_id, version, registry = trained
    status = build(builder, source_id, version)
    assert status["state"] == "succeeded", status
    assert status["image"].endswith(f"edge-{source_id}:{version}")
    assert status["digest"].startswith("sha256:") and len(status["digest"]) == 71
    assert builder.image_for(source_id, version)["digest"] == status["digest"]
    files = context_files(storage, status)
    assert hashlib.sha256(files["model/model.joblib"]).hexdigest() == registry.get(source_id, version)["sha256"]
    assert {"Dockerfile", "score_server.py", "features.py", "requirements.txt", "model/evaluation.parquet"} <= set(files)
    again = build(builder, source_id, version)  # a rebuild (say, after a failed push) starts from the same bytes
    assert again["context_digest"] == status["context_digest"] and status["context_digest"].startswith("sha256:")


def test_an_image_whose_self_test_disagrees_with_the_registry_fails(builder, storage, trained):
    source_id, version, registry = trained
    record = registry.get(source_id, version)
    tags = {key: value for key, value in record.items() if key not in ("version", "sha256", "registered_at")}
    wrong = registry.register(source_id, registry.model_bytes(source_id, version), {**tags, "metrics": {"rmse": 1.0}})
    status = build(builder, source_id, wrong)
    assert status["state"] == "failed"
    assert '"expected": 1.0' in status["error"] and '"ok": false' in status["error"]
    assert builder.image_for(source_id, wrong) is None


def test_an_unknown_build_is_failed_with_the_reason(builder):
    status = builder.status("nobody/000042")
    assert status["state"] == "failed" and "unknown" in status["error"]


def test_a_model_without_evaluation_rows_fails_with_the_reason(builder, storage, trained):
    """The Dockerfile smoke-tests the image on the model's evaluation rows: without them no builder builds."""
    source_id, version, registry = trained
    record = registry.get(source_id, version)
    assert record.get("eval_uri")
    tags = {key: value for key, value in record.items() if key not in ("version", "sha256", "registered_at", "eval_uri")}
    bare = registry.register(source_id, registry.model_bytes(source_id, version), tags)
    status = build(builder, source_id, bare)
    assert status["state"] == "failed"
    assert status["error"] == "smoke test failed: no evaluation rows to smoke-test the image with"
    assert builder.image_for(source_id, bare) is None


def test_the_images_scoring_server_answers_a_burst_of_requests_and_logs_them(storage, trained, fast_spec, tmp_path):
    """The server the image runs (`score_server.py` from the built context, as a process): health, a burst of
    concurrent scoring requests, a refused request, and the prediction log the device uploads."""
    import json
    import socket
    import subprocess
    import sys
    import threading
    import urllib.error
    import urllib.request

    import pandas as pd

    from shared.local_image_builder import LocalImageBuilder

    source_id, version, registry = trained
    status = build(LocalImageBuilder(storage, registry, fast_spec, "images"), source_id, version)
    assert status["state"] == "succeeded", status
    for name, data in context_files(storage, status).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "score_server.py", "--port", str(port), "--prediction-log", "log"]
    server = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, env={"PATH": os.environ["PATH"]})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    health = json.loads(response.read())
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()
                time.sleep(0.2)
        assert health == {"status": "ok", "source_id": source_id, "model_version": version}

        frame = pd.read_parquet(tmp_path / "model" / "evaluation.parquet").head(6)
        rows = json.loads(frame.drop(columns=["_context"], errors="ignore").to_json(orient="records", date_format="iso"))

        def post(body: bytes) -> tuple[int, dict]:
            request = urllib.request.Request(f"{url}/score", data=body, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        answers = []
        threads = [threading.Thread(target=lambda: answers.append(post(json.dumps({"rows": rows}).encode()))) for _ in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(answers) == 64 and all(code == 200 for code, _ in answers), answers[:3]
        assert all(body["model_version"] == version and len(body["predictions"]) == len(rows) for _, body in answers)
        code, body = post(json.dumps({"rows": [{"nothing": 1}]}).encode())
        assert code == 400 and "lack input column" in body["error"]
        for refused in ({"rows": []}, [rows[0]], {"rows": [1, 2]}, {"row": rows}):
            code, body = post(json.dumps(refused).encode())
            assert code == 400 and 'the body must be {"rows": [' in body["error"], (refused, body)
        logged = pd.concat(pd.read_csv(path) for path in (tmp_path / "log").glob("predictions-*.csv"))
        assert len(logged) == 64 * len(rows) and set(logged["model_version"]) == {version}
    finally:
        server.terminate()
        server.wait(timeout=10)
