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
    version = usable_fleet_version(ports.registry, request["eval_start"], settings.fleet_max_age_days)
    if version is not None:
        return {"state": "succeeded", "fleet_version": version}
    cutoff = cutoff_for(request["eval_start"])
    job_id = fleet_job_id(cutoff)
    try:
        ports.storage.write(settings.containers.jobs, f"{job_id}/claim.json", b"{}", if_none_match="*")
    except PreconditionFailed:  # another source's run asked first: follow that job
        try:
            status = ports.training.status(job_id)
        except NotFound:
            return {"state": "queued", "job_id": job_id}
        if status["state"] == "succeeded":
            return {"state": "succeeded", "fleet_version": status["result"]["model_version"], "job_id": job_id}
        return {"state": status["state"], "job_id": job_id, "error": status.get("error")}
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
