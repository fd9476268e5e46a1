"""Property test of the event handler's contract: whatever arrives, it never crashes, acts on each blob
version at most once, and only ever signals a valid source id taken from the blob's first path segment.

The handler's contract is the `signal(source_id, signal)` call it makes, so a recording object stands
in for the orchestrations here; the integration tests drive the real engine.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.events import COMMITTED_APIS, EventHandler
from shared.settings import load_settings

SETTINGS = load_settings()
ACCOUNT_URL = "http://127.0.0.1:10000/devstoreaccount1"


class RecordingOrchestrations:
    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.running: set[str] = set()

    def signal(self, source_id: str, signal: dict) -> dict:
        self.calls.append((source_id, signal))
        action = "signaled" if source_id in self.running else "started"
        self.running.add(source_id)
        return {"instance_id": f"retrain-{source_id}", "action": action}


segment = st.one_of(
    st.sampled_from(["S1", "s-2", "a_b", "..", ".", "", "%2e%2e", "x" * 70, "Dongsi", "raw", "S1%2FS2", "ü"]),
    st.text(min_size=0, max_size=12),
)
blob_names = st.one_of(
    st.builds(
        lambda source, day, name: f"{source}/2016/01/{day:02d}/{name}",
        segment,
        st.integers(0, 40),
        st.sampled_from(["a.csv", "b.parquet", "c.csv.gz", "d.txt", "..", "e%20f.csv", "g/h.csv"]),
    ),
    st.lists(segment, min_size=0, max_size=7).map("/".join),
)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def events(draw):
    name = draw(blob_names)
    container = draw(st.sampled_from(["raw", "raw", "models", "raw2"]))
    encoded = draw(st.sampled_from([quote(name), name, quote(quote(name))]))
    data = {
        "api": draw(st.one_of(st.sampled_from(sorted(COMMITTED_APIS) + ["CreateFile", "PutBlock"]), json_values)),
        "eTag": draw(st.one_of(st.none(), st.sampled_from(["0x1", "0x2", "0x3"]), json_values)),
        "contentLength": draw(st.one_of(st.integers(-1, 10), json_values)),
        "url": draw(st.one_of(st.just(f"{ACCOUNT_URL}/{container}/{encoded}"), json_values)),
    }
    if draw(st.booleans()):
        data = draw(st.dictionaries(st.sampled_from(["api", "eTag", "url", "contentLength"]), json_values)) | {
            key: value for key, value in data.items() if draw(st.booleans())
        }
    event_type = draw(
        st.one_of(
            st.sampled_from(
                [
                    "Microsoft.Storage.BlobCreated",
                    "Microsoft.Storage.BlobDeleted",
                    "Microsoft.Storage.DirectoryCreated",
                    "Microsoft.EventGrid.SubscriptionValidationEvent",
                ]
            ),
            json_values,
        )
    )
    event_id = draw(st.one_of(st.sampled_from(["e1", "e2", "e3", "e4"]), st.uuids().map(str), json_values))
    subject = f"/blobServices/default/containers/{container}/blobs/{name}"
    if draw(st.booleans()):  # CloudEvents 1.0
        event = {"specversion": "1.0", "id": event_id, "type": event_type, "source": "/storage", "subject": subject, "data": data}
    else:
        event = {
            "id": event_id,
            "eventType": event_type,
            "subject": subject,
            "data": data,
            "dataVersion": "",
            "eventTime": "2016-01-01T00:00:00Z",
        }
    if draw(st.integers(0, 9)) == 0:  # now and then, a field removed or replaced by junk
        key = draw(st.sampled_from(sorted(event)))
        if draw(st.booleans()):
            del event[key]
        else:
            event[key] = draw(json_values)
    return event


payloads = st.lists(st.one_of(events(), json_values), max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(payloads, min_size=1, max_size=4))
def test_random_events_never_crash_never_double_start_never_accept_a_bad_source_id(batches):
    orchestrations = RecordingOrchestrations()
    handler = EventHandler(SETTINGS, orchestrations)
    started: list[str] = []
    for batch in batches:
        outcome = handler.handle(batch)
        assert len(outcome.accepted) + len(outcome.ignored) <= len(batch)
        started += [item["source_id"] for item in outcome.accepted if item["action"] == "started"]
    for source_id, signal in orchestrations.calls:
        assert re.fullmatch(SETTINGS.source_id_pattern, source_id) and len(source_id) <= SETTINGS.source_id_max_length
        assert signal["blob"].split("/")[0] == source_id  # the whole first segment, never a prefix
        assert ".." not in signal["blob"].split("/")
    # Each blob version (ETag) and each event id is acted on at most once.
    versions = [(signal["blob"], signal["etag"]) for _, signal in orchestrations.calls if signal["etag"]]
    assert len(versions) == len(set(versions))
    ids = [signal["event_id"] for _, signal in orchestrations.calls if signal["event_id"]]
    assert len(ids) == len(set(ids))
    # One run per source: the first signal starts it, every later one joins it.
    assert len(started) == len(set(started)) == len(orchestrations.running)
    stats = handler.stats.snapshot()
    assert stats["accepted"] == len(orchestrations.calls)
