"""Blob events to orchestration signals: the one handler for Azure (Event Grid trigger) and the local relay.

Accepts the Event Grid schema and CloudEvents 1.0 (structured, batched or binary mode after the host
has turned headers into a dict). Only committed data counts: `Microsoft.Storage.BlobCreated` with an
api that commits (PutBlob, PutBlockList, CopyBlob, FlushWithClose), a non-empty blob in the raw
container under a valid `<source_id>/yyyy/mm/dd/<file>` name. Everything else is ignored with a
reason, counted in `EventStats` and logged. Event Grid delivers at least once: an event id or a
blob ETag already acted on is ignored as a duplicate; a signal that fails is forgotten again so that
Event Grid's retry of the same event is acted on.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent

from shared.blob_layout import BlobPathError, blob_name_from_subject, blob_name_from_url, parse_raw_blob_name
from shared.settings import Settings

log = logging.getLogger("multiline.events")

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
DIRECTORY_EVENTS = {
    "Microsoft.Storage.DirectoryCreated",
    "Microsoft.Storage.DirectoryRenamed",
    "Microsoft.Storage.DirectoryDeleted",
}
COMMITTED_APIS = {"PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose"}

# Why an event was ignored: the keys of EventStats.ignored, one per rule above.
NOT_AN_OBJECT = "not_an_object"
MALFORMED = "malformed"
OTHER_EVENT_TYPE = "other_event_type"
DIRECTORY = "directory"
NOT_COMMITTED = "not_committed"
ZERO_LENGTH = "zero_length"
OTHER_CONTAINER = "other_container"
INVALID_BLOB_NAME = "invalid_blob_name"
DUPLICATE_EVENT_ID = "duplicate_event_id"
DUPLICATE_ETAG = "duplicate_etag"


@dataclass
class EventOutcome:
    accepted: list[dict] = field(default_factory=list)
    ignored: list[dict] = field(default_factory=list)
    validation_code: str | None = None

    def to_dict(self) -> dict:
        return {"accepted": self.accepted, "ignored": self.ignored}


class EventStats:
    """Counters since the process started: accepted events, and ignored events by reason kind."""

    def __init__(self):
        self._lock = threading.Lock()
        self.accepted = 0
        self.validations = 0
        self.signal_failures = 0
        self.ignored: Counter[str] = Counter()

    def count(self, what: str, kind: str | None = None) -> None:
        with self._lock:
            if what == "ignored":
                self.ignored[kind] += 1
            else:
                setattr(self, what, getattr(self, what) + 1)

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "accepted": self.accepted,
                "validations": self.validations,
                "signal_failures": self.signal_failures,
                "ignored": dict(sorted(self.ignored.items())),
                "ignored_total": sum(self.ignored.values()),
            }


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

    def forget(self, key: str) -> None:
        with self._lock:
            self._seen.pop(key, None)


@dataclass(frozen=True)
class BlobEvent:
    """The fields the handler reads, whichever schema the event came in."""

    id: str | None
    type: str | None
    subject: str | None
    data: object


class Ignored(Exception):
    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def parse_event(event: dict) -> BlobEvent:
    """Read an Event Grid-schema or CloudEvents 1.0 event with the azure SDK's own parsers."""
    try:
        if "specversion" in event:
            cloud = CloudEvent.from_dict(event)
            return BlobEvent(_text(cloud.id), _text(cloud.type), _text(cloud.subject), cloud.data)
        grid = EventGridEvent.from_dict(event)
        return BlobEvent(_text(grid.id), _text(grid.event_type), _text(grid.subject), grid.data)
    except Exception as exc:  # the SDK parsers raise ValueError, TypeError, KeyError... on bad shapes
        raise Ignored(MALFORMED, f"not an Event Grid or CloudEvents 1.0 event: {type(exc).__name__}: {exc}") from exc


def _text(value) -> str | None:
    return None if value is None else str(value)


