"""The TrainingBackend port on Azure ML: one pipeline job per training job, four command components.

The components are built here from `training/steps.py` (filter -> preprocess -> train -> register);
the job document is written to the jobs container and handed to the pipeline as a datastore URI, the
steps pass their data to each other as pipeline outputs, and the register step writes the job's
result and status documents next to the job document, where `status` reads them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared import codec
from shared.azure_settings import AzureSettings
from shared.ports import NotFound, Storage
from shared.settings import PROJECT_ROOT, Settings

# Azure ML job states -> the product's training states. Jobs can sit in Preparing or Finalizing for
# hours and NotResponding/Paused never end by themselves: the orchestrator's deadline covers them.
AML_STATES = {
    "NotStarted": "queued",
    "Starting": "queued",
    "Provisioning": "queued",
    "Preparing": "queued",
    "Queued": "queued",
    "Running": "running",
    "Finalizing": "running",
    "Paused": "running",
    "Unknown": "running",
    "Completed": "succeeded",
    "Failed": "failed",
    "NotResponding": "failed",
    "Canceled": "canceled",
    "CancelRequested": "canceled",
}

STEPS = ("filter", "preprocess", "train", "register")


def stage_code_snapshot(root: Path, target: Path) -> Path:
    """Copy what `.amlignore` keeps of `root` into `target` (empty or missing) and return `target`.

    azure-ai-ml walks the whole code folder, every file tested against the ignore patterns, once to hash it
    and again to size it, on every submit. The deployed Function App folder also holds the remote build's
    `.python_packages/` (tens of thousands of files), so the steps' code is staged once per process into a
    folder of its own: ignored folders are pruned, not walked, and equal sources give an equal content
    hash, so Azure ML still uploads each version of the code once. The matcher is azure-ai-ml's own, so the
    staged files are exactly what it would have uploaded from `root`.
    """
    from azure.ai.ml._utils._asset_utils import get_ignore_file

    ignore = get_ignore_file(root)
    for folder, subfolders, files in os.walk(root):
        base = Path(folder)
        subfolders[:] = sorted(name for name in subfolders if not ignore.is_file_excluded(base / name / "x"))
        for name in files:
            if not ignore.is_file_excluded(base / name):
                destination = target / (base / name).relative_to(root)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(base / name, destination)
    return target


_snapshot_lock = threading.Lock()
_snapshots: dict[Path, Path] = {}


def code_snapshot(root: Path = PROJECT_ROOT) -> Path:
    """The staged code folder of `root` for this process (staged on first use)."""
    with _snapshot_lock:
        if root not in _snapshots:
            _snapshots[root] = stage_code_snapshot(root, Path(tempfile.mkdtemp(prefix="multiline-aml-code-")))
        return _snapshots[root]


def status_name(status) -> str:
    """azure-ai-ml reports some states as a `JobStatus` enum, others as plain strings."""
    return str(getattr(status, "value", status) or "Unknown")


def training_state(aml_status) -> str:
    return AML_STATES.get(status_name(aml_status), "running")


def datastore_uri(datastore: str, path: str) -> str:
    return f"azureml://datastores/{datastore}/paths/{path}"


def job_environment(settings: Settings, azure: AzureSettings) -> dict:
    """What the steps need to reach storage and the registry with the compute's managed identity."""
    variables = {
        "MULTILINE_MODE": "azure",
        "MULTILINE_STORAGE_ACCOUNT_URL": settings.storage_account_url,
        "MULTILINE_RAW_CONTAINER": settings.containers.raw,
        "AZURE_SUBSCRIPTION_ID": azure.subscription_id,
        "AZURE_RESOURCE_GROUP": azure.resource_group,
        "MULTILINE_AML_WORKSPACE": azure.ml_workspace,
        "MULTILINE_AML_ARTIFACTS_DATASTORE": azure.ml_artifacts_datastore,
        "MULTILINE_AML_MODEL_PREFIX": azure.ml_model_prefix,
        "AZURE_CLIENT_ID": azure.training_client_id,
        "OMP_NUM_THREADS": "1",
    }
    return {key: value for key, value in variables.items() if value}


