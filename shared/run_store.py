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
