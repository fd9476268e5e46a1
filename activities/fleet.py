"""ensure_fleet_model: a fleet model fair for this source's evaluation window, trained once for all sources."""

from __future__ import annotations

from datetime import datetime

from shared.adapters import get_ports
from shared.blob_layout import BlobPathError, parse_raw_blob_name
from shared.fleet_model import FLEET_SOURCE, SOURCE_COLUMN, cutoff_for, fleet_job_id, usable_fleet_version
from shared.ports import NotFound, PreconditionFailed
from shared.source_data import STATUS_KEY


def _fleet_blobs(ports, cutoff: datetime) -> list[str]:
    settings = ports.settings
    names = []
    for blob in ports.storage.list(settings.containers.raw):
        try:
            path = parse_raw_blob_name(blob.name, settings.source_id_pattern, settings.source_id_max_length)
        except BlobPathError:
            continue
        if (
            blob.metadata.get(STATUS_KEY) != "rejected"
            and blob.size
            and datetime(path.day.year, path.day.month, path.day.day) < cutoff
        ):
            names.append(blob.name)
    return sorted(names)


def ensure_fleet_model(request: dict) -> dict:
    """Polled by the orchestrator: `succeeded` with the fleet version, or `queued`/`running`/`failed`."""
    ports = get_ports()
    settings = ports.settings
    if not settings.fleet_enabled:
        return {"state": "failed", "error": "fleet candidates are off (MULTILINE_CANDIDATES=per_source)"}
    cutoff = cutoff_for(request["eval_start"])
    job_id = fleet_job_id(cutoff)
    claim = f"{job_id}/claim.json"
    if _exists(ports.storage, settings.containers.jobs, claim):
        # The fleet model for this cut-off is asked for already (by this run's earlier poll or another source's
        # run): follow its job. One small read per poll, where the registry's listing costs ten times more; the
        # job's model is the newest a window starting after the cut-off may use, so the answer is the same.
        return _follow(ports, job_id)
    version = usable_fleet_version(ports.registry, request["eval_start"], settings.fleet_max_age_days)
    if version is not None:
        return {"state": "succeeded", "fleet_version": version}
    try:
        ports.storage.write(settings.containers.jobs, claim, b"{}", if_none_match="*")
    except PreconditionFailed:  # another source's run asked first: follow that job
        return _follow(ports, job_id)
    spec = ports.spec
    ports.training.submit(
        {
            "job_id": job_id,
            "source_id": FLEET_SOURCE,
            "candidate": "fleet",
            "spec": spec.with_constant_feature(SOURCE_COLUMN).to_dict(),
            "data_spec": spec.to_dict(),
            "manifest": {"blobs": _fleet_blobs(ports, cutoff)},
            "start": None,
            "end": cutoff.isoformat(),
            "hold_out": False,
            "priority": True,
            "instance_id": request.get("instance_id"),
        }
    )
    return {"state": "queued", "job_id": job_id}


def _exists(storage, container: str, name: str) -> bool:
    try:
        storage.info(container, name)
    except NotFound:
        return False
    return True


def _follow(ports, job_id: str) -> dict:
    try:
        status = ports.training.status(job_id)
    except NotFound:  # claimed, not submitted yet
        return {"state": "queued", "job_id": job_id}
    if status["state"] == "succeeded":
        return {"state": "succeeded", "fleet_version": status["result"]["model_version"], "job_id": job_id}
    return {"state": status["state"], "job_id": job_id, "error": status.get("error")}
