"""Event Grid `BlobCreated` events to orchestration signals: the one handler for Azure and the local relay."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from shared.blob_layout import BlobPathError, blob_name_from_subject, blob_name_from_url, parse_raw_blob_name
from shared.settings import Settings

log = logging.getLogger("multiline.events")

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
COMMITTED_APIS = {"PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose"}


@dataclass
class EventOutcome:
    accepted: list[dict] = field(default_factory=list)
    ignored: list[dict] = field(default_factory=list)
    validation_code: str | None = None

    def to_dict(self) -> dict:
        return {"accepted": self.accepted, "ignored": self.ignored}


class RecentIds:
    """A bounded memory of event ids and blob ETags already handled (Event Grid delivers at least once)."""

    def __init__(self, capacity: int = 100_000):
        self.capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, key: str) -> bool:
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = None
            if len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
            return True


class EventHandler:
    def __init__(self, settings: Settings, orchestrations):
        self.settings = settings
        self.orchestrations = orchestrations
        self.seen = RecentIds()

    def handle(self, events: list[dict]) -> EventOutcome:
        outcome = EventOutcome()
        for event in events:
            self._one(event, outcome)
        return outcome

    def _one(self, event: dict, outcome: EventOutcome) -> None:
        if not isinstance(event, dict):
            outcome.ignored.append({"id": None, "reason": "event is not a JSON object"})
            return
        event_id = event.get("id")
        event_type = event.get("eventType") or event.get("type")
        data = event.get("data") or {}

        def ignore(reason: str) -> None:
            log.info("ignored event %s: %s", event_id, reason)
            outcome.ignored.append({"id": event_id, "reason": reason})

        if event_type == VALIDATION:
            outcome.validation_code = data.get("validationCode")
            return
        if event_type != BLOB_CREATED:
            return ignore(f"event type {event_type!r} is not {BLOB_CREATED}")
        api = data.get("api")
        if api not in COMMITTED_APIS:
            return ignore(f"api {api!r} does not commit data (acting on {sorted(COMMITTED_APIS)})")
        if data.get("contentLength") == 0:
            return ignore("zero-length blob")
        container = self.settings.containers.raw
        name = blob_name_from_subject(event.get("subject", ""), container) if event.get("subject") else None
        if data.get("url"):
            name = blob_name_from_url(data["url"], container)
        if name is None:
            return ignore(f"blob is not in the {container!r} container")
        try:
            path = parse_raw_blob_name(name, self.settings.source_id_pattern, self.settings.source_id_max_length)
        except BlobPathError as exc:
            return ignore(str(exc))
        if event_id and not self.seen.first_time(f"id:{event_id}"):
            return ignore("duplicate event id")
        etag = data.get("eTag")
        if etag and not self.seen.first_time(f"etag:{name}:{etag}"):
            return ignore("duplicate blob ETag")
        signal = {"blob": name, "etag": etag, "event_id": event_id}
        started = self.orchestrations.signal(path.source_id, signal)
        log.info("upload %s for source %s -> %s %s", name, path.source_id, started["action"], started["instance_id"])
        outcome.accepted.append({"id": event_id, "source_id": path.source_id, "blob": name, **started})
