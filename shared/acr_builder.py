"""The ImageBuilder port on ACR Tasks: a quick build of the champion's edge image, polled to its end.

Package choice: `azure-mgmt-containerregistry==14.0.0` with api_version 2019-06-01-preview. Version 15
removed the ACR Tasks operations (they moved to `azure-mgmt-containerregistrytasks`, 1.0.0b1, a first
beta); 14.0.0 is the last GA release that still has them, on the same preview API the Azure CLI's
`az acr build` uses. docs/AZURE.md has the reasoning and the migration path.

Flow: build context (shared.image_context, the same tar.gz the local builder smoke-tests) ->
`get_build_source_upload_url` -> upload to its SAS URL -> `schedule_run(DockerBuildRequest)` with the
model version as build argument -> `runs.get` until the run ends -> record image and digest.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient

from shared import codec
from shared.azure_settings import AzureSettings
from shared.image_context import NO_EVALUATION_ROWS, context_for_version, image_name
from shared.ports import NotFound, Storage
from shared.settings import Settings
from shared.spec import ModelSpec

log = logging.getLogger("multiline.acr")

ACR_TASKS_API_VERSION = "2019-06-01-preview"
NOT_ALLOWED = "TasksOperationsNotAllowed"
RUN_STATES = {
    "Queued": "queued",
    "Started": "running",
    "Running": "running",
    "Succeeded": "succeeded",
    "Failed": "failed",
    "Error": "failed",
    "Timeout": "failed",
    "Canceled": "canceled",
}
TERMINAL = ("succeeded", "failed", "canceled")


def build_id_for(source_id: str, version: int) -> str:
    return f"{source_id}/{version:06d}"


def build_state(run_status: str | None) -> str:
    return RUN_STATES.get(str(run_status or "Queued"), "running")


def _error_code(exc: HttpResponseError) -> str | None:
    error = getattr(exc, "error", None)
    return getattr(error, "code", None) or (NOT_ALLOWED if NOT_ALLOWED in str(exc) else None)


class AcrImageBuilder:
    def __init__(
        self,
        acr_client,
        storage: Storage,
        registry,
        spec: ModelSpec,
        settings: Settings,
        azure: AzureSettings,
        upload_transport=None,
    ):
        self.acr = acr_client
        self.storage = storage
        self.registry = registry
        self.spec = spec
        self.container = settings.containers.images
        self.timeout_seconds = int(settings.build_deadline_seconds)
        self.azure = azure
        self.upload_transport = upload_transport  # tests serve the SAS upload from the same fake transport

    def _record_name(self, build_id: str) -> str:
        return f"{build_id}/image.json"

    def _write(self, build_id: str, record: dict) -> None:
        self.storage.write(self.container, self._record_name(build_id), codec.to_bytes(record))

    def _read(self, build_id: str) -> dict | None:
        try:
            return codec.loads(self.storage.read(self.container, self._record_name(build_id))[0])
        except NotFound:
            return None

    def start_build(self, source_id: str, version: int, eval_uri: str | None) -> str:
        from azure.mgmt.containerregistry.v2019_06_01_preview.models import Argument, DockerBuildRequest, PlatformProperties

        build_id = build_id_for(source_id, version)
        _, context, context_digest, has_rows = context_for_version(
            self.storage, self.registry, self.spec, source_id, version, eval_uri
        )
        context_name = f"{build_id}/context.tar.gz"
        self.storage.write(self.container, context_name, context)
        image = f"{self.azure.acr_login_server}/{image_name(source_id, version)}"
        base = {
            "build_id": build_id,
            "image": image,
            "context_digest": context_digest,
            "context_uri": f"{self.container}/{context_name}",
            "started_at": datetime.now(timezone.utc).isoformat(),
            "builder": "acr-tasks",
        }
        if not has_rows:
            # The Dockerfile's smoke test needs the rows; fail with the reason, as the local builder does,
            # rather than spend an ACR run on a build that fails at that step.
            self._write(build_id, {**base, "state": "failed", "error": f"smoke test failed: {NO_EVALUATION_ROWS}"})
            return build_id
        group, registry_name = self.azure.resource_group, self.azure.acr_name
        try:
            upload = self.acr.registries.get_build_source_upload_url(group, registry_name)
            options = {"transport": self.upload_transport} if self.upload_transport is not None else {}
            BlobClient.from_blob_url(upload.upload_url, **options).upload_blob(context, overwrite=True)
            request = DockerBuildRequest(
                source_location=upload.relative_path,
                docker_file_path="Dockerfile",
                image_names=[image_name(source_id, version)],
                is_push_enabled=True,
                platform=PlatformProperties(os=self.azure.image_os, architecture=self.azure.image_architecture),
                arguments=[Argument(name="MODEL_VERSION", value=str(version), is_secret=False)],
                timeout=min(max(self.timeout_seconds, 300), 28800),
            )
            run = self.acr.registries.begin_schedule_run(group, registry_name, request).result()
        except HttpResponseError as exc:
            if exc.status_code == 400 and _error_code(exc) == NOT_ALLOWED:
                # Retrying cannot help: the subscription refuses ACR Tasks. The run ends with the reason.
                self._write(
                    build_id,
                    {**base, "state": "failed", "error": f"ACR Tasks are not allowed for {registry_name}: {exc.message}"},
                )
                return build_id
            raise
        log.info("ACR run %s builds %s for source %s", run.run_id, image, source_id)
        self._write(build_id, {**base, "state": build_state(run.status), "run_id": run.run_id})
        return build_id

    def status(self, build_id: str) -> dict:
        record = self._read(build_id)
        if record is None:
            return {"build_id": build_id, "state": "failed", "error": f"build {build_id} is unknown"}
        if record["state"] in TERMINAL or not record.get("run_id"):
            return record
        run = self.acr.runs.get(self.azure.resource_group, self.azure.acr_name, record["run_id"])
        state = build_state(run.status)
        record = {**record, "state": state, "run_status": str(run.status)}
        if state == "succeeded":
            images = run.output_images or []
            record["digest"] = images[0].digest if images else None
            record["ended_at"] = (run.finish_time or datetime.now(timezone.utc)).isoformat()
        elif state in ("failed", "canceled"):
            record["error"] = run.run_error_message or f"ACR run {record['run_id']} {run.status}"
            record["ended_at"] = (run.finish_time or datetime.now(timezone.utc)).isoformat()
        if state in TERMINAL:
            self._write(build_id, record)
        return record

    def image_for(self, source_id: str, version: int) -> dict | None:
        record = self._read(build_id_for(source_id, version))
        return record if record and record.get("state") == "succeeded" else None
