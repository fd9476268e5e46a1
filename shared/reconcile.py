"""Reconcile: events can be lost, so any source whose newest data is newer than its last run gets a run.

Run at local start-up and on a timer (`ReconcileTimer`, every MULTILINE_RECONCILE_SECONDS); in Azure
by the `reconcile_sources` timer trigger. Only committed data under a valid `<source_id>/...` name
counts; blobs Multiline has marked (rejected or used with warnings) do not: marking changes their
Last-Modified, and their content was read already.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone

from orchestrations.retrain import RetrainRequest, instance_id_for
from shared.blob_layout import BlobPathError, parse_raw_blob_name
from shared.run_store import data_watermark, record_interrupted, resumable_signal
from shared.source_data import STATUS_KEY

log = logging.getLogger("multiline.reconcile")

ACTIVE = ("running", "pending", "continued_as_new", "suspended")


def known_run_sources(ports) -> list[str]:
    """Every source folder of the runs container (those without an `active.json` are skipped cheaply)."""
    return ports.storage.list_prefixes(ports.settings.containers.runs)


def sources_needing_a_run(ports) -> list[dict]:
    settings, storage = ports.settings, ports.storage
    newest: dict[str, datetime] = {}
    for blob in storage.list(settings.containers.raw):
        # A blob carrying a verdict was read by a run already (an overwrite clears metadata); marking it
        # moved its Last-Modified, which must not look like new data.
        if blob.size == 0 or blob.metadata.get(STATUS_KEY):
            continue
        try:
            source_id = parse_raw_blob_name(blob.name, settings.source_id_pattern, settings.source_id_max_length).source_id
        except BlobPathError:
            continue  # never a source: a run could not use it (the event handler ignores it too)
        if source_id not in newest or blob.last_modified > newest[source_id]:
            newest[source_id] = blob.last_modified
    stale = []
    for source_id, modified in sorted(newest.items()):
        watermark = data_watermark(storage, settings.containers.runs, source_id)
        if watermark is None or modified > datetime.fromisoformat(watermark):
            stale.append({"source_id": source_id, "newest_data": modified.isoformat(), "last_run_watermark": watermark})
    return stale


def record_interrupted_runs(ports, orchestrations, source_ids) -> list[dict]:
    """Runs that started and never finished, nor are running now, are recorded as interrupted."""
    container = ports.settings.containers.runs
    recorded = []
    for source_id in source_ids:
        status = orchestrations.status(instance_id_for(source_id)) or {}
        live = (status.get("custom_status") or {}).get("run_id") if status.get("runtime_status") in ACTIVE else None
        try:
            record = record_interrupted(ports.storage, container, source_id, live, datetime.now(timezone.utc).isoformat())
        except Exception as exc:  # one source's trouble must not stop the others
            log.warning("reconcile: could not check source %s for an interrupted run: %s", source_id, exc)
            continue
        if record:
            log.warning(
                "reconcile: run %s of source %s was interrupted (started %s)",
                record["run_id"],
                source_id,
                record.get("started_at"),
                extra={"source_id": source_id},
            )
            recorded.append(record)
    return recorded


def reconcile(ports, orchestrations) -> list[dict]:
    started, resumed = [], {}
    for record in record_interrupted_runs(ports, orchestrations, known_run_sources(ports)):
        signal = resumable_signal(record)
        if signal is None:
            continue
        source_id = record["source_id"]
        try:
            result = orchestrations.signal(source_id, signal)
        except Exception as exc:  # one source's failure must not stop the others
            log.warning("reconcile: the interrupted request of source %s could not be resubmitted: %s", source_id, exc)
            started.append({"source_id": source_id, "resumes": record["run_id"], "error": str(exc)})
            continue
        log.info("reconcile: source %s: the interrupted %s request asked again", source_id, signal["trigger"])
        resumed[source_id] = signal
        started.append({"source_id": source_id, "resumes": record["run_id"], **result})
    for item in sources_needing_a_run(ports):
        request = resumed.get(item["source_id"])
        if request is not None:
            if not RetrainRequest.from_dict({**request, "source_id": item["source_id"]}).partial_history:
                continue  # the resubmitted request trains on the whole history: it reads the data
            # A rollback or a range/filtered retrain may not read it, and its watermark counts every blob
            # listed: this signal rides along as an upload, which gets the whole-history follow-up run.
        else:
            status = orchestrations.status(instance_id_for(item["source_id"]))
            if status and status["runtime_status"] in ACTIVE:
                continue  # the live run's follow-up check will see the data
        try:
            result = orchestrations.signal(item["source_id"], {"trigger": "reconcile"})
        except Exception as exc:  # one source's failure must not stop the others
            log.warning("reconcile: source %s could not be started: %s", item["source_id"], exc)
            started.append({**item, "error": str(exc)})
            continue
        log.info(
            "reconcile: source %s has data newer than its last run -> %s",
            item["source_id"],
            result.get("action"),
            extra={"source_id": item["source_id"], "instance_id": result.get("instance_id")},
        )
        started.append({**item, **result})
    return started


class ReconcileTimer:
    """Calls `reconcile` every `interval` seconds in a daemon thread (the local stand-in for the timer trigger)."""

    def __init__(self, ports, orchestrations, interval: float):
        self.ports = ports
        self.orchestrations = orchestrations
        self.interval = interval
        self.rounds = 0
        self.started: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="multiline-reconcile", daemon=True)

    def start(self) -> ReconcileTimer:
        if self.interval > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.started.extend(reconcile(self.ports, self.orchestrations))
            except Exception as exc:  # storage or engine hiccup: try again next round
                log.warning("reconcile round failed: %s", exc)
            self.rounds += 1