class EventHandler:
    def __init__(self, settings: Settings, orchestrations):
        self.settings = settings
        self.orchestrations = orchestrations
        self.seen = RecentIds()
        self.stats = EventStats()

    def handle(self, events: list[dict]) -> EventOutcome:
        outcome = EventOutcome()
        for event in events:
            self._one(event, outcome)
        return outcome

    def _one(self, event: dict, outcome: EventOutcome) -> None:
        event_id = None
        try:
            if not isinstance(event, dict):
                raise Ignored(NOT_AN_OBJECT, "event is not a JSON object")
            parsed = parse_event(event)
            event_id = parsed.id
            if parsed.type is None or not parsed.type.strip():
                raise Ignored(MALFORMED, "event has no type (eventType in Event Grid, type in CloudEvents 1.0)")
            if parsed.type == VALIDATION:
                code = parsed.data.get("validationCode") if isinstance(parsed.data, dict) else None
                if not isinstance(code, str) or not code.strip():
                    raise Ignored(
                        MALFORMED, f"{VALIDATION} without a usable validationCode (data.validationCode must be a string)"
                    )
                outcome.validation_code = code
                self.stats.count("validations")
                log.info("event grid subscription validation %s", event_id)
                return
            name, source_id, etag = self._committed_blob(parsed)
            keys = self._claim(event_id, name, etag)
        except Ignored as ignored:
            self.stats.count("ignored", ignored.kind)
            log.info("ignored event %s (%s): %s", event_id, ignored.kind, ignored.reason)
            outcome.ignored.append({"id": event_id, "kind": ignored.kind, "reason": ignored.reason})
            return
        signal = {"blob": name, "etag": etag, "event_id": event_id}
        try:
            started = self.orchestrations.signal(source_id, signal)
        except Exception:
            # Not acted on: forget it, so Event Grid's retry of this very event (we answer 500) is.
            for key in keys:
                self.seen.forget(key)
            self.stats.count("signal_failures")
            log.exception("event %s: could not signal the orchestration of source %s", event_id, source_id)
            raise
        self.stats.count("accepted")
        log.info(
            "upload %s for source %s -> %s %s",
            name,
            source_id,
            started["action"],
            started["instance_id"],
            extra={"source_id": source_id, "instance_id": started["instance_id"]},
        )
        outcome.accepted.append({"id": event_id, "source_id": source_id, "blob": name, **started})

    def _committed_blob(self, event: BlobEvent) -> tuple[str, str, str | None]:
        """The blob name, source id and ETag of a committed upload to the raw container, or Ignored."""
        if event.type in DIRECTORY_EVENTS:
            raise Ignored(DIRECTORY, f"directory event {event.type}")
        if event.type != BLOB_CREATED:
            raise Ignored(OTHER_EVENT_TYPE, f"event type {event.type!r} is not {BLOB_CREATED}")
        data = event.data
        if not isinstance(data, dict):
            raise Ignored(MALFORMED, f"{BLOB_CREATED} event without a data object")
        api = data.get("api")
        if not isinstance(api, str) or api not in COMMITTED_APIS:
            raise Ignored(NOT_COMMITTED, f"api {api!r} does not commit data (acting on {sorted(COMMITTED_APIS)})")
        length = data.get("contentLength")
        if isinstance(length, (int, float)) and not isinstance(length, bool) and length == 0:
            raise Ignored(ZERO_LENGTH, "zero-length blob")
        container = self.settings.containers.raw
        url, subject = data.get("url"), event.subject
        if url is not None and not isinstance(url, str):
            raise Ignored(MALFORMED, f"data.url is a {type(url).__name__}, not a string")
        if url:
            name = blob_name_from_url(url, container)  # percent-decoded exactly once, here
        elif subject:
            name = blob_name_from_subject(subject, container)
        else:
            raise Ignored(MALFORMED, "event names no blob (no data.url and no subject)")
        if name is None:
            raise Ignored(OTHER_CONTAINER, f"blob is not in the {container!r} container")
        if name.endswith("/"):
            raise Ignored(DIRECTORY, f"blob {name!r} is a directory marker")
        try:
            path = parse_raw_blob_name(name, self.settings.source_id_pattern, self.settings.source_id_max_length)
        except BlobPathError as exc:
            raise Ignored(INVALID_BLOB_NAME, str(exc)) from exc
        etag = data.get("eTag")
        return name, path.source_id, _text(etag) if etag else None

    def _claim(self, event_id: str | None, name: str, etag: str | None) -> list[str]:
        """Remember the event id and the blob ETag; a second delivery of either is a duplicate."""
        keys = []
        if event_id:
            key = f"id:{event_id}"
            if not self.seen.first_time(key):
                raise Ignored(DUPLICATE_EVENT_ID, "duplicate event id")
            keys.append(key)
        if etag:
            key = f"etag:{name}:{etag}"
            if not self.seen.first_time(key):
                raise Ignored(DUPLICATE_ETAG, "duplicate blob ETag")
            keys.append(key)
        return keys