def build_pipeline_job(job_id: str, source_id: str, instance_id: str | None, settings: Settings, azure: AzureSettings, code):
    """The Azure ML pipeline job for one training job (not submitted)."""
    from azure.ai.ml import Input, Output, command, dsl
    from azure.ai.ml.entities import ManagedIdentityConfiguration

    environment_variables = job_environment(settings, azure)
    # The steps read the job document through an identity-based datastore and write blobs and models:
    # run them as the training identity attached to the compute cluster (infra/resources.bicep), not as
    # whatever Azure ML would pick by default.
    client_id = azure.training_client_id
    identity = ManagedIdentityConfiguration(client_id=client_id) if client_id else None

    def component(step: str, inputs: dict, outputs: dict, arguments: str):
        return command(
            name=f"multiline_{step}",
            display_name=step,
            description=f"Multiline training step '{step}' (training/steps.py)",
            command=f"python -m training.steps {step} {arguments}",
            code=code,
            environment=azure.ml_environment,
            inputs=inputs,
            outputs=outputs,
            environment_variables=environment_variables,
            is_deterministic=False,
            identity=identity,
        )

    folder = {"type": "uri_folder"}
    filter_step = component(
        "filter", {"job": Input(type="uri_file")}, {"rows": Output(**folder)}, "--job ${{inputs.job}} --out ${{outputs.rows}}"
    )
    preprocess_step = component(
        "preprocess",
        {"job": Input(type="uri_file"), "rows": Input(**folder)},
        {"split": Output(**folder)},
        "--job ${{inputs.job}} --rows ${{inputs.rows}} --out ${{outputs.split}}",
    )
    train_step = component(
        "train",
        {"job": Input(type="uri_file"), "split": Input(**folder)},
        {"model": Output(**folder)},
        "--job ${{inputs.job}} --split ${{inputs.split}} --out ${{outputs.model}}",
    )
    register_step = component(
        "register",
        {"job": Input(type="uri_file"), "rows": Input(**folder), "split": Input(**folder), "model": Input(**folder)},
        {},
        "--job ${{inputs.job}} --rows ${{inputs.rows}} --split ${{inputs.split}} --model ${{inputs.model}}",
    )

    @dsl.pipeline(name="multiline_retrain", description=f"Retrain the model of source {source_id}", compute=azure.ml_compute)
    def retrain_pipeline(job):
        rows = filter_step(job=job).outputs.rows
        split = preprocess_step(job=job, rows=rows).outputs.split
        model = train_step(job=job, split=split).outputs.model
        register_step(job=job, rows=rows, split=split, model=model)

    pipeline = retrain_pipeline(job=Input(type="uri_file", path=datastore_uri(azure.ml_jobs_datastore, f"{job_id}/job.json")))
    pipeline.name = job_id
    pipeline.display_name = f"retrain {source_id}"
    pipeline.experiment_name = azure.ml_experiment
    pipeline.tags = {key: value for key, value in {"source_id": source_id, "instance_id": instance_id}.items() if value}
    pipeline.settings.force_rerun = True
    # Also on the pipeline job: azure-ai-ml has been seen running steps that carry a managed identity as
    # credential passthrough (Azure/azure-sdk-for-python#34277); the pipeline's own identity is what the
    # service applies to steps that do not say otherwise.
    pipeline.identity = identity
    return pipeline


class AzureMLTrainingBackend:
    def __init__(self, ml_client, storage: Storage, settings: Settings, azure: AzureSettings, code=None):
        self.ml_client = ml_client
        self.storage = storage
        self.settings = settings
        self.azure = azure
        self.container = settings.containers.jobs
        # A registered code asset when set (no upload per job); else the deployed project's code, staged
        # once per process (see `stage_code_snapshot`), which azure-ai-ml uploads once per content hash.
        self._code = code or azure.ml_code

    @property
    def code(self) -> str:
        return self._code or str(code_snapshot())

    def submit(self, job: dict) -> str:
        job_id = job.get("job_id") or f"{job['source_id']}-{uuid.uuid4().hex[:12]}"
        try:
            self.ml_client.jobs.get(job_id)
            return job_id  # a retried submit: the pipeline job already exists
        except ResourceNotFoundError:
            pass
        job = {**job, "job_id": job_id}
        self.storage.write(self.container, f"{job_id}/job.json", codec.to_bytes(job))
        self._write_status(job_id, {"state": "queued", "queued_at": datetime.now(timezone.utc).isoformat()})
        pipeline = build_pipeline_job(job_id, job["source_id"], job.get("instance_id"), self.settings, self.azure, self.code)
        self.ml_client.jobs.create_or_update(pipeline, experiment_name=self.azure.ml_experiment)
        return job_id

    def _write_status(self, job_id: str, status: dict) -> None:
        self.storage.write(self.container, f"{job_id}/status.json", codec.to_bytes(status))

    def _document(self, job_id: str, leaf: str) -> dict | None:
        try:
            return codec.loads(self.storage.read(self.container, f"{job_id}/{leaf}")[0])
        except NotFound:
            return None

    def status(self, job_id: str) -> dict:
        try:
            aml_job = self.ml_client.jobs.get(job_id)
        except ResourceNotFoundError:
            raise NotFound(f"training job {job_id} is unknown to Azure ML") from None
        aml_status = status_name(aml_job.status)
        state = training_state(aml_status)
        status = {"state": state, "aml_status": aml_status, "studio_url": getattr(aml_job, "studio_url", None)}
        if state == "succeeded":
            result = self._document(job_id, "result.json")
            if result is None:
                return {**status, "state": "failed", "error": f"Azure ML job {job_id} completed without writing its result"}
            status["result"] = result
        elif state == "failed":
            written = self._document(job_id, "status.json") or {}
            if written.get("state") == "failed":
                status.update(error=written.get("error"), error_kind=written.get("error_kind"))
            else:
                status.update(error=f"Azure ML job {job_id} is {aml_status}", error_kind="error")
        return status

    def cancel(self, job_id: str) -> None:
        try:
            self.ml_client.jobs.begin_cancel(job_id)
        except ResourceNotFoundError:
            pass
        except HttpResponseError as exc:
            # Canceling a job that already ended is refused; the job is over either way.
            if training_state(self.ml_client.jobs.get(job_id).status) not in ("succeeded", "failed", "canceled"):
                raise exc
        self._write_status(job_id, {"state": "canceled", "ended_at": datetime.now(timezone.utc).isoformat()})
