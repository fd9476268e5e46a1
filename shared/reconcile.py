"""Reconcile: events can be lost, so any source whose newest data is newer than its last run gets a run."""

from __future__ import annotations

from datetime import datetime

from orchestrations.retrain import instance_id_for
from shared.run_store import latest_run

ACTIVE = ("running", "pending", "continued_as_new", "suspended")


def sources_needing_a_run(ports) -> list[dict]:
    settings, storage = ports.settings, ports.storage
    newest: dict[str, datetime] = {}
    for blob in storage.list(settings.containers.raw):
        source_id = blob.name.split("/", 1)[0]
        if source_id not in newest or blob.last_modified > newest[source_id]:
            newest[source_id] = blob.last_modified
    stale = []
    for source_id, modified in sorted(newest.items()):
        run = latest_run(storage, settings.containers.runs, source_id)
        watermark = ((run or {}).get("manifest") or {}).get("newest_modified")
        if watermark is None or modified > datetime.fromisoformat(watermark):
            stale.append({"source_id": source_id, "newest_data": modified.isoformat(), "last_run_watermark": watermark})
    return stale


def reconcile(ports, orchestrations) -> list[dict]:
    started = []
    for item in sources_needing_a_run(ports):
        status = orchestrations.status(instance_id_for(item["source_id"]))
        if status and status["runtime_status"] in ACTIVE:
            continue  # the live run's follow-up check will see the data
        try:
            result = orchestrations.signal(item["source_id"], {"trigger": "reconcile"})
        except Exception as exc:  # an invalid folder name must not stop the others
            started.append({**item, "error": str(exc)})
            continue
        started.append({**item, **result})
    return started
