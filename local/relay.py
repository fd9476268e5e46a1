"""The blob relay: watches the raw container and POSTs Event Grid-schema BlobCreated events, as Event Grid would.

Azurite has no Event Grid, so the local stack lists the container on a short interval and posts one
event per new (blob, ETag) to the host's Event Grid webhook route. Event Grid fires BlobCreated only
when content is committed, never for metadata: a blob whose ETag changed because Multiline marked it
(`multiline_status` metadata) is not posted again.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
import uuid
from datetime import timezone
from urllib.parse import quote

from shared.source_data import STATUS_KEY

log = logging.getLogger("multiline.relay")

MAX_IDLE_FACTOR = 8  # an idle relay looks every 4 s at the default 0.5 s interval


def blob_created_event(account_url: str, container: str, blob) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/local/resourceGroups/local/providers/Microsoft.Storage/storageAccounts/local",
        "subject": f"/blobServices/default/containers/{container}/blobs/{blob.name}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": blob.last_modified.astimezone(timezone.utc).isoformat(),
        "dataVersion": "",
        "metadataVersion": "1",
        "data": {
            "api": "PutBlob",
            "eTag": blob.etag,
            "contentType": "text/csv",
            "contentLength": blob.size,
            "blobType": "BlockBlob",
            "url": f"{account_url.rstrip('/')}/{container}/{quote(blob.name)}",
            "sequencer": f"{blob.last_modified.timestamp():020.6f}",
        },
    }


class BlobRelay:
    def __init__(self, storage, container: str, account_url: str, webhook_url: str, interval: float = 0.5):
        self.storage = storage
        self.container = container
        self.account_url = account_url
        self.webhook_url = webhook_url
        self.interval = interval
        self._seen: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="multiline-relay", daemon=True)
        self.posted = 0
        self.looks = 0  # listings of the container so far

    def start(self, skip_existing: bool = True) -> BlobRelay:
        if skip_existing:  # what was there before start-up is the reconciler's job, not an event
            self._seen = {blob.name: blob.etag for blob in self.storage.list(self.container)}
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def poll_once(self) -> int:
        self.looks += 1
        new, marked = [], []
        for blob in self.storage.list(self.container):
            if self._seen.get(blob.name) == blob.etag:
                continue
            # An overwrite replaces the metadata, so a marked blob still holds the content we judged.
            (marked if STATUS_KEY in blob.metadata and blob.name in self._seen else new).append(blob)
        for blob in marked:
            self._seen[blob.name] = blob.etag
        if new:
            events = [blob_created_event(self.account_url, self.container, blob) for blob in new]
            request = urllib.request.Request(
                self.webhook_url,
                data=json.dumps(events).encode(),
                method="POST",
                headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
            for blob in new:  # only after delivery: a failed post is retried on the next poll
                self._seen[blob.name] = blob.etag
            self.posted += len(new)
        return len(new)

    def _run(self) -> None:
        # Each look lists the whole container, so an idle relay looks less often: the wait doubles while
        # nothing is new, up to MAX_IDLE_FACTOR times the interval, and drops back as soon as something is.
        wait = self.interval
        while not self._stop.wait(wait):
            try:
                found = self.poll_once()
            except Exception as exc:  # keep relaying; Event Grid retries too
                log.warning("relay poll failed: %s", exc)
                found = 0
            wait = self.interval if found else min(wait * 2, self.interval * MAX_IDLE_FACTOR)
