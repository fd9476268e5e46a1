"""The ACR Tasks image builder: real azure-mgmt-containerregistry and azure-storage-blob requests."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from shared.acr_builder import ACR_TASKS_API_VERSION, AcrImageBuilder
from shared.blob_registry import BlobModelRegistry
from shared.settings import DEFAULT_SPEC
from shared.spec import load_spec
from tests.azure.fake_azure import GROUP, SUBSCRIPTION, FakeCredential, arm_error

REGISTRY_PATH = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.ContainerRegistry/registries/crmultiline"
)
UPLOAD_URL = "https://acrsource.blob.core.windows.net/upload/source/202612/ctx.tar.gz?sv=2024-11-04&sr=b&sp=cw&sig=abc"

A_REPOSITORY = "edge-a." + hashlib.sha256(b"A").hexdigest()[:8]


def _run(status: str, **properties) -> tuple:
    return 200, {
        "id": f"{REGISTRY_PATH}/runs/ca1",
        "name": "ca1",
        "type": "Microsoft.ContainerRegistry/registries/runs",
        "properties": {"runId": "ca1", "status": status, "provisioningState": "Succeeded", **properties},
    }


@pytest.fixture
def builder(fake, storage, azure_env):
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

    settings, azure = azure_env
    registry = BlobModelRegistry(storage, "models")
    storage.write("artifacts", "A/evaluation/j.parquet", b"PAR1")
    registry.register("A", b"model-bytes", {"metrics": {"rmse": 10.0}, "eval_uri": "artifacts/A/evaluation/j.parquet"})
    registry.register("A", b"model-bytes-2", {"metrics": {"rmse": 9.0}, "eval_uri": "artifacts/A/evaluation/j.parquet"})
    fake.on(
        "POST",
        r"/registries/crmultiline/listBuildSourceUploadUrl\?",
        (200, {"uploadUrl": UPLOAD_URL, "relativePath": "source/202612/ctx.tar.gz"}),
    )
    fake.on(
        "PUT",
        r"acrsource\.blob\.core\.windows\.net",
        (201, b"", {"ETag": '"0x8D"', "Last-Modified": "Thu, 03 Dec 2026 12:00:00 GMT", "x-ms-request-server-encrypted": "true"}),
    )
    fake.on("POST", r"/registries/crmultiline/scheduleRun\?", _run("Queued"))
    client = ContainerRegistryManagementClient(
        FakeCredential(), SUBSCRIPTION, api_version=ACR_TASKS_API_VERSION, transport=fake.transport()
    )
    return AcrImageBuilder(client, storage, registry, load_spec(DEFAULT_SPEC), settings, azure, upload_transport=fake.transport())


def test_quick_build_uploads_the_context_and_schedules_a_docker_build(fake, builder, storage):
    build_id = builder.start_build("A", 2, None)
    assert build_id == "A/000002"

    (upload_url,) = fake.matching("POST", "listBuildSourceUploadUrl")
    assert f"api-version={ACR_TASKS_API_VERSION}" in upload_url.url
    (upload,) = fake.matching("PUT", "acrsource.blob.core.windows.net")
    assert upload.url.startswith(UPLOAD_URL.split("?")[0]) and "sig=abc" in upload.url
    assert upload.headers.get("x-ms-blob-type") == "BlockBlob"
    context = gzip.decompress(upload.body)
    assert b"Dockerfile" in context and b"model-bytes-2" in context
    assert storage.read("images", "A/000002/context.tar.gz")[0] == upload.body

    (schedule,) = fake.matching("POST", "scheduleRun")
    request = schedule.json()
    assert request["type"] == "DockerBuildRequest"
    assert request["sourceLocation"] == "source/202612/ctx.tar.gz"
    assert request["dockerFilePath"] == "Dockerfile"
    # Source "A" is upper case: its repository carries a hash of the id, so a source "a" gets another one.
    assert request["imageNames"] == [f"{A_REPOSITORY}:2"] and request["isPushEnabled"] is True
    assert request["arguments"] == [{"name": "MODEL_VERSION", "value": "2", "isSecret": False}]
    assert request["platform"] == {"os": "Linux", "architecture": "amd64"}
    assert request["timeout"] == 1800


def test_run_is_polled_until_it_succeeds_and_the_digest_is_recorded(fake, builder):
    build_id = builder.start_build("A", 2, None)
    fake.on(
        "GET",
        r"/runs/ca1\?",
        [
            _run("Started"),
            _run("Running"),
            _run(
                "Succeeded",
                outputImages=[
                    {"registry": "crmultiline.azurecr.io", "repository": A_REPOSITORY, "tag": "2", "digest": "sha256:feed"}
                ],
                finishTime="2026-12-03T12:05:00Z",
            ),
        ],
    )
    assert builder.status(build_id)["state"] == "running"
    assert builder.status(build_id)["state"] == "running"
    final = builder.status(build_id)
    assert final["state"] == "succeeded" and final["digest"] == "sha256:feed"
    assert final["image"] == f"crmultiline.azurecr.io/{A_REPOSITORY}:2"
    assert builder.image_for("A", 2)["digest"] == "sha256:feed"
    calls = len(fake.matching("GET", "/runs/ca1"))
    assert builder.status(build_id)["state"] == "succeeded"  # recorded: no more polling
    assert len(fake.matching("GET", "/runs/ca1")) == calls


@pytest.mark.parametrize(
    "run_status, state", [("Failed", "failed"), ("Error", "failed"), ("Timeout", "failed"), ("Canceled", "canceled")]
)
def test_runs_that_do_not_succeed(fake, builder, run_status, state):
    build_id = builder.start_build("A", 1, None)
    fake.on("GET", r"/runs/ca1\?", _run(run_status, runErrorMessage=f"run {run_status.lower()}"))
    status = builder.status(build_id)
    assert status["state"] == state and status["error"] == f"run {run_status.lower()}"
    assert builder.image_for("A", 1) is None


def test_tasks_not_allowed_is_a_failed_build_not_a_retry(fake, builder):
    fake.on(
        "POST",
        r"/scheduleRun\?",
        arm_error(400, "TasksOperationsNotAllowed", "ACR Tasks requests for the registry crmultiline are not permitted."),
    )
    build_id = builder.start_build("A", 2, None)
    status = builder.status(build_id)
    assert status["state"] == "failed" and "not allowed" in status["error"]
    assert len(fake.matching("POST", "scheduleRun")) == 1


def test_other_errors_propagate_for_the_orchestrator_to_retry(fake, builder):
    from azure.core.exceptions import HttpResponseError

    fake.on("POST", r"/scheduleRun\?", arm_error(400, "InvalidRequest", "bad"))
    with pytest.raises(HttpResponseError):
        builder.start_build("A", 2, None)


def test_throttled_poll_is_retried_after_retry_after(fake, builder):
    build_id = builder.start_build("A", 2, None)
    fake.on("GET", r"/runs/ca1\?", [arm_error(429, "TooManyRequests", "throttled") + ({"Retry-After": "0"},), _run("Running")])
    assert builder.status(build_id)["state"] == "running"
    assert len(fake.matching("GET", "/runs/ca1")) == 2


# Every source id the default pattern accepts becomes a repository name a registry takes (OCI distribution
# spec: lower-case components, single separators, alphanumeric at both ends), and distinct ids stay distinct.
ODD_SOURCE_IDS = [
    "Aotizhongxin",
    "aotizhongxin",
    "Dongsi",
    "dongsi",
    "DONGSI",
    "abc",
    "abc-",
    "abc_",
    "abc__",
    "a___b",
    "a-_b",
    "a_-b",
    "a--b",
    "A",
    "x9",
]


def test_every_allowed_source_id_makes_a_valid_distinct_image_name():
    import re

    from shared.image_context import image_name
    from shared.settings import load_settings

    allowed = re.compile(load_settings().source_id_pattern)
    reference = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
    names = {}
    for source_id in ODD_SOURCE_IDS:
        assert allowed.fullmatch(source_id), source_id
        name = image_name(source_id, 3)
        assert reference.fullmatch(name), f"{source_id} -> {name}"
        names[name] = source_id
    assert len(names) == len(ODD_SOURCE_IDS)
    assert image_name("aotizhongxin", 3) == "edge-aotizhongxin:3" and image_name("a-_b", 3).startswith("edge-a-b.")
    assert image_name("Aotizhongxin", 3).startswith("edge-aotizhongxin.")  # readable, and not the lower-case source's
