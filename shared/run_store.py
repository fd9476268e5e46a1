"""Where run documents live in the runs container: manifests, drift reports, run records."""

from __future__ import annotations

from shared import codec
from shared.ports import NotFound, Storage


def manifest_name(source_id: str, run_id: str) -> str:
    return f"{source_id}/manifests/{run_id}.json"


def drift_name(source_id: str, run_id: str) -> str:
    return f"{source_id}/drift/{run_id}.json"


def run_name(source_id: str, run_id: str) -> str:
    return f"{source_id}/runs/{run_id}.json"


def latest_name(source_id: str) -> str:
    return f"{source_id}/latest.json"


def active_name(source_id: str) -> str:
    """The record of the run in progress, written when it starts: what is left of a run the host never finished."""
    return f"{source_id}/active.json"


def read_uri(storage: Storage, uri: str) -> dict:
    container, _, name = uri.partition("/")
    return codec.loads(storage.read(container, name)[0])


def latest_run(storage: Storage, container: str, source_id: str) -> dict | None:
    try:
        return codec.loads(storage.read(container, latest_name(source_id))[0])
    except NotFound:
        return None


def runs_of(storage: Storage, container: str, source_id: str) -> list[dict]:
    records = [codec.loads(storage.read(container, blob.name)[0]) for blob in storage.list(container, f"{source_id}/runs/")]
    return sorted(records, key=lambda record: record.get("started_at") or "")


def data_watermark(storage: Storage, container: str, source_id: str) -> str | None:
    """The newest upload time the source's runs have looked at. Runs that read no data (a rollback, a
    failed listing) do not move it, so a restart after a rollback does not retrain without new data."""
    run = latest_run(storage, container, source_id)
    watermark = ((run or {}).get("manifest") or {}).get("newest_modified")
    if run is None or watermark is not None:
        return watermark
    marks = [((item.get("manifest") or {}).get("newest_modified")) for item in runs_of(storage, container, source_id)]
    marks = [mark for mark in marks if mark]
    return max(marks) if marks else None


def record_interrupted(storage: Storage, container: str, source_id: str, live_run_id: str | None, now: str) -> dict | None:
    """If the source's last started run neither finished nor is still running, record it as interrupted.

    A run writes `active.json` when it starts and its run record when it ends; a host that is killed in
    between (locally the in-memory engine then forgets the orchestration) leaves only the first. Returns
    the record written, or None when there was nothing to record."""
    try:
        active = codec.loads(storage.read(container, active_name(source_id))[0])
    except NotFound:
        return None
    run_id = active.get("run_id")
    if not run_id or run_id == live_run_id:
        return None
    try:
        storage.read(container, run_name(source_id, run_id))
        return None  # it finished (or was recorded as interrupted already)
    except NotFound:
        pass
    record = {
        **active,
        "outcome": "interrupted",
        "error": "the host stopped before this run finished; "
        + ("reconcile asks for it again" if resumable_signal(active) else "its data is picked up by the next run"),
        "ended_at": None,
        "detected_at": now,
    }
    storage.write(container, run_name(source_id, run_id), codec.to_bytes(record))
    return record


def resumable_signal(record: dict) -> dict | None:
    """The request an interrupted run was carrying out, if a person asked for it (a retrain over a range, a
    rollback): reconcile's "data newer than the last run" rule would not bring it back."""
    if record.get("trigger") == "rollback" and record.get("rollback_to") is not None:
        return {"rollback_to": record["rollback_to"], "trigger": "rollback", "resumes": record.get("run_id")}
    if record.get("trigger") == "manual":
        return {
            "manual": True,
            "trigger": "manual",
            "start": record.get("start"),
            "end": record.get("end"),
            "filters": record.get("filters") or {},
            "resumes": record.get("run_id"),
        }
    return None
